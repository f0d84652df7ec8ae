//! TLS termination end to end: `[[server.tls]]` listeners in front of a plain backend,
//! with certificates made by rcgen at test time, checked with a rustls client and curl.

use crate::support::tls::{Issued, Pki};
use crate::support::{self, read_response, Balancer, TestBackend};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weir::config::{Config, TlsListenerConfig};
use weir::tls::ListenerSettings;

type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// Clients sending requests back to back through the reload.
const LOAD_CLIENTS: usize = 4;
/// Requests each load client makes after the reload before it stops.
const AFTER_RELOAD: usize = 20;

/// weir with one TLS listener on 127.0.0.1:0 (and no plain one) serving `certs`.
fn tls_config(backend: SocketAddr, certs: Vec<(PathBuf, PathBuf)>) -> Config {
    let mut config = support::config_for(&[backend]);
    config.server.listen = Vec::new();
    config.server.tls = vec![TlsListenerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        settings: ListenerSettings { certs, ..ListenerSettings::default() },
    }];
    config
}

/// A rustls client that trusts `pki`'s CA.
fn client(pki: &Pki) -> tokio_rustls::TlsConnector {
    client_offering(pki, &[])
}

/// A rustls client that trusts `pki`'s CA and offers `alpn`.
fn client_offering(pki: &Pki, alpn: &[&str]) -> tokio_rustls::TlsConnector {
    let mut roots = RootCertStore::empty();
    let pem = std::fs::read(pki.ca_file()).unwrap();
    for cert in rustls_pemfile_certs(&pem) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut config = config;
    config.alpn_protocols = alpn.iter().map(|name| name.as_bytes().to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem).map(Result::unwrap).collect()
}

/// Connects to `addr` with SNI `name`.
async fn dial(connector: &tokio_rustls::TlsConnector, addr: SocketAddr, name: &str) -> ClientTls {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    connector.connect(name, tcp).await.expect("TLS handshake with weir")
}

fn presented(tls: &ClientTls) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().expect("certificates")[0].to_vec()
}

