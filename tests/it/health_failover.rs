//! A backend dies and comes back under steady load, with three real backends.
//!
//! - GET load, with probes: no client request fails (retries go elsewhere), the dead
//!   backend is taken out and then gets no new traffic, and traffic returns to it once
//!   its probes pass again after its restart. Expected: out within `interval ×
//!   unhealthy_threshold + interval` and back within `interval × healthy_threshold +
//!   interval` (printed); asserted: within [`NOT_STUCK`], since a busy machine may delay
//!   any probe or request.
//! - POST load with bodies over the 64 KiB replay buffer: only requests already sent to
//!   the dying backend may fail, and none of them is sent again.
//!
//! The backend that dies is restarted at its address, on a port held for the whole test
//! ([`HeldPort`]): no other test's socket can take the port while it is down.

use crate::support::load::Load;
use crate::support::process::{hold_port, HeldPort};
use crate::support::{self, config_for, pattern_bytes, BackendOptions, Balancer, TestBackend};

use std::time::Duration;

use tokio::time::{sleep, Instant};
use weir::config::HealthConfig;

/// Probe interval: short to keep the test fast. The test waits on events (a health
/// change, a response), not on this interval's multiples.
const INTERVAL: Duration = Duration::from_millis(300);
const HEALTHY_THRESHOLD: u32 = 2;
const UNHEALTHY_THRESHOLD: u32 = 3;
const CLIENTS: usize = 4;
/// Pause between one client's requests.
const PAUSE: Duration = Duration::from_millis(5);
/// Bound on each wait for an event: over ten times what it takes on an idle machine, so
/// reaching it means the event is not coming (a backend never taken out, never back).
const NOT_STUCK: Duration = Duration::from_secs(10);
/// Poll period of the waits on the load's samples.
const POLL: Duration = Duration::from_millis(10);

/// Backends a, b and c; b, which the tests kill and restart, on `b_port`.
async fn three_backends(b_port: &HeldPort) -> Vec<TestBackend> {
    let b = TestBackend::start_at("b", b_port.addr(), BackendOptions::default()).await;
    vec![TestBackend::start("a").await, b.expect("bind b"), TestBackend::start("c").await]
}

fn served_by(samples: &[support::load::Sample], name: &str, after: Instant) -> usize {
    samples.iter().filter(|s| s.at > after && s.backend.as_deref() == Some(name)).count()
}

/// Waits up to [`NOT_STUCK`] until `name` answered a request of `load` after `after`;
/// when its first such answer arrived, or `None`.
async fn first_answer(load: &Load, name: &str, after: Instant) -> Option<Instant> {
    let started = Instant::now();
    loop {
        let samples = load.samples();
        let first = samples.iter().find(|s| s.at > after && s.backend.as_deref() == Some(name));
        if let Some(sample) = first {
            return Some(sample.at);
        }
        if started.elapsed() > NOT_STUCK {
            return None;
        }
        sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_costs_no_request_and_comes_back() {
    let b_port = hold_port();
    let mut backends = three_backends(&b_port).await;
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
    let begun = Instant::now();
    for name in ["a", "b", "c"] {
        let answered = first_answer(&load, name, begun).await;
        assert!(answered.is_some(), "{name} served nothing within {NOT_STUCK:?}");
    }

    // Kill b: its probes take it out, then it gets no new traffic. Failed requests
    // usually eject it first; the wait is for the probes' verdict, which only
    // `HEALTHY_THRESHOLD` passing probes undo. Every probe that starts after the kill
    // fails (nothing listens on b's port), and probes run one at a time: counted from
    // just after the kill, `UNHEALTHY_THRESHOLD` failures are that many in a row.
    let b_addr = backends[1].addr();
    backends[1].stop();
    let killed = Instant::now();
    let probe_failures = |weir: &Balancer| weir.backend_total(b_addr, |s| s.probe_failures.get());
    let failed_before = probe_failures(&weir);
    let out = weir.wait_for(NOT_STUCK, |weir| {
        probe_failures(weir) >= failed_before + u64::from(UNHEALTHY_THRESHOLD)
            && !weir.status(b_addr).healthy
    });
    let out = out.await.unwrap_or_else(|| panic!("b not out: {:?}", weir.status(b_addr)));
    let out_within = INTERVAL * UNHEALTHY_THRESHOLD + INTERVAL;
    eprintln!("b out {:?} after it died (expected within {out_within:?})", killed.elapsed());
    // An attempt that picked b before it was taken out may still be counting its
    // failure: every attempt holds its backend's in-flight count until it has counted.
    let settled = weir.wait_for(NOT_STUCK, |weir| weir.in_flight(b_addr) == 0).await;
    settled.expect("the attempts on b ended");
    let attempts_then = weir.attempts(b_addr);
    sleep(Duration::from_secs(1)).await;
    assert_eq!(weir.attempts(b_addr), attempts_then, "b got traffic after it was out ({out:?})");

    // Restart b on the same address: its probes pass again, and traffic returns.
    backends[1] = TestBackend::start_at("b", b_addr, BackendOptions::default()).await.unwrap();
    let restarted = Instant::now();
    let back = first_answer(&load, "b", restarted).await.map(|at| at - restarted);
    sleep(Duration::from_millis(300)).await;
    let (sent, samples) = load.finish().await;
    let failed: Vec<_> = samples.iter().filter(|s| s.status != 200).collect();
    assert!(failed.is_empty(), "{} of {sent} requests failed: {failed:?}", failed.len());
    let back = back.unwrap_or_else(|| panic!("b got no traffic {NOT_STUCK:?} after its restart"));
    let back_within = INTERVAL * HEALTHY_THRESHOLD + INTERVAL;
    eprintln!("b got traffic {back:?} after its restart (expected within {back_within:?})");
    assert!(weir.status(b_addr).healthy, "{:?}", weir.status(b_addr));
    assert!(sent > 200, "the load was too light to mean much: {sent} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_posts_in_flight_to_a_dying_backend_fail_and_are_not_replayed() {
    // Without probes: traffic counts at the backends are then requests alone.
    let b_port = hold_port();
    let mut backends = three_backends(&b_port).await;
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
