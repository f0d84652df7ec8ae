//! Fleet-wide rate limits (`store = "redis://..."`) on a real redis-server: three weir
//! instances let the configured rate through together; with Redis stopped mid-test the
//! traffic keeps flowing under the fallback (`on_store_error`), counted; a Redis that
//! accepts and never answers costs a request at most `store_timeout`.

use std::time::Duration;

use tokio::time::Instant;
use weir::config::{Config, LimitConfig, LimitKey, OnStoreError};
use weir::limit::store::BACKOFF;

use crate::rate_limits::{limited, outcome, pace, rate, Run};
use crate::support::redis::Redis;
use crate::support::{send, Balancer, TestBackend};

const GET: &[u8] = b"GET /r HTTP/1.1\r\nHost: h\r\n\r\n";

/// Burst of the fleet limit: with none, GCRA restarts its clock at each late arrival
/// and lets slightly less than the rate through a paced client (correct, but not what
/// an accuracy test measures).
const BURST: u64 = 10;

/// A limit `fleet` of `per_second` with [`BURST`], keyed by route, on the store at `url`.
fn fleet_limit(url: &str, per_second: u64, on_error: OnStoreError) -> impl Fn(&mut Config) + '_ {
    move |config| {
        config.server.workers = 1;
        let mut limit = LimitConfig::new("fleet", LimitKey::Route, rate(per_second, 1));
        limit.store = Some(weir::config::parse::value::limit_store(url).expect("a redis URL"));
        limit.on_store_error = on_error;
        limit.burst = BURST;
        // Generous for a 2-core machine running three instances, Redis and the load: a
        // timeout would decide locally and blur what the test measures.
        limit.store_timeout = Duration::from_millis(500);
        limited(config, limit);
    }
}

fn store_series(weir: &Balancer, name: &str) -> u64 {
    weir.metric(&format!("weir_limit_{name}_total{{limit=\"fleet\"}}")).expect("exposed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_sharing_redis_let_the_rate_through_together() {
    let redis = Redis::start();
    let backend = TestBackend::start("b").await;
    let per_second = 40u64;
    let url = redis.url();
    let weirs: Vec<Balancer> = (0..3)
        .map(|_| {
            Balancer::over(&[backend.addr()], fleet_limit(&url, per_second, OnStoreError::Local))
        })
        .collect();
    // Each instance alone gets 1.5 times the rate: limiting alone, the three would let
    // three times the rate through.
    let mut addrs = Vec::new();
    for weir in &weirs {
        addrs.extend([weir.addr(); 2]);
    }
    let gap = Duration::from_secs(1) / u32::try_from(3 * per_second / 4).unwrap();
    let Run { passed, refused, elapsed } = pace(&addrs, gap, Duration::from_secs(8), GET).await;
    let expected = per_second as f64 * elapsed + (BURST + 1) as f64;
    let error = (passed as f64 - expected).abs() / expected;
    eprintln!(
        "3 instances: {passed} of {} passed in {elapsed:.2}s; GCRA {expected:.1}",
        passed + refused
    );
    assert!(error <= 0.10, "{passed} passed together; the rate allows {expected:.0}");
    for weir in &weirs {
        assert_eq!(store_series(weir, "store_errors"), 0, "every decision was Redis's");
        assert!(outcome(weir, "fleet", "passed") > 0 && outcome(weir, "fleet", "rejected") > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_traffic_flows_under_the_fallback_counted() {
    let mut redis = Redis::start();
    let backend = TestBackend::start("b").await;
    let url = redis.url();
    let local = Balancer::over(&[backend.addr()], fleet_limit(&url, 20, OnStoreError::Local));
    let open = Balancer::over(&[backend.addr()], fleet_limit(&url, 20, OnStoreError::Open));
    let run = Duration::from_millis(1500);
    let gap = Duration::from_millis(25); // 40/s: twice the rate.
    for weir in [&local, &open] {
        let before = pace(&[weir.addr()], gap, run, GET).await;
        assert!(before.passed > 0 && before.refused > 0, "Redis limits: {}", before.passed);
        assert_eq!(store_series(weir, "store_errors"), 0);
    }
    redis.stop();
    // `local`: this instance's own table limits at the rate; no 5xx, no stall.
    let after = pace(&[local.addr()], gap, run, GET).await;
    let expected = 20.0 * after.elapsed + (BURST + 1) as f64;
    assert!((after.passed as f64 - expected).abs() / expected <= 0.2, "{} passed", after.passed);
    assert!(after.refused > 0, "the local fallback still limits");
    // One failed connect per second of the outage at most: the store rests between.
    let errors = store_series(&local, "store_errors");
    assert!((1..=3).contains(&errors), "{errors} store errors in 1.5 s");
    assert_eq!(store_series(&local, "store_fallbacks"), after.passed + after.refused);
    // `open`: everything passes while Redis is away.
    let after = pace(&[open.addr()], gap, run, GET).await;
    assert_eq!(after.refused, 0, "open lets everything through");
    assert!(after.passed > 0);
    assert_eq!(store_series(&open, "store_fallbacks"), after.passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_never_answers_costs_at_most_the_timeout_then_rests() {
    // A listener that accepts and never answers, held open for the whole test.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("redis://{}", silent.local_addr().expect("addr"));
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let backend = TestBackend::start("b").await;
    let weir = Balancer::over(&[backend.addr()], |config| {
        fleet_limit(&url, 1000, OnStoreError::Local)(config);
        config.limits[0].store_timeout = Duration::from_millis(100);
    });
    // Each request that found the store not resting waited for the timeout, counted one
    // store error, and set the store aside for `BACKOFF`; the others were decided locally
    // at once. How many errors that makes depends on how fast the requests go, so each
    // error is checked for being the first, or for coming after a full rest since the
    // one before; on a machine where all the requests fit in one rest, that is exactly
    // one error.
    let mut errors = 0;
    let mut raised: Option<(usize, Instant)> = None;
    for n in 0..20 {
        let sent = Instant::now();
        assert_eq!(send(weir.addr(), GET).await.status, 200);
        let answered = Instant::now();
        let now = store_series(&weir, "store_errors");
        assert!(now <= errors + 1, "request {n}: {} store errors for one request", now - errors);
        if n == 0 {
            // The first request waited for the timeout.
            assert_eq!(now, 1, "the first request found a store that never answers");
            assert!(answered - sent >= Duration::from_millis(100));
        } else if now > errors {
            // Rested since the error before: the two errors happened, at the earliest,
            // when the request that raised the first was sent and, at the latest, when
            // this one was answered.
            let (earlier, first_sent) = raised.expect("an error before");
            let apart = answered - first_sent;
            assert!(
                apart >= BACKOFF,
                "request {n} tried the store {apart:?} after request {earlier} failed"
            );
        }
        if now > errors {
            raised = Some((n, sent));
        }
        errors = now;
    }
    eprintln!("a silent store: {errors} store errors over 20 requests");
    assert_eq!(store_series(&weir, "store_fallbacks"), 20);
    held.abort();
}
