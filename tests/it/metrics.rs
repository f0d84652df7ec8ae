//! `/metrics` on the admin listener: per-backend counts by class, histogram counts that
//! match the requests sent, connection reuse, failures by kind, totals that add up every
//! worker, and a scrape that `promtool check metrics` accepts.

use crate::support::balancer::add_routed_pool;
use crate::support::process::{hold_port, HeldPort};
use crate::support::scrape::{metric, scrape, scrape_until};
use crate::support::{self, connect, roundtrip, Balancer, TestBackend};

use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// Requests to the failing backend in the two-backend test.
const FAILING_REQUESTS: usize = 20;
/// Requests to the slow backend (50 ms each).
const SLOW_REQUESTS: usize = 10;

/// Sends `count` GETs for `path` on one keep-alive connection; returns their statuses.
async fn keep_alive_gets(addr: SocketAddr, path: &str, count: usize) -> Vec<u16> {
    let mut stream = connect(addr).await.expect("connect to weir");
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    let mut statuses = Vec::with_capacity(count);
    for _ in 0..count {
        statuses.push(roundtrip(&mut stream, req.as_bytes()).await.expect("response").status);
    }
    statuses
}

/// Sends `count` GETs for `path`, each on its own `Connection: close` connection.
async fn fresh_gets(addr: SocketAddr, path: &str, count: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(count);
    for _ in 0..count {
        statuses.push(support::get_close(addr, path).await.status);
    }
    statuses
}

/// A loopback address nothing listens on, held ([`HeldPort`]) while the test keeps it:
/// a port released instead could be taken by another test's listener.
fn refused_addr() -> HeldPort {
    hold_port()
}

