//! The admin listener's HTTP surface: `/api/v1/pools` follows the documented schema,
//! wrong methods get 405 and unknown paths 404, bodies are read by Content-Length on
//! keep-alive connections, `[admin] metrics = false` hides `/metrics`, and `/status` is
//! one self-contained page.

use crate::support::admin::admin_get;
use crate::support::balancer::add_routed_pool;
use crate::support::scrape::SETTLE;
use crate::support::{
    self, connect, raw_request, read_response_for_head, roundtrip, Balancer, TestBackend,
};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::time::{sleep, Instant};

/// Polls `/api/v1/pools` until `done` holds (up to [`SETTLE`]); counters land just
/// after the response reaches the client.
async fn pools_until(admin: std::net::SocketAddr, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SETTLE;
    loop {
        let response = admin_get(admin, "/api/v1/pools").await;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some("application/json"));
        let doc: Value = serde_json::from_slice(&response.body).expect("valid JSON");
        if done(&doc) || Instant::now() >= deadline {
            return doc;
        }
        sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_document_follows_the_schema() {
    // Goal: the JSON API reports every pool and backend with live counters. Method: 4
    // slow requests to pool `slow`, 3 failing ones to pool `failing`; then check the
    // document's shape and values, including p50/p99 from the histogram.
    let web = TestBackend::start("web").await;
    let slow = TestBackend::start("slow").await;
    let failing = TestBackend::start("failing").await;
    let weir = Balancer::with_admin(&[web.addr()], |config| {
        add_routed_pool(config, "slow", slow.addr(), "/slow");
        add_routed_pool(config, "failing", failing.addr(), "/status/");
    });
    let mut stream = connect(weir.addr()).await.expect("connect");
    for path in ["/slow?ms=30"; 4].into_iter().chain(["/status/503"; 3]) {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        roundtrip(&mut stream, req.as_bytes()).await.expect("response");
    }
    let backend = |doc: &Value, pool: usize| doc["pools"][pool]["backends"][0].clone();
    let doc = pools_until(weir.admin(), |doc| {
        backend(doc, 1)["requests"]["2xx"] == 4 && backend(doc, 2)["requests"]["5xx"] == 3
    })
    .await;
    assert_eq!(doc["generation"], 1);
    assert!(doc["time_ms"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "{doc}");
    assert_eq!(doc["frontend"]["requests"]["2xx"], 4);
    assert_eq!(doc["frontend"]["requests"]["5xx"], 3);
    let names: Vec<&str> =
        doc["pools"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web", "slow", "failing"]);
    assert_eq!(doc["pools"][1]["strategy"], "round_robin");

    let b = backend(&doc, 1);
    assert_eq!(b["address"], slow.addr().to_string());
    assert_eq!(b["weight"], 1);
    assert_eq!(b["healthy"], true);
    assert_eq!(b["health"]["state"], "healthy");
    assert_eq!(b["in_flight"], 0);
    for class in ["1xx", "3xx", "4xx", "5xx"] {
        assert_eq!(b["requests"][class], 0, "{class}");
    }
    assert_eq!(b["connections_opened"], 1);
    assert!(b["connections_reused"].as_u64().is_some(), "{b}");
    for kind in ["connect", "timeout", "reset"] {
        assert_eq!(b["failures"][kind], 0, "{kind}");
    }
    assert!(b["bytes_sent"].as_u64().unwrap() > 0);
    assert!(b["bytes_received"].as_u64().unwrap() > 0);
    let p50 = b["latency_ms"]["p50"].as_f64().expect("p50 with samples");
    let p99 = b["latency_ms"]["p99"].as_f64().expect("p99 with samples");
    assert!((25.0..=100.0).contains(&p50) && p50 <= p99, "p50 {p50} p99 {p99}");
    let idle = backend(&doc, 0);
    assert_eq!(idle["latency_ms"]["p50"], Value::Null, "no samples, no quantile");
}

/// Sends `bytes` on `stream` and reads one response.
async fn exchange(stream: &mut tokio::net::TcpStream, bytes: &str) -> support::Response {
    roundtrip(stream, bytes.as_bytes()).await.expect("admin response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_paths_and_bodies_on_one_connection() {
    // Goal: the admin server speaks enough HTTP/1.1 for the write API. Method: on one
    // keep-alive connection, a PUT with a body (405, Allow), then GETs and a HEAD
    // that must parse cleanly after it, then a 404; oversized and chunked bodies are
    // refused with 413 and 411.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::with_admin(&[backend.addr()], |_| {});
    let mut stream = connect(weir.admin()).await.expect("connect admin");
    let body = r#"{"address": "127.0.0.1:1", "weight": 1}"#;
    let put = format!(
        "PUT /api/v1/pools HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = exchange(&mut stream, &put).await;
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD, POST"));
    let error: Value = serde_json::from_slice(&response.body).expect("JSON error");
    assert_eq!(error["error"], "method not allowed");

    let response = exchange(&mut stream, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!((response.status, response.text().as_str()), (200, "ok\n"));
    let response = exchange(&mut stream, "DELETE /metrics HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(response.status, 405);
    let head = "HEAD /status HTTP/1.1\r\nHost: a\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("write HEAD");
    let response = read_response_for_head(&mut stream).await.expect("HEAD response");
    assert_eq!(response.status, 200);
    assert!(response.header("content-length").is_some_and(|n| n != "0"));
    let response = exchange(&mut stream, "GET /nope HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(response.status, 404);
    let response = exchange(&mut stream, "GET /api/v1/nope HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(response.status, 404);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let response = exchange(&mut stream, "GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!((response.status, response.header("location")), (302, Some("/status")));

    let big = "POST /api/v1/pools HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n";
    let raw = String::from_utf8_lossy(&raw_request(weir.admin(), big.as_bytes()).await).to_string();
    assert!(raw.starts_with("HTTP/1.1 413 "), "{raw}");
    let chunked = "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let raw =
        String::from_utf8_lossy(&raw_request(weir.admin(), chunked.as_bytes()).await).to_string();
    assert!(raw.starts_with("HTTP/1.1 411 "), "{raw}");
    let bad = String::from_utf8_lossy(
        &raw_request(weir.admin(), b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").await,
    )
    .to_string();
    assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_off_hides_the_endpoint() {
    // Goal: `[admin] metrics = false` turns /metrics off and leaves the rest on.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::with_admin(&[backend.addr()], |c| c.admin.metrics = false);
    assert_eq!(admin_get(weir.admin(), "/metrics").await.status, 404);
    assert_eq!(admin_get(weir.admin(), "/api/v1/pools").await.status, 200);
    assert_eq!(admin_get(weir.admin(), "/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_is_self_contained() {
    // Goal: /status is one page with no external assets that polls the JSON API.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::with_admin(&[backend.addr()], |_| {});
    let response = admin_get(weir.admin(), "/status").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = response.header("content-security-policy").expect("CSP header");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let page = response.text();
    assert!(page.contains("/api/v1/pools") && page.contains("<svg"), "page polls the API");
    for external in ["http://", "https://", "src=", "<link", "@import", "url("] {
        assert!(!page.contains(external), "page refers to an external asset: {external}");
    }
}
