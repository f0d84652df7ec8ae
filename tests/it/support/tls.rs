//! TLS for the integration tests: a [`Pki`] (a CA made by rcgen at test time, and the
//! server and client certificates it signs, written as PEM files) and a [`TlsBackend`], an
//! HTTPS origin that counts accepted connections and full and resumed handshakes.
//!
//! The backend answers every request head with `200` and its name as the body, keeping the
//! connection alive; that is all the upstream TLS tests need. Requests with bodies are not
//! supported (the tests send none).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{HandshakeKind, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::MAX_HEAD;
use weir::config::BackendAddress;

type Ca = CertifiedIssuer<'static, KeyPair>;

/// A CA and a scratch directory for the PEM files it signs; the directory is removed
/// when dropped.
pub struct Pki {
    dir: PathBuf,
    ca: Ca,
}

/// A certificate and its key: the PEM files, and the DER certificate to compare with
/// what a peer presented.
pub struct Issued {
    /// The certificate chain PEM file.
    pub cert: PathBuf,
    /// The private key PEM file (PKCS#8).
    pub key: PathBuf,
    /// The certificate, DER.
    pub der: Vec<u8>,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl Issued {
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone().into())
    }
}

impl Pki {
    /// A fresh CA named `tag`, with its own directory.
    pub fn new(tag: &str) -> Pki {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("weir-pki-{}-{tag}-{id}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create pki dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.distinguished_name.push(DnType::CommonName, format!("weir test CA {tag}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key"))
            .expect("ca cert");
        let pki = Pki { dir, ca };
        std::fs::write(pki.ca_file(), pki.ca.pem()).expect("write ca");
        pki
    }

    /// The CA certificate's PEM file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A path in the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A server certificate for `names`, written as `tag.pem` and `tag.key`.
    pub fn server(&self, names: &[&str], tag: &str) -> Issued {
        self.issue(names, tag, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A server certificate for `names` that expired in 2020.
    pub fn expired_server(&self, names: &[&str], tag: &str) -> Issued {
        self.issue(names, tag, ExtendedKeyUsagePurpose::ServerAuth, true)
    }

    /// A client certificate for mutual TLS.
    pub fn client(&self, tag: &str) -> Issued {
        self.issue(&["weir-client"], tag, ExtendedKeyUsagePurpose::ClientAuth, false)
    }

    fn issue(
        &self,
        names: &[&str],
        tag: &str,
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> Issued {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.extended_key_usages = vec![usage];
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf cert");
        let cert_path = self.dir.join(format!("{tag}.pem"));
        let key_path = self.dir.join(format!("{tag}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        Issued {
            cert: cert_path,
            key: key_path,
            der: cert.der().to_vec(),
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
        }
    }

    /// A rustls server configuration presenting `issued`, resuming sessions with tickets,
    /// and requiring a client certificate signed by this CA when `mutual`.
    pub fn server_config(&self, issued: &Issued, mutual: bool) -> ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = if mutual {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca.der().clone()).expect("ca root");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config =
            builder.with_single_cert(issued.chain.clone(), issued.key()).expect("server config");
        config.ticketer = rustls::crypto::ring::Ticketer::new().expect("ticketer");
        config
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    full: AtomicUsize,
    resumed: AtomicUsize,
    failed: AtomicUsize,
    requests: AtomicUsize,
}

/// An HTTPS origin on 127.0.0.1; see the module docs. Stops when dropped.
pub struct TlsBackend {
    addr: SocketAddr,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsBackend {
    /// Starts a backend named `name` (its response body) with `config`.
    pub async fn start(name: &str, config: ServerConfig) -> TlsBackend {
        TlsBackend::start_with(name, config, None).await
    }

    /// Like [`TlsBackend::start`]; a connection idle for `idle_close` gets a TLS
    /// `close_notify` and is closed.
    pub async fn start_with(
        name: &str,
        config: ServerConfig,
        idle_close: Option<Duration>,
    ) -> TlsBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let counts = Arc::new(Counts::default());
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (name, shared) = (name.to_string(), Arc::clone(&counts));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let (acceptor, counts, name) =
                    (acceptor.clone(), Arc::clone(&shared), name.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        counts.failed.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    let kind = tls.get_ref().1.handshake_kind();
                    let counter = match kind {
                        Some(HandshakeKind::Resumed) => &counts.resumed,
                        _ => &counts.full,
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    serve(tls, &counts, &name, idle_close).await;
                });
            }
        });
        TlsBackend { addr, counts, task }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted.
    pub fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    /// Full handshakes completed.
    pub fn full_handshakes(&self) -> usize {
        self.counts.full.load(Ordering::SeqCst)
    }

    /// Resumed handshakes completed.
    pub fn resumed_handshakes(&self) -> usize {
        self.counts.resumed.load(Ordering::SeqCst)
    }

    /// Handshakes that failed (on this side: say, a missing client certificate).
    pub fn failed_handshakes(&self) -> usize {
        self.counts.failed.load(Ordering::SeqCst)
    }

    /// Requests answered.
    pub fn requests(&self) -> usize {
        self.counts.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers request heads on one connection until the peer closes or sends a bad head.
async fn serve<S>(mut tls: S, counts: &Counts, name: &str, idle_close: Option<Duration>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(4096);
    let response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}", name.len()).into_bytes();
    // Bounded: each pass answers one head or reads more of a head bounded by MAX_HEAD.
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            counts.requests.fetch_add(1, Ordering::SeqCst);
            if tls.write_all(&response).await.is_err() || tls.flush().await.is_err() {
                return;
            }
            continue;
        }
        if buf.len() > MAX_HEAD {
            return;
        }
        let mut chunk = [0u8; 4096];
        let idle = idle_close.unwrap_or(Duration::from_secs(3600));
        match tokio::time::timeout(idle, tls.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {
                // Sends close_notify, then the socket closes with the stream.
                let _ = tls.shutdown().await;
                return;
            }
        }
    }
}

/// A configuration with one pool `web` over the `https://` backend at `addr`, reached
/// with `tls`; listening on 127.0.0.1:0 with two workers and no admin listener.
pub fn https_config(addr: SocketAddr, tls: weir::tls::ClientSettings) -> weir::config::Config {
    let mut config = super::config_for(&[addr]);
    let pool = &mut config.pools[0];
    let address = format!("https://{addr}");
    pool.backends[0].address = BackendAddress::parse(&address).expect("https address");
    pool.tls = Some(tls);
    config
}

/// Settings that trust `pki`'s CA and expect the name `localhost`.
pub fn trusting(pki: &Pki) -> weir::tls::ClientSettings {
    weir::tls::ClientSettings {
        server_name: Some("localhost".to_string()),
        ca_file: Some(pki.ca_file()),
        ..weir::tls::ClientSettings::default()
    }
}
