//! Routes a parsed request, picks a backend, and runs the exchange with a pooled or new
//! upstream connection, retrying once on a fresh connection when a pooled one turns out
//! to be stale.

use std::sync::atomic::Ordering;

use bytes::Buf;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::buffers::Buffers;
use super::exchange::{self, Failure, Io, Limits, Outcome, Upload};
use super::pump::Capture;
use super::{affinity, reply, Client, SnapshotRef};
use crate::balance::{self, PickRequest};
use crate::config::{PoolConfig, ServerConfig};
use crate::http1::request::{push_field, Method, RequestInfo};
use crate::http1::response::Exchange;
use crate::http1::BodyKind;
use crate::pool::{self, ConnectError};
use crate::route;
use crate::snapshot::{Backend, BackendLive, Pool};

/// Most request-body bytes kept to replay a request after a stale pooled connection
/// failed. Pingora's replay buffer is 64 KiB too; larger bodies are not retried.
pub const REPLAY_BODY_BYTES: usize = 64 * 1024;

/// Counts a request in flight to a backend for as long as it lives.
struct InFlight<'a>(&'a BackendLive);

impl<'a> InFlight<'a> {
    fn new(live: &'a BackendLive) -> InFlight<'a> {
        live.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(live)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Handles one request whose head is at the front of `buffers.input`. Returns whether the
/// client connection may serve another request.
pub async fn handle(
    stream: &mut TcpStream,
    client: &Client,
    snapshot: &SnapshotRef,
    buffers: &mut Buffers,
    info: RequestInfo,
) -> bool {
    let choice = choose(snapshot, client, buffers, &info);
    buffers.input.advance(info.head_len);
    // A refused request's body is still unread, so the connection cannot go on.
    let keep_after_error = info.keep_alive && info.body == BodyKind::Empty;
    let (pool, index, set_cookie) = match choice {
        Choice::Backend { pool, index, set_cookie } => (pool, index, set_cookie),
        Choice::Refuse(cause) => {
            let close = !keep_after_error;
            reply::send(stream, client, &mut buffers.reply, 503, &cause, None, close).await;
            return keep_after_error;
        }
    };
    prepare_head(&mut buffers.head, pool, &pool.backends[index], &info);
    let server = &snapshot.config.server;
    let draining = client.drain.is_draining();
    let (mut index, mut set_cookie, mut tried) = (index, set_cookie, Tried::new(index));
    // Bounded: at most CONNECT_ATTEMPTS passes, each on a backend not tried before.
    loop {
        let backend = &pool.backends[index];
        let _in_flight = InFlight::new(&backend.live);
        let started = Instant::now();
        let request = Request { info: &info, draining, set_cookie: &set_cookie };
        match attempt(stream, backend, &pool.settings, server, buffers, request).await {
            Ok((outcome, upstream)) => {
                record(client, pool, backend, &outcome, started);
                return finish(stream, backend, &pool.settings, buffers, outcome, upstream).await;
            }
            Err(AttemptError::Connect(error)) => {
                // Nothing reached the backend, so any request may go to another one.
                let Some(next) = tried.next_backend(pool) else {
                    let failure = AttemptError::Connect(error);
                    return fail(stream, client, backend, buffers, failure, keep_after_error).await;
                };
                tracing::warn!(backend = %backend.label, next = %pool.backends[next].label, "connect failed ({error:?}); trying another backend");
                index = next;
                affinity::set_cookie_line(pool, index, None, &mut set_cookie);
            }
            Err(failure) => {
                return fail(stream, client, backend, buffers, failure, keep_after_error).await;
            }
        }
    }
}

/// Most backends one request tries when connections fail. A refused connection costs
/// little, and trying two more covers a backend that just died while others remain;
/// trying every backend would turn an outage into a connect storm.
pub const CONNECT_ATTEMPTS: usize = 3;

/// Backends a request has tried, in order.
struct Tried {
    indices: [usize; CONNECT_ATTEMPTS],
    count: usize,
}

impl Tried {
    fn new(first: usize) -> Tried {
        Tried { indices: [first; CONNECT_ATTEMPTS], count: 1 }
    }

    fn contains(&self, index: usize) -> bool {
        self.indices[..self.count].contains(&index)
    }

    /// Another usable backend, chosen by the pool's strategy (without affinity, which
    /// would name the same backend again), else the first usable one not yet tried.
    fn next_backend(&mut self, pool: &Pool) -> Option<usize> {
        if self.count == CONNECT_ATTEMPTS {
            return None;
        }
        let backends = &pool.backends;
        let unaffined = PickRequest::default();
        let picked = (0..backends.len())
            .filter_map(|_| pool.strategy.pick(backends, &unaffined))
            .find(|&index| !self.contains(index))
            .or_else(|| {
                (0..backends.len()).find(|&i| backends[i].is_usable() && !self.contains(i))
            })?;
        self.indices[self.count] = picked;
        self.count += 1;
        Some(picked)
    }
}

/// The routing and balancing decision for one request.
enum Choice<'s> {
    /// Send it to `pool.backends[index]`, adding `set_cookie` (maybe empty) to the response.
    Backend { pool: &'s Pool, index: usize, set_cookie: Vec<u8> },
    /// Answer 503 with this cause.
    Refuse(String),
}

/// Routes the request and picks a backend. Reads the head still in `buffers.input`.
fn choose<'s>(
    snapshot: &'s SnapshotRef,
    client: &Client,
    buffers: &Buffers,
    info: &RequestInfo,
) -> Choice<'s> {
    let input = &buffers.input;
    let target = &input[info.target.clone()];
    let host = info.host.clone().map(|range| &input[range]);
    let Some(pool) = route::select(snapshot, host, target) else {
        return Choice::Refuse("no pool configured".into());
    };
    let request = if affinity::needs_request(pool) {
        affinity::pick_request(pool, &input[..info.head_len], target, client.peer.ip())
    } else {
        PickRequest::default()
    };
    let Some(index) = pool.strategy.pick(&pool.backends, &request) else {
        return Choice::Refuse(format!("no healthy backend in pool {}", pool.name));
    };
    let mut set_cookie = Vec::new();
    if pool.settings.sticky.is_some() {
        affinity::set_cookie_line(pool, index, request.sticky_id, &mut set_cookie);
    }
    Choice::Backend { pool, index, set_cookie }
}

/// Final touches to the upstream head that depend on the pool and backend.
fn prepare_head(head: &mut Vec<u8>, pool: &Pool, backend: &Backend, info: &RequestInfo) {
    if info.host.is_none() {
        // HTTP/1.0 without Host goes upstream as HTTP/1.1, which requires one (RFC 9112
        // §3.2): name the backend, as nginx does.
        debug_assert!(head.ends_with(b"\r\n\r\n"));
        head.truncate(head.len() - 2);
        push_field(head, b"Host", backend.label.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if let Some(sticky) = &pool.settings.sticky {
        affinity::strip_cookie(sticky, head);
    }
}

/// Per-request facts an attempt needs besides the buffers.
#[derive(Clone, Copy)]
struct Request<'a> {
    info: &'a RequestInfo,
    draining: bool,
    /// A `Set-Cookie` line to add to the response, or empty.
    set_cookie: &'a [u8],
}

/// Runs the exchange on a pooled connection, or a new one; retries once on a new
/// connection if a pooled one closed before answering.
async fn attempt(
    stream: &mut TcpStream,
    backend: &Backend,
    settings: &PoolConfig,
    server: &ServerConfig,
    buffers: &mut Buffers,
    request: Request<'_>,
) -> Result<(Outcome, TcpStream), AttemptError> {
    let Request { info, draining, set_cookie } = request;
    let exchange = Exchange {
        head_request: info.method == Method::Head,
        upgrade_requested: info.upgrade,
        client_http10: info.http10,
        close_client: !info.keep_alive || draining,
        max_headers: server.max_headers,
    };
    let limits = limits(server, settings);
    let stats = backend.live.stats.local();
    let (mut upstream, reused) = match pool::checkout(&backend.live) {
        Some(upstream) => {
            stats.connections_reused.inc();
            (upstream, true)
        }
        None => (connect(backend, settings).await?, false),
    };
    let mut capture = (reused && info.body != BodyKind::Empty).then(|| Capture {
        bytes: buffers.head.clone(),
        overflow: false,
        limit: buffers.head.len() + REPLAY_BODY_BYTES,
    });
    let io = Io {
        input: &mut buffers.input,
        head: &mut buffers.head,
        reply: &mut buffers.reply,
        upstream: &mut buffers.upstream,
        extra_header: set_cookie,
    };
    let first = exchange::run(
        stream,
        &mut upstream,
        io,
        info,
        Upload::FromClient(capture.as_mut()),
        exchange,
        limits,
    )
    .await;
    let replayable = match &first {
        Err(Failure::UpstreamClosed { silent: true, request_sent }) if reused => {
            info.body == BodyKind::Empty
                || (*request_sent && capture.as_ref().is_some_and(|c| !c.overflow))
        }
        _ => false,
    };
    if !replayable {
        return first.map(|outcome| (outcome, upstream)).map_err(AttemptError::Exchange);
    }
    stats.stale_retries.inc();
    drop(upstream);
    let mut upstream = connect(backend, settings).await?;
    let upload = match &capture {
        Some(capture) => Upload::Replay(&capture.bytes),
        None => Upload::FromClient(None),
    };
    let io = Io {
        input: &mut buffers.input,
        head: &mut buffers.head,
        reply: &mut buffers.reply,
        upstream: &mut buffers.upstream,
        extra_header: set_cookie,
    };
    let second = exchange::run(stream, &mut upstream, io, info, upload, exchange, limits).await;
    second.map(|outcome| (outcome, upstream)).map_err(AttemptError::Exchange)
}

fn limits(server: &ServerConfig, settings: &PoolConfig) -> Limits {
    Limits {
        body_timeout: server.body_timeout,
        response_timeout: settings.response_timeout,
        read_timeout: settings.read_timeout,
        max_header_bytes: server.max_header_bytes,
    }
}

/// A failed attempt: no connection, or a failed exchange.
enum AttemptError {
    Connect(ConnectError),
    Exchange(Failure),
}

impl From<ConnectError> for AttemptError {
    fn from(error: ConnectError) -> Self {
        AttemptError::Connect(error)
    }
}

async fn connect(backend: &Backend, settings: &PoolConfig) -> Result<TcpStream, ConnectError> {
    let stats = backend.live.stats.local();
    let result = pool::connect(backend, settings.connect_timeout).await;
    match &result {
        Ok(_) => stats.connections_opened.inc(),
        Err(_) => stats.connect_failures.inc(),
    }
    result
}

/// Counts a relayed response (status class, bytes, duration) and feeds the latency to
/// latency-aware strategies.
fn record(client: &Client, pool: &Pool, backend: &Backend, outcome: &Outcome, started: Instant) {
    if pool.settings.uses_latency() {
        balance::observe_latency(&backend.live, outcome.header_latency, Instant::now().into());
    }
    let stats = backend.live.stats.local();
    stats.requests.record(outcome.status);
    stats.bytes_sent.add(outcome.bytes_sent);
    stats.bytes_received.add(outcome.bytes_received);
    stats.duration.record(started.elapsed());
    client.shared.frontend.local().requests.record(outcome.status);
}

/// Tunnels an upgraded connection, or pools the upstream connection if it is clean.
async fn finish(
    stream: &mut TcpStream,
    backend: &Backend,
    settings: &PoolConfig,
    buffers: &mut Buffers,
    outcome: Outcome,
    mut upstream: TcpStream,
) -> bool {
    if outcome.upgraded {
        super::tunnel::run(stream, &mut upstream, buffers).await;
        return false;
    }
    if outcome.upstream_reusable {
        pool::checkin(&backend.live, upstream, settings.max_idle, settings.idle_timeout);
    }
    outcome.keep_client
}

async fn fail(
    stream: &mut TcpStream,
    client: &Client,
    backend: &Backend,
    buffers: &mut Buffers,
    failure: AttemptError,
    keep_after_error: bool,
) -> bool {
    let stats = backend.live.stats.local();
    let (status, cause): (u16, String) = match failure {
        AttemptError::Connect(ConnectError::Timeout) => (502, "upstream connect timeout".into()),
        AttemptError::Connect(ConnectError::Failed(e)) => {
            (502, format!("upstream connect failed: {e}"))
        }
        AttemptError::Exchange(Failure::UpstreamClosed { .. }) => {
            stats.resets.inc();
            (502, "upstream closed the connection before responding".into())
        }
        AttemptError::Exchange(Failure::Timeout) => {
            stats.timeouts.inc();
            (504, "upstream response timeout".into())
        }
        AttemptError::Exchange(Failure::BadResponse(cause)) => (502, cause.into()),
        AttemptError::Exchange(Failure::ClientTimeout) => (408, "request body timeout".into()),
        AttemptError::Exchange(Failure::ClientBadBody) => {
            (400, "malformed chunked request body".into())
        }
        AttemptError::Exchange(Failure::ClientGone | Failure::Aborted) => return false,
    };
    if status >= 500 {
        stats.requests.record(status);
    }
    reply::send(
        stream,
        client,
        &mut buffers.reply,
        status,
        &cause,
        Some(&backend.label),
        !keep_after_error,
    )
    .await;
    keep_after_error
}
