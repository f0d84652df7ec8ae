//! gRPC through weir with an independent stack: grpcio (Python) as the server and the
//! client (`tests/it/support/grpc_peer.py`), weir speaking h2c to the server (or h2
//! over TLS). Messages are checked as the client got them. Also: idle streams against
//! the stream idle timeout.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::grpc::{grpc_client, idle_call, GrpcServer, EVERY_KIND};
use crate::support::process::hold_port;
use crate::support::tls::{https_config, trusting, Pki};
use crate::support::Balancer;
use weir::config::{BackendProtocol, HealthConfig, ProbeKind};

fn weir_h2c(backends: &[SocketAddr]) -> Balancer {
    Balancer::over(backends, |config| config.pools[0].protocol = BackendProtocol::H2c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_calls_of_every_kind_pass_through_weir() {
    // Goal: the four RPC kinds and a trailers-only error pass through weir between two
    // grpcio peers. Method: unary, server streaming, client streaming, a bidirectional
    // stream that sends each message only after the previous answer came back, and a
    // call the server aborts with NOT_FOUND and a message.
    let server = GrpcServer::start("s").await;
    let weir = weir_h2c(&[server.addr]);
    assert_eq!(grpc_client(weir.addr()).await, EVERY_KIND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpcio_client_reports_unavailable_when_every_backend_is_down() {
    // Goal: with no backend up, weir's answer is one a gRPC client reads as
    // UNAVAILABLE (14), not UNKNOWN. Method: a pool whose backend refuses connections;
    // every call of the grpcio client fails with UNAVAILABLE and weir's message. The
    // port is held for the whole test, so no other test's listener can take it.
    let dead = hold_port();
    let weir = weir_h2c(&[dead.addr()]);
    let got = grpc_client(weir.addr()).await;
    // weir's own message: grpcio maps a bare HTTP 502 to UNAVAILABLE too, but with a
    // message of its own ("Received http2 header with status: 502").
    let weirs = r#"{"code": "UNAVAILABLE", "message": "upstream connect failed: "#;
    assert_eq!(got.matches(weirs).count(), 5, "{got}");
}

/// Every timeout but the stream's, shortened (test only) far below the idle gaps.
const SHORT: Duration = Duration::from_millis(200);
/// The stream idle timeout of the test: well above `SHORT`.
const STREAM_IDLE: Duration = Duration::from_millis(1500);

/// weir over `backend` (h2c), with every timeout that could touch an idle stream set
/// to [`SHORT`] and `stream_idle_timeout` to [`STREAM_IDLE`]. PINGs keep their
/// default: grpcio answers PINGs every 200 ms with GOAWAY `too_many_pings`.
fn weir_short_timeouts(backend: SocketAddr) -> Balancer {
    Balancer::over(&[backend], |config| {
        let server = &mut config.server;
        (server.header_timeout, server.keepalive_timeout) = (SHORT, SHORT);
        (server.body_timeout, server.send_timeout) = (SHORT, SHORT);
        let pool = &mut config.pools[0];
        pool.protocol = BackendProtocol::H2c;
        (pool.response_timeout, pool.read_timeout, pool.idle_timeout) = (SHORT, SHORT, SHORT);
        pool.stream_idle_timeout = STREAM_IDLE;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_grpc_stream_is_bounded_by_the_stream_timeout_alone() {
    // Goal: a bidirectional stream idle longer than every other timeout keeps working;
    // one idle past `stream_idle_timeout` ends with a gRPC error. Method: every other
    // timeout 200 ms, the stream's 1.5 s; grpcio Bidi calls that stay idle before the
    // first message (no response head yet) or between messages (after it).
    let server = GrpcServer::start("s").await;
    let weir = weir_short_timeouts(server.addr);
    let (a, b) = (Duration::from_millis(800), Duration::from_millis(2500));
    let zero = Duration::ZERO;
    let (kept, late_head, late_message) = tokio::join!(
        idle_call(weir.addr(), a, a),
        idle_call(weir.addr(), b, zero),
        idle_call(weir.addr(), zero, b),
    );
    assert_eq!(kept, r#"{"ok": ["bidi:first", "bidi:second"]}"#);
    // Before the head: weir's own answer, in gRPC's shape (the client was the silent
    // side: its request body timed out).
    let deadline = r#"{"code": "DEADLINE_EXCEEDED", "message": "request body timeout"}"#;
    assert_eq!(late_head, deadline);
    // After the head: the stream is reset (INTERNAL_ERROR, code 2).
    let reset = "RST_STREAM (Received RST_STREAM with error code 2)";
    assert!(late_message.starts_with(r#"{"code": "INTERNAL""#), "{late_message}");
    assert!(late_message.contains(reset), "{late_message}");
}

/// The gRPC probes' timeout in [`grpcio_calls_of_every_kind_reach_a_tls_backend_over_h2`]:
/// long enough that no probe times out for a busy machine alone.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_calls_of_every_kind_reach_a_tls_backend_over_h2() {
    // Goal: `protocol = "h2"` speaks HTTP/2 over TLS (ALPN h2) to an https:// backend,
    // and gRPC health probes go over the same TLS. Method: a grpcio server with a
    // certificate of a test CA; the four RPC kinds and a trailers-only error through
    // weir, messages checked; a gRPC probe keeps passing; one TLS connection serves
    // the calls of each worker.
    // Each probe is a new TCP and TLS connection and a call to a Python server: on a
    // busy machine that can take longer than the default probe timeout (1 s), which
    // would count a failure that says nothing about TLS or gRPC. The probes' timeout is
    // therefore far above any such delay, so only a real failure (TLS, ALPN, the
    // call's answer) fails one.
    let pki = Pki::new("grpc-h2");
    let issued = pki.server(&["localhost"], "grpc");
    let mut server = GrpcServer::start_tls("s", &issued.cert, &issued.key).await;
    let weir = Balancer::start({
        let mut config = https_config(server.addr, trusting(&pki));
        let pool = &mut config.pools[0];
        pool.protocol = BackendProtocol::H2;
        let probes = HealthConfig { kind: ProbeKind::Grpc, ..HealthConfig::default() };
        let (interval, timeout) = (Duration::from_millis(100), PROBE_TIMEOUT);
        pool.health = Some(HealthConfig { interval, timeout, ..probes });
        config
    });
    assert_eq!(grpc_client(weir.addr()).await, EVERY_KIND);
    let opened = weir.backend_total(server.addr, |stats| stats.connections_opened.get());
    assert!((1..=2).contains(&opened), "{opened} upstream connections for 5 calls");
    // Probes over TLS reached the server's health service, and passed. A backend's
    // probes run one after the other, and weir counts each one's result before the next
    // starts: once the server answered three, weir had the result of at least two.
    let deadline = tokio::time::Instant::now() + PROBE_TIMEOUT * 2;
    while server.counts().await.checks.len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "under three probes reached the server");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let probed = weir.backend_total(server.addr, |stats| stats.probe_failures.get());
    assert_eq!(probed, 0, "{}", weir.status(server.addr).reason);
    assert!(weir.status(server.addr).healthy);
}
