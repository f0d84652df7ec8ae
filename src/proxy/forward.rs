//! Routes a parsed request, picks a backend, and runs attempts until one answers or the
//! retry policy ([`super::retry`]) gives up. Every attempt's outcome feeds the backend's
//! health ([`crate::health`]).

use std::sync::atomic::Ordering;

use bytes::Buf;
use tokio::time::Instant;

use super::attempt::{attempt, Request};
use super::buffers::Buffers;
use super::class::AttemptError;
use super::class::{Class, Counter, Health};
use super::exchange::Outcome;
use super::exchange::{Failure, BODY_TOO_LARGE};
use super::failure::{fail, Ending, Failed};
use super::io::Stream;
use super::logging::{Done, Pending};
use super::policy::{self, Policy};
use super::retry::{Next, Plan};
use super::{affinity, reply, Client, Conn, SnapshotRef};
use crate::balance::{self, PickRequest};
use crate::config::PoolConfig;
use crate::health::select::{self, Picked};
use crate::health::{self, Cause, Observed, Rules, Subject, Trial};
use crate::http1::lines::push_field;
use crate::http1::request::RequestInfo;
use crate::http1::BodyKind;
use crate::local_fault::Op;
use crate::pool::{self, Upstream};
use crate::route;
use crate::snapshot::{Backend, BackendLive, Pool};

/// The body of a 403 from an access list.
const DENIED: &str = "forbidden by the route's access list";
/// The access log's error for a 503 that reached no backend.
const NO_BACKEND: &str = "no usable backend";

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
pub async fn handle<S: Stream>(
    stream: &mut S,
    conn: Conn<'_>,
    snapshot: &SnapshotRef,
    buffers: &mut Buffers,
    info: RequestInfo,
) -> bool {
    let Conn { client, alarm, mut started } = conn;
    let server = &snapshot.config.server;
    let (id, logged) = policy::begin(server, client, &buffers.input[..info.head_len], &info);
    let choice = choose(snapshot, client, buffers, &info, id).await;
    let ending = ending_of(&choice, client, &info, &buffers.input[..info.head_len], started);
    buffers.input.advance(info.head_len);
    let (pool, (index, mut trial), mut set_cookie, mut policy) = match choice {
        Choice::Backend { pool, picked, set_cookie, policy } => (pool, picked, set_cookie, policy),
        Choice::Local(local) => {
            return answer_locally(stream, client, buffers, local, ending, server, logged).await
        }
    };
    prepare_head(&mut buffers.head, pool, &pool.backends[index], &info, policy.as_mut());
    pool.live.budget.on_request(started);
    let mut plan = Plan::new(index);
    // Bounded: each pass is the first attempt, the one stale replay, or one of at most
    // `attempts` retries.
    loop {
        let backend = &pool.backends[plan.current()];
        let _in_flight = InFlight::new(&backend.live);
        let (cookie, policy) = (&set_cookie[..], policy.as_ref());
        let request = Request::of(&info, client, cookie, policy, &mut *alarm, started, &ending);
        let result = attempt(stream, backend, pool, server, buffers, request, &mut plan).await;
        let error = match result {
            Ok((outcome, upstream)) => {
                tell_health(pool, backend, Health::Status(outcome.status), &mut trial);
                let ended = Instant::now();
                record(client, pool, backend, &outcome, started, ended);
                logged.finish(client, done(pool, backend, Ok(&outcome), plan.retries()));
                let settings = &pool.settings;
                return finish(stream, backend, settings, buffers, outcome, upstream, ended).await;
            }
            Err(error) => error,
        };
        let class = error.class();
        tell_health(pool, backend, class.heard(plan.reused), &mut trial);
        started = Instant::now();
        let next = plan.next(pool, &info, &class, started);
        count_failure(client, backend, &class, &next);
        match next {
            Next::Fresh => {}
            Next::Backend(next, next_trial) => {
                let next_label = &pool.backends[next].label;
                tracing::debug!(backend = %backend.label, next = %next_label, "retrying after {error:?}");
                trial = next_trial;
                affinity::set_cookie_line(pool, next, None, &mut set_cookie);
                policy::retried(policy, &mut buffers.head, pool, &pool.backends[next]);
            }
            Next::Stop => {
                count_too_large(client, &error);
                let failed = fail(stream, client, backend, buffers, &class, ending, server).await;
                logged.finish(client, done(pool, backend, Err(&failed), plan.retries()));
                return failed.keep;
            }
        }
    }
}

