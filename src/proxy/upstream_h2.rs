//! HTTP/2 to backends (`[[pool]] protocol = "h2c"`, cleartext, or `"h2"`, over TLS): per
//! worker and backend, a few multiplexed connections, each carrying many requests as
//! streams.
//!
//! The request path stays HTTP/1.1 on both sides: an attempt checks out a stream
//! ([`stream::H2Upstream`]) that the exchange writes the HTTP/1.1 request into and reads
//! the HTTP/1.1 response from, as from a pooled HTTP/1 connection. So routing, retries,
//! health, metrics, the access log and either client protocol need no second copy; an
//! HTTP/1 pool pays one match on its protocol per attempt.
//!
//! A connection takes streams up to the lesser of the backend's
//! SETTINGS_MAX_CONCURRENT_STREAMS and `max_streams_per_connection`; the next opens a
//! new connection. A new connection counts once the backend's SETTINGS came
//! ([`connect`]), so that limit is known before the streams that waited for it arrive.
//! Each connection's codec runs as a local task on the worker, with a keep-alive PING.
//! A connection that got GOAWAY takes no new stream; its open streams finish. A stream
//! the backend never processed (above the GOAWAY's last stream id, or refused with
//! REFUSED_STREAM) is sent again on another connection ([`attempt`]).

mod connect;
mod head;
pub(crate) mod stream;
mod watched;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::{PoolConfig, ServerConfig};
use crate::http2::HeaderBlocks;
use crate::pool::{ConnectError, IdMap};
use crate::proxy::class::AttemptError;
use crate::snapshot::{Alpn, Backend, BackendLive, Pool};
use crate::tls::client::ClientTls;
use connect::open;
use stream::H2Upstream;

/// One upstream HTTP/2 connection on this worker.
struct Conn {
    send: SendRequest<Bytes>,
    /// Its streams in progress, and since when it has none.
    state: Rc<ConnState>,
    /// Cleared by the connection's task when the connection ends.
    alive: Rc<Cell<bool>>,
    /// For the GOAWAY counter.
    backend: Arc<BackendLive>,
    /// A connection without streams for this long is closed (the pool's `idle_timeout`).
    idle_timeout: Duration,
}

/// What a connection's streams share with it.
#[derive(Debug)]
struct ConnState {
    /// Streams in progress, counted by [`StreamSlot`].
    streams: Cell<usize>,
    /// When the last stream ended.
    idle_since: Cell<Instant>,
    /// The header blocks the backend sent on each stream ([`watched`]).
    blocks: Rc<HeaderBlocks>,
}

impl Conn {
    /// Whether the connection can take streams: alive, and no GOAWAY received (counted
    /// here, as the connection leaves the pool: its open streams finish, and the codec
    /// closes it once they have and the pool's handle is gone), and not idle past its
    /// timeout at `now`.
    fn usable(&mut self, now: Instant) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(Err(error)) = self.send.poll_ready(&mut cx) {
            if error.is_go_away() && error.is_remote() {
                self.backend.stats.local().http2_goaways.inc();
            }
            return false;
        }
        let idle = self.state.streams.get() == 0
            && now.saturating_duration_since(self.state.idle_since.get()) >= self.idle_timeout;
        self.alive.get() && !idle
    }

    /// Whether the connection may take one more stream: below both stream limits.
    fn has_room(&self, cap: usize) -> bool {
        self.state.streams.get() < cap.min(self.send.current_max_send_streams())
    }

    /// Whether the connection is of no use: the backend dropped its stream limit to 0
    /// (RFC 9113 §6.5.2 asks servers to do so only briefly), and no stream is left on
    /// it. It carries none and takes none, so it goes, at the next checkout or sweep:
    /// a backend that does this to every connection then holds as many as it has
    /// streams, not one more per request until `idle_timeout`.
    fn spent(&self) -> bool {
        self.state.streams.get() == 0 && self.send.current_max_send_streams() == 0
    }
}

/// Holds a stream's place on its connection while the stream lives, and its count of
/// header blocks once it is opened.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    state: Rc<ConnState>,
    /// The stream's id, once its HEADERS went.
    stream: Option<u32>,
}

