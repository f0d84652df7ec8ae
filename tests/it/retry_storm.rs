//! A retry storm: every backend answers 503, 503 is both a failure status and retried,
//! and the retry budget keeps the extra load on the sick pool at its 20% (plus a floor of
//! 3 a second), counted at the backends themselves.

use crate::support::load::Load;
use crate::support::{config_for, Balancer, TestBackend};

use std::time::Duration;

use tokio::time::{sleep, Instant};
use weir::config::StatusSet;

const CLIENTS: usize = 4;
const RUN: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_503_stay_within_the_budget() {
    let backends = [
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    ];
    let addrs: Vec<_> = backends.iter().map(TestBackend::addr).collect();
    let weir = Balancer::start({
        let mut config = config_for(&addrs);
        let pool = &mut config.pools[0];
        pool.passive.failure_statuses = StatusSet::range(503, 503);
        pool.retry.on.statuses = StatusSet::range(503, 503);
        // Defaults otherwise: 2 extra attempts, 20% budget, 3 a second at least.
        assert_eq!((pool.retry.budget_percent, pool.retry.min_per_second), (20, 3));
        config
    });
    let request = b"GET /status/503 HTTP/1.1\r\nHost: test\r\n\r\n".to_vec();
    let started = Instant::now();
    let load = Load::repeat(weir.addr(), CLIENTS, Duration::from_millis(2), request);
    sleep(RUN).await;
    let (sent, samples) = load.finish().await;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(samples.iter().all(|s| s.status == 503), "every client sees the 503");
    assert!(sent > 200, "too light a storm: {sent} requests");
    // No probes: every request a backend saw is an attempt.
    let attempts: usize = backends.iter().map(TestBackend::requests).sum();
    let retries = attempts - sent;
    // The budget window is one second, sliding by a tenth; workers check it without a
    // lock, so each of the 2 may overshoot by one at a time.
    let allowed = 0.2 * sent as f64 + 3.0 * (elapsed + 1.0) + 4.0;
    assert!(
        (retries as f64) <= allowed,
        "{retries} retries for {sent} requests in {elapsed:.1}s (allowed {allowed:.0})"
    );
    // Retries on 503 did happen, and the budget refused the rest: without it, every
    // request would have been tried 3 times.
    assert!(retries as f64 >= 0.1 * sent as f64, "{retries} retries for {sent} requests");
    let exhausted = weir.pool_total(|s| s.budget_exhausted.get());
    assert!(exhausted as usize >= sent / 2, "{exhausted} retries refused for {sent} requests");
    let counted = weir.pool_total(|s| s.retries.get());
    assert_eq!(counted as usize, retries, "weir's count matches the backends'");
    // At most half of the pool (one backend of three) was ejected for its 503s.
    let ejected = addrs.iter().filter(|&&addr| !weir.status(addr).healthy).count();
    assert!(ejected <= 1, "{ejected} backends ejected");
}
