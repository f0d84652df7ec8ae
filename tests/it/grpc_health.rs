//! gRPC health checks (`[pool.health] type = "grpc"`) against grpcio servers running
//! grpcio-health-checking's `grpc.health.v1.Health` and tonic servers running
//! tonic-health's, with RPCs from a grpcio client through weir (h2c) all along.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::support::grpc::{Counts, GrpcLoad, GrpcServer, HealthPeer};
use crate::support::tonic_server::TonicServer;
use crate::support::Balancer;
use weir::config::{BackendProtocol, HealthConfig, ProbeKind};

/// Long enough that, between weir taking a backend out and the test looking, no
/// further probe is answered, even on a busy machine.
const INTERVAL: Duration = Duration::from_millis(300);
/// How long a switch may take before the test gives up (many intervals).
const LIMIT: Duration = Duration::from_secs(20);

fn grpc_probes(service: &str) -> HealthConfig {
    HealthConfig {
        kind: ProbeKind::Grpc,
        service: service.to_string(),
        interval: INTERVAL,
        timeout: Duration::from_secs(2),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        ..HealthConfig::default()
    }
}

fn weir_probing(backends: &[SocketAddr], health: HealthConfig) -> Balancer {
    Balancer::over(backends, |config| {
        config.pools[0].protocol = BackendProtocol::H2c;
        config.pools[0].health = Some(health);
    })
}

/// Waits until `server`'s `Who` count passes `count`.
async fn who_past(server: &mut impl HealthPeer, count: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let who = server.counts().await.who;
        if who > count {
            return who;
        }
        assert!(tokio::time::Instant::now() < deadline, "stuck at {who} calls");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until weir's health of `backend` is `healthy`; returns when weir changed it.
async fn health_becomes(weir: &Balancer, backend: SocketAddr, healthy: bool) -> SystemTime {
    let waited = weir.wait_for(LIMIT, |weir| weir.status(backend).healthy == healthy).await;
    assert!(waited.is_some(), "{backend} never became healthy = {healthy}");
    weir.status(backend).since
}

/// Sets `server`'s health to `state` and waits until weir's health of it is `healthy`:
/// the server must have answered exactly 2 probes `state` in between (the thresholds:
/// so weir switched within 2 probe intervals). Returns the server's counts then.
async fn switch(
    weir: &Balancer,
    server: &mut impl HealthPeer,
    state: &str,
    healthy: bool,
) -> Counts {
    let switched = server.set_health("test.Echo", state).await;
    let changed = health_becomes(weir, server.addr(), healthy).await;
    let counts = server.counts().await;
    let probes = counts.checks_between(state, switched, changed);
    let took = changed.duration_since(switched);
    assert_eq!(probes, 2, "healthy = {healthy} after 2 probes answered {state} ({took:?})");
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_serving_backend_leaves_rotation_and_returns_with_no_failed_rpc() {
    // Goal: a backend switched to NOT_SERVING is out within 2 probe intervals and back
    // within 2 of SERVING, and no RPC fails meanwhile. Method: two grpcio servers (see
    // `leaves_and_returns`).
    let (mut a, mut b) = (GrpcServer::start("a").await, GrpcServer::start("b").await);
    leaves_and_returns(&mut a, &mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_health_server_flipped_not_serving_leaves_rotation_and_returns() {
    // Goal: the same with tonic servers running tonic-health's stock service, switched
    // through its `HealthReporter`.
    let (mut a, mut b) = (TonicServer::start("a").await, TonicServer::start("b").await);
    leaves_and_returns(&mut a, &mut b).await;
}

/// Probes every 300 ms (2 failures out, 2 passes back) over `a` and `b`; a grpcio
/// client calls Who through weir from 4 threads all along; b goes NOT_SERVING, then
/// SERVING. The intervals are counted as the probes b answered between the switch and
/// the moment weir changed b's health.
async fn leaves_and_returns(a: &mut impl HealthPeer, b: &mut impl HealthPeer) {
    let weir = weir_probing(&[a.addr(), b.addr()], grpc_probes("test.Echo"));
    let load = GrpcLoad::start(weir.addr()).await;
    who_past(b, 20).await;
    let counts = switch(&weir, b, "NOT_SERVING", false).await;
    // Out of rotation: a serves on while b gets no new call (at most the 4 in flight).
    let a_calls = a.counts().await.who;
    who_past(a, a_calls + 200).await;
    let late = b.counts().await.who - counts.who;
    assert!(late <= 4, "{late} calls reached b after it was out");
    let counts = switch(&weir, b, "SERVING", true).await;
    // Back in rotation: b serves calls again.
    who_past(b, counts.who + 20).await;
    let (ok, failed) = load.stop().await;
    assert_eq!(failed, serde_json::json!({}), "no RPC failed; ok: {ok}");
    assert!(ok["a"].as_u64() > Some(0) && ok["b"].as_u64() > Some(0), "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_service_or_a_server_without_health_fails_the_probe() {
    // Goal: only SERVING passes. Method: a grpcio server probed for a service it does
    // not know (it answers NOT_FOUND) goes down; the same server probed for the whole
    // server ("") stays up; an HTTP/2 server without the health service (it answers
    // 200 with a body and no grpc-status) goes down.
    let mut server = GrpcServer::start("s").await;
    let unknown = weir_probing(&[server.addr], grpc_probes("no.Such"));
    health_becomes(&unknown, server.addr, false).await;
    let reason = unknown.status(server.addr).reason;
    assert!(reason.contains("grpc-status 5"), "{reason}");
    let started = SystemTime::now();
    let whole = weir_probing(&[server.addr], grpc_probes(""));
    // Three SERVING answers (only this weir asks about ""): two failures would have
    // taken the backend out by then.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while server.counts().await.checks_between("SERVING", started, SystemTime::now()) < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no probes of the whole server");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = whole.status(server.addr);
    assert!(status.healthy, "{}", status.reason);
    let plain = crate::support::h2_backend::H2Backend::start("plain", None).await;
    let without = weir_probing(&[plain.addr()], grpc_probes(""));
    health_becomes(&without, plain.addr(), false).await;
    let reason = without.status(plain.addr()).reason;
    assert!(reason.contains("no grpc-status"), "{reason}");
}
