//! Each HTTP/2 stream is balanced on its own, at volume: `h2load` (Debian
//! nghttp2-client) sends thousands of streams on one connection, and the backends count
//! what they got.

use crate::support::slow_backend::SlowBackend;
use crate::support::{Balancer, TestBackend};

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use weir::config::StrategyKind;

/// Runs `h2load` over one connection (`-c 1`): `n` GETs of `url`, `depth` streams at a
/// time; asserts every one succeeded.
async fn h2load(url: &str, n: usize, depth: usize) {
    let run = tokio::process::Command::new("h2load")
        .args(["-c", "1", "-n", &n.to_string(), "-m", &depth.to_string(), url])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("h2load ends")
        .expect("run h2load (Debian nghttp2-client)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "h2load failed: {text}");
    let done = format!("{n} succeeded, 0 failed, 0 errored");
    assert!(text.contains(&done), "not `{done}`: {text}");
    assert!(text.contains("status codes: ") && text.contains(&format!("{n} 2xx")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_streams_of_one_connection_spread_evenly() {
    // Goal: the check, round robin over 3 backends gives each 33% ±2% of 10,000
    // streams of one HTTP/2 connection. Method: h2load, 100 streams deep (weir's
    // default limit), counted at the backends.
    let backends = [
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(TestBackend::addr).collect();
    let weir = Balancer::over(&addrs, |_| {});
    h2load(&format!("http://{}/", weir.addr()), 10_000, 100).await;
    let counts: Vec<usize> = backends.iter().map(TestBackend::requests).collect();
    eprintln!("10,000 streams over 3 backends: {counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 10_000);
    for count in &counts {
        // 33% ±2%: 3,133 to 3,533 of 10,000.
        assert!((3_133..=3_533).contains(count), "{counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_requests_sends_fewer_streams_to_a_slow_backend() {
    // Goal: with `least_requests` the streams of one connection avoid a slow backend, as
    // HTTP/1 requests do. Method: 3 backends, one answering after 50 ms; h2load sends
    // 2,000 streams 50 deep on one connection; the slow one gets under half of what
    // either fast one gets.
    let delay = Duration::from_millis(50);
    let backends = [
        SlowBackend::start("fast1", delay).await,
        SlowBackend::start("fast2", delay).await,
        SlowBackend::start("slow", delay).await,
    ];
    backends[2].slow.store(true, Ordering::SeqCst);
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let weir = Balancer::over(&addrs, |config| {
        config.pools[0].strategy = StrategyKind::LeastRequests;
    });
    h2load(&format!("http://{}/", weir.addr()), 2_000, 50).await;
    let counts: Vec<usize> = backends.iter().map(|b| b.requests.load(Ordering::SeqCst)).collect();
    eprintln!("least_requests, 2,000 streams (fast1, fast2, slow): {counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 2_000);
    assert!(counts[2] * 2 < counts[0].min(counts[1]), "{counts:?}");
}
