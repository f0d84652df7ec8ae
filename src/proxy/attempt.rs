//! One attempt of a request on one backend: an upstream connection (a pooled or new
//! HTTP/1 connection, or a stream on a multiplexed HTTP/2 one), then the exchange on it.

use std::time::Duration;

use tokio::time::Instant;

use super::boxed::boxed;
use super::buffers::Buffers;
use super::class::AttemptError;
use super::exchange::{self, Cut, Failure, Io, Limits, Outcome, Upload};
use super::io::Stream;
use super::policy::{self, Policy};
use super::pump::Capture;
use super::retry::held::{self, Held};
use super::retry::Plan;
use super::timer::Alarm;
use super::upstream_h2::{self, stream::H2Upstream, Linked};
use super::Client;
use crate::config::{PoolConfig, ServerConfig};
use crate::http1::request::{Method, RequestInfo};
use crate::http1::response::Exchange;
use crate::http1::BodyKind;
use crate::pool::{self, Upstream};
use crate::snapshot::{Alpn, Backend, Pool};

/// Per-request facts an attempt needs besides the buffers.
pub(super) struct Request<'a> {
    pub info: &'a RequestInfo,
    /// Named in the PROXY header of a pool that sends one.
    pub client: &'a Client,
    /// A `Set-Cookie` line to add to the response, or empty.
    pub set_cookie: &'a [u8],
    /// The route's rules and the request id: response fields, `max_body`.
    pub policy: Option<&'a Policy<'a>>,
    /// The connection's timer.
    pub alarm: &'a mut Alarm,
    /// When this attempt began (the request's start for the first one).
    pub started: Instant,
    /// A gRPC call's deadline (`grpc-timeout`): the response head must come by then.
    pub deadline: Option<Instant>,
    /// The request is a gRPC call: its waits on either side are bounded by the pool's
    /// `stream_idle_timeout` ([`limits`]).
    pub grpc: bool,
}

impl<'a> Request<'a> {
    /// The request of one attempt; its deadline and gRPC-ness come from how it ends.
    pub(super) fn of(
        info: &'a RequestInfo,
        client: &'a Client,
        set_cookie: &'a [u8],
        policy: Option<&'a Policy<'a>>,
        alarm: &'a mut Alarm,
        started: Instant,
        ending: &super::failure::Ending,
    ) -> Request<'a> {
        let (deadline, grpc) = (ending.deadline, ending.grpc);
        Request { info, client, set_cookie, policy, alarm, started, deadline, grpc }
    }
}

