//! Upstream TLS end to end: weir in front of an HTTPS backend (certificates made by rcgen
//! at test time), checked at the backend (accepted connections, full and resumed
//! handshakes), in weir's responses and in its metrics.

use crate::support::tls::{https_config, trusting, Pki, TlsBackend};
use crate::support::{self, get_close, Balancer};

use std::time::Duration;

use weir::tls::ClientSettings;

/// Sequential client connections in the pooling test.
const SEQUENTIAL_REQUESTS: usize = 1_000;
/// Workers configured by [`https_config`]; at most one upstream connection each.
const WORKERS: usize = 2;
/// Requests in the resumption test, each on a new upstream connection.
const UNPOOLED_REQUESTS: usize = 20;

/// `weir_backend_tls_handshakes_total` for the backend at `addr`.
fn handshakes(backend: &TlsBackend, resumed: bool) -> String {
    format!(
        "weir_backend_tls_handshakes_total{{pool=\"web\",backend=\"{}\",resumed=\"{resumed}\"}}",
        backend.addr()
    )
}

fn tls_failures(backend: &TlsBackend, reason: &str) -> String {
    format!(
        "weir_backend_tls_failures_total{{pool=\"web\",backend=\"{}\",reason=\"{reason}\"}}",
        backend.addr()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_use_one_tls_connection_per_worker() {
    // Goal: TLS connections are pooled like plain ones. Method: 1,000 requests, each on
    // a new client connection; the HTTPS backend must accept at most one connection
    // per worker, and every request must be answered by it.
    let pki = Pki::new("pool");
    let backend =
        TlsBackend::start("b", pki.server_config(&pki.server(&["localhost"], "b"), false)).await;
    let lb = Balancer::start(https_config(backend.addr(), trusting(&pki)));
    for i in 0..SEQUENTIAL_REQUESTS {
        let resp = get_close(lb.addr(), "/").await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "b"), "request {i}");
    }
    assert_eq!(backend.requests(), SEQUENTIAL_REQUESTS);
    let accepted = backend.accepted();
    assert!(accepted <= WORKERS, "{accepted} TLS connections for {SEQUENTIAL_REQUESTS} requests");
    let made = backend.full_handshakes() + backend.resumed_handshakes();
    assert_eq!(made, accepted);
    let opened = lb.metric(&handshakes(&backend, false)).unwrap()
        + lb.metric(&handshakes(&backend, true)).unwrap();
    assert_eq!(opened as usize, accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_resume_on_every_worker() {
    // Goal: the session cache is per backend and shared by the workers, so after one full
    // handshake every new connection resumes, whichever worker makes it. Method: no
    // pooling (`max_idle = 0`), 20 requests on new client connections (spread over both
    // workers by the kernel); one full handshake, the rest resumed, at the backend and
    // in weir's counters.
    let pki = Pki::new("resume");
    let backend =
        TlsBackend::start("r", pki.server_config(&pki.server(&["localhost"], "r"), false)).await;
    let mut config = https_config(backend.addr(), trusting(&pki));
    config.pools[0].max_idle = 0;
    let lb = Balancer::start(config);
    for i in 0..UNPOOLED_REQUESTS {
        let resp = get_close(lb.addr(), "/").await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "r"), "request {i}");
    }
    assert_eq!(backend.accepted(), UNPOOLED_REQUESTS);
    assert_eq!(
        (backend.full_handshakes(), backend.resumed_handshakes()),
        (1, UNPOOLED_REQUESTS - 1)
    );
    assert_eq!(lb.metric(&handshakes(&backend, false)), Some(1));
    assert_eq!(lb.metric(&handshakes(&backend, true)), Some(UNPOOLED_REQUESTS as u64 - 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_after_the_pool_dropped_resumes() {
    // Goal: when the pooled connection is gone (idle timeout), the next one resumes.
    // Method: one request, wait past a 100 ms idle timeout, one more request.
    let pki = Pki::new("dropped");
    let backend =
        TlsBackend::start("d", pki.server_config(&pki.server(&["localhost"], "d"), false)).await;
    let mut config = https_config(backend.addr(), trusting(&pki));
    config.server.workers = 1;
    config.pools[0].idle_timeout = Duration::from_millis(100);
    let lb = Balancer::start(config);
    assert_eq!(get_close(lb.addr(), "/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get_close(lb.addr(), "/").await.status, 200);
    assert_eq!(backend.accepted(), 2, "the pooled connection should have expired");
    assert_eq!(lb.metric(&handshakes(&backend, false)), Some(1));
    assert_eq!(lb.metric(&handshakes(&backend, true)), Some(1));
    assert_eq!(backend.resumed_handshakes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_works_and_is_refused_without_the_client_certificate() {
    // Goal: `client_cert`/`client_key` authenticate weir to a backend that requires it;
    // without them the backend refuses and weir answers 502.
    let pki = Pki::new("mtls");
    let server = pki.server(&["localhost"], "m");
    let backend = TlsBackend::start("m", pki.server_config(&server, true)).await;
    let client = pki.client("weir");
    let with_cert = ClientSettings {
        client_cert: Some(client.cert.clone()),
        client_key: Some(client.key.clone()),
        ..trusting(&pki)
    };
    let lb = Balancer::start(https_config(backend.addr(), with_cert));
    let resp = get_close(lb.addr(), "/").await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "m"));
    drop(lb);
    let failed_before = backend.failed_handshakes();
    let lb = Balancer::start(https_config(backend.addr(), trusting(&pki)));
    let resp = get_close(lb.addr(), "/").await;
    assert_eq!(resp.status, 502, "{}", resp.text());
    // TLS 1.3: the backend's refusal arrives as an alert on weir's first read.
    let reason = "upstream TLS error: handshake refused by peer: certificate required\n";
    assert_eq!(resp.text(), reason);
    assert!(backend.failed_handshakes() > failed_before, "the backend refused no handshake");
    assert_eq!(backend.requests(), 1, "only the request with a client certificate got through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_gives_502_with_the_reason_and_counts_for_health() {
    // Goal: a certificate that does not chain to the configured CA is a 502 naming the
    // reason, a counted TLS failure, and a failure for passive health (5 in a row eject).
    let (pki, other) = (Pki::new("right"), Pki::new("wrong"));
    let backend =
        TlsBackend::start("w", pki.server_config(&pki.server(&["localhost"], "w"), false)).await;
    let lb = Balancer::start(https_config(backend.addr(), trusting(&other)));
    for _ in 0..5 {
        let resp = get_close(lb.addr(), "/").await;
        assert_eq!(resp.status, 502);
        assert_eq!(resp.text(), "upstream TLS error: certificate not trusted\n");
    }
    assert_eq!(backend.requests(), 0);
    assert_eq!(lb.metric(&tls_failures(&backend, "not_trusted")), Some(5));
    let labels = format!("{{pool=\"web\",backend=\"{}\"}}", backend.addr());
    assert_eq!(lb.metric(&format!("weir_backend_healthy{labels}")), Some(0));
    assert_eq!(lb.metric(&format!("weir_backend_ejections_total{labels}")), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_gives_502() {
    let pki = Pki::new("expired");
    let expired = pki.expired_server(&["localhost"], "e");
    let backend = TlsBackend::start("e", pki.server_config(&expired, false)).await;
    let mut config = https_config(backend.addr(), trusting(&pki));
    let log = support::process::temp_path("tls-access.json");
    config.log.access = weir::access_log::Target::Path(log.clone());
    config.log.format = weir::access_log::Format::Json;
    let lb = Balancer::start(config);
    let resp = get_close(lb.addr(), "/").await;
    assert_eq!(resp.status, 502);
    assert_eq!(resp.text(), "upstream TLS error: certificate expired\n");
    assert_eq!(lb.metric(&tls_failures(&backend, "expired")), Some(1));
    lb.stop().await;
    // The access log names the reason too.
    let text = std::fs::read_to_string(&log).expect("access log written");
    let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
    assert_eq!(line["status"], 502);
    assert_eq!(line["error"], "upstream TLS error: expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_flag_bypasses_verification_and_warns() {
    // Goal: `-k` accepts a certificate no root vouches for, and says so loudly on stderr;
    // without it the same backend is refused.
    let pki = Pki::new("insecure");
    let backend =
        TlsBackend::start("k", pki.server_config(&pki.server(&["localhost"], "k"), false)).await;
    let url = format!("https://{}", backend.addr());
    let base = ["-b", url.as_str(), "-l", "127.0.0.1:0", "--admin", "off", "-w", "1"];
    let (weir, addr) = support::process::WeirProcess::start(&[&base[..], &["-k"]].concat()).await;
    let resp = get_close(addr, "/").await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "k"));
    let stderr = weir.stderr();
    assert!(
        stderr.contains("--insecure: backend TLS certificates will NOT be verified"),
        "{stderr}"
    );
    assert!(stderr.contains("INSECURE: TLS certificate verification is OFF"), "{stderr}");
    drop(weir);
    let (weir, addr) = support::process::WeirProcess::start(&base).await;
    let resp = get_close(addr, "/").await;
    assert_eq!(resp.status, 502);
    assert!(resp.text().starts_with("upstream TLS error: "), "{}", resp.text());
    assert!(!weir.stderr().contains("INSECURE"), "{}", weir.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_probes_to_https_backends_speak_tls() {
    // Goal: `[pool.health]` probes reach an `https://` backend over TLS, verified like
    // traffic. Method: with no client traffic, the backend answers probes; with an
    // untrusted certificate, probes fail and mark the backend down.
    let (pki, other) = (Pki::new("probe"), Pki::new("probe-other"));
    let backend =
        TlsBackend::start("p", pki.server_config(&pki.server(&["localhost"], "p"), false)).await;
    let probed = |tls: ClientSettings| {
        let mut config = https_config(backend.addr(), tls);
        config.pools[0].health = Some(weir::config::HealthConfig {
            interval: Duration::from_millis(50),
            jitter: Duration::ZERO,
            unhealthy_threshold: 1,
            ..weir::config::HealthConfig::default()
        });
        Balancer::start(config)
    };
    let lb = probed(trusting(&pki));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while backend.requests() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no probe reached the backend");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(lb);
    let lb = probed(trusting(&other));
    let healthy = format!("weir_backend_healthy{{pool=\"web\",backend=\"{}\"}}", backend.addr());
    while lb.metric(&healthy) != Some(0) {
        assert!(tokio::time::Instant::now() < deadline, "untrusted backend stayed healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connection_closed_with_close_notify_is_not_reused() {
    // Goal: an idle pooled TLS connection the backend closed (close_notify) is dropped at
    // checkout, not used for a request that then fails and has to be replayed. Method:
    // the backend closes connections idle for 100 ms; two requests 400 ms apart.
    let pki = Pki::new("notify");
    let config = pki.server_config(&pki.server(&["localhost"], "n"), false);
    let backend = TlsBackend::start_with("n", config, Some(Duration::from_millis(100))).await;
    let mut config = https_config(backend.addr(), trusting(&pki));
    config.server.workers = 1;
    let lb = Balancer::start(config);
    assert_eq!(get_close(lb.addr(), "/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let resp = get_close(lb.addr(), "/").await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "n"));
    assert_eq!(backend.accepted(), 2);
    let labels = format!("{{pool=\"web\",backend=\"{}\"}}", backend.addr());
    assert_eq!(lb.metric(&format!("weir_backend_retries_total{labels}")), Some(0));
    assert_eq!(lb.metric(&format!("weir_backend_connections_reused_total{labels}")), Some(0));
    assert_eq!(lb.metric(&handshakes(&backend, true)), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_follow_the_tls_identity_across_reloads() {
    // Goal: the pool key includes the TLS identity. Method: a reload with the same TLS
    // settings keeps using the pooled connection; one with another server name (same
    // backend address) must not, and its new connection is verified for the new name.
    let pki = Pki::new("identity");
    let server = pki.server(&["localhost", "other.test"], "i");
    let backend = TlsBackend::start("i", pki.server_config(&server, false)).await;
    let config = |name: &str| {
        let tls = ClientSettings { server_name: Some(name.to_string()), ..trusting(&pki) };
        let mut config = https_config(backend.addr(), tls);
        config.server.workers = 1;
        config
    };
    let lb = Balancer::start(config("localhost"));
    assert_eq!(get_close(lb.addr(), "/").await.status, 200);
    lb.reload(config("localhost")).expect("same settings reload");
    assert_eq!(get_close(lb.addr(), "/").await.status, 200);
    assert_eq!(backend.accepted(), 1, "same TLS identity: the pooled connection is reused");
    lb.reload(config("other.test")).expect("new server name reloads");
    assert_eq!(get_close(lb.addr(), "/").await.status, 200);
    assert_eq!(backend.accepted(), 2, "new TLS identity: a new connection");
    lb.reload(config("wrong.test")).expect("a name the certificate lacks still reloads");
    let resp = get_close(lb.addr(), "/").await;
    assert_eq!(resp.text(), "upstream TLS error: certificate name mismatch\n");
}