impl StreamSlot {
    fn new(state: &Rc<ConnState>) -> StreamSlot {
        state.streams.set(state.streams.get() + 1);
        StreamSlot { state: Rc::clone(state), stream: None }
    }

    /// The stream is open as `id`: the backend's header blocks on it are counted.
    pub(crate) fn opened(&mut self, id: u32) {
        debug_assert!(self.stream.is_none(), "a slot opens one stream");
        self.state.blocks.open(id);
        self.stream = Some(id);
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Some(id) = self.stream {
            self.state.blocks.close(id);
        }
        let streams = self.state.streams.get().saturating_sub(1);
        self.state.streams.set(streams);
        if streams == 0 {
            self.state.idle_since.set(Instant::now());
        }
    }
}

/// One backend's connections on this worker.
#[derive(Default)]
struct Conns {
    list: Vec<Conn>,
    /// A connection is being opened: other streams wait for it rather than each open
    /// their own (a burst of first requests would otherwise open one each).
    opening: Option<Rc<OpenWait>>,
}

thread_local! {
    /// This worker's connections, by backend identity ([`BackendLive::id`]).
    static CONNS: RefCell<IdMap<Conns>> = RefCell::new(IdMap::default());
}

/// What the streams waiting for a connection being opened learn when it ends.
#[derive(Default)]
struct OpenWait {
    notify: Notify,
    /// The connect or handshake failed: the waiters fail over at once instead of each
    /// trying the same unreachable backend in turn (a connect timeout each, for one
    /// that does not answer).
    failed: Cell<bool>,
}

/// Marks a connection to a backend as being opened, until dropped: then the streams
/// that waited for it look again, or fail over if it failed.
struct Opening {
    id: u64,
    /// Set when the connect or the handshake failed; not when the opener was dropped
    /// (its client went away), which leaves the waiters to open their own.
    failed: bool,
}

impl Opening {
    /// Marks `live`; `Err` with the wait when another stream is opening one already.
    fn start(live: &BackendLive) -> Result<Opening, Rc<OpenWait>> {
        CONNS.with(|conns| {
            let mut conns = conns.borrow_mut();
            let entry = conns.entry(live.id).or_default();
            match &entry.opening {
                Some(wait) => Err(Rc::clone(wait)),
                None => {
                    entry.opening = Some(Rc::new(OpenWait::default()));
                    Ok(Opening { id: live.id, failed: false })
                }
            }
        })
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        CONNS.with(|conns| {
            let mut conns = conns.borrow_mut();
            let wait = conns.get_mut(&self.id).and_then(|entry| entry.opening.take());
            if let Some(wait) = wait {
                wait.failed.set(self.failed);
                wait.notify.notify_waiters();
            }
        });
    }
}

/// A handle to start a stream on the oldest connection to `live` with room for it, if
/// any (so at low load one connection carries the streams); connections found ended on
/// the way are dropped.
///
/// Only a candidate is asked whether it is usable, which takes the codec's lock: a
/// full connection is passed over on its stream count alone. Asking every connection,
/// as this did first, cost 50,000 instructions a request with 64 connections full at
/// `-c64 -m100` (callgrind, bench/callgrind.sh with CLIENT=grpc).
fn checkout(live: &BackendLive, cap: usize) -> Option<(SendRequest<Bytes>, StreamSlot)> {
    CONNS.with(|conns| {
        let mut conns = conns.borrow_mut();
        let list = &mut conns.get_mut(&live.id)?.list;
        let now = Instant::now();
        let mut at = 0;
        // Bounded: each pass moves past a connection or removes one.
        while let Some(conn) = list.get_mut(at) {
            if conn.state.streams.get() >= cap {
                at += 1;
            } else if !conn.usable(now) || conn.spent() {
                list.remove(at);
            } else if conn.has_room(cap) {
                return Some((conn.send.clone(), StreamSlot::new(&conn.state)));
            } else {
                at += 1;
            }
        }
        None
    })
}