/// Runs one attempt on `backend`: a pooled connection unless the plan asks for a fresh
/// one, then the exchange on it, specialised for a plain or a TLS connection.
pub(super) async fn attempt<'p, S: Stream>(
    stream: &mut S,
    backend: &Backend,
    pool: &'p Pool,
    server: &ServerConfig,
    buffers: &mut Buffers,
    request: Request<'_>,
    plan: &mut Plan<'p>,
) -> Result<(Outcome, Option<Upstream>), AttemptError> {
    let Request { info, client, set_cookie, policy, alarm, started, deadline, grpc } = request;
    let (lines, strip, max_body) = policy::for_attempt(policy, set_cookie, pool, backend);
    let exchange = exchange_of(info, server, client.drain.is_draining(), stream.websocket_accept());
    let mut link = link(backend, pool, server, client, (plan, info.upgrade), started).await?;
    plan.start_capture(&buffers.head, info, pool, matches!(link, Link::Http2(_)));
    let first = !std::mem::replace(&mut plan.sent, true);
    let io = Io {
        input: &mut buffers.input,
        head: &mut buffers.head,
        reply: &mut buffers.reply,
        upstream: &mut buffers.upstream,
        extra_header: lines.as_deref().unwrap_or(set_cookie),
        strip,
        alarm,
        // A new connection took time to open; a pooled one took none worth a clock read.
        started: if plan.reused { started } else { Instant::now() },
    };
    let limits = Limits { max_body, ..limits(server, &pool.settings, grpc, deadline, started) };
    // The replay copy is apart from the plan while the exchange fills it, so a retry
    // can be arranged (on the plan) during the exchange; it goes back after.
    let mut capture = plan.capture.take();
    let mode = match plan.holds_status(pool, info) {
        true => Mode::Held,
        false => Mode::Stream(upload(&mut capture, info, first)?),
    };
    let statuses = &pool.settings.retry.on.statuses;
    // One arm per stream type, each awaiting the exchange directly: a helper future
    // around them would be one more large future to move per request.
    let result = match (&mut link, mode) {
        (Link::Http1(Upstream::Plain(tcp)), Mode::Held) => {
            let may_retry = plan.arranger(pool);
            held_outcome(held::run(stream, tcp, io, exchange, limits, statuses, may_retry).await)
        }
        (Link::Http1(Upstream::Plain(tcp)), Mode::Stream(upload)) => {
            let may_retry = plan.arranger(pool);
            let run = exchange::run(stream, tcp, io, info, upload, exchange, limits, may_retry);
            run.await.map_err(AttemptError::Exchange)
        }
        (Link::Http1(Upstream::Tls(tls)), Mode::Held) => {
            let (tls, may_retry) = (&mut **tls, plan.arranger(pool));
            held_outcome(held::run(stream, tls, io, exchange, limits, statuses, may_retry).await)
        }
        (Link::Http1(Upstream::Tls(tls)), Mode::Stream(upload)) => {
            let (tls, may_retry) = (&mut **tls, plan.arranger(pool));
            let run = exchange::run(stream, tls, io, info, upload, exchange, limits, may_retry);
            run.await.map_err(AttemptError::Exchange)
        }
        (Link::Http2(h2), Mode::Held) => {
            let (h2, may_retry) = (&mut **h2, plan.arranger(pool));
            held_outcome(held::run(stream, h2, io, exchange, limits, statuses, may_retry).await)
        }
        (Link::Http2(h2), Mode::Stream(upload)) => {
            let (h2, may_retry) = (&mut **h2, plan.arranger(pool));
            let run = exchange::run(stream, h2, io, info, upload, exchange, limits, may_retry);
            run.await.map_err(AttemptError::Exchange)
        }
    };
    plan.capture = capture;
    ended(result, link, plan)
}

/// What the exchange of an attempt tells it about the response.
fn exchange_of(
    info: &RequestInfo,
    server: &ServerConfig,
    draining: bool,
    websocket_accept: Option<crate::http1::websocket::Accept>,
) -> Exchange {
    Exchange {
        head_request: info.method == Method::Head,
        upgrade_requested: info.upgrade,
        client_http10: info.http10,
        close_client: !info.keep_alive || draining,
        max_headers: server.max_headers,
        websocket_accept,
    }
}

/// An attempt's result with the HTTP/1 connection to pool or tunnel on; an HTTP/2
/// stream is done. A stream the backend never processed is noted in `plan`: any method
/// may go again, on another connection ([`Plan::next`]).
fn ended(
    result: Result<Outcome, AttemptError>,
    link: Link,
    plan: &mut Plan<'_>,
) -> Result<(Outcome, Option<Upstream>), AttemptError> {
    match (result, link) {
        (Ok(outcome), Link::Http1(upstream)) => Ok((outcome, Some(upstream))),
        (Ok(outcome), Link::Http2(_)) => Ok((outcome, None)),
        (Err(mut error), Link::Http2(h2)) => {
            plan.refused = h2.refused();
            // A stream the backend reset is no stale connection: health hears it, and
            // it is not replayed on the same backend as one.
            plan.reused &= !h2.reset();
            if let AttemptError::Exchange(Failure::UpstreamClosed { silent, .. }) = &mut error {
                // Before its response head (where `refused` is set) the only bytes read
                // were interim heads (weir's own `100 Continue`, or the backend's 1xx):
                // a refusal proves the backend did not process the request (RFC 9113
                // §8.7), so it goes again; the client may get the interim heads of both
                // attempts, which HTTP allows before the one final head.
                *silent |= plan.refused;
            }
            Err(error)
        }
        (Err(error), Link::Http1(_)) => Err(error),
    }
}