/// Answers a request weir refuses or redirects itself; returns whether the connection
/// goes on.
async fn answer_locally<S: Stream>(
    stream: &mut S,
    client: &Client,
    buffers: &mut Buffers,
    local: Local,
    ending: Ending,
    server: &crate::config::ServerConfig,
    logged: Pending,
) -> bool {
    let (out, timeout) = (&mut buffers.reply, server.send_timeout);
    match local {
        Local::Refuse(status, cause, log) => {
            let answer = reply::Answer::local(status, &cause, !ending.keep);
            let answer = reply::Answer { grpc: ending.grpc, ..answer };
            reply::send(stream, client, out, answer, timeout).await;
            logged.finish(client, Done::refused(status, log));
        }
        Local::Limited(Refusal { status, cause, log, fields }) => {
            let answer = reply::Answer::local(status, &cause, !ending.keep);
            let answer = reply::Answer { grpc: ending.grpc, ..answer };
            reply::send_with(stream, client, out, answer, &fields, timeout).await;
            logged.finish(client, Done::refused(status, log));
        }
        Local::Redirect((status, location), extra) => {
            let answer = (status, &location[..]);
            policy::send_redirect(stream, client, out, answer, &extra, !ending.keep, timeout).await;
            logged.finish(client, Done { status, ..Done::default() });
        }
    }
    ending.keep
}

/// How a failed request ends: whether the connection goes on (a refused request's
/// body is still unread, so it cannot), and whether the request is a gRPC call
/// ([`super::grpc`]), with its deadline. gRPC is looked for only in the requests of
/// HTTP/2 clients and those to HTTP/2 pools: an HTTP/1 request to an HTTP/1 pool pays a
/// match and no scan of its head.
fn ending_of(
    choice: &Choice<'_>,
    client: &Client,
    info: &RequestInfo,
    head: &[u8],
    started: Instant,
) -> Ending {
    let http2_pool =
        matches!(choice, Choice::Backend { pool, .. } if pool.settings.protocol.is_http2());
    // Only a head with a `Content-Type` field can be gRPC: the parse's filter of field
    // names rules out most requests without a pass over the head (a byte-by-byte scan
    // of every line; `request::tests` checks the filter always holds `Content-Type`).
    let may_be_grpc = (client.http2 || http2_pool) && info.names.may_hold(b"content-type");
    let grpc = may_be_grpc.then(|| super::grpc::of(head)).flatten();
    Ending {
        keep: info.keep_alive && info.body == BodyKind::Empty,
        grpc: grpc.is_some(),
        deadline: grpc.and_then(|grpc| grpc.timeout).map(|timeout| started + timeout),
    }
}

/// Counts a request whose body passed the route's `max_body`: answered 413, or cut
/// when the response had begun.
fn count_too_large(client: &Client, error: &AttemptError) {
    let too_large = match error {
        AttemptError::Exchange(Failure::BodyTooLarge) => true,
        AttemptError::Exchange(Failure::Aborted(cut)) => cut.cause == BODY_TOO_LARGE,
        _ => false,
    };
    if too_large {
        client.shared.frontend.local().body_too_large.inc();
    }
}

/// Reports what an attempt says about the backend to health checking (passive checks,
/// and the trial request of a backend that is being tried again). Client-side failures,
/// aborted responses and stale pooled connections say nothing ([`Health::Nothing`]).
fn tell_health(pool: &Pool, backend: &Backend, heard: Health, trial: &mut Option<Trial>) {
    let observed = match heard {
        Health::Nothing => return,
        Health::Failure(cause) => Observed::Failure(cause),
        Health::Status(status) if pool.settings.passive.failure_statuses.contains(status) => {
            backend.live.stats.local().status_failures.inc();
            Observed::Failure(Cause::Status(status))
        }
        Health::Status(_) => Observed::Success,
    };
    report(pool, backend, observed, trial.take());
}

/// Counts a failed attempt on the counter its class names, retried or not; a stale
/// pooled connection replayed on a fresh one is not a reset. Local exhaustion is counted
/// as weir's, not the backend's.
fn count_failure(client: &Client, backend: &Backend, class: &Class<'_>, next: &Next<'_>) {
    let stats = backend.live.stats.local();
    match class.counter {
        Counter::LocalError(fault) => {
            client.shared.frontend.local().local_errors.record(Op::Connect, fault);
        }
        Counter::ConnectFailure => stats.connect_failures.inc(),
        Counter::Reset if !matches!(next, Next::Fresh) => stats.resets.inc(),
        Counter::Timeout => stats.timeouts.inc(),
        Counter::Tls(error) => stats.tls.failure(error),
        Counter::Reset | Counter::None => {}
    }
}

