//! HTTP probes (`[pool.health] type = "http"`) speak what the pool's requests speak: on
//! an `auto` or `h2` pool they offer ALPN `h2` (with `http/1.1` on `auto`) and send the
//! `GET` over HTTP/2 when the backend chooses h2; on an `h2c` pool, HTTP/2 with prior
//! knowledge; an `http1` pool keeps HTTP/1.1. Same status rule either way.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::h2_backend::H2Backend;
use crate::support::tls::{https_config, trusting, Pki, TlsBackend};
use crate::support::tonic_server::{tls_config, TonicServer};
use crate::support::Balancer;
use weir::config::{BackendProtocol, Config, HealthConfig};

/// Far above a loaded machine's handshake: the tests wait on what the backend saw.
const LONG: Duration = Duration::from_secs(10);

/// HTTP probes of `path` every 100 ms, `threshold` results in a row to change state.
fn probes(path: &str, threshold: u32) -> HealthConfig {
    HealthConfig {
        path: path.to_string(),
        interval: Duration::from_millis(100),
        timeout: LONG,
        healthy_threshold: threshold,
        unhealthy_threshold: threshold,
        ..HealthConfig::default()
    }
}

/// One pool over the `https://` backend `addr` trusting `pki`, speaking `protocol`, with
/// `health`.
fn tls_pool(
    addr: SocketAddr,
    pki: &Pki,
    protocol: BackendProtocol,
    health: HealthConfig,
) -> Config {
    let mut config = https_config(addr, trusting(pki));
    config.pools[0].protocol = protocol;
    config.pools[0].health = Some(health);
    config
}