/// One keep-alive request; the response.
async fn request(tls: &mut ClientTls, path: &str) -> support::Response {
    let req = format!("GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    read_response(tls).await.expect("response over TLS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_and_forwarded_proto_is_https() {
    let pki = Pki::new("sni");
    let (a, b) = (pki.server(&["a.test"], "a"), pki.server(&["b.test"], "b"));
    let backend = TestBackend::start("origin").await;
    let lb = Balancer::start(tls_config(backend.addr(), vec![pair(&a), pair(&b)]));
    let connector = client(&pki);
    let mut to_a = dial(&connector, lb.tls_addr(), "a.test").await;
    assert_eq!(presented(&to_a), a.der);
    assert_eq!(to_a.get_ref().1.alpn_protocol(), None, "the client offered no ALPN");
    let to_b = dial(&connector, lb.tls_addr(), "b.test").await;
    assert_eq!(presented(&to_b), b.der);
    // ALPN offers h2 first by default (HTTP/2 from clients), and http/1.1 still.
    let offering = client_offering(&pki, &["h2", "http/1.1"]);
    let alpn = dial(&offering, lb.tls_addr(), "a.test").await;
    assert_eq!(alpn.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let offering = client_offering(&pki, &["http/1.1"]);
    let alpn = dial(&offering, lb.tls_addr(), "a.test").await;
    assert_eq!(alpn.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let resp = request(&mut to_a, "/echo-head").await;
    assert_eq!(resp.status, 200);
    let head = resp.text().to_ascii_lowercase();
    assert!(head.contains("x-forwarded-proto: https\r\n"), "{head}");
    // A real client: curl checks the name against the certificate it gets for it.
    let port = lb.tls_addr().port();
    for name in ["a.test", "b.test"] {
        let output = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(pki.ca_file())
            .arg("--resolve")
            .arg(format!("{name}:{port}:127.0.0.1"))
            .arg(format!("https://{name}:{port}/"))
            .output()
            .await
            .expect("run curl");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "curl {name}: {stderr}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "origin");
    }
}

/// Sends requests on one keep-alive TLS connection until `stop`, then `AFTER_RELOAD`
/// more once `reloaded`; returns how many succeeded. Any failure panics: a dropped
/// connection fails the test.
async fn keep_busy(mut tls: ClientTls, reloaded: Arc<AtomicBool>, done: Arc<AtomicUsize>) -> usize {
    let (mut sent, mut after) = (0, 0);
    // Bounded: ends AFTER_RELOAD requests after the reload, which the test makes.
    while after < AFTER_RELOAD {
        let resp = request(&mut tls, "/").await;
        assert_eq!(resp.status, 200, "request {sent} on a live connection");
        sent += 1;
        if reloaded.load(Ordering::SeqCst) {
            after += 1;
        }
    }
    done.fetch_add(1, Ordering::SeqCst);
    sent
}

fn pair(issued: &Issued) -> (PathBuf, PathBuf) {
    (issued.cert.clone(), issued.key.clone())
}

fn copy_pair(issued: &Issued, cert: &PathBuf, key: &PathBuf) {
    std::fs::copy(&issued.cert, cert).unwrap();
    std::fs::copy(&issued.key, key).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_under_load_drops_no_connection() {
    // Goal: a reload swaps the certificate for new connections while live connections go
    // on undisturbed; a broken certificate is refused and the current one keeps serving.
    // Method: 4 clients send requests back to back on keep-alive TLS connections while
    // the certificate files are replaced and the config reloaded.
    let pki = Pki::new("reload");
    let (old, new) = (pki.server(&["a.test"], "old"), pki.server(&["a.test"], "new"));
    let (cert, key) = (pki.path("live.pem"), pki.path("live.key"));
    copy_pair(&old, &cert, &key);
    let backend = TestBackend::start("origin").await;
    let config = tls_config(backend.addr(), vec![(cert.clone(), key.clone())]);
    let lb = Balancer::start(config.clone());
    let connector = client(&pki);
    let (reloaded, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..LOAD_CLIENTS {
        let tls = dial(&connector, lb.tls_addr(), "a.test").await;
        assert_eq!(presented(&tls), old.der);
        clients.push(tokio::spawn(keep_busy(tls, Arc::clone(&reloaded), Arc::clone(&done))));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    copy_pair(&new, &cert, &key);
    lb.reload(config.clone()).expect("reload with the new certificate");
    reloaded.store(true, Ordering::SeqCst);
    // Fresh clients: a client that resumes a session sees the certificate of that session.
    assert_eq!(presented(&dial(&client(&pki), lb.tls_addr(), "a.test").await), new.der);
    std::fs::write(&key, "not a key").unwrap();
    let refused = lb.reload(config).expect_err("a broken key is refused");
    assert!(refused.contains("no usable private key"), "{refused}");
    assert_eq!(presented(&dial(&client(&pki), lb.tls_addr(), "a.test").await), new.der);
    for client in clients {
        let sent = tokio::time::timeout(Duration::from_secs(30), client).await.unwrap().unwrap();
        assert!(sent > AFTER_RELOAD, "{sent} requests");
    }
    assert_eq!(done.load(Ordering::SeqCst), LOAD_CLIENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_a_tls_listener_and_refuses_turning_one_plain() {
    // Goal: `[[server.tls]]` listeners follow reloads like plain ones, and an address
    // cannot switch between plain and TLS without a restart.
    let pki = Pki::new("add");
    let cert = pki.server(&["a.test"], "a");
    let backend = TestBackend::start("origin").await;
    let plain = support::config_for(&[backend.addr()]);
    let lb = Balancer::start(plain.clone());
    let mut with_tls = tls_config(backend.addr(), vec![pair(&cert)]);
    with_tls.server.listen = plain.server.listen.clone();
    // Another loopback address: one address cannot be both plain and TLS.
    with_tls.server.tls[0].listen = "127.0.0.2:0".parse().unwrap();
    lb.reload(with_tls.clone()).expect("reload adding a TLS listener");
    let mut tls = dial(&client(&pki), lb.tls_addr(), "a.test").await;
    assert_eq!(request(&mut tls, "/").await.text(), "origin");
    let mut switched = with_tls.clone();
    switched.server.listen = vec![switched.server.tls.remove(0).listen];
    let refused = lb.reload(switched).expect_err("TLS to plain is refused");
    assert!(refused.contains("changing that takes a restart"), "{refused}");
    assert_eq!(request(&mut tls, "/").await.status, 200, "the TLS listener still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_header_comes_before_the_client_hello() {
    // Goal: `[[server.tls]] proxy_protocol` reads the header before the handshake, and its
    // address is the client's; a ClientHello without it is a missing header.
    let pki = Pki::new("proxy");
    let issued = pki.server(&["a.test"], "a");
    let backend = support::Recorder::echo_target().await;
    let mut config = tls_config(backend.addr(), vec![(issued.cert.clone(), issued.key.clone())]);
    config.server.tls[0].settings.proxy_protocol = true;
    let lb = Balancer::start(config);
    let mut tcp = TcpStream::connect(lb.tls_addr()).await.unwrap();
    tcp.write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n").await.unwrap();
    let name = ServerName::try_from("a.test".to_string()).unwrap();
    let mut tls = client(&pki).connect(name.clone(), tcp).await.expect("TLS after the header");
    assert_eq!(request(&mut tls, "/pp").await.status, 200);
    assert_eq!(backend.requests()[0].fields("X-Forwarded-For"), ["203.0.113.7"]);
    let tcp = TcpStream::connect(lb.tls_addr()).await.unwrap();
    assert!(client(&pki).connect(name, tcp).await.is_err(), "served without a header");
    let missing = "weir_proxy_protocol_errors_total{reason=\"missing\"}";
    assert_eq!(lb.metric(missing), Some(1));
    assert_eq!(backend.requests().len(), 1);
}
