//! Errors weir makes itself: 502 for a refused backend, 504 for a slow one, 408 for a slow
//! request head, 431 for an oversized head. Each must be a short text/plain body that
//! names the cause.

use crate::support::process::{hold_port, HeldPort};
use crate::support::{connect, get_close, read_response, Balancer, Response, TestBackend};

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep, timeout};

/// The short timeouts configured for these tests.
const SHORT: Duration = Duration::from_millis(300);
/// How long the client waits for weir's answer, well past `SHORT`.
const WAIT: Duration = Duration::from_secs(5);

/// Asserts `resp` is `status` with a text/plain body containing `keyword` (any case).
fn assert_error(resp: &Response, status: u16, keyword: &str) {
    let text = resp.text();
    assert_eq!(resp.status, status, "body: {text:?}");
    let content_type = resp.header("Content-Type").unwrap_or("");
    assert!(content_type.starts_with("text/plain"), "Content-Type {content_type:?}");
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains(keyword), "{status} body {text:?} does not name {keyword:?}");
}

/// A loopback address with nothing listening, held ([`HeldPort`]) for as long as the
/// test keeps it: a port released instead could be taken by another test's listener.
fn dead_address() -> HeldPort {
    hold_port()
}

#[tokio::test]
async fn refused_backend_gives_502() {
    // Goal: a backend that refuses connections gives 502 naming the connect failure.
    // Method: point the pool at a port nothing listens on.
    let dead = dead_address();
    let weir = Balancer::over(&[dead.addr()], |_| {});
    let resp = get_close(weir.addr(), "/").await;
    assert_error(&resp, 502, "connect");
}

#[tokio::test]
async fn slow_backend_gives_504() {
    // Goal: a backend slower than response_timeout gives 504 naming the timeout. Method:
    // `/slow?ms=2000` with a 300 ms response timeout.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::over(&[backend.addr()], |c| c.pools[0].response_timeout = SHORT);
    let resp = get_close(weir.addr(), "/slow?ms=2000").await;
    assert_error(&resp, 504, "timeout");
    let ok = get_close(weir.addr(), "/").await;
    assert_eq!(ok.status, 200, "weir stopped serving after a 504");
}

#[tokio::test]
async fn slow_request_head_gives_408() {
    // Goal: a client that stalls mid-head gets 408 and is disconnected. Method: send half
    // a head, wait past a 300 ms header_timeout, read the answer and then EOF.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::over(&[backend.addr()], |c| c.server.header_timeout = SHORT);
    let mut s = connect(weir.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: te").await.unwrap();
    sleep(SHORT * 2).await;
    let resp = timeout(WAIT, read_response(&mut s)).await;
    let resp = resp.expect("408 within the wait").expect("a response");
    assert_error(&resp, 408, "timeout");
    let mut rest = Vec::new();
    let closed = timeout(WAIT, s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "connection still open after the 408");
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn oversized_head_gives_431() {
    // Goal: a head over max_header_bytes, or with more than max_headers fields, gets 431.
    // Method: a 4 KiB limit with an 8 KiB field; a 10-field limit with 20 fields.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::over(&[backend.addr()], |c| {
        c.server.max_header_bytes = 4096;
        c.server.max_headers = 10;
    });
    let big = format!("GET / HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\n\r\n", "x".repeat(8192));
    let many: String = (0..20).map(|i| format!("X-F{i}: {i}\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: test\r\n{many}\r\n");
    for req in [big, many] {
        let mut s = connect(weir.addr()).await.unwrap();
        let _ = s.write_all(req.as_bytes()).await;
        let resp = timeout(WAIT, read_response(&mut s)).await;
        let resp = resp.expect("431 within the wait").expect("a response");
        assert_error(&resp, 431, "header");
    }
    assert_eq!(backend.requests(), 0);
    let ok = get_close(weir.addr(), "/").await;
    assert_eq!(ok.status, 200, "weir stopped serving after a 431");
}