fn probe_failures(weir: &Balancer, addr: SocketAddr) -> u64 {
    weir.backend_total(addr, |stats| stats.probe_failures.get())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probes_reach_an_h2_only_tls_backend_on_auto_and_h2_pools() {
    // Goal: a TLS backend whose ALPN list is only `h2` passes HTTP probes on an `auto`
    // pool and on an `h2` pool (it failed the handshake, offered only `http/1.1`, or got
    // HTTP/1.1 inside h2). Method: an HTTP/2 server over TLS offering only h2; probes
    // of `/name` every 100 ms; the server receives them as HTTP/2 streams, no probe
    // fails, and the backend stays healthy.
    for protocol in [BackendProtocol::Auto, BackendProtocol::H2] {
        let pki = Pki::new("probe-h2-only");
        let backend = H2Backend::start_tls("b1", tls_config("s", &pki, &["h2"])).await;
        let weir = Balancer::start(tls_pool(backend.addr(), &pki, protocol, probes("/name", 1)));
        let streams = |_: &Balancer| backend.counts.streams.load(Ordering::SeqCst) >= 3;
        assert!(weir.wait_for(LONG, streams).await.is_some(), "{protocol:?}: no probe");
        let status = weir.status(backend.addr());
        assert_eq!(probe_failures(&weir, backend.addr()), 0, "{protocol:?}: {}", status.reason);
        assert!(status.healthy, "{protocol:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_status_over_http2_marks_the_backend_down() {
    // Goal: over HTTP/2, a status outside `expect_status` fails the probe as over
    // HTTP/1.1. Method: an h2-only TLS backend answering `/status?503` with 503, one
    // failed probe to go down; the backend goes unhealthy, the reason naming the
    // status; then a reload probing `/status?204` brings it back.
    let pki = Pki::new("probe-h2-status");
    let backend = H2Backend::start_tls("b1", tls_config("s", &pki, &["h2"])).await;
    let addr = backend.addr();
    let weir =
        Balancer::start(tls_pool(addr, &pki, BackendProtocol::Auto, probes("/status?503", 1)));
    let down = |weir: &Balancer| !weir.status(addr).healthy;
    assert!(weir.wait_for(LONG, down).await.is_some(), "still healthy");
    let reason = weir.status(addr).reason;
    assert!(reason.contains("status 503"), "{reason}");
    let passing = probes("/status?204", 1);
    weir.reload(tls_pool(addr, &pki, BackendProtocol::Auto, passing)).expect("reload");
    let up = |weir: &Balancer| weir.status(addr).healthy;
    assert!(weir.wait_for(LONG, up).await.is_some(), "{}", weir.status(addr).reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probes_on_an_h2c_pool_speak_http2_with_prior_knowledge() {
    // Goal: on an `h2c` pool an HTTP probe speaks cleartext HTTP/2, as the requests do,
    // so a backend that speaks only HTTP/2 passes. Method: an h2c-only server; probes
    // of `/name` reach it as HTTP/2 streams and pass; `/status?500` fails them.
    let backend = H2Backend::start("b1", None).await;
    let addr = backend.addr();
    let h2c = |path: &str| {
        let mut config = crate::support::config_for(&[addr]);
        config.pools[0].protocol = BackendProtocol::H2c;
        config.pools[0].health = Some(probes(path, 1));
        config
    };
    let weir = Balancer::start(h2c("/name"));
    let streams = |_: &Balancer| backend.counts.streams.load(Ordering::SeqCst) >= 3;
    assert!(weir.wait_for(LONG, streams).await.is_some(), "no probe");
    assert_eq!(probe_failures(&weir, addr), 0, "{}", weir.status(addr).reason);
    weir.reload(h2c("/status?500")).expect("reload");
    assert!(weir.wait_for(LONG, |weir| !weir.status(addr).healthy).await.is_some());
    assert!(weir.status(addr).reason.contains("status 500"), "{}", weir.status(addr).reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_pool_probes_in_http11_and_an_auto_pool_in_the_backends_choice() {
    // Goal: the probe's protocol follows the pool: `http1` keeps HTTP/1.1 even to a
    // backend that offers h2; `auto` offers both and uses HTTP/2 when the backend picks
    // it. Method: a tonic server over TLS offering `h2, http/1.1` records the HTTP
    // version of each request; probes of a path it answers 200.
    let cases = [
        (BackendProtocol::Http1, http::Version::HTTP_11),
        (BackendProtocol::Auto, http::Version::HTTP_2),
    ];
    for (protocol, expected) in cases {
        let pki = Pki::new("probe-version");
        let server = TonicServer::start_tls("s", &pki, &["h2", "http/1.1"]).await;
        let health = probes("/test.Echo/Version", 1);
        let weir = Balancer::start(tls_pool(server.addr, &pki, protocol, health));
        let probed = |_: &Balancer| server.versions().len() >= 3;
        assert!(weir.wait_for(LONG, probed).await.is_some(), "{protocol:?}: no probe");
        let versions = server.versions();
        assert!(versions.iter().all(|version| *version == expected), "{protocol:?}: {versions:?}");
        assert_eq!(probe_failures(&weir, server.addr), 0, "{}", weir.status(server.addr).reason);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_pools_probe_fails_when_the_backend_does_not_choose_h2() {
    // Goal: on an `h2` pool a probe fails, as requests do, when the backend answers the
    // TLS handshake without choosing `h2` (no ALPN at all); it does not fall back to
    // HTTP/1.1 and call a backend healthy that no request can use. Method: an HTTP/1.1
    // TLS backend with no ALPN configured; probes every 100 ms; the backend is marked
    // down with the reason, and it saw no HTTP/1.1 probe request.
    let pki = Pki::new("probe-no-alpn");
    let issued = pki.server(&["localhost", "127.0.0.1"], "s");
    let backend = TlsBackend::start("b1", pki.server_config(&issued, false)).await;
    let weir = Balancer::start(tls_pool(backend.addr(), &pki, BackendProtocol::H2, probes("/", 1)));
    let down = |weir: &Balancer| !weir.status(backend.addr()).healthy;
    assert!(weir.wait_for(LONG, down).await.is_some(), "still healthy");
    let reason = weir.status(backend.addr()).reason;
    assert!(reason.contains("did not choose h2"), "{reason}");
    assert_eq!(backend.requests(), 0, "a probe fell back to HTTP/1.1");
}
