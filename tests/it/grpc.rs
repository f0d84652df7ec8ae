//! gRPC through weir with an independent stack: grpcio (Python) as the server and the
//! client (`tests/it/support/grpc_peer.py`), weir speaking h2c to the server. Messages
//! are checked as the client got them.

use std::net::SocketAddr;

use crate::support::grpc::{grpc_client, GrpcServer};
use crate::support::Balancer;
use weir::config::BackendProtocol;

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
    let expected = concat!(
        r#"{"unary": {"ok": "unary:hello"}, "#,
        r#""server_stream": {"ok": ["server:0:x", "server:1:x", "server:2:x"]}, "#,
        r#""client_stream": {"ok": "client:a+b+c"}, "#,
        r#""bidi": {"ok": ["bidi:m0", "bidi:m1", "bidi:m2", "bidi:m3", "bidi:m4"]}, "#,
        r#""missing": {"code": "NOT_FOUND", "message": "no such thing"}}"#
    );
    assert_eq!(grpc_client(weir.addr()).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpcio_client_reports_unavailable_when_every_backend_is_down() {
    // Goal: with no backend up, weir's answer is one a gRPC client reads as
    // UNAVAILABLE (14), not UNKNOWN. Method: a pool whose backend refuses connections;
    // every call of the grpcio client fails with UNAVAILABLE and weir's message.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let weir = weir_h2c(&[addr]);
    let got = grpc_client(weir.addr()).await;
    // weir's own message: grpcio maps a bare HTTP 502 to UNAVAILABLE too, but with a
    // message of its own ("Received http2 header with status: 502").
    let weirs = r#"{"code": "UNAVAILABLE", "message": "upstream connect failed: "#;
    assert_eq!(got.matches(weirs).count(), 5, "{got}");
}
