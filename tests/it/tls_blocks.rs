//! The TLS building blocks on real loopback TCP: `tls::Connector` against rustls servers
//! (most built with `tls::Acceptor`), with certificates made by rcgen at test time.
//!
//! Each server greets with `hi\n` right after its handshake and then echoes; a client reads
//! the greeting first, which also takes in the TLS 1.3 tickets sent before it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir::tls::{
    client, Acceptor, ClientSettings, Connector, Handshake, ListenerSettings, TlsError, TlsVersion,
};

type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;
type Ca = CertifiedIssuer<'static, KeyPair>;
type Dialed = Result<(ClientStream, Handshake), TlsError>;

/// An RSA-2048 key from `openssl genpkey`, for tests only: ring (behind rcgen) cannot make
/// RSA keys. Lines are 96 wide to save room. Its certificates are made at test time.
const RSA_TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDHUh2lYww6YubV7yXt+T8CRNQ4KGvfV+8Adu3s1PPGHsqG
LakVmUSkx++C+fhHQHR7Q0bTxt7XIfNfJm57R1Eh5nQmkmcqdym852FpzhfhV1EQ3lEpz54YF0jvmD7Mqp3RvIMbxx5M6HUV
bl3jOUOCSYbMgLAKB5lclcvk/8jdAAKIPZoRZC55kfaTB+G9oLGGoWxYyC4kgo+vfQHpcomGDWfghaQBpkKLFtBG9HvIk0an
ICYBUxFfQAKj902woaQZxl9XudaVaDikkTdnL1satcB//NBMU+QMIOZzhVvY3vSXCq8o20aX/cajQbLB8M6H1yJ92qHS4e/2
8nbA3B7nAgMBAAECggEAEKCF/pTroTc84F3JwTdIjUzmkyS0EvaH5ncFU/tTtpQ8+sJ2V2noswJGtZtanb7/uISdNO9jCXk4
jxhqoPgLCZPq3ojZ+E3mem6mzqe1kEOzbH/PL3i1THcsy2fc3T/iWGusWDXdDjdaBQam6FyPiB/QEeEuTjfiEDoivyCjReQj
lJshjQnw7/SbgjOOe7QedGu7hIYAqASJYqh5KRTXC827qXMcpZqHGKXvKdErv0jipuP5enZfB08NZnWMjmqFYl5lSpxeqYaL
51p+W77ZCAS1FRE2jDbq9SEecZVhErbfqXDu6nf6MiqnyGmvskMTL4riphifdTr1u53H99LhcQKBgQDuGc9N2SsR/BNzsfBP
lTLqBsrzPlPFWkEGRwR+b90UxRKBHgzT4DuHpwLgkFljI4btpRqzONTMF9j0bFX88ZSnxghFL0Ty91u4QmK+XO1QPKd1tzaC
5OdTrtRhOaVakdlM/qjfY/o/F24L20IgPOz1X/5NpVuFyDUJReNAU4UjWQKBgQDWTf5gEOml4j02p6INKKJ/mHWvjOvC7hG1
Rns87aqdmmfMP1JdL1zuKFlvg6SfV81GhZ75k3IqmlQOwVlXraCvfXmoapdjLWvp41tkkNPS0ox8DmREEMX+i3dW+bsrLsS8
UxkSzj/SWPQIvnh5GGNyY7wSMGx+VlPKzY154CpMPwKBgDqtg6hEx9eDzutpQ7bpJwYDrIprpstxJas9Xz8lpE9VDe1iEXk5
vpH8t7nN+Sl0fPEeCkl2zQKLMf1yoXJXuvHp3Onn708NZL4xJhKR5i4q9H4PK9DwRo4Z/N8FDNoYLXxLGiULh4V66bTkURSO
zzrdcFeEU9zRbTiez5Vvv9TpAoGAU69xPiJcmyKVtNoRNgJAMoNesYbeKei9kYRMa6aDkbfSALhZeXodWAL5qcpGZtLqnjdf
tSYW1vwdBwYJ1Ws/7EebUmENbPU3xsW50rObhCAkK+2SyeGi75uWpqguptZEjSYGDInt8j46TY/Ti7YyX2EC+DdgppUfc3qB
XK5k1hECgYEA5cDAananNoKvKmaSTDIRYWgznULu5qqVFL0B2eYQmpT0MzxHPeykTH63y4kbU1WbSYuVr1iPTyTZjoJVdfsn
sUkedxGmkhJnJCTtUremINmjp+T/tArBpGqFo4B61cmgILa3QZL+g3uzq/g9poFwO/TrxJ4XMBwTCg2YudqN8RA=
-----END PRIVATE KEY-----
";

