//! Upstream TLS: a [`Connector`] per HTTPS backend, shared by every worker.
//!
//! The connector owns the client configuration and with it the session cache, so a session
//! learnt by any worker resumes the next connection of any worker: after the first full
//! handshake to a backend, new connections resume (TLS 1.3 tickets, TLS 1.2 session IDs or
//! tickets). [`Connector::identity`] lets the pool key connections by address and TLS
//! identity, so connections made with different names, client certificates or verify
//! modes are never mixed up.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::insecure::AcceptAnyCertificate;
use super::session::SessionCache;
use super::{files, TlsError, TlsVersion, DEFAULT_HANDSHAKE_TIMEOUT};

/// A TLS connection to a backend.
pub type ClientTls = TlsStream<TcpStream>;

/// How to speak TLS to one backend (`[pool.tls]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// The name sent as SNI and verified in the certificate; `None` uses the backend's
    /// host. An IP address is verified against the certificate's IP SANs and sends no SNI.
    pub server_name: Option<String>,
    /// PEM file of CA certificates to trust instead of the public web roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain for mutual TLS; needs [`ClientSettings::client_key`].
    pub client_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or EC) of [`ClientSettings::client_cert`].
    pub client_key: Option<PathBuf>,
    /// ALPN protocols offered, in order of preference.
    pub alpn: Vec<String>,
    /// Accept any certificate. Insecure: for tests and lab backends only.
    pub insecure_skip_verify: bool,
    /// Longest a handshake may take.
    pub handshake_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> ClientSettings {
        ClientSettings {
            server_name: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            alpn: vec!["http/1.1".to_owned()],
            insecure_skip_verify: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// What a successful handshake did, for the handshake counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// The session was resumed: no certificate was sent or verified.
    pub resumed: bool,
    /// The negotiated protocol version.
    pub version: Option<TlsVersion>,
}

/// Makes TLS connections to one backend. `Send + Sync`: build it once per backend and
/// share it (in an `Arc`) between workers; [`Connector::connect`] is cheap to call.
/// Clones share the session cache.
#[derive(Clone)]
pub struct Connector {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    identity: u64,
    handshake_timeout: Duration,
}

impl Connector {
    /// How long a handshake may take before [`Connector::connect`] gives up.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Builds a connector from `settings`; `default_host` is the backend's host, used
    /// when `server_name` is not set. Reads the CA and client certificate files now.
    /// Logs a loud warning when verification is off.
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`] naming the setting and file that cannot be read or used.
    pub fn new(settings: &ClientSettings, default_host: &str) -> Result<Connector, TlsError> {
        if settings.handshake_timeout.is_zero() {
            return Err(TlsError::Config("handshake_timeout must be positive".to_owned()));
        }
        let name = settings.server_name.as_deref().unwrap_or(default_host);
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|err| TlsError::Config(format!("server_name {name:?}: {err}")))?;
        let config = client_config(settings)?;
        if settings.insecure_skip_verify {
            tracing::warn!(
                server_name = name,
                "INSECURE: TLS certificate verification is OFF for this backend \
                 (insecure_skip_verify or -k); anyone on the path can impersonate it"
            );
        }
        Ok(Connector {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            identity: identity(settings, name),
            handshake_timeout: settings.handshake_timeout,
        })
    }

    /// Runs a client handshake over `tcp`, resuming a cached session when there is one.
    ///
    /// # Errors
    ///
    /// The reason the handshake failed, including [`TlsError::Timeout`] after the
    /// handshake timeout.
    pub async fn connect(
        &self,
        tcp: TcpStream,
    ) -> Result<(TlsStream<TcpStream>, Handshake), TlsError> {
        let handshake = self.connector.connect(self.server_name.clone(), tcp);
        let stream = match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(TlsError::from_io(err)),
            Err(_) => return Err(TlsError::Timeout),
        };
        let session = stream.get_ref().1;
        debug_assert!(!session.is_handshaking());
        let version = match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => Some(TlsVersion::Tls13),
            Some(rustls::ProtocolVersion::TLSv1_2) => Some(TlsVersion::Tls12),
            _ => None,
        };
        let resumed = session.handshake_kind() == Some(HandshakeKind::Resumed);
        Ok((stream, Handshake { resumed, version }))
    }

    /// A hash of everything that makes a connection from this connector different from
    /// one to the same address from another connector: the server name (SNI), the client
    /// certificate and key files, the verify mode (CA file, system roots or off) and ALPN.
    /// Pools key TLS connections on the address plus this. Stable within a process, so a
    /// reload with the same settings keeps pooled connections.
    pub fn identity(&self) -> u64 {
        self.identity
    }

    /// The name sent as SNI and verified, for logs.
    pub fn server_name(&self) -> String {
        self.server_name.to_str().into_owned()
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.server_name)
            .field("identity", &format_args!("{:016x}", self.identity))
            .finish_non_exhaustive()
    }
}

/// Checks that `settings` make a usable client configuration (files readable, key
/// matching the certificate), without building a connector or warning.
///
/// # Errors
///
/// [`TlsError::Config`] naming the setting and file that cannot be used.
pub fn check(settings: &ClientSettings) -> Result<(), TlsError> {
    client_config(settings).map(drop)
}

/// The rustls client configuration for `settings`, with a fresh session cache.
fn client_config(settings: &ClientSettings) -> Result<ClientConfig, TlsError> {
    let provider = super::provider();
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(TlsVersion::Tls12.and_newer())
        .map_err(|err| TlsError::Config(format!("TLS versions: {err}")))?;
    let builder = if settings.insecure_skip_verify {
        let verifier = Arc::new(AcceptAnyCertificate::new(algorithms));
        builder.dangerous().with_custom_certificate_verifier(verifier)
    } else {
        builder.with_root_certificates(roots(settings)?)
    };
    let mut config = match (&settings.client_cert, &settings.client_key) {
        (Some(cert), Some(key)) => {
            let chain = files::read_chain(cert, "client_cert")?;
            let key_der = files::read_key(key, "client_key")?;
            builder.with_client_auth_cert(chain, key_der).map_err(|err| {
                TlsError::Config(format!(
                    "client_cert {} with client_key {}: {err}",
                    cert.display(),
                    key.display()
                ))
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(TlsError::Config(
                "client_cert and client_key must be set together".to_owned(),
            ))
        }
    };
    config.alpn_protocols = super::alpn_protocols(&settings.alpn)?;
    // Session IDs and tickets for TLS 1.2 (the default `tls12_resumption`), tickets for
    // TLS 1.3, all in a cache this connector's clones share.
    config.resumption = Resumption::store(Arc::new(SessionCache::new()));
    Ok(config)
}

/// The CA file's roots, or the public web roots.
fn roots(settings: &ClientSettings) -> Result<RootCertStore, TlsError> {
    match &settings.ca_file {
        Some(path) => files::read_roots(path),
        None => Ok(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }),
    }
}

/// Hashes the settings and the contents of their files, so a certificate or CA replaced
/// at the same path is a new identity too (a reload then makes a new connector).
fn identity(settings: &ClientSettings, server_name: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    server_name.hash(&mut hasher);
    settings.insecure_skip_verify.hash(&mut hasher);
    settings.alpn.hash(&mut hasher);
    for file in [&settings.client_cert, &settings.client_key, &settings.ca_file] {
        file.hash(&mut hasher);
        // Already read successfully by `client_config`; a read failing now only makes
        // the identity differ, which is safe.
        file.as_ref().map(std::fs::read).map(Result::ok).hash(&mut hasher);
    }
    hasher.finish()
}

/// Whether a pooled, idle TLS connection has nothing to read, so it may be reused.
///
/// A plain connection is probed with a read; a TLS stream must not be, as that would
/// swallow TLS records. This looks at what rustls already holds (plaintext, or a
/// `close_notify` or EOF it has seen) and then, if the socket is readable, peeks at it
/// without consuming.
/// Anything there (a `close_notify`, an EOF, a stray record) means: do not reuse.
pub fn is_idle_quiet(stream: &mut TlsStream<TcpStream>) -> bool {
    let would_block = |result: io::Result<_>| matches!(result, Err(err) if err.kind() == io::ErrorKind::WouldBlock);
    let (tcp, session) = stream.get_mut();
    if !would_block(session.reader().into_first_chunk().map(|_| ())) {
        return false;
    }
    let mut probe = [MaybeUninit::<u8>::uninit(); 1];
    // Through tokio's readiness, as the plain path's probe: the peek is made only when
    // the socket was reported readable, not once per checkout (it was one `recvfrom`
    // failing with EAGAIN per pooled request).
    let peek = || socket2::SockRef::from(&*tcp).peek(&mut probe).map(|_| ());
    would_block(tcp.try_io(tokio::io::Interest::READABLE, peek))
}
