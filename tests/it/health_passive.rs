//! Passive detection alone (no probes): a backend slower than the response timeout is
//! ejected by real traffic, gets no traffic while ejected, fails one half-open trial (and
//! is ejected for twice as long), then recovers through the next trial.

use crate::support::load::Load;
use crate::support::slow_backend::SlowBackend;
use crate::support::{config_for, Balancer, TestBackend};

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::{sleep, Instant};

/// Long enough that a request to the fast backend never reaches it on a loaded machine
/// (one that did would be a 504 with nowhere to go while the slow one is out).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
const BASE_EJECTION: Duration = Duration::from_millis(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_is_ejected_and_recovers_through_half_open() {
    let fast = TestBackend::start("fast").await;
    let slow = SlowBackend::start("slow", RESPONSE_TIMEOUT * 5).await;
    let weir = Balancer::start({
        let mut config = config_for(&[fast.addr(), slow.addr]);
        let pool = &mut config.pools[0];
        pool.response_timeout = RESPONSE_TIMEOUT;
        pool.passive.consecutive_failures = 3;
        pool.passive.base_ejection = BASE_EJECTION;
        // The light load here (every other request waits out the timeout) would leave
        // the default budget at its floor of 3 retries a second; this test is about
        // ejection, `retry_storm.rs` about the budget.
        pool.retry.min_per_second = 50;
        assert!(pool.health.is_none());
        config
    });
    slow.slow.store(true, Ordering::SeqCst);
    let request = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n".to_vec();
    let load = Load::repeat(weir.addr(), 2, Duration::from_millis(20), request);

    // Three timeouts in a row eject it; the timed-out GETs were retried on `fast`.
    let ejected =
        weir.wait_for(Duration::from_secs(10), |w| w.status(slow.addr).state == "ejected");
    ejected.await.expect("the slow backend is ejected");
    let status = weir.status(slow.addr);
    assert!(status.reason.contains("3 consecutive response timeouts, for 600ms"), "{status:?}");
    let seen = slow.requests.load(Ordering::SeqCst);
    sleep(BASE_EJECTION / 2).await;
    assert_eq!(slow.requests.load(Ordering::SeqCst), seen, "traffic while ejected");

    // Still slow when the ejection ends: the trial times out, and the next ejection is
    // twice as long.
    let again = |w: &Balancer| w.status(slow.addr).ejections == 2;
    weir.wait_for(Duration::from_secs(10), again).await.expect("a failed trial");
    let status = weir.status(slow.addr);
    assert_eq!(status.state, "ejected");
    assert!(
        status.reason.contains("trial request failed (response timeout), for 1.2s"),
        "{status:?}"
    );
    assert_eq!(slow.requests.load(Ordering::SeqCst), seen + 1, "exactly one trial request");

    // Fast again: the next trial succeeds and traffic returns.
    slow.slow.store(false, Ordering::SeqCst);
    let recovered = Instant::now();
    let healthy = |w: &Balancer| w.status(slow.addr).healthy;
    weir.wait_for(Duration::from_secs(5), healthy).await.expect("recovered");
    assert!(recovered.elapsed() <= BASE_EJECTION * 2 + Duration::from_millis(500));
    let status = weir.status(slow.addr);
    assert!(status.reason.contains("trial request succeeded"), "{status:?}");
    sleep(Duration::from_millis(300)).await;
    let (_, samples) = load.finish().await;
    let from_slow =
        samples.iter().filter(|s| s.at > recovered && s.backend.as_deref() == Some("slow"));
    assert!(from_slow.count() > 1, "traffic returned to the recovered backend");
    let failed: Vec<_> = samples.iter().filter(|s| s.status != 200).collect();
    assert!(failed.is_empty(), "timeouts were retried elsewhere: {failed:?}");
    let ejections = weir.backend_total(slow.addr, |s| s.ejections.get());
    assert_eq!(ejections, 2);
}