/// weir with pools `failing` (`/status/*`) and `slow` (`/slow*`), one backend each.
async fn two_backends() -> (Balancer, String, String, [TestBackend; 2]) {
    let failing = TestBackend::start("failing").await;
    let slow = TestBackend::start("slow").await;
    let (f, s) = (failing.addr(), slow.addr());
    let weir = Balancer::with_admin(&[f], |config| {
        add_routed_pool(config, "failing", f, "/status/");
        add_routed_pool(config, "slow", s, "/slow");
    });
    (weir, f.to_string(), s.to_string(), [failing, slow])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_backend_counts_histograms_and_reuse() {
    // Goal: per-backend series count what each backend did. Method: 20 requests that get
    // a 503 from one backend and 10 slow 200s from another, each batch on one keep-alive
    // connection; the scrape must show exactly those counts by class, histogram counts
    // equal to the requests, durations of at least 50 ms, and pooled connections reused.
    let (weir, failing, slow, _backends) = two_backends().await;
    let statuses = keep_alive_gets(weir.addr(), "/status/503", FAILING_REQUESTS).await;
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    let statuses = keep_alive_gets(weir.addr(), "/slow?ms=50", SLOW_REQUESTS).await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");

    let f = [("pool", "failing"), ("backend", failing.as_str())];
    let s = [("pool", "slow"), ("backend", slow.as_str())];
    let count = "weir_backend_request_duration_seconds_count";
    scrape_until(weir.admin(), count, &f, FAILING_REQUESTS as f64).await;
    let text = scrape_until(weir.admin(), count, &s, SLOW_REQUESTS as f64).await;

    let by_class = |labels: &[(&str, &str)], class: &str| {
        let mut labels = labels.to_vec();
        labels.push(("code_class", class));
        metric(&text, "weir_backend_requests_total", &labels)
    };
    assert_eq!(by_class(&f, "5xx"), Some(FAILING_REQUESTS as f64));
    assert_eq!(by_class(&f, "2xx"), Some(0.0));
    assert_eq!(by_class(&s, "2xx"), Some(SLOW_REQUESTS as f64));
    assert_eq!(by_class(&s, "5xx"), Some(0.0));

    let bucket = "weir_backend_request_duration_seconds_bucket";
    let le = |le: &'static str| [s[0], s[1], ("le", le)];
    assert_eq!(metric(&text, bucket, &le("0.05")), Some(0.0), "a 50 ms request under 50 ms");
    assert_eq!(metric(&text, bucket, &le("+Inf")), Some(SLOW_REQUESTS as f64));
    let seconds = metric(&text, "weir_backend_request_duration_seconds_sum", &s).unwrap();
    assert!(seconds >= 0.05 * SLOW_REQUESTS as f64, "duration sum {seconds}");

    for labels in [&f, &s] {
        let opened = metric(&text, "weir_backend_connections_opened_total", labels).unwrap();
        assert!(opened >= 1.0, "no connection opened for {labels:?}");
        let failures = metric(&text, "weir_backend_failures_total", labels);
        assert_eq!(failures, Some(0.0), "failures for {labels:?}");
    }
    let frontend = |class| metric(&text, "weir_requests_total", &[("code_class", class)]);
    assert_eq!(frontend("5xx"), Some(FAILING_REQUESTS as f64));
    assert_eq!(frontend("2xx"), Some(SLOW_REQUESTS as f64));
    for labels in [&f, &s] {
        let reused = metric(&text, "weir_backend_connections_reused_total", labels).unwrap();
        assert!(reused > 0.0, "no reuse for {labels:?}\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_backend_counts_connect_failures() {
    // Goal: a backend that refuses connections shows up as connect failures. Method:
    // point a pool at a closed port, send 3 requests, expect 502s and kind="connect".
    let held = refused_addr();
    let weir = Balancer::with_admin(&[held.addr()], |_| {});
    let statuses = fresh_gets(weir.addr(), "/", 3).await;
    assert!(statuses.iter().all(|&s| s == 502), "{statuses:?}");
    let dead = held.addr().to_string();
    let labels = [("pool", "web"), ("backend", dead.as_str()), ("kind", "connect")];
    let deadline = tokio::time::Instant::now() + support::scrape::SETTLE;
    let text = loop {
        let text = scrape(weir.admin()).await;
        if metric(&text, "weir_backend_failures_total", &labels).unwrap_or(0.0) >= 3.0 {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "no connect failures:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let timeouts = [labels[0], labels[1], ("kind", "timeout")];
    assert_eq!(metric(&text, "weir_backend_failures_total", &timeouts), Some(0.0));
    let opened = [labels[0], labels[1]];
    assert_eq!(metric(&text, "weir_backend_connections_opened_total", &opened), Some(0.0));
    let healthy = metric(&text, "weir_backend_healthy", &opened);
    assert!(healthy.is_some(), "weir_backend_healthy missing");
}

/// Client connections in the worker test, and requests on each.
const CONNECTIONS: usize = 40;
const REQUESTS_PER_CONNECTION: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_adds_up_all_four_workers() {
    // Goal: a scrape sums every worker's shard. Method: 4 workers, 40 concurrent client
    // connections (the kernel spreads them over the workers' SO_REUSEPORT sockets) of 10
    // requests each; weir_requests_total{2xx} and the backend's count must equal 400.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::with_admin(&[backend.addr()], |c| c.server.workers = 4);
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(keep_alive_gets(weir.addr(), "/", REQUESTS_PER_CONNECTION)))
        .collect();
    for task in tasks {
        let statuses = task.await.expect("client task");
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    }
    let sent = (CONNECTIONS * REQUESTS_PER_CONNECTION) as f64;
    let text =
        scrape_until(weir.admin(), "weir_requests_total", &[("code_class", "2xx")], sent).await;
    let addr = backend.addr().to_string();
    let labels = [("backend", addr.as_str()), ("code_class", "2xx")];
    assert_eq!(metric(&text, "weir_backend_requests_total", &labels), Some(sent));
    let total = metric(&text, "weir_connections_total", &[]);
    assert_eq!(total, Some(CONNECTIONS as f64), "client connections");
    assert_eq!(backend.requests() as f64, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_a_scrape() {
    // Goal: the exposition is valid. Method: traffic with 2xx, 5xx and connect failures,
    // then `promtool check metrics` on the scrape. Skips without promtool, except under
    // CI=true, where promtool must be installed (.ci/run installs it).
    if Command::new("promtool").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is missing under CI=true: apt-get install prometheus"
        );
        eprintln!("skipping: promtool not installed");
        return;
    }
    let (weir, _, _, _backends) = two_backends().await;
    keep_alive_gets(weir.addr(), "/status/503", 3).await;
    keep_alive_gets(weir.addr(), "/slow?ms=5", 3).await;
    let dead = refused_addr();
    let mut config = weir.handle().shared().snapshot.load().config.as_ref().clone();
    add_routed_pool(&mut config, "dead \"quoted\"", dead.addr(), "/dead");
    weir.handle().reload(config).expect("reload");
    fresh_gets(weir.addr(), "/dead", 2).await;
    let text = scrape(weir.admin()).await;
    assert!(text.contains("pool=\"dead \\\"quoted\\\"\""), "escaped label:\n{text}");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes())
        .expect("feed promtool");
    let output = child.wait_with_output().expect("promtool finishes");
    let report = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "promtool check metrics failed:\n{report}\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pool_size_and_status_failures_are_exported() {
    // Goal: the idle pool gauge shows pooled upstream connections, and responses with a
    // configured failure status count as failures of kind "status". Method: 2 workers,
    // one keep-alive client doing 5 GETs and 3 requests answered 503 with
    // failure_statuses = [503] (passive ejection off, so the backend stays in).
    let backend = TestBackend::start("a").await;
    let weir = Balancer::with_admin(&[backend.addr()], |config| {
        config.pools[0].passive.failure_statuses = weir::config::StatusSet::range(503, 503);
        config.pools[0].passive.consecutive_failures = 0;
    });
    let statuses = keep_alive_gets(weir.addr(), "/", 5).await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let statuses = keep_alive_gets(weir.addr(), "/status/503", 3).await;
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    let labels = [("pool", "web"), ("backend", &*backend.addr().to_string())];
    let mut status = labels.to_vec();
    status.push(("kind", "status"));
    let text = scrape_until(weir.admin(), "weir_backend_failures_total", &status, 3.0).await;
    assert_eq!(metric(&text, "weir_backend_failures_total", &status), Some(3.0));
    // The two client connections may land on one worker or on both, and each worker
    // pools its own upstream connection.
    let pooled = metric(&text, "weir_backend_idle_connections", &labels).expect("gauge");
    let opened = metric(&text, "weir_backend_connections_opened_total", &labels).expect("opened");
    assert!((1.0..=2.0).contains(&pooled) && pooled <= opened, "idle {pooled}, opened {opened}");
}
