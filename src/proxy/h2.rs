//! HTTP/2 from clients: a connection driver on the `h2` codec (server side, used
//! directly as Pingora does). Each stream becomes one request through the same path as
//! an HTTP/1 request ([`super::forward::handle`]): its head is translated to HTTP/1.1
//! text and parsed by [`crate::http1::request::parse`] ([`translate`]), and the exchange
//! reads and writes the stream through a [`Stream`] adapter ([`body`], [`respond`]).
//!
//! Connections get here through ALPN `h2` on a TLS listener, or the HTTP/2 client
//! preface on a plain one (h2c with prior knowledge, `[server] h2c`). `Upgrade: h2c` is
//! not supported. Every limit the codec has is set here: its defaults suit a client,
//! not a proxy facing the internet.

mod adapter;
pub(crate) mod body;
mod closing;
pub(crate) mod fields;
mod guard;
pub(crate) mod respond;
mod rewind;
pub(crate) mod translate;
mod watched;
mod websocket;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use h2::server::{Connection, SendResponse};
use h2::{Reason, RecvStream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::boxed::boxed;
use super::buffers::{self, Buffers};
use super::logging::{Done, Pending};
use super::timer::Alarm;
use super::{forward, reply, Client, Conn, SnapshotRef};
use crate::config::ServerConfig;
use crate::http1::request::{self, Forwarding};
use crate::http1::Parsed;
use crate::metrics::{GoAway, Http2Attack};
use adapter::Http2Stream;
use body::RequestBody;
use closing::Closing;
use guard::HeaderBudget;
use respond::{ResetWatch, ResponseWriter};
pub use rewind::Rewind;
use watched::{Watch, Watched};

/// The client connection preface (RFC 9113 §3.4) a plain listener looks for.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Response bytes the codec may queue per stream beyond what the client's window
/// accepts; with the window, what a client that stops reading holds in weir per stream.
/// The codec's default is 400 KiB.
pub const MAX_SEND_BUFFER: usize = 64 * 1024;
/// Streams a client may open and reset before weir accepts them (Rapid Reset,
/// CVE-2023-44487): past it the connection gets GOAWAY. The codec's default, as hyper's.
pub const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams weir may reset because of the client's errors before it closes the
/// connection (MadeYouReset, CVE-2025-8671): the codec's default.
pub const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// HPACK dynamic table size weir's decoder keeps: the RFC's default; a larger one would
/// let each client make weir hold more header state.
pub const HEADER_TABLE_SIZE: u32 = 4096;
/// Whether `input` is the preface (`Some(true)`), a beginning of it (`Some(false)`), or
/// something else (`None`).
pub fn preface(input: &[u8]) -> Option<bool> {
    let known = input.len().min(PREFACE.len());
    (input[..known] == PREFACE[..known]).then_some(known == PREFACE.len())
}

/// The codec's settings: every limit from a named constant or the server config
/// (`[server.http2]`, whose parser keeps each value in the range HTTP/2 allows).
fn builder(server: &ServerConfig) -> h2::server::Builder {
    let limits = &server.http2;
    let u32_of = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(u32_of(limits.max_concurrent_streams))
        // The same bound on a head as for HTTP/1 (`max_header_bytes`), counted as RFC
        // 9113 §6.5.2 does; the codec's default is 16 MiB.
        .max_header_list_size(u32_of(server.max_header_bytes))
        .initial_window_size(u32_of(limits.initial_stream_window))
        .initial_connection_window_size(u32_of(limits.initial_connection_window))
        .max_frame_size(u32_of(limits.max_frame_size))
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .header_table_size(HEADER_TABLE_SIZE);
    if limits.websocket {
        builder.enable_connect_protocol();
    }
    builder
}

/// Serves one HTTP/2 client connection until it closes: accepts streams and runs them
/// (in the connection's task, see [`run`]), closes an idle connection after
/// `keepalive_timeout`, and sends GOAWAY when the worker drains (in-flight streams finish).
///
/// Not an `async fn`: the handshake future, which owns the connection (`io` and the
/// codec), is boxed before the returned future is made. As an `async fn` its future,
/// which lives as long as the connection, kept the `io` argument, the handshake's state
/// and the codec it yields in separate slots: 3,056 bytes for h2c and 6,512 over TLS
/// (`worker::tests::an_idle_http2_connection_future_stays_small` bounds it now).
pub fn serve<T: AsyncRead + AsyncWrite + Unpin>(
    io: T,
    client: Client,
) -> impl std::future::Future<Output = ()> {
    let (builder, headers, header_timeout, idle_timeout) = {
        let snapshot = super::current_snapshot(&client.shared);
        let server = &snapshot.config.server;
        let timeouts = (server.header_timeout, server.keepalive_timeout);
        let headers = (server.max_header_bytes, server.http2.max_concurrent_streams);
        (builder(server), headers, timeouts.0, timeouts.1)
    };
    let client = Rc::new(Client { http2: true, ..client });
    let (io, watch) = watched::watch(io, header_timeout);
    let handshake = builder.handshake::<Watched<T>, Bytes>(io);
    // Its box is freed when it ends: awaiting it consumes it.
    let handshake = Box::pin(tokio::time::timeout(header_timeout, handshake));
    let limits = Limits { idle_timeout, headers };
    async move {
        let mut connection = match handshake.await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => {
                return tracing::debug!(client = %client.peer, "HTTP/2 handshake: {error}")
            }
            Err(_) => return tracing::debug!(client = %client.peer, "HTTP/2 handshake timed out"),
        };
        let http2 = &client.shared.frontend.local().http2;
        http2.connections_active.fetch_add(1, Ordering::Relaxed);
        run(&mut connection, &client, &watch, limits).await;
        http2.connections_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The bounds [`run`] keeps a connection to.
#[derive(Clone, Copy)]
struct Limits {
    idle_timeout: Duration,
    /// The bound on one header list and the streams open at once: the open streams'
    /// bound ([`HeaderBudget`]).
    headers: (usize, usize),
}

/// How a stream ended, for the driver's budgets.
struct Ended {
    /// What the stream's headers counted against the budget.
    header_cost: usize,
    /// The client stalled the response past `send_timeout` ([`ResponseWriter::finish`]).
    stalled: bool,
}

/// The accept loop of [`serve`]. The streams run in the connection's own task, as a
/// set polled with the codec (`FuturesUnordered`: only the streams woken are polled), not
/// as a task each: a task costs an aligned allocation and the scheduler's and a join
/// set's bookkeeping per stream, and a stream's frames are queued in the codec that this
/// task writes out anyway.
async fn run<T: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<Watched<T>, Bytes>,
    client: &Rc<Client>,
    watch: &Watch,
    limits: Limits,
) {
    let mut streams = FuturesUnordered::new();
    let mut drain = client.drain.watch();
    let mut alarm = Alarm::default();
    let mut closing = Closing::default();
    let mut headers = HeaderBudget::new(limits.headers.0, limits.headers.1);
    // Bounded by the connection: each pass accepts a stream, reaps one, or closes; after
    // a polite GOAWAY by `GOAWAY_PING_WAIT` once no stream is open; after a shutdown at
    // once, by `REFUSED_GRACE`.
    // Once the codec is in its lingering close (`watch.closing()`) its last GOAWAY went:
    // no attack, drain or idle GOAWAY of weir's can go any more, so none is counted.
    loop {
        let lingering = watch.closing() && !closing.shut();
        let timed = !lingering && closing.arm(&mut alarm, streams.is_empty(), limits.idle_timeout);
        let attack = std::future::poll_fn(|_| match watch.attack() {
            Some(attack) if !closing.shut() && !watch.closing() => Poll::Ready(attack),
            _ => Poll::Pending,
        });
        let seen = tokio::select! {
            accepted = connection.accept() => match accepted {
                Some(Ok((request, respond))) => match start(client, request, respond, &mut headers) {
                    Ok(stream) => {
                        streams.push(stream);
                        None
                    }
                    Err(attack) => attack,
                },
                Some(Err(error)) => break ended(client, &error, watch, closing.shut()),
                None => break,
            },
            Some(ended) = streams.next(), if !streams.is_empty() => {
                reap(ended, &mut streams, &mut headers).then_some(Http2Attack::Stall)
            }
            () = alarm.expired(), if timed => {
                if closing.ring(connection, client, &mut alarm) {
                    break;
                }
                None
            }
            attack = attack => Some(attack),
            () = &mut drain, if closing.open() && !lingering => {
                closing.goodbye(connection, client, GoAway::Drain);
                None
            }
        };
        if let Some(attack) = seen.filter(|_| !closing.shut() && !watch.closing()) {
            closing.refuse(connection, client, attack, &mut alarm);
        }
    }
    linger(streams).await;
}

/// Takes `first` and every other stream that ends now off the connection's budget;
/// returns whether one of them was stalled by the client. Reaping them all before the
/// codec is polled again sends their frames in one write: each poll of the codec
/// flushes what is queued, so reaping one stream per poll cost a `writev` per response.
fn reap<F>(first: Ended, streams: &mut FuturesUnordered<F>, headers: &mut HeaderBudget) -> bool
where
    F: Future<Output = Ended>,
{
    let mut stalled = false;
    let mut ended = Some(first);
    // Bounded by the streams open: each pass takes one off the set.
    while let Some(Ended { header_cost, stalled: by_client }) = ended {
        headers.give(header_cost);
        stalled |= by_client;
        // Polled without a waker: the driver's next `select!` polls the set with its own.
        ended = streams.next().now_or_never().flatten();
    }
    stalled
}

/// The connection is gone: streams still running fail at their next frame; gives them
/// a moment to log, then stops them.
async fn linger<F: Future>(mut streams: FuturesUnordered<F>) {
    let ended = async { while streams.next().await.is_some() {} };
    let _ = tokio::time::timeout(super::DRAIN_IDLE_GRACE, ended).await;
}

/// Starts an accepted stream whose headers fit in what is left of the connection's
/// header budget; returns the stream's future. One that does not fit is refused
/// (REFUSED_STREAM), and the error says whether the refusals amount to the HTTP/2 Bomb
/// (HPACK-inflated headers held on streams that do not end).
fn start(
    client: &Rc<Client>,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    headers: &mut HeaderBudget,
) -> Result<impl Future<Output = Ended>, Option<Http2Attack>> {
    let cost = guard::header_cost(&request);
    if let Err(attack) = headers.take(cost) {
        tracing::debug!(client = %client.peer, "HTTP/2 stream refused: the connection's header budget is spent");
        respond.send_reset(Reason::REFUSED_STREAM);
        return Err(attack);
    }
    // Not wrapped in another async block: a wrapper would hold the stream's future twice
    // over (as its capture and as the awaited value). Boxed: the future is 5.5 KiB, and
    // `FuturesUnordered::push` moved it three times on its way into the set's task, 1,670
    // instructions of copying per stream (callgrind, h2load -m10); a box moves as a
    // pointer. A panic in the stream's code ends that stream only (its codec handles
    // reset it as they drop), as it did when each stream was a task: the other streams
    // share the connection's task.
    let stream = boxed(|| stream(Rc::clone(client), request, respond, cost));
    let stream = AssertUnwindSafe(stream);
    let stream = stream
        .catch_unwind()
        .map(move |ended| ended.unwrap_or(Ended { header_cost: cost, stalled: false }));
    Ok(stream)
}

/// The connection ended with `error`; the codec's own attack defences and the GOAWAY it
/// sent, if it sent one, are counted, unless weir had already shut the connection at
/// once (`shut`: for an attack, counted then, or after a PING left unanswered).
fn ended(client: &Client, error: &h2::Error, watch: &Watch, shut: bool) {
    tracing::debug!(client = %client.peer, "HTTP/2 connection: {error}");
    if shut {
        return;
    }
    let frontend = client.shared.frontend.local();
    if let Some(attack) = guard::codec_attack(error, watch) {
        frontend.http2_attacks.record(attack);
        guard::log_attack(client.peer, attack);
    }
    if let Some(reason) = error.reason().filter(|_| sent_goaway(error)) {
        frontend.http2.goaways[GoAway::Error(reason.into()).index()].inc();
    }
}

/// Whether the codec sent GOAWAY for `error` (a connection error it found), rather
/// than the client or the socket ending the connection.
fn sent_goaway(error: &h2::Error) -> bool {
    error.is_go_away() && !error.is_remote()
}

/// Counts one HTTP/2 stream being served for as long as it lives.
struct Serving<'a>(&'a AtomicI64);

