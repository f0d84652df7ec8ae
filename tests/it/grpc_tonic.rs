//! gRPC through weir with tonic (Rust's gRPC stack, hyper under it) as the client and
//! the server, and across stacks with grpcio (`grpc_peer.py`): every RPC kind and a
//! trailers-only error, over h2c and over TLS backends (`protocol = "h2"`), with the
//! messages checked as the client got them; a tonic client's cancel reaching the tonic
//! server.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::support::grpc::{every_kind, grpc_client, GrpcServer};
use crate::support::tls::{https_config, trusting, Pki};
use crate::support::tonic_client::{hold_and_cancel, tonic_client};
use crate::support::tonic_server::TonicServer;
use crate::support::Balancer;
use weir::config::BackendProtocol;

fn weir_h2c(backend: SocketAddr) -> Balancer {
    Balancer::over(&[backend], |config| config.pools[0].protocol = BackendProtocol::H2c)
}

/// weir over the `https://` backend `backend` (a certificate of `pki`) with `protocol`.
fn weir_tls(backend: SocketAddr, pki: &Pki, protocol: BackendProtocol) -> Balancer {
    let mut config = https_config(backend, trusting(pki));
    config.pools[0].protocol = protocol;
    Balancer::start(config)
}

/// The grpcio client's line, as JSON.
async fn grpcio_client(addr: SocketAddr) -> Value {
    serde_json::from_str(&grpc_client(addr).await).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_calls_of_every_kind_pass_through_weir_over_h2c() {
    // Goal: the four RPC kinds and a trailers-only NOT_FOUND pass through weir between
    // a tonic client and a tonic server. Method: unary, server streaming, client
    // streaming, a bidirectional call that sends each message only after the previous
    // answer, and a call the server fails with NOT_FOUND and a message; the answers
    // are those the grpcio peers get from each other.
    let server = TonicServer::start("s").await;
    let weir = weir_h2c(server.addr);
    assert_eq!(tonic_client(weir.addr()).await, every_kind());
    // Every call reached the server over HTTP/2 (it accepts HTTP/1.1 too).
    let versions = server.versions();
    assert_eq!(versions.len(), 5, "{versions:?}");
    assert!(versions.iter().all(|version| *version == http::Version::HTTP_2), "{versions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_calls_of_every_kind_reach_a_tls_tonic_backend_over_h2() {
    // Goal: the same through `protocol = "h2"` to a tonic server over TLS (ALPN h2),
    // and one TLS connection per worker at most serves the calls.
    let pki = Pki::new("tonic-h2");
    let server = TonicServer::start_tls("s", &pki, &["h2"]).await;
    let weir = weir_tls(server.addr, &pki, BackendProtocol::H2);
    assert_eq!(tonic_client(weir.addr()).await, every_kind());
    let opened = weir.backend_total(server.addr, |stats| stats.connections_opened.get());
    assert!((1..=2).contains(&opened), "{opened} upstream connections for 5 calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_client_and_a_grpcio_server_meet_through_weir() {
    // Goal: across stacks, tonic's client and grpcio's server agree through weir on
    // every RPC kind (h2c to the server).
    let server = GrpcServer::start("s").await;
    let weir = weir_h2c(server.addr);
    assert_eq!(tonic_client(weir.addr()).await, every_kind());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpcio_client_and_a_tonic_server_meet_through_weir() {
    // Goal: across stacks the other way, over h2c and over TLS (`protocol = "h2"`):
    // grpcio's client gets from tonic's server what it gets from grpcio's.
    let server = TonicServer::start("s").await;
    let weir = weir_h2c(server.addr);
    assert_eq!(grpcio_client(weir.addr()).await, every_kind());
    let pki = Pki::new("tonic-grpcio");
    let tls = TonicServer::start_tls("t", &pki, &["h2"]).await;
    let weir = weir_tls(tls.addr, &pki, BackendProtocol::H2);
    assert_eq!(grpcio_client(weir.addr()).await, every_kind());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_client_cancel_reaches_the_tonic_server() {
    // Goal: a client that drops a call (tonic resets the stream with CANCEL) ends the
    // call at the server too, within 100 ms measured at the server. Method: a
    // server-streaming call the server answers once and then holds open; the client
    // drops it after the first answer; the server notes when its side was dropped.
    let server = TonicServer::start("s").await;
    let weir = weir_h2c(server.addr);
    let (cancelled, _open) = hold_and_cancel(weir.addr()).await;
    let seen = weir.wait_for(Duration::from_secs(5), |_| server.held_dropped().is_some()).await;
    assert!(seen.is_some(), "the server never saw the call end");
    let dropped = server.held_dropped().expect("a time");
    let took = dropped.saturating_duration_since(cancelled);
    assert!(took < Duration::from_millis(100), "the cancel took {took:?}");
}
