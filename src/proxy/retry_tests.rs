//! Tests of the retry policy: what follows each kind of failure, within the budget.

use std::sync::Arc;

use tokio::time::Instant;

use super::*;
use crate::config::{BackendAddress, BackendConfig, Config, PoolConfig, StrategyKind};
use crate::http1::request::Method;
use crate::pool::ConnectError;
use crate::proxy::class::AttemptError;
use crate::proxy::exchange::{Cut, Failure};
use crate::snapshot::{Registry, Snapshot};

fn snapshot(setup: fn(&mut PoolConfig)) -> Snapshot {
    let backends = (0..3)
        .map(|i| BackendConfig {
            address: BackendAddress::parse(&format!("127.0.0.1:{}", 11_000 + i)).unwrap(),
            weight: 1,
            resolve: crate::config::Resolve::Once,
        })
        .collect();
    let mut pool = PoolConfig::new("web", StrategyKind::RoundRobin, backends);
    setup(&mut pool);
    let mut config = Config::default();
    config.pools.push(pool);
    Registry::new(1).build(&Arc::new(config), 1).expect("loopback resolves").publish()
}

fn request(method: Method, body: BodyKind) -> RequestInfo {
    RequestInfo {
        head_len: 0,
        method,
        http10: false,
        body,
        keep_alive: true,
        expect_continue: false,
        upgrade: false,
        host: None,
        target: 0..0,
        origin: 0..0,
        forwarded_client: None,
        names: crate::http1::name_set::NameSet::ALL,
    }
}

fn refused() -> AttemptError {
    AttemptError::Connect(ConnectError::Failed(std::io::ErrorKind::ConnectionRefused.into()))
}

fn reset() -> AttemptError {
    AttemptError::Exchange(Failure::UpstreamClosed { silent: true, request_sent: true })
}