impl<'a> Serving<'a> {
    fn new(streams: &'a AtomicI64) -> Serving<'a> {
        streams.fetch_add(1, Ordering::Relaxed);
        Serving(streams)
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one stream: translates its head, then runs it as a request, until it ends or
/// the client resets it (the exchange is dropped: its upstream connection closes, never
/// to be pooled mid-response). `header_cost` is what its headers count against the
/// connection's budget.
async fn stream(
    client: Rc<Client>,
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    header_cost: usize,
) -> Ended {
    Ended { header_cost, stalled: serve_stream(client, request, respond).await }
}

/// [`stream`]'s work; returns whether the client stalled the response.
async fn serve_stream(
    client: Rc<Client>,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) -> bool {
    let started = Instant::now();
    let http2 = &client.shared.frontend.local().http2;
    let _serving = Serving::new(&http2.streams_active);
    let snapshot = super::current_snapshot(&client.shared);
    let (parts, recv) = request.into_parts();
    let mut buffers = buffers::take();
    let has_body = !recv.is_end_stream();
    let translated = match websocket::translate(&parts, has_body, &mut buffers.input) {
        Ok(translated) => translated,
        Err(malformed) => {
            tracing::debug!(client = %client.peer, "malformed HTTP/2 request: {malformed}");
            respond.send_reset(Reason::PROTOCOL_ERROR);
            buffers.input.clear();
            buffers::give(buffers);
            return false;
        }
    };
    let body = RequestBody::new(recv, translated.chunked);
    let (mut response, reset) = ResponseWriter::new(respond, parts.method == http::Method::HEAD);
    if translated.accept.is_some() {
        response.tunnel_on_101();
    }
    let mut h2 = Http2Stream { body, response, websocket_accept: translated.accept };
    let was_reset = tokio::select! {
        () = run_request(&mut h2, &client, &snapshot, &mut buffers, started) => false,
        () = reset_of(&reset) => {
            tracing::debug!(client = %client.peer, "client reset the stream");
            true
        }
    };
    if was_reset {
        account_reset(&client, &parts, h2.response.sent_status());
    }
    if was_reset || h2.body.reset_by_client().unwrap_or_else(|| h2.response.was_reset()) {
        http2.resets_received.inc();
    }
    // A client that resets a stream it stopped reading (a cancelled download) did not
    // stall it.
    let stalled = h2.response.finish() && !was_reset;
    if !was_reset && !stalled {
        h2.body.linger().await;
    }
    buffers.input.clear();
    buffers::give(buffers);
    stalled
}

/// Accounts for a stream the client reset while weir served it, whose exchange (and its
/// log entry) was dropped: as an HTTP/1 client's disconnect, it counts with the status
/// it got, if a head went, and is logged with its method and path. A WebSocket
/// tunnel's request was logged when it opened (101).
fn account_reset(client: &Client, parts: &http::request::Parts, status: u16) {
    if status == 101 {
        return;
    }
    if status != 0 && client.metrics {
        client.shared.frontend.local().record(true, status);
    }
    let target = parts.uri.path_and_query().map_or("/", |target| target.as_str());
    let entry = Pending::named(client, parts.method.as_str(), target);
    entry.finish(client, Done::refused(status, "client reset the stream"));
}

/// Ends when the client resets the stream.
async fn reset_of(reset: &ResetWatch) {
    std::future::poll_fn(|cx| reset.poll_reset(cx)).await;
}

/// Parses the translated head in `buffers.input` and handles the request as an HTTP/1
/// connection would; its keep-alive verdict means nothing here (a stream is one request).
async fn run_request(
    h2: &mut Http2Stream,
    client: &Client,
    snapshot: &SnapshotRef,
    buffers: &mut Buffers,
    started: Instant,
) {
    let server = &snapshot.config.server;
    let forwarding = Forwarding {
        client_ip: client.peer_ip.as_bytes(),
        // The listener's, not `:scheme`: a client over plain TCP may claim `https`.
        proto: if client.tls { b"https" } else { b"http" },
        max_headers: server.max_headers,
        trust: client.trust(server),
    };
    let parsed = request::parse(&buffers.input, &forwarding, &mut buffers.head);
    let info = match parsed {
        Ok(Parsed::Complete(info)) => info,
        refused => {
            let (status, cause) = match refused {
                Err(error) => error.status(),
                _ => (400, "malformed request head"),
            };
            let answer = reply::Answer::local(status, cause, false);
            reply::send(h2, client, &mut buffers.reply, answer, server.send_timeout).await;
            return Pending::unparsed(client).finish(client, Done::refused(status, cause));
        }
    };
    let mut alarm = Alarm::default();
    let conn = Conn { client, alarm: &mut alarm, started };
    forward::handle(h2, conn, snapshot, buffers, info).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_preface_is_told_from_http1_as_its_bytes_arrive() {
        assert_eq!(super::preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Some(true));
        assert_eq!(super::preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04"), Some(true));
        assert_eq!(super::preface(b"PRI * HTTP/2"), Some(false));
        assert_eq!(super::preface(b"POST / HTTP/1.1\r\n"), None);
        assert_eq!(super::preface(b"PRI / HTTP/1.1\r\n"), None);
    }
}
