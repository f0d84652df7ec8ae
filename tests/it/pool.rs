//! Upstream connection pooling: many short client connections share one upstream
//! connection per worker, and a backend that closes idle connections never costs a client
//! an error.

use crate::support::{
    connect, get_close, hash_bytes, roundtrip, upload_summary, BackendOptions, Balancer,
    TestBackend,
};

use std::time::Duration;
use tokio::time::sleep;

/// Sequential client connections in the reuse test.
const SEQUENTIAL_REQUESTS: usize = 1_000;
/// Workers configured; at most one upstream connection each is expected.
const WORKERS: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_connections_reuse_upstream() {
    // Goal: upstream connections are pooled across client connections. Method: 1,000
    // sequential requests, each on a new client connection with `Connection: close`; the
    // backend must accept at most one connection per worker.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::over(&[backend.addr()], |c| c.server.workers = WORKERS);
    for i in 0..SEQUENTIAL_REQUESTS {
        let resp = get_close(weir.addr(), "/").await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "b"), "request {i}");
    }
    assert_eq!(backend.requests(), SEQUENTIAL_REQUESTS);
    let accepted = backend.accepted();
    assert!(
        accepted <= WORKERS,
        "backend accepted {accepted} connections for {SEQUENTIAL_REQUESTS} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_closing_idle_connections_causes_no_errors() {
    // Goal: a pooled connection the backend closed while idle is never used for a
    // request that then fails. Method: the backend closes after 50 ms idle; send 20
    // GETs and POSTs 100-200 ms apart, on new and on kept-alive client connections.
    let opts = BackendOptions {
        idle_close_after: Some(Duration::from_millis(50)),
        ..BackendOptions::default()
    };
    let backend = TestBackend::start_with("b", opts).await;
    let weir = Balancer::front(&backend);
    let mut kept = connect(weir.addr()).await.unwrap();
    let body = b"payload";
    let post = format!(
        "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\npayload",
        body.len()
    );
    for i in 0..20u64 {
        sleep(Duration::from_millis(100 + (i * 37) % 101)).await;
        let resp = match i % 3 {
            0 => get_close(weir.addr(), "/").await,
            1 => roundtrip(&mut kept, b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
                .await
                .unwrap_or_else(|e| panic!("request {i}: {e}")),
            _ => roundtrip(&mut kept, post.as_bytes())
                .await
                .unwrap_or_else(|e| panic!("request {i}: {e}")),
        };
        assert_eq!(resp.status, 200, "request {i}: {}", resp.text());
        if i % 3 == 2 {
            assert_eq!(resp.text(), upload_summary(7, hash_bytes(body)), "request {i}");
        }
    }
    assert!(backend.accepted() > 1, "the backend's idle closes did not happen");
}
