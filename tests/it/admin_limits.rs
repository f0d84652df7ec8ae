//! The admin listener cannot be locked out by connections that send nothing: one client
//! address holds only a few slots, a few reserve slots keep `/healthz` and `/metrics`
//! answering when every other slot is taken, and a connection that sends no byte is
//! closed after the first-byte deadline.

use crate::support::{Balancer, TestBackend};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use weir::admin::http::{ADMIN_FIRST_BYTE_TIMEOUT, ADMIN_REQUEST_TIMEOUT};
use weir::admin::slots::{MAX_ADMIN_CONNECTIONS, MAX_ADMIN_CONNECTIONS_PER_CLIENT};

/// Opens a TCP connection to `to` from loopback address 127.0.0.`host` (Linux routes
/// all of 127.0.0.0/8 to `lo`, so each is a distinct client to weir).
async fn connect_from(host: u8, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)), 0);
    socket.bind(from).expect("bind a loopback source address");
    socket.connect(to).await.expect("connect to admin")
}

/// Opens `count` connections from 127.0.0.`host` that never send a byte.
async fn silent(host: u8, to: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        held.push(connect_from(host, to).await);
    }
    held
}

/// Runs curl from 127.0.0.`host` against `path`; returns the status code and the body.
async fn curl_from(host: u8, admin: SocketAddr, path: &str) -> (u16, String) {
    let url = format!("http://{admin}{path}");
    let interface = format!("127.0.0.{host}");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-s", "-m", "10", "--interface", &interface, "-w", "\n%{http_code}", &url])
            .output()
            .expect("curl runs")
    })
    .await
    .expect("curl task");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Checks that `/healthz` and `/metrics` answer curl from 127.0.0.`host`.
async fn healthz_and_metrics_answer(host: u8, admin: SocketAddr) {
    assert_eq!(curl_from(host, admin, "/healthz").await, (200, "ok\n".to_string()));
    let (status, body) = curl_from(host, admin, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("weir_requests_total"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_from_one_address_lock_out_no_one() {
    // Goal: the cap's worth of silent connections from one address leaves the listener
    // answering. Method: 64 silent connections from 127.0.0.1, then curl from 127.0.0.2.
    let backend = TestBackend::start("web").await;
    let weir = Balancer::with_admin(&[backend.addr()], |_| {});
    let _held = silent(1, weir.admin(), MAX_ADMIN_CONNECTIONS).await;
    healthz_and_metrics_answer(2, weir.admin()).await;
    let (status, _) = curl_from(2, weir.admin(), "/api/v1/pools").await;
    assert_eq!(status, 200, "another client still gets the whole API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_metrics_answer_when_every_slot_is_taken() {
    // Goal: with every ordinary slot held (many addresses, each at its own cap), the
    // reserve still answers health checks and scrapes, and only those.
    let backend = TestBackend::start("web").await;
    let weir = Balancer::with_admin(&[backend.addr()], |_| {});
    let clients = MAX_ADMIN_CONNECTIONS.div_ceil(MAX_ADMIN_CONNECTIONS_PER_CLIENT);
    let mut held = Vec::new();
    for host in 0..clients {
        let host = 2 + u8::try_from(host).expect("few clients");
        held.extend(silent(host, weir.admin(), MAX_ADMIN_CONNECTIONS_PER_CLIENT).await);
    }
    healthz_and_metrics_answer(1, weir.admin()).await;
    let (status, body) = curl_from(1, weir.admin(), "/api/v1/pools").await;
    assert_eq!(status, 503, "the reserve serves only /healthz and /metrics: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_after_the_first_byte_deadline() {
    let backend = TestBackend::start("web").await;
    let weir = Balancer::with_admin(&[backend.addr()], |_| {});
    let mut held = silent(1, weir.admin(), MAX_ADMIN_CONNECTIONS).await;
    // Bounded well past the deadline and well short of the 30 s keep-alive idle timeout,
    // which was the only bound before.
    let limit = ADMIN_FIRST_BYTE_TIMEOUT * 3;
    for stream in &mut held {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(limit, stream.read(&mut byte)).await;
        let closed = matches!(read, Ok(Ok(0)) | Ok(Err(_)));
        assert!(closed, "a silent connection is still open after {limit:?}: {read:?}");
    }
    // Once they are gone, their address is served again.
    healthz_and_metrics_answer(1, weir.admin()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_trickles_past_the_request_deadline_gets_408() {
    use tokio::io::AsyncWriteExt;
    let backend = TestBackend::start("web").await;
    let weir = Balancer::with_admin(&[backend.addr()], |_| {});
    let mut stream = connect_from(1, weir.admin()).await;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n").await.expect("write");
    let mut answer = Vec::new();
    let limit = ADMIN_REQUEST_TIMEOUT * 3;
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection is still open after {limit:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
}
