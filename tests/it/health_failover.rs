//! A backend dies and comes back under steady load, with three real backends.
//!
//! - GET load, with probes: no client request fails (retries go elsewhere), the dead
//!   backend gets no new traffic within `interval × unhealthy_threshold + interval`, and
//!   traffic returns within `interval × healthy_threshold + interval` of its restart.
//! - POST load with bodies over the 64 KiB replay buffer: only requests already sent to
//!   the dying backend may fail, and none of them is sent again.

use crate::support::load::Load;
use crate::support::{self, config_for, pattern_bytes, BackendOptions, Balancer, TestBackend};

use std::time::Duration;

use tokio::time::{sleep, Instant};
use weir::config::HealthConfig;

/// Probe interval: short to keep the test fast, long enough that scheduling noise on a
/// busy machine stays well inside the bounds below.
const INTERVAL: Duration = Duration::from_millis(300);
const HEALTHY_THRESHOLD: u32 = 2;
const UNHEALTHY_THRESHOLD: u32 = 3;
const CLIENTS: usize = 4;
/// Pause between one client's requests.
const PAUSE: Duration = Duration::from_millis(5);

async fn three_backends() -> Vec<TestBackend> {
    vec![
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    ]
}

fn served_by(samples: &[support::load::Sample], name: &str, after: Instant) -> usize {
    samples.iter().filter(|s| s.at > after && s.backend.as_deref() == Some(name)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_costs_no_request_and_comes_back() {
    let mut backends = three_backends().await;
    let addrs: Vec<_> = backends.iter().map(TestBackend::addr).collect();
    let weir = Balancer::start({
        let mut config = config_for(&addrs);
        config.pools[0].health = Some(HealthConfig {
            path: "/health".to_string(),
            interval: INTERVAL,
            timeout: Duration::from_millis(200),
            healthy_threshold: HEALTHY_THRESHOLD,
            unhealthy_threshold: UNHEALTHY_THRESHOLD,
            jitter: INTERVAL / 10,
            ..HealthConfig::default()
        });
        config
    });
    let request = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n".to_vec();
    let load = Load::repeat(weir.addr(), CLIENTS, PAUSE, request);
    sleep(Duration::from_millis(500)).await;
    let warm = Instant::now();
    assert!(["a", "b", "c"].iter().all(|n| served_by(
        &load.samples(),
        n,
        warm - Duration::from_millis(500)
    ) > 0));

    // Kill b.
    let b_addr = backends[1].addr();
    backends[1].stop();
    let killed = Instant::now();
    let out_within = INTERVAL * UNHEALTHY_THRESHOLD + INTERVAL;
    sleep(out_within.saturating_sub(killed.elapsed())).await;
    assert!(!weir.status(b_addr).healthy, "b still healthy: {:?}", weir.status(b_addr));
    let attempts_then = weir.attempts(b_addr);
    sleep(Duration::from_secs(1)).await;
    assert_eq!(weir.attempts(b_addr), attempts_then, "b got traffic after {out_within:?}");

    // Restart b on the same address.
    backends[1] = TestBackend::start_at("b", b_addr, BackendOptions::default()).await.unwrap();
    let restarted = Instant::now();
    let back_within = INTERVAL * HEALTHY_THRESHOLD + INTERVAL;
    let mut back = None;
    while restarted.elapsed() < back_within * 3 && back.is_none() {
        let samples = load.samples();
        back = samples
            .iter()
            .find(|s| s.at > restarted && s.backend.as_deref() == Some("b"))
            .map(|s| s.at - restarted);
        sleep(Duration::from_millis(10)).await;
    }
    sleep(Duration::from_millis(300)).await;
    let (sent, samples) = load.finish().await;
    let failed: Vec<_> = samples.iter().filter(|s| s.status != 200).collect();
    assert!(failed.is_empty(), "{} of {sent} requests failed: {failed:?}", failed.len());
    let back = back.expect("b never got traffic again");
    assert!(
        back <= back_within,
        "b got traffic {back:?} after its restart (bound {back_within:?})"
    );
    assert!(sent > 200, "the load was too light to mean much: {sent} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_posts_in_flight_to_a_dying_backend_fail_and_are_not_replayed() {
    // Without probes: traffic counts at the backends are then requests alone.
    let mut backends = three_backends().await;
    let addrs: Vec<_> = backends.iter().map(TestBackend::addr).collect();
    let weir = Balancer::start({
        let mut config = config_for(&addrs);
        config.pools[0].passive.base_ejection = Duration::from_millis(200);
        config
    });
    // Bodies past the replay buffer, answered 100 ms after they arrived: a client spends
    // most of its time with a request in flight.
    const BODY: usize = 100 * 1024;
    let head =
        format!("POST /slow?ms=100 HTTP/1.1\r\nHost: test\r\nContent-Length: {BODY}\r\n\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(&pattern_bytes(BODY));
    let load = Load::repeat(weir.addr(), CLIENTS, PAUSE, request);
    sleep(Duration::from_millis(600)).await;
    let b_addr = backends[1].addr();
    // Kill b while it holds a request.
    let in_flight = |weir: &Balancer| weir.in_flight(b_addr) > 0;
    weir.wait_for(Duration::from_secs(5), in_flight).await.expect("a request in flight to b");
    backends[1].stop();
    let b_before = backends[1].requests();
    sleep(Duration::from_millis(600)).await;
    backends[1] = TestBackend::start_at("b", b_addr, BackendOptions::default()).await.unwrap();
    let restarted = Instant::now();
    let mut back = false;
    while restarted.elapsed() < Duration::from_secs(5) && !back {
        sleep(Duration::from_millis(20)).await;
        back = served_by(&load.samples(), "b", restarted) > 0;
    }
    let (sent, samples) = load.finish().await;
    assert!(back, "b never got traffic again");
    let failed: Vec<_> = samples.iter().filter(|s| s.status != 200).collect();
    // Only what was in flight to b when it died: at least the one waited for, at most one
    // request per client.
    assert!((1..=CLIENTS).contains(&failed.len()), "{} failed: {failed:?}", failed.len());
    for failure in &failed {
        assert_eq!(failure.status, 502, "{failure:?}");
        assert!(failure.text.contains("closed the connection"), "{failure:?}");
    }
    // Each request reached at most one backend: nothing was replayed.
    let processed: usize = backends.iter().map(TestBackend::requests).sum::<usize>() + b_before;
    let answered = samples.iter().filter(|s| s.status == 200).count();
    assert!(processed <= sent, "{processed} requests processed for {sent} sent");
    assert!(processed >= answered, "{processed} processed, {answered} answered");
    let resets = weir.backend_total(b_addr, |s| s.resets.get());
    assert!(resets >= failed.len() as u64, "{resets} resets counted at b");
}