/// The connection an attempt runs on.
enum Link {
    /// An HTTP/1 connection, pooled after a clean exchange.
    Http1(Upstream),
    /// A stream on a multiplexed HTTP/2 connection, done with the exchange.
    Http2(Box<H2Upstream>),
}

/// The connection for an attempt, and whether it was open already (noted in the plan):
/// for HTTP/1, a pooled connection to `backend` unless the plan wants a fresh one, else
/// a new one; for HTTP/2, a stream on a connection with room unless fresh, else on a new
/// one. An `https://` backend of an `auto` pool is HTTP/2 or HTTP/1 as it last chose by
/// ALPN. A failed connect keeps that answer: forgetting it on a timeout or a local error
/// (weir out of file descriptors) sent every request past the open HTTP/2 connections
/// to a handshake of its own, and every new handshake learns it again. An HTTP/1 pool
/// pays one match on its protocol and one on `tls_auto`.
async fn link(
    backend: &Backend,
    pool: &Pool,
    server: &ServerConfig,
    client: &Client,
    (plan, upgrade): (&mut Plan<'_>, bool),
    started: Instant,
) -> Result<Link, AttemptError> {
    let fresh = plan.fresh;
    // What an earlier attempt's stream said does not hold for this one's: a request an
    // HTTP/1 backend processed after another refused it is no refused stream.
    plan.refused = false;
    // An upgrade needs HTTP/1.1 (weir does not send RFC 8441's extended CONNECT): its
    // connections offer only the pool's own ALPN, `http/1.1` by default.
    let auto = backend.live.tls_auto.is_some() && !upgrade;
    // An `auto` backend whose answer is not known yet goes the HTTP/2 way too: its
    // first connection per worker is opened once (`upstream_h2`'s `Opening`) while the
    // other streams wait for it, rather than a burst of first requests each opening
    // their own; one that chose HTTP/1.1 comes back as an HTTP/1 link.
    let linked =
        if pool.settings.protocol.is_http2() || (auto && backend.live.alpn() != Alpn::Http1) {
            // Boxed: opening a connection holds the codec's handshake, and every HTTP/1
            // request's future would otherwise carry that much more to create and move.
            let opened = boxed(|| upstream_h2::stream(backend, pool, server, fresh));
            opened.await.map(|(linked, reused)| match linked {
                Linked::H2(stream) => (Link::Http2(stream), reused),
                Linked::Http1(tls) => (Link::Http1(Upstream::Tls(tls)), reused),
            })
        } else {
            link_http1(backend, pool, server, client, (fresh, auto), started).await
        };
    let (link, reused) = linked?;
    plan.reused = reused;
    Ok(link)
}

/// An HTTP/1 connection for an attempt: pooled unless `fresh`, else new; a new one to an
/// `auto` backend offers h2 by ALPN, and becomes an HTTP/2 connection (this attempt's
/// stream on it) when the backend chooses h2.
async fn link_http1(
    backend: &Backend,
    pool: &Pool,
    server: &ServerConfig,
    client: &Client,
    (fresh, auto): (bool, bool),
    started: Instant,
) -> Result<(Link, bool), AttemptError> {
    // A connection that sent a PROXY header is never pooled (see `outbound`).
    let fresh = fresh || pool.settings.send_proxy_protocol.is_some();
    let pooled = (!fresh).then(|| pool::checkout(&backend.live, started)).flatten();
    if let Some(upstream) = pooled {
        backend.live.stats.local().connections_reused.inc();
        return Ok((Link::Http1(upstream), true));
    }
    let live = &backend.live;
    let connector = if auto { live.tls_auto.as_ref() } else { live.tls.as_ref() };
    let upstream = connect(backend, &pool.settings, client, connector).await?;
    let Upstream::Tls(tls) = upstream else { return Ok((Link::Http1(upstream), false)) };
    if !auto || !upstream_h2::chose_h2(live, &tls) {
        return Ok((Link::Http1(Upstream::Tls(tls)), false));
    }
    let max_header_bytes = server.max_header_bytes;
    let adopted = Box::pin(upstream_h2::adopt(live, *tls, &pool.settings, max_header_bytes));
    Ok((Link::Http2(adopted.await?), false))
}

/// How an attempt runs its exchange.
enum Mode<'a> {
    /// Held: the response head is read whole first, so a status can still be retried.
    Held,
    /// Streaming, with the request body from here.
    Stream(Upload<'a>),
}

/// Where this attempt's request body comes from; an error when it cannot be sent again.
fn upload<'a>(
    capture: &'a mut Option<Capture>,
    info: &RequestInfo,
    first: bool,
) -> Result<Upload<'a>, AttemptError> {
    Ok(match (capture, first) {
        (capture, true) => Upload::FromClient(capture.as_mut()),
        // The head is intact when there is no body; otherwise the copy holds the request
        // (the retry policy replays only a complete copy).
        (_, false) if info.body == BodyKind::Empty => Upload::FromClient(None),
        (Some(capture), false) => Upload::Replay(&capture.bytes),
        (None, false) => {
            let cause = "request body not kept for a replay";
            let cut = Cut { status: 0, body_bytes: 0, cause, upstream_fault: false };
            return Err(AttemptError::Exchange(Failure::Aborted(cut)));
        }
    })
}

