//! Connections that are not in a request hold no buffers: a connection that has sent
//! nothing yet, and a keep-alive connection between requests (issue #9, item 8).
//!
//! A binary of its own, apart from `tests/it`, because the gauge it reads
//! (`weir::proxy::buffers::held`) counts the buffers of every weir in the process: the
//! other integration tests, running in parallel in one process, would move it.

// The helpers of `tests/it`; this binary uses only a few of them.
#[allow(dead_code, unused_imports)]
#[path = "it/support/mod.rs"]
mod support;

use std::time::Duration;

use support::Balancer;
use support::{connect, roundtrip, TestBackend};
use tokio::net::TcpStream;
use tokio::time::{sleep, Instant};
use weir::proxy::buffers;

/// Connections opened; well past the per-worker free list would not matter here, as
/// the gauge counts buffers held, not allocations.
const CONNECTIONS: usize = 50;
/// How long the gauge may take to settle: the last response reaches the client just
/// before its connection gives its buffers back. Far below any weir timeout, so a
/// connection that waits holding buffers never reaches zero within it.
const SETTLE: Duration = Duration::from_secs(2);

/// Waits until no connection holds buffers; returns the last reading.
async fn held_settles_to_zero() -> usize {
    let deadline = Instant::now() + SETTLE;
    loop {
        let held = buffers::held();
        if held == 0 || Instant::now() >= deadline {
            return held;
        }
        sleep(Duration::from_millis(10)).await;
    }
}

const REQUEST: &[u8] = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_hold_no_buffers() {
    let backend = TestBackend::start("web").await;
    // One worker: it serves connections in the order it accepted them, so once the
    // request sent after the silent connections is answered, every silent connection
    // has been accepted and has started waiting.
    let weir = Balancer::over(&[backend.addr()], |config| config.server.workers = 1);
    let mut silent = Vec::new();
    for _ in 0..CONNECTIONS {
        silent.push(connect(weir.addr()).await.expect("connect"));
    }
    let mut probe = connect(weir.addr()).await.expect("connect");
    assert_eq!(roundtrip(&mut probe, REQUEST).await.expect("response").status, 200);
    assert_eq!(held_settles_to_zero().await, 0, "connections that sent nothing hold buffers");
    // Each sends one request and then waits as an idle keep-alive connection.
    for stream in &mut silent {
        assert_eq!(roundtrip(stream, REQUEST).await.expect("response").status, 200);
    }
    assert_eq!(held_settles_to_zero().await, 0, "idle keep-alive connections hold buffers");
    drop::<Vec<TcpStream>>(silent);
}