/// Keeps a new connection for the next streams, and returns a stream on it.
fn keep(
    live: &Arc<BackendLive>,
    send: SendRequest<Bytes>,
    alive: Rc<Cell<bool>>,
    blocks: Rc<HeaderBlocks>,
    idle_timeout: Duration,
) -> (SendRequest<Bytes>, StreamSlot) {
    let idle_since = Cell::new(Instant::now());
    let state = ConnState { streams: Cell::new(0), idle_since, blocks };
    let state = Rc::new(state);
    let slot = StreamSlot::new(&state);
    let handle = send.clone();
    let backend = Arc::clone(live);
    CONNS.with(|conns| {
        let mut conns = conns.borrow_mut();
        let conn = Conn { send, state, alive, backend, idle_timeout };
        conns.entry(live.id).or_default().list.push(conn);
    });
    (handle, slot)
}

/// Drops the connections that ended, got GOAWAY, stayed idle past their timeout or are
/// [`Conn::spent`], and those of backends no longer in `is_current`; their tasks end
/// once their open streams do. Workers call it with the HTTP/1 sweep.
pub fn sweep(is_current: impl Fn(u64) -> bool) {
    let now = Instant::now();
    CONNS.with(|conns| {
        let mut conns = conns.borrow_mut();
        conns.retain(|id, entry| {
            entry.list.retain_mut(|conn| conn.usable(now) && !conn.spent());
            is_current(*id) && (!entry.list.is_empty() || entry.opening.is_some())
        });
    });
}

/// What [`stream`] got: a stream on an HTTP/2 connection, or, from an `auto` backend
/// that chose HTTP/1.1 by ALPN this time, the new TLS connection for an HTTP/1 exchange.
pub(crate) enum Linked {
    /// A stream on an HTTP/2 connection.
    H2(Box<H2Upstream>),
    /// A new HTTP/1.1 TLS connection (the backend's answer is remembered).
    Http1(Box<ClientTls>),
}

/// A stream to `backend` for one attempt, and whether its connection was open already:
/// a connection with room unless `fresh`, else a new one.
pub(crate) async fn stream(
    backend: &Backend,
    pool: &Pool,
    server: &ServerConfig,
    fresh: bool,
) -> Result<(Linked, bool), AttemptError> {
    let (settings, live) = (&pool.settings, &backend.live);
    let cap = settings.h2.max_streams_per_connection;
    // A stream waits for the connections other streams open for at most as long as
    // one opening may take (the TCP connect, the TLS handshake, then the SETTINGS, each
    // with its own timeout), so an opener that fails at its last moment still sends
    // its waiters to fail over rather than each opening its own to the same backend;
    // then it opens its own. Not a count of waits: one connection's room may be a
    // stream or two (the backend's SETTINGS_MAX_CONCURRENT_STREAMS), and a burst should
    // fill each new connection in turn rather than open one for each waiter left.
    let mut until = None;
    // Bounded: each pass waits for an opening to end, or past `until`.
    let mut opening = loop {
        if let Some((send, slot)) = (!fresh).then(|| checkout(live, cap)).flatten() {
            live.stats.local().connections_reused.inc();
            return Ok((Linked::H2(upstream(live, send, slot, settings)), true));
        }
        // An `auto` backend that chose HTTP/1.1 shares no connection: no wait.
        let http1 = live.tls_auto.is_some() && live.alpn() == Alpn::Http1;
        match Opening::start(live) {
            Ok(opening) => break Some(opening),
            Err(_) if fresh || http1 => break None,
            Err(wait) => {
                let until =
                    *until.get_or_insert_with(|| Instant::now() + opening_takes(backend, settings));
                if Instant::now() >= until {
                    break None;
                }
                let _ = tokio::time::timeout_at(until, wait.notify.notified()).await;
                if wait.failed.get() {
                    let why = "the connection another request was opening to it failed";
                    return Err(failed(std::io::Error::other(why)));
                }
            }
        }
    };
    let opened = open_new(backend, settings, server).await;
    if let (Some(opening), Err(_)) = (opening.as_mut(), &opened) {
        opening.failed = true;
    }
    opened
}

