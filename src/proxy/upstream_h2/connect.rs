//! Opening one upstream HTTP/2 connection: the codec's settings, the handshake up to
//! the backend's SETTINGS, and the connection's task with its keep-alive PINGs.

use std::cell::Cell;
use std::io::ErrorKind;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::watched::{watch, BLOCKS_PER_STREAM};
use super::{keep, StreamSlot};
use crate::config::PoolConfig;
use crate::http2::HeaderBlocks;
use crate::snapshot::BackendLive;

/// The codec's settings for upstream connections; every limit is weir's.
const MAX_FRAME_SIZE: u32 = 16 * 1024;
/// A response body a client does not read holds at most this per stream in weir (the
/// RFC's default window), as an upload does on the client side.
const STREAM_WINDOW: u32 = 65_535;
/// The least connection window: 16 stream windows, so a few downloads at once run at
/// full speed. It grows to a window for every stream the connection may carry
/// ([`connection_window`]).
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// What weir queues per stream to send before it waits for the backend's window.
const MAX_SEND_BUFFER: usize = 64 * 1024;
/// The RFC's default HPACK table.
const HEADER_TABLE_SIZE: u32 = 4096;

/// The connection window for a connection of up to `streams` streams: room for each
/// stream's whole window. Streams share the connection's window, and a stream whose
/// client reads nothing keeps its share until the client does: with less than a window
/// each, 17 such streams (one HTTP/2 client opening downloads with a window of 0, or 20
/// HTTP/1.1 clients that read nothing) held the whole 1 MiB, and every other client's
/// download on that connection got its head and then nothing until `read_timeout`
/// (RFC 9113 §5.2: flow control is to keep streams on one connection from blocking
/// each other). What weir holds per connection is bounded the same either way, by the
/// streams' windows: 6.25 MiB at the default 100 streams.
fn connection_window(streams: usize) -> u32 {
    let all = u64::try_from(streams).unwrap_or(u64::MAX).saturating_mul(u64::from(STREAM_WINDOW));
    // The largest window HTTP/2 allows (RFC 9113 §6.9.1).
    let most = (1u64 << 31) - 1;
    u32::try_from(all.clamp(u64::from(CONNECTION_WINDOW), most)).unwrap_or(CONNECTION_WINDOW)
}

/// The codec's client settings: every limit weir's own.
fn builder(max_header_bytes: usize, streams: usize) -> h2::client::Builder {
    let mut builder = h2::client::Builder::new();
    builder
        // Backends push nothing through a proxy.
        .enable_push(false)
        // The same bound on a response head as for HTTP/1 (`max_header_bytes`); the
        // codec's default is 16 MiB.
        .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX))
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(connection_window(streams))
        .max_frame_size(MAX_FRAME_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .header_table_size(HEADER_TABLE_SIZE);
    builder
}

/// Opens an HTTP/2 connection on `io` (TCP with prior knowledge, or TLS that chose
/// `h2`), starts its task on this worker, and keeps it for later streams once the
/// backend's SETTINGS are known. Returns a stream on it.
///
/// The codec's handshake only sends weir's preface, so a backend is taken as reached
/// when a PING's answer came back, which it sends after its own SETTINGS (RFC 9113
/// §3.4: they are its first frame): one round trip more for a new connection, and
/// two things it buys. The streams that waited for the connection count its room
/// against the backend's `SETTINGS_MAX_CONCURRENT_STREAMS` rather than the codec's
/// "unlimited" before that frame, which queued the extra ones in the codec instead of
/// opening another connection. And a backend that accepts TCP and never speaks HTTP/2
/// (hung, or not HTTP/2 at all) fails the connect within `connect_timeout`, with
/// nothing sent, so its requests and those that waited go to another backend, as do
/// those of a backend whose SETTINGS allow no streams.
pub(super) async fn open<T>(
    live: &Arc<BackendLive>,
    io: T,
    settings: &PoolConfig,
    max_header_bytes: usize,
) -> Result<(SendRequest<Bytes>, StreamSlot), std::io::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let deadline = Instant::now() + settings.connect_timeout;
    let timed_out = || std::io::Error::new(ErrorKind::TimedOut, "no HTTP/2 SETTINGS in time");
    let streams = settings.h2.max_streams_per_connection;
    let blocks = Rc::new(HeaderBlocks::new(BLOCKS_PER_STREAM));
    let io = watch(io, Rc::clone(&blocks));
    let handshake = builder(max_header_bytes, streams).handshake::<_, Bytes>(io);
    let (send, connection) = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(result) => result.map_err(std::io::Error::other)?,
        Err(_) => return Err(timed_out()),
    };
    let alive = Rc::new(Cell::new(true));
    let (settled, task) = run(connection, Rc::clone(&alive), &settings.h2);
    match tokio::time::timeout_at(deadline, settled).await {
        // RFC 9113 §5.1.2: a limit of 0 forbids new streams. The codec would queue the
        // stream behind it until the response timeout; with nothing sent, the request
        // fails over now. §6.5.2 asks servers to use 0 only briefly, and a request
        // cannot tell how brief: it counts as a failed connect (passive health hears it,
        // as it would a refused one). Not kept: a connection that takes no stream is
        // only a cost (one whose limit drops to 0 later goes once it has no stream).
        Ok(Ok(Ok(()))) if send.current_max_send_streams() == 0 => {
            task.abort();
            Err(std::io::Error::other("the backend allows no streams (its SETTINGS say 0)"))
        }
        Ok(Ok(Ok(()))) => Ok(keep(live, send, alive, blocks, settings.idle_timeout)),
        Ok(Ok(Err(error))) => Err(std::io::Error::other(error)),
        Ok(Err(_)) => Err(std::io::Error::other("the connection ended before its SETTINGS")),
        Err(_) => {
            task.abort();
            Err(timed_out())
        }
    }
}

/// Drives `connection` as a task on this worker, with its keep-alive PINGs; clears
/// `alive` when it ends. The receiver learns when the first PING's answer came.
fn run(
    mut connection: h2::client::Connection<impl AsyncRead + AsyncWrite + Unpin + 'static, Bytes>,
    alive: Rc<Cell<bool>>,
    h2: &crate::config::UpstreamH2,
) -> (oneshot::Receiver<Result<(), h2::Error>>, tokio::task::JoinHandle<()>) {
    let (tell, settled) = oneshot::channel();
    let ping = connection.ping_pong();
    let (interval, ping_timeout) = (h2.ping_interval, h2.ping_timeout);
    let task = tokio::task::spawn_local(async move {
        let driven = async {
            let _ = (&mut connection).await;
        };
        match ping {
            Some(ping) => {
                tokio::select! {
                    () = driven => {}
                    () = keepalive(ping, tell, interval, ping_timeout) => {}
                }
            }
            None => {
                // Taken only here, so never: the connection is used as it is.
                let _ = tell.send(Ok(()));
                driven.await;
            }
        }
        alive.set(false);
    });
    (settled, task)
}

/// Sends a PING at once and tells `settled` how it was answered (the opener bounds
/// the wait); then a PING every `interval`. Returns when one fails or goes unanswered
/// for `timeout` (or the connection can no longer send one), which ends the connection.
async fn keepalive(
    mut ping: h2::PingPong,
    settled: oneshot::Sender<Result<(), h2::Error>>,
    interval: Duration,
    timeout: Duration,
) {
    let first = ping.ping(h2::Ping::opaque()).await.map(|_| ());
    let failed = first.is_err();
    let _ = settled.send(first);
    if failed {
        return;
    }
    // Bounded by the connection's life: each pass waits `interval`.
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(timeout, ping.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return,
        }
    }
}