/// A held exchange's result as an attempt's.
fn held_outcome(result: Result<Held, Failure>) -> Result<Outcome, AttemptError> {
    match result {
        Ok(Held::Relayed(outcome)) => Ok(outcome),
        Ok(Held::Retry(status)) => Err(AttemptError::Status(status)),
        Err(failure) => Err(AttemptError::Exchange(failure)),
    }
}

/// The timeouts of an exchange. A gRPC call is a stream that may stay open and idle
/// (a watch, a chat, a client stream between messages), so the three waits for a peer
/// to send (the response head, a response byte, a request byte) are all the pool's
/// `stream_idle_timeout` instead of the HTTP timeouts; its deadline, if it set one,
/// still bounds the head (`deadline_left`). `send_timeout` stays: a client that takes
/// no byte of what it asked for is stalled, not idle.
pub(super) fn limits(
    server: &ServerConfig,
    settings: &PoolConfig,
    grpc: bool,
    deadline: Option<Instant>,
    started: Instant,
) -> Limits {
    let deadline_left = deadline.map(|deadline| deadline.saturating_duration_since(started));
    let idle = |http: Duration| if grpc { settings.stream_idle_timeout } else { http };
    let response_timeout = idle(settings.response_timeout);
    Limits {
        body_timeout: idle(server.body_timeout),
        response_timeout: deadline_left.map_or(response_timeout, |left| left.min(response_timeout)),
        read_timeout: idle(settings.read_timeout),
        send_timeout: server.send_timeout,
        max_header_bytes: server.max_header_bytes,
        grpc_retry: if grpc { settings.retry.on.grpc } else { Default::default() },
        max_body: None,
    }
}

/// Opens a new upstream connection, with its PROXY header if the pool sends one and a
/// TLS handshake for an `https://` backend. Failures are counted by their class
/// ([`count_failure`]).
async fn connect(
    backend: &Backend,
    settings: &PoolConfig,
    client: &Client,
    connector: Option<&crate::tls::Connector>,
) -> Result<Upstream, AttemptError> {
    let mut tcp = pool::connect(backend, settings.connect_timeout).await?;
    if let Some(version) = settings.send_proxy_protocol {
        super::outbound::send(&mut tcp, version, client).await?;
    }
    let stats = backend.live.stats.local();
    stats.connections_opened.inc();
    let Some(connector) = connector else {
        return Ok(Upstream::Plain(tcp));
    };
    // Boxed: a handshake holds a whole TLS session inline, and the request future of
    // every plain request would otherwise be that much bigger to create and move.
    match Box::pin(connector.connect(tcp)).await {
        Ok((tls, handshake)) => {
            stats.tls.handshake(handshake.resumed);
            Ok(Upstream::Tls(Box::new(tls)))
        }
        Err(error) => Err(AttemptError::Tls(error)),
    }
}
