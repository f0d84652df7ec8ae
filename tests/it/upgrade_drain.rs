//! Draining (SIGTERM, or the old process of a binary upgrade) never cuts a keep-alive
//! connection under a client: the next request on it is served with `Connection: close`,
//! and a connection that stays idle closes `DRAIN_IDLE_GRACE` (1 s) later, or by the drain
//! deadline if that comes first.

use crate::support::{config_for, connect, roundtrip, Balancer, TestBackend};

use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::{sleep, Instant};

/// Bound on every wait.
const REACT: Duration = Duration::from_secs(10);
/// Time for the workers to see the drain signal.
const SETTLE: Duration = Duration::from_millis(100);

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

/// Reads until the peer closes; true if it closed (EOF or reset) within [`REACT`].
async fn closes(stream: &mut tokio::net::TcpStream) -> bool {
    let mut sink = [0u8; 64];
    matches!(tokio::time::timeout(REACT, stream.read(&mut sink)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_on_idle_connection_during_drain_gets_connection_close() {
    // Goal: a client that sends on its idle keep-alive connection after the drain began
    // gets an answer, told to close, instead of a cut connection. Method: one request on
    // a keep-alive connection, begin the drain, a second request on the same connection:
    // 200 with Connection: close, then EOF; new connections are refused meanwhile.
    let a = TestBackend::start("A").await;
    let weir = Balancer::front(&a);
    let addr = weir.addr();
    let mut stream = connect(addr).await.expect("connect");
    let first = roundtrip(&mut stream, GET).await.expect("first response");
    assert_eq!((first.status, first.has_connection_close()), (200, false));
    weir.handle().begin_shutdown();
    sleep(SETTLE).await;
    let second = roundtrip(&mut stream, GET).await.expect("a response, not a cut");
    assert_eq!((second.status, second.text().as_str()), (200, "A"));
    assert!(second.has_connection_close(), "the drain says close:\n{second:?}");
    assert!(closes(&mut stream).await, "weir closes after the close response");
    let deadline = Instant::now() + REACT;
    while connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "a draining weir still accepts");
        sleep(SETTLE).await;
    }
    weir.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_closes_by_the_drain_deadline() {
    // Goal: an idle keep-alive connection does not hold a drain past its deadline.
    // Method: drain timeout 300ms, keep-alive timeout 60s; after one request leave the
    // connection idle and shut down: shutdown returns and the connection sees EOF.
    let a = TestBackend::start("A").await;
    let mut config = config_for(&[a.addr()]);
    config.server.drain_timeout = Duration::from_millis(300);
    config.server.keepalive_timeout = Duration::from_secs(60);
    let weir = Balancer::start(config);
    let mut stream = connect(weir.addr()).await.expect("connect");
    assert_eq!(roundtrip(&mut stream, GET).await.expect("response").status, 200);
    tokio::time::timeout(REACT, weir.stop()).await.expect("shutdown ends");
    assert!(closes(&mut stream).await, "the idle connection is closed at the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_closes_after_the_grace_not_the_drain_timeout() {
    // Goal: idle keep-alive clients do not hold a SIGTERM for the whole drain timeout.
    // Method: drain timeout 60s, keep-alive timeout 60s; after one request leave the
    // connection idle and shut down: shutdown returns, and the connection sees EOF, well
    // within REACT (10 s), so after the 1 s grace rather than the 60 s drain timeout.
    assert!(weir::proxy::DRAIN_IDLE_GRACE < REACT);
    let a = TestBackend::start("A").await;
    let mut config = config_for(&[a.addr()]);
    config.server.drain_timeout = Duration::from_secs(60);
    config.server.keepalive_timeout = Duration::from_secs(60);
    let weir = Balancer::start(config);
    let mut stream = connect(weir.addr()).await.expect("connect");
    assert_eq!(roundtrip(&mut stream, GET).await.expect("response").status, 200);
    let shutdown = tokio::spawn(weir.stop());
    assert!(closes(&mut stream).await, "the idle connection is closed after the grace");
    tokio::time::timeout(REACT, shutdown).await.expect("shutdown ends").expect("join");
}