/// The verdict in short: `fresh`, `other` or `stop`.
fn verdict(next: &Next<'_>) -> &'static str {
    match next {
        Next::Fresh => "fresh",
        Next::Backend(..) => "other",
        Next::Stop => "stop",
    }
}

#[tokio::test(start_paused = true)]
async fn what_follows_each_failure() {
    let snapshot = snapshot(|_| {});
    let pool = &snapshot.pools[0];
    let now = Instant::now();
    let (get, post) =
        (request(Method::Get, BodyKind::Empty), request(Method::Post, BodyKind::Empty));
    let timeout = AttemptError::Exchange(Failure::Timeout);
    let cut = Cut { status: 200, body_bytes: 10, cause: "x", upstream_fault: true };
    let begun = AttemptError::Exchange(Failure::Aborted(cut));
    let cases: [(&RequestInfo, AttemptError, bool, &str); 8] = [
        (&post, refused(), false, "other"),
        (&get, reset(), false, "other"),
        (&post, reset(), false, "stop"),
        (&get, timeout, false, "other"),
        (&get, begun, false, "stop"),
        // A silent close on a pooled connection may be the idle race: an idempotent
        // request is replayed, a POST may have run and is not.
        (&get, reset(), true, "fresh"),
        (&post, reset(), true, "stop"),
        (&get, AttemptError::Exchange(Failure::BadResponse("x")), false, "stop"),
    ];
    for (number, (info, error, reused, expected)) in cases.into_iter().enumerate() {
        let mut plan = Plan::new(0);
        (plan.sent, plan.reused) = (true, reused);
        let next = plan.next(pool, info, &error.class(), now);
        assert_eq!(verdict(&next), expected, "case {number}: {error:?}");
        if let Next::Backend(index, _) = next {
            assert_ne!(index, 0, "a retry goes to another backend");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_attempts_and_never_revisit_a_backend() {
    let snapshot = snapshot(|pool| pool.retry.attempts = 5);
    let pool = &snapshot.pools[0];
    let get = request(Method::Get, BodyKind::Empty);
    let mut plan = Plan::new(1);
    let mut seen = vec![1];
    // Three backends: two retries, then nothing is left.
    loop {
        match plan.next(pool, &get, &refused().class(), Instant::now()) {
            Next::Backend(index, _) => seen.push(index),
            Next::Stop => break,
            Next::Fresh => unreachable!(),
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1, 2]);
    let snapshot = self::snapshot(|pool| pool.retry.attempts = 1);
    let mut plan = Plan::new(0);
    let pool = &snapshot.pools[0];
    assert_eq!(verdict(&plan.next(pool, &get, &refused().class(), Instant::now())), "other");
    assert_eq!(verdict(&plan.next(pool, &get, &refused().class(), Instant::now())), "stop");
}

#[tokio::test(start_paused = true)]
async fn a_body_is_replayed_only_when_fully_captured() {
    let snapshot = snapshot(|pool| pool.retry.replay_buffer = 16);
    let pool = &snapshot.pools[0];
    let head = b"PUT / HTTP/1.1\r\n\r\n";
    let put = request(Method::Put, BodyKind::Length(10));
    let mut plan = Plan::new(0);
    plan.start_capture(head, &put, pool, false);
    plan.sent = true;
    let capture = plan.capture.as_mut().expect("a copy is kept");
    capture.bytes.extend_from_slice(b"01234");
    assert!(!plan.replayable(&put), "half the body");
    assert_eq!(verdict(&plan.next(pool, &put, &reset().class(), Instant::now())), "stop");
    plan.capture.as_mut().unwrap().bytes.extend_from_slice(b"56789");
    assert!(plan.replayable(&put));
    assert_eq!(verdict(&plan.next(pool, &put, &reset().class(), Instant::now())), "other");
    // A body known to exceed the replay buffer is not even copied.
    let big = request(Method::Put, BodyKind::Length(17));
    let mut plan = Plan::new(0);
    plan.start_capture(head, &big, pool, false);
    assert!(plan.capture.is_none());
    // A chunked copy counts only once its last chunk is in.
    let chunked = request(Method::Put, BodyKind::Chunked);
    let mut plan = Plan::new(0);
    plan.start_capture(head, &chunked, pool, false);
    plan.sent = true;
    plan.capture.as_mut().unwrap().bytes.extend_from_slice(b"3\r\nabc\r\n");
    assert!(!plan.replayable(&chunked));
    plan.capture.as_mut().unwrap().bytes.extend_from_slice(b"0\r\n\r\n");
    assert!(plan.replayable(&chunked));
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_stops_retries_and_is_counted() {
    let snapshot = snapshot(|pool| {
        pool.retry.min_per_second = 1;
        pool.retry.budget_percent = 0;
    });
    let pool = &snapshot.pools[0];
    let get = request(Method::Get, BodyKind::Empty);
    let now = Instant::now();
    // A reset: the backend may have worked on the request, so its retry adds load.
    for expected in ["other", "stop"] {
        let mut plan = Plan::new(0);
        plan.sent = true;
        assert_eq!(verdict(&plan.next(pool, &get, &reset().class(), now)), expected);
    }
    let exhausted: u64 = pool.live.stats.iter().map(|s| s.budget_exhausted.get()).sum();
    assert_eq!(exhausted, 1);
    let retries: u64 = pool.live.stats.iter().map(|s| s.retries.get()).sum();
    assert_eq!(retries, 1);
}

#[tokio::test(start_paused = true)]
async fn connect_failures_retry_outside_the_budget_within_attempts() {
    let snapshot = snapshot(|pool| {
        pool.retry.min_per_second = 1;
        pool.retry.budget_percent = 0;
        pool.retry.attempts = 1;
    });
    let pool = &snapshot.pools[0];
    let get = request(Method::Get, BodyKind::Empty);
    let now = Instant::now();
    // The budget is spent: a connect failure sent nothing and still goes elsewhere, each
    // time, but only `attempts` times per request.
    assert!(pool.live.budget.try_retry(&pool.settings.retry, now));
    for _ in 0..10 {
        let mut plan = Plan::new(0);
        assert_eq!(verdict(&plan.next(pool, &get, &refused().class(), now)), "other");
        assert_eq!(verdict(&plan.next(pool, &get, &refused().class(), now)), "stop");
    }
    let exhausted: u64 = pool.live.stats.iter().map(|s| s.budget_exhausted.get()).sum();
    assert_eq!(exhausted, 0, "the budget was not asked");
}