/// Feeds an outcome to the backend's health: the verdict of its half-open trial when this
/// request holds it, else one more passive observation.
fn report(pool: &Pool, backend: &Backend, observed: Observed, trial: Option<Trial<'_>>) {
    let subject = Subject::of(&pool.name, backend);
    let rules = Rules::of(&pool.settings);
    match trial {
        Some(trial) => trial.resolve(subject, rules, observed),
        None => health::observe(subject, rules, observed),
    }
}

/// The routing and balancing decision for one request.
enum Choice<'s> {
    /// Send it to the picked backend, adding `set_cookie` (maybe empty) to the response,
    /// under the route's rules and the request id (`policy`).
    Backend { pool: &'s Pool, picked: Picked<'s>, set_cookie: Vec<u8>, policy: Option<Policy<'s>> },
    /// Answer it without a backend.
    Local(Local),
}

/// An answer weir makes itself.
enum Local {
    /// The route's redirect (status, `Location`), with these lines (the id).
    Redirect((u16, Vec<u8>), Vec<u8>),
    /// This status with this cause, and the error to log: 503 when no backend can take
    /// it, 403 when the route's access list refuses the client, 413 for `max_body`, 400
    /// for a redirect without a valid `Location`.
    Refuse(u16, String, &'static str),
    /// One of the route's limits refused it: 429, with `Retry-After` in its fields.
    Limited(Refusal),
}

/// A request weir answers itself, before any backend.
pub(crate) struct Refusal {
    /// The status.
    pub status: u16,
    /// The cause: the body and the log message.
    pub cause: String,
    /// The access log's error.
    pub log: &'static str,
    /// More header lines (`Retry-After` of a 429), each ending in CRLF.
    pub fields: String,
}

/// Routes the request, applies the route's access list and limits (a delayed request
/// waits here), and picks a backend. Reads the head still in `buffers.input`.
async fn choose<'s>(
    snapshot: &'s SnapshotRef,
    client: &Client,
    buffers: &Buffers,
    info: &RequestInfo,
    id: Option<String>,
) -> Choice<'s> {
    let input = &buffers.input;
    // The origin form: for an absolute-form target, what the backend gets (path, query).
    let target = &input[info.origin.clone()];
    let host = info.host.clone().map(|range| &input[range]);
    let Some((pool, route)) = route::select(snapshot, host, target) else {
        return Choice::Local(Local::Refuse(503, "no pool configured".into(), NO_BACKEND));
    };
    if route.and_then(|r| r.acl.as_ref()).is_some_and(|acl| !acl.permits(client.address(info))) {
        client.shared.frontend.local().denied[0].inc();
        return Choice::Local(Local::Refuse(403, DENIED.into(), DENIED));
    }
    let head = &input[..info.head_len];
    if let Some(limits) = route.and_then(|route| route.limits.as_ref()) {
        if let Some(refusal) = super::limiting::admit(limits, client, head, info).await {
            return Choice::Local(Local::Limited(refusal));
        }
    }
    let server = &snapshot.config.server;
    let policy = Policy::start(server, route, client, head, info, id);
    let early = policy.as_ref().filter(|policy| policy.answers_early());
    if let Some(answer) = early.and_then(|policy| before_pick(policy, client, pool, info)) {
        return Choice::Local(answer);
    }
    let request = if affinity::needs_request(pool) {
        affinity::pick_request(pool, &input[..info.head_len], target, client.address(info))
    } else {
        PickRequest::default()
    };
    let picked = match select::choose(pool, &request) {
        Ok(picked) => picked,
        Err(cause) => return Choice::Local(Local::Refuse(503, cause, NO_BACKEND)),
    };
    let mut set_cookie = Vec::new();
    if pool.settings.sticky.is_some() {
        affinity::set_cookie_line(pool, picked.0, request.sticky_id, &mut set_cookie);
    }
    Choice::Backend { pool, picked, set_cookie, policy }
}