/// A scratch directory for PEM files, removed when dropped.
struct Files(PathBuf);

impl Files {
    fn new() -> Files {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("weir-tls-{}-{id}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Files(dir)
    }

    fn put(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write scratch file");
        path
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca cert")
}

fn params(names: &[&str], usage: ExtendedKeyUsagePurpose) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    params.extended_key_usages = vec![usage];
    params
}

fn leaf(ca: &Ca, names: &[&str], key: &KeyPair) -> Certificate {
    params(names, ExtendedKeyUsagePurpose::ServerAuth).signed_by(key, ca).expect("leaf cert")
}

/// A server certificate for `names` signed by `ca`, written as `tag.pem` and `tag.key`.
fn cert_files(files: &Files, ca: &Ca, names: &[&str], tag: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    let key = KeyPair::generate().expect("leaf key");
    let cert = leaf(ca, names, &key);
    let cert_path = files.put(&format!("{tag}.pem"), cert.pem());
    (cert_path, files.put(&format!("{tag}.key"), key.serialize_pem()), cert.der().to_vec())
}

/// A server through an `Acceptor`, its certificate for `names` signed by `ca`.
async fn server_for(files: &Files, ca: &Ca, names: &[&str]) -> (SocketAddr, Vec<u8>) {
    let (cert, key, der) = cert_files(files, ca, names, names[0]);
    let acceptor = Acceptor::new(&listener(vec![(cert, key)])).expect("acceptor");
    (serve_acceptor(Arc::new(acceptor)).await, der)
}

fn listener(certs: Vec<(PathBuf, PathBuf)>) -> ListenerSettings {
    ListenerSettings { certs, ..ListenerSettings::default() }
}

fn trusting(files: &Files, ca: &Ca) -> ClientSettings {
    ClientSettings { ca_file: Some(files.put("ca.pem", ca.pem())), ..ClientSettings::default() }
}

fn named(settings: &ClientSettings, name: &str) -> Connector {
    let settings = ClientSettings { server_name: Some(name.to_owned()), ..settings.clone() };
    Connector::new(&settings, "127.0.0.1").expect("connector")
}

/// Strips PKCS#8's wrapping, SEQUENCE { version, algorithm, OCTET STRING key }, leaving
/// the algorithm's own format (PKCS#1 for RSA, SEC1 for EC) as PEM labelled `label`.
fn inner_pem(label: &str, pkcs8: &[u8]) -> String {
    // (header length, content length) of the DER element `der` starts with.
    let header = |der: &[u8]| match usize::from(der[1]) {
        short @ 0..0x80 => (2, short),
        long => (
            2 + (long & 0x7f),
            der[2..2 + (long & 0x7f)].iter().fold(0, |n, &b| n << 8 | b as usize),
        ),
    };
    let mut rest = &pkcs8[header(pkcs8).0..];
    for _skipped in ["version", "algorithm"] {
        let (head, len) = header(rest);
        rest = &rest[head + len..];
    }
    let (head, len) = header(rest);
    pem::encode(&pem::Pem::new(label, &rest[head..head + len]))
}

/// Accepts on loopback with `accept`, greets and echoes; `close` ends a connection.
async fn serve<F, Fut, E>(accept: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = Result<tokio_rustls::server::TlsStream<TcpStream>, E>> + Send + 'static,
{
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            let handshake = accept(stream);
            tokio::spawn(async move {
                let Ok(mut tls) = handshake.await else { return };
                let mut buf = [0u8; 64];
                let _ = tls.write_all(b"hi\n").await;
                while let Ok(n @ 1..) = tls.read(&mut buf).await {
                    if &buf[..n] == b"close" || tls.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn serve_acceptor(acceptor: Arc<Acceptor>) -> SocketAddr {
    serve(move |tcp| {
        let acceptor = Arc::clone(&acceptor);
        async move { acceptor.accept(tcp).await }
    })
    .await
}

async fn serve_rustls(config: ServerConfig) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    serve(move |tcp| acceptor.clone().accept(tcp)).await
}

/// Connects, handshakes and reads the greeting.
async fn dial(connector: &Connector, addr: SocketAddr) -> Dialed {
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    let (mut tls, handshake) = connector.connect(tcp).await?;
    let mut greeting = [0u8; 3];
    tls.read_exact(&mut greeting).await.map_err(TlsError::from_io)?;
    assert_eq!(&greeting, b"hi\n");
    Ok((tls, handshake))
}

async fn echo(tls: &mut ClientStream, text: &[u8]) {
    tls.write_all(text).await.expect("write");
    let mut back = vec![0u8; text.len()];
    tls.read_exact(&mut back).await.expect("read echo");
    assert_eq!(back, text);
}

fn peer_cert(tls: &ClientStream) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().expect("peer certificates")[0].to_vec()
}

/// A plain rustls server for `localhost` (ring provider), its certificate signed by `ca`.
fn rustls_server(
    ca: &Ca,
    versions: &[&'static rustls::SupportedProtocolVersion],
    clients: Option<Arc<dyn ClientCertVerifier>>,
) -> ServerConfig {
    let key = KeyPair::generate().expect("key");
    let chain = vec![leaf(ca, &["localhost"], &key).der().clone()];
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider).with_protocol_versions(versions);
    let builder = builder.expect("versions");
    let builder = match clients {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(chain, key).expect("server config")
}

#[tokio::test]
async fn tls13_second_connection_resumes() {
    let (files, ca) = (Files::new(), ca("ca"));
    let (addr, _) = server_for(&files, &ca, &["localhost"]).await;
    let connector = Connector::new(&trusting(&files, &ca), "localhost").unwrap();
    let (_first, first) = dial(&connector, addr).await.unwrap();
    let (_second, second) = dial(&connector, addr).await.unwrap();
    assert_eq!(first, Handshake { resumed: false, version: Some(TlsVersion::Tls13) });
    assert_eq!(second, Handshake { resumed: true, version: Some(TlsVersion::Tls13) });
}

#[tokio::test]
async fn tls12_resumes_by_session_id_and_by_ticket() {
    let (files, ca) = (Files::new(), ca("ca"));
    let connector = Connector::new(&trusting(&files, &ca), "localhost").unwrap();
    for tickets in [false, true] {
        let mut config = rustls_server(&ca, &[&rustls::version::TLS12], None);
        if tickets {
            config.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
        }
        let addr = serve_rustls(config).await;
        let (_first, first) = dial(&connector, addr).await.unwrap();
        let (_second, second) = dial(&connector, addr).await.unwrap();
        assert_eq!(first.version, Some(TlsVersion::Tls12));
        assert!(!first.resumed, "a new server cannot know the session");
        assert!(second.resumed, "tickets: {tickets}");
    }
}

#[test]
fn second_worker_first_connection_resumes() {
    // Goal: the session cache lives in the shared connector, not in a worker. Method: a
    // server runtime, and two worker threads, each with its own current-thread runtime,
    // making one connection each through one `Arc<Connector>`, one after the other.
    let server = tokio::runtime::Runtime::new().unwrap();
    let (files, ca) = (Files::new(), ca("ca"));
    let (addr, _) = server.block_on(server_for(&files, &ca, &["localhost"]));
    let connector = Arc::new(Connector::new(&trusting(&files, &ca), "localhost").unwrap());
    let worker = |connector: Arc<Connector>| {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            runtime.unwrap().block_on(async { dial(&connector, addr).await.unwrap().1.resumed })
        })
    };
    assert!(!worker(Arc::clone(&connector)).join().unwrap(), "first worker: full handshake");
    assert!(worker(connector).join().unwrap(), "second worker's first connection resumes");
}

#[tokio::test]
async fn burst_of_new_connections_resumes_after_warm_up() {
    // Goal: the cache holds more tickets than rustls's default 8, so a burst of concurrent
    // new connections (workers refilling pools) still resumes. Method: 40 sequential
    // connections bank tickets (2 in, 1 out each), then 32 handshakes at once.
    let (files, ca) = (Files::new(), ca("ca"));
    let (addr, _) = server_for(&files, &ca, &["localhost"]).await;
    let connector = Arc::new(Connector::new(&trusting(&files, &ca), "localhost").unwrap());
    for _ in 0..40 {
        dial(&connector, addr).await.unwrap();
    }
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let connector = Arc::clone(&connector);
        burst.spawn(async move { dial(&connector, addr).await.unwrap().1.resumed });
    }
    for resumed in burst.join_all().await {
        assert!(resumed, "every connection of the burst resumes");
    }
}

#[tokio::test]
async fn wrong_ca_is_not_trusted() {
    let (files, ca_real, ca_other) = (Files::new(), ca("real"), ca("other"));
    let (addr, _) = server_for(&files, &ca_real, &["localhost"]).await;
    let connector = Connector::new(&trusting(&files, &ca_other), "localhost").unwrap();
    let err = dial(&connector, addr).await.unwrap_err();
    let seen = (err.to_string(), err.label(), err.is_certificate());
    assert_eq!(seen, ("certificate not trusted".to_owned(), "not_trusted", true));
    // Public web roots (no ca_file) do not trust a private CA either.
    let public = Connector::new(&ClientSettings::default(), "localhost").unwrap();
    assert_eq!(dial(&public, addr).await.unwrap_err().to_string(), "certificate not trusted");
}

#[tokio::test]
async fn name_mismatch_and_expired_certificate_are_refused() {
    let (files, ca) = (Files::new(), ca("ca"));
    let (addr, _) = server_for(&files, &ca, &["a.test"]).await;
    let err = dial(&named(&trusting(&files, &ca), "b.test"), addr).await.unwrap_err();
    assert_eq!(err.to_string(), "certificate name mismatch");

    let key = KeyPair::generate().unwrap();
    let mut expired = params(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    expired.not_before = rcgen::date_time_ymd(2020, 1, 1);
    expired.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = files.put("old.pem", expired.signed_by(&key, &ca).unwrap().pem());
    let pair = (cert, files.put("old.key", key.serialize_pem()));
    let addr = serve_acceptor(Arc::new(Acceptor::new(&listener(vec![pair])).unwrap())).await;
    let err = dial(&named(&trusting(&files, &ca), "localhost"), addr).await.unwrap_err();
    assert_eq!((err.to_string().as_str(), err.label()), ("certificate expired", "expired"));
}

#[tokio::test]
async fn insecure_mode_accepts_a_self_signed_certificate() {
    let files = Files::new();
    let key = KeyPair::generate().unwrap();
    let cert = params(&["self.test"], ExtendedKeyUsagePurpose::ServerAuth).self_signed(&key);
    let pair = (files.put("s.pem", cert.unwrap().pem()), files.put("s.key", key.serialize_pem()));
    let addr = serve_acceptor(Arc::new(Acceptor::new(&listener(vec![pair])).unwrap())).await;
    let strict = Connector::new(&ClientSettings::default(), "self.test").unwrap();
    assert_eq!(dial(&strict, addr).await.unwrap_err().to_string(), "certificate not trusted");
    let insecure = ClientSettings { insecure_skip_verify: true, ..ClientSettings::default() };
    // Any name goes, an IP address (no SNI) too.
    let (mut tls, _) = dial(&Connector::new(&insecure, "127.0.0.1").unwrap(), addr).await.unwrap();
    echo(&mut tls, b"ping").await;
}

#[tokio::test]
async fn sni_chooses_between_two_certificates() {
    let (files, ca) = (Files::new(), ca("ca"));
    let (a_cert, a_key, a_der) = cert_files(&files, &ca, &["a.test"], "a");
    let (b_cert, b_key, b_der) = cert_files(&files, &ca, &["b.test", "*.b.test"], "b");
    let settings = listener(vec![(a_cert, a_key), (b_cert, b_key)]);
    let addr = serve_acceptor(Arc::new(Acceptor::new(&settings).unwrap())).await;
    let client = trusting(&files, &ca);
    for (name, expected) in [("a.test", &a_der), ("b.test", &b_der), ("X.B.Test", &b_der)] {
        let (tls, _) = dial(&named(&client, name), addr).await.unwrap();
        assert_eq!(&peer_cert(&tls), expected, "SNI {name}");
    }
    // Unknown names, names a wildcard does not cover, and no SNI get the first.
    let insecure = ClientSettings { insecure_skip_verify: true, ..client };
    for name in ["c.test", "y.x.b.test", "127.0.0.1"] {
        let (tls, _) = dial(&named(&insecure, name), addr).await.unwrap();
        assert_eq!(peer_cert(&tls), a_der, "SNI {name}");
    }
}

#[tokio::test]
async fn rsa_ec_and_pkcs8_keys_load() {
    let (files, ca) = (Files::new(), ca("ca"));
    let client = trusting(&files, &ca);
    let rsa = KeyPair::from_pem(RSA_TEST_KEY).unwrap();
    let ec = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cases = [
        ("rsa-pkcs1", inner_pem("RSA PRIVATE KEY", &rsa.serialize_der()), &rsa),
        ("rsa-pkcs8", rsa.serialize_pem(), &rsa),
        ("ec-sec1", inner_pem("EC PRIVATE KEY", &ec.serialize_der()), &ec),
        ("ec-pkcs8", ec.serialize_pem(), &ec),
        ("ed25519-pkcs8", ed.serialize_pem(), &ed),
    ];
    for (tag, key_pem, key) in cases {
        let cert = files.put(&format!("{tag}.pem"), leaf(&ca, &["localhost"], key).pem());
        let pair = (cert, files.put(&format!("{tag}.key"), key_pem));
        let acceptor = Acceptor::new(&listener(vec![pair])).expect(tag);
        let addr = serve_acceptor(Arc::new(acceptor)).await;
        let (mut tls, _) = dial(&named(&client, "localhost"), addr).await.unwrap();
        echo(&mut tls, tag.as_bytes()).await;
    }
}

#[tokio::test]
async fn reload_swaps_certificate_and_keeps_live_connections() {
    let (files, ca) = (Files::new(), ca("ca"));
    let (old_cert, old_key, old_der) = cert_files(&files, &ca, &["localhost"], "old");
    let (new_cert, new_key, new_der) = cert_files(&files, &ca, &["localhost"], "new");
    let acceptor = Arc::new(Acceptor::new(&listener(vec![(old_cert, old_key.clone())])).unwrap());
    let addr = serve_acceptor(Arc::clone(&acceptor)).await;
    let (mut live, _) = dial(&named(&trusting(&files, &ca), "localhost"), addr).await.unwrap();
    assert_eq!(peer_cert(&live), old_der);
    assert!(client::is_idle_quiet(&mut live), "an idle connection has nothing to read");

    acceptor.reload(&listener(vec![(new_cert.clone(), new_key)])).unwrap();
    echo(&mut live, b"still here").await;
    // A fresh connector, so the handshake is full and shows the certificate.
    let (fresh, _) = dial(&named(&trusting(&files, &ca), "localhost"), addr).await.unwrap();
    assert_eq!(peer_cert(&fresh), new_der);

    let garbage = files.put("garbage.pem", "not a certificate");
    let broken = [
        ((new_cert.clone(), old_key), "does not match"),
        ((files.0.join("missing.pem"), new_cert.clone()), "cannot read cert"),
        ((garbage.clone(), garbage), "no PEM certificate found"),
        ((new_cert.clone(), new_cert), "no usable private key"),
    ];
    for (pair, expected) in broken {
        let err = acceptor.reload(&listener(vec![pair])).expect_err("refused");
        assert!(err.to_string().contains(expected), "{err} lacks {expected:?}");
    }
    let (after, _) = dial(&named(&trusting(&files, &ca), "localhost"), addr).await.unwrap();
    assert_eq!(peer_cert(&after), new_der, "the last good certificate keeps serving");
    echo(&mut live, b"and still").await;
    live.write_all(b"close").await.unwrap();
    live.get_ref().0.readable().await.unwrap();
    assert!(!client::is_idle_quiet(&mut live), "a connection the server closed is not reusable");
}

#[tokio::test]
async fn mutual_tls_with_client_certificate() {
    let (files, ca) = (Files::new(), ca("ca"));
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let config = rustls_server(&ca, rustls::DEFAULT_VERSIONS, Some(verifier.build().unwrap()));
    let addr = serve_rustls(config).await;

    let key = KeyPair::generate().unwrap();
    let cert = params(&["client.test"], ExtendedKeyUsagePurpose::ClientAuth).signed_by(&key, &ca);
    let with_cert = ClientSettings {
        client_cert: Some(files.put("client.pem", cert.unwrap().pem())),
        client_key: Some(files.put("client.key", key.serialize_pem())),
        ..trusting(&files, &ca)
    };
    let (mut tls, _) = dial(&named(&with_cert, "localhost"), addr).await.unwrap();
    echo(&mut tls, b"mutual").await;

    // TLS 1.3 servers refuse a missing client certificate after the client's handshake
    // is done: the refusal arrives on the first read, which `dial` classifies.
    let err = dial(&named(&trusting(&files, &ca), "localhost"), addr).await.unwrap_err();
    let seen = (err.to_string(), err.label());
    assert_eq!(seen, ("handshake refused by peer: certificate required".to_owned(), "peer_alert"));
}

#[test]
fn identity_and_unusable_settings() {
    let (files, ca) = (Files::new(), ca("ca"));
    let base = trusting(&files, &ca);
    let identity =
        |settings: &ClientSettings, host: &str| Connector::new(settings, host).unwrap().identity();
    assert_eq!(identity(&base, "a.test"), identity(&base.clone(), "a.test"));
    assert_ne!(identity(&base, "a.test"), identity(&base, "b.test"));
    let insecure = ClientSettings { insecure_skip_verify: true, ..base.clone() };
    assert_ne!(identity(&base, "a.test"), identity(&insecure, "a.test"));
    let key = KeyPair::generate().unwrap();
    let cert = params(&["c"], ExtendedKeyUsagePurpose::ClientAuth).self_signed(&key).unwrap();
    let mtls = ClientSettings {
        client_cert: Some(files.put("c.pem", cert.pem())),
        client_key: Some(files.put("c.key", key.serialize_pem())),
        ..base.clone()
    };
    assert_ne!(identity(&base, "a.test"), identity(&mtls, "a.test"));
    fn shared<T: Send + Sync + Clone>() {}
    shared::<Connector>();

    // Unusable settings are refused with the setting (and file) named.
    let missing = ClientSettings { ca_file: Some(files.0.join("nope.pem")), ..Default::default() };
    let err = Connector::new(&missing, "a.test").unwrap_err().to_string();
    assert!(err.starts_with("cannot read ca_file ") && err.contains("nope.pem"), "{err}");
    let half = ClientSettings { client_cert: Some(files.put("c.pem", ca.pem())), ..missing };
    let err = Connector::new(&ClientSettings { ca_file: None, ..half }, "a.test").unwrap_err();
    assert_eq!(err.to_string(), "client_cert and client_key must be set together");
    let err = Connector::new(&ClientSettings::default(), "bad name!").unwrap_err();
    assert!(err.to_string().starts_with("server_name \"bad name!\""), "{err}");
    let err = Acceptor::new(&ListenerSettings::default()).unwrap_err();
    assert_eq!(err.to_string(), "a TLS listener needs at least one certificate");
    let alpn = ClientSettings { alpn: vec![String::new()], ..ClientSettings::default() };
    assert!(Connector::new(&alpn, "a.test").unwrap_err().to_string().starts_with("alpn:"));
}

#[tokio::test]
async fn handshake_timeout_drops_a_silent_peer() {
    let (files, ca) = (Files::new(), ca("ca"));
    let (cert, key, _) = cert_files(&files, &ca, &["localhost"], "server");
    let handshake_timeout = Duration::from_millis(200);
    let acceptor =
        Acceptor::new(&ListenerSettings { handshake_timeout, ..listener(vec![(cert, key)]) });
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _silent = TcpStream::connect(tcp.local_addr().unwrap()).await.unwrap();
    let (accepted, _) = tcp.accept().await.unwrap();
    let err = acceptor.unwrap().accept(accepted).await.unwrap_err();
    assert_eq!((err.to_string().as_str(), err.label()), ("handshake timed out", "timeout"));
}
