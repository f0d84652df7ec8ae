//! The keep-alive idle timeout and the response timeout on connections that serve many
//! requests. A connection keeps one timer for its life and re-arms it lazily
//! (`proxy::timer::Alarm`): these tests pin down that a later deadline is honoured, an
//! earlier one is not missed, and a stale one never closes a connection early.

use crate::support::{connect, roundtrip, Balancer, TestBackend};

use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::time::{sleep, timeout};

/// A keep-alive request.
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
/// How long a test waits for something that must happen, far past any timeout here.
const WAIT: Duration = Duration::from_secs(5);

/// Reads until EOF; the time it took, or `None` if the connection stayed open `WAIT`.
async fn time_to_close(s: &mut tokio::net::TcpStream) -> Option<Duration> {
    let start = Instant::now();
    let mut rest = Vec::new();
    timeout(WAIT, s.read_to_end(&mut rest)).await.ok()?.ok()?;
    Some(start.elapsed())
}

#[tokio::test]
async fn each_request_pushes_the_keepalive_deadline_back() {
    // Goal: the idle timeout counts from the last response, not from the first request.
    // Method: keepalive_timeout 1 s; six requests 250 ms apart (1.5 s in all, past one
    // timeout, with 750 ms to spare for a stalled client) all succeed on one connection;
    // then it closes after 1 s idle.
    let keepalive = Duration::from_secs(1);
    let backend = TestBackend::start("b").await;
    let weir = Balancer::over(&[backend.addr()], |c| c.server.keepalive_timeout = keepalive);
    let mut s = connect(weir.addr()).await.unwrap();
    let mut last_sent = Instant::now();
    for i in 0..6 {
        // Before the request: weir's idle clock starts later (once it sent the
        // response), so a client slow to read cannot make the close look early.
        last_sent = Instant::now();
        let resp = roundtrip(&mut s, GET).await.unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(resp.status, 200, "request {i}");
        sleep(Duration::from_millis(250)).await;
    }
    let closed = time_to_close(&mut s).await.expect("the idle connection closed");
    let idle = last_sent.elapsed();
    assert!(idle >= keepalive, "closed after {idle:?} idle, before {keepalive:?}");
    assert!(closed < WAIT, "{closed:?}");
    assert_eq!(backend.requests(), 6);
}

#[tokio::test]
async fn a_response_timeout_fires_on_a_connection_armed_for_a_longer_idle_wait() {
    // Goal: a response deadline earlier than the connection's armed idle deadline is not
    // missed. Method: keepalive_timeout 60 s, response_timeout 300 ms; a fast request,
    // an idle pause, then a request the backend answers after 3 s: 504 well before that.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::over(&[backend.addr()], |c| {
        c.server.keepalive_timeout = Duration::from_secs(60);
        c.pools[0].response_timeout = Duration::from_millis(300);
    });
    let mut s = connect(weir.addr()).await.unwrap();
    assert_eq!(roundtrip(&mut s, GET).await.unwrap().status, 200);
    sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let slow = b"GET /slow?ms=3000 HTTP/1.1\r\nHost: test\r\n\r\n";
    let resp = timeout(WAIT, roundtrip(&mut s, slow)).await.expect("an answer").unwrap();
    let took = start.elapsed();
    assert_eq!(resp.status, 504, "body {:?}", resp.text());
    assert!(took >= Duration::from_millis(300), "timed out early: {took:?}");
    assert!(took < Duration::from_millis(2500), "the 300 ms timeout was missed: {took:?}");
}

#[tokio::test]
async fn a_stale_response_deadline_does_not_close_an_idle_connection() {
    // Goal: the timer armed for a response deadline, which fires during the idle wait
    // after that response, re-arms for the idle deadline instead of closing. Method:
    // response_timeout 200 ms, keepalive_timeout 3 s; a request, 800 ms idle (four
    // response timeouts), a second request on the same connection.
    let backend = TestBackend::start("b").await;
    let weir = Balancer::over(&[backend.addr()], |c| {
        c.server.keepalive_timeout = Duration::from_secs(3);
        c.pools[0].response_timeout = Duration::from_millis(200);
    });
    let mut s = connect(weir.addr()).await.unwrap();
    assert_eq!(roundtrip(&mut s, GET).await.unwrap().status, 200);
    sleep(Duration::from_millis(800)).await;
    // Before the request: weir's idle clock starts later (once it sent the response).
    let sent = Instant::now();
    let second = roundtrip(&mut s, GET).await.expect("the connection is still open");
    assert_eq!(second.status, 200);
    assert_eq!(backend.requests(), 2);
    time_to_close(&mut s).await.expect("closed after the idle timeout");
    let closed = sent.elapsed();
    assert!(closed >= Duration::from_secs(3), "closed early: {closed:?}");
}