/// A route rule that answers before any backend is picked: its redirect, or 413 for a
/// declared body over `max_body`. A chunked body is checked as it streams (the pump).
fn before_pick(
    policy: &Policy<'_>,
    client: &Client,
    pool: &Pool,
    info: &RequestInfo,
) -> Option<Local> {
    if let Some(redirect) = policy.redirect(pool) {
        return Some(match redirect {
            Ok(redirect) => Local::Redirect(redirect, policy.id_line()),
            Err(cause) => Local::Refuse(400, cause.into(), "no valid Location for a redirect"),
        });
    }
    if policy.too_large(info) {
        client.shared.frontend.local().body_too_large.inc();
        let cause = "request body over the route's max_body";
        return Some(Local::Refuse(413, cause.into(), BODY_TOO_LARGE));
    }
    None
}

/// Final touches to the upstream head that depend on the pool and backend, then the
/// route's rules and the request id.
fn prepare_head(
    head: &mut Vec<u8>,
    pool: &Pool,
    backend: &Backend,
    info: &RequestInfo,
    policy: Option<&mut Policy<'_>>,
) {
    if info.host.is_none() {
        // HTTP/1.0 without Host goes upstream as HTTP/1.1, which requires one (RFC 9112
        // §3.2): name the backend as configured (its DNS name, for a discovered one), as
        // nginx does.
        let authority = backend.address.authority();
        let mut host = Vec::with_capacity(authority.len() + 8);
        push_field(&mut host, b"Host", authority.as_bytes());
        crate::http1::lines::append_lines(head, &host);
    }
    if let Some(sticky) = &pool.settings.sticky {
        affinity::strip_cookie(sticky, head);
    }
    if let Some(policy) = policy {
        policy.request(head, info, pool, backend);
    }
}

/// Counts a relayed response (status class, bytes, duration) and feeds the latency to
/// latency-aware strategies.
fn record(
    client: &Client,
    pool: &Pool,
    backend: &Backend,
    outcome: &Outcome,
    started: Instant,
    ended: Instant,
) {
    if pool.settings.uses_latency() {
        balance::observe_latency(&backend.live, outcome.header_latency, ended.into());
    }
    // `[admin] metrics = false` skips the counters that exist only for metrics, so their
    // cost can be measured (bench/RESULTS.md); health and balancing state still updates.
    if !client.metrics {
        return;
    }
    let stats = backend.live.stats.local();
    stats.requests.record(outcome.status);
    stats.bytes_sent.add(outcome.bytes_sent);
    stats.bytes_received.add(outcome.bytes_received);
    stats.duration.record(ended.saturating_duration_since(started));
    client.shared.frontend.local().record(client.http2, outcome.status);
}

/// Tunnels an upgraded connection, or pools the upstream connection if it is clean. An
/// HTTP/2 stream (`None`) is done: its connection stays with the worker's HTTP/2 pool,
/// and HTTP/2 responses never upgrade.
async fn finish<S: Stream>(
    stream: &mut S,
    backend: &Backend,
    settings: &PoolConfig,
    buffers: &mut Buffers,
    outcome: Outcome,
    upstream: Option<Upstream>,
    now: Instant,
) -> bool {
    let Some(mut upstream) = upstream else { return outcome.keep_client };
    if outcome.upgraded {
        match &mut upstream {
            Upstream::Plain(tcp) => {
                super::tunnel::run(stream, tcp, buffers, settings.tunnel_idle_timeout).await;
            }
            Upstream::Tls(tls) => {
                super::tunnel::run(stream, &mut **tls, buffers, settings.tunnel_idle_timeout).await;
            }
        }
        return false;
    }
    if outcome.upstream_reusable && settings.send_proxy_protocol.is_none() {
        pool::checkin(&backend.live, upstream, settings.max_idle, settings.idle_timeout, now);
    }
    outcome.keep_client
}

/// The log fields of a request that reached `backend`: its relayed response, or what
/// the client got of its failure.
fn done<'a>(
    pool: &'a Pool,
    backend: &'a Backend,
    result: Result<&Outcome, &Failed>,
    retries: u32,
) -> Done<'a> {
    let (backend, pool) = (Some(backend.label.as_str()), Some(pool.name.as_str()));
    match result {
        Ok(outcome) => Done {
            status: outcome.status,
            bytes_in: outcome.body_bytes_sent,
            bytes_out: outcome.body_bytes_written,
            upstream: Some(outcome.header_latency),
            backend,
            pool,
            retries,
            error: None,
        },
        Err(failed) => Done {
            status: failed.status,
            bytes_out: failed.body_bytes,
            backend,
            pool,
            retries,
            error: Some(failed.cause),
            ..Done::default()
        },
    }
}