/// The longest one opening of a connection to `backend` may take: the TCP connect, the
/// TLS handshake, then the SETTINGS, each with its own timeout. Asked only by a stream
/// that waits, not on every checkout.
fn opening_takes(backend: &Backend, settings: &PoolConfig) -> Duration {
    let live = &backend.live;
    let tls = live.tls_auto.as_ref().or(live.tls.as_ref());
    let handshake = tls.map_or(Duration::ZERO, crate::tls::Connector::handshake_timeout);
    settings.connect_timeout * 2 + handshake
}

/// A new connection to `backend`: HTTP/2, or HTTP/1.1 when an `auto` backend chose it.
async fn open_new(
    backend: &Backend,
    settings: &PoolConfig,
    server: &ServerConfig,
) -> Result<(Linked, bool), AttemptError> {
    let live = &backend.live;
    let tcp = crate::pool::connect(backend, settings.connect_timeout).await?;
    live.stats.local().connections_opened.inc();
    let max_header_bytes = server.max_header_bytes;
    // An `auto` backend's connector offers h2 and HTTP/1.1; an `h2` pool's only h2.
    let opened = match live.tls_auto.as_ref().or(live.tls.as_ref()) {
        None => open(live, tcp, settings, max_header_bytes).await,
        Some(connector) => {
            let tls = tls(live, connector, tcp).await?;
            if !chose_h2(live, &tls) {
                return Ok((Linked::Http1(Box::new(tls)), false));
            }
            open(live, tls, settings, max_header_bytes).await
        }
    };
    match opened {
        Ok((send, slot)) => Ok((Linked::H2(upstream(live, send, slot, settings)), false)),
        // The backend does not speak HTTP/2 (or not in time): nothing was sent.
        Err(error) => Err(failed(error)),
    }
}

/// Whether `tls`, a new connection to `live`, chose h2 by ALPN; an `auto` backend
/// remembers the answer for its next attempts.
pub(crate) fn chose_h2(live: &BackendLive, tls: &ClientTls) -> bool {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    if live.tls_auto.is_some() {
        live.learn_alpn(if h2 { Alpn::H2 } else { Alpn::Http1 });
    }
    h2
}

/// A stream on `tls`, a new connection to an `auto` backend that chose h2 by ALPN:
/// the connection joins the backend's HTTP/2 connections on this worker.
pub(crate) async fn adopt(
    live: &Arc<BackendLive>,
    tls: ClientTls,
    settings: &PoolConfig,
    max_header_bytes: usize,
) -> Result<Box<H2Upstream>, AttemptError> {
    let (send, slot) = open(live, tls, settings, max_header_bytes).await.map_err(|error| {
        // No SETTINGS within `connect_timeout` is a connect timeout, counted as one.
        if error.kind() == std::io::ErrorKind::TimedOut {
            AttemptError::Connect(ConnectError::Timeout)
        } else {
            failed(error)
        }
    })?;
    Ok(upstream(live, send, slot, settings))
}

/// A stream on `send` for one attempt, counted.
fn upstream(
    live: &BackendLive,
    send: SendRequest<Bytes>,
    slot: StreamSlot,
    settings: &PoolConfig,
) -> Box<H2Upstream> {
    live.stats.local().http2_streams.inc();
    let replay_buffer = settings.retry.replay_buffer;
    Box::new(H2Upstream::new(send, slot, live.tls.is_some(), replay_buffer))
}

fn failed(error: impl std::error::Error + Send + Sync + 'static) -> AttemptError {
    AttemptError::Connect(ConnectError::Failed(std::io::Error::other(error)))
}

/// The TLS handshake of an HTTP/2 connection, counted as an HTTP/1 pool's are; the
/// backend of a `protocol = "h2"` pool must have chosen `h2` by ALPN (one of an `auto`
/// pool may choose HTTP/1.1).
async fn tls(
    live: &BackendLive,
    connector: &crate::tls::Connector,
    tcp: TcpStream,
) -> Result<ClientTls, AttemptError> {
    let (tls, handshake) = connector.connect(tcp).await.map_err(AttemptError::Tls)?;
    live.stats.local().tls.handshake(handshake.resumed);
    let auto = live.tls_auto.is_some();
    if !auto && tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(failed(std::io::Error::other("the backend did not choose h2 by ALPN")));
    }
    Ok(tls)
}
