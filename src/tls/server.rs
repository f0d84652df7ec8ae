//! Downstream TLS: an [`Acceptor`] per TLS listener.
//!
//! The acceptor holds the current server configuration in an [`ArcSwap`]. Each handshake
//! takes the configuration current when it starts and keeps it for the connection's life,
//! so [`Acceptor::reload`] changes what new connections see and never touches live ones.
//! The session ticket keys and the TLS 1.2 session cache outlive reloads, so clients
//! resume across them.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::sni::SniResolver;
use super::{TlsError, TlsVersion, DEFAULT_HANDSHAKE_TIMEOUT};

/// A TLS connection from a client.
pub type ServerTls = TlsStream<TcpStream>;

/// TLS 1.2 sessions kept by ID for clients that do not take tickets. An entry is about
/// 200 bytes.
const SESSION_CACHE_ENTRIES: usize = 4096;

/// TLS 1.3 tickets sent after each handshake. A client uses each ticket once; two let a
/// client's ticket cache grow beyond one per connection, so bursts of new connections
/// still resume.
const TLS13_TICKETS_PER_HANDSHAKE: usize = 2;

/// How one TLS listener terminates TLS (`[[server.tls]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// (certificate chain, private key) PEM file pairs. The certificate is chosen by SNI
    /// among their DNS names (wildcards included); the first is the default. Keys may be
    /// PKCS#8, RSA (PKCS#1) or EC (SEC1).
    pub certs: Vec<(PathBuf, PathBuf)>,
    /// Oldest version accepted; `None` accepts TLS 1.2 and 1.3.
    pub min_version: Option<TlsVersion>,
    /// ALPN protocols accepted, in order of preference. A client offering none of them
    /// is refused; a client offering no ALPN at all is served.
    pub alpn: Vec<String>,
    /// Longest a handshake may take: a client that connects and stalls is dropped then.
    pub handshake_timeout: Duration,
    /// A PROXY protocol header comes before the ClientHello (`proxy_protocol`).
    pub proxy_protocol: bool,
}

impl Default for ListenerSettings {
    fn default() -> ListenerSettings {
        ListenerSettings {
            certs: Vec::new(),
            min_version: None,
            // HTTP/2 first, as browsers and nginx, HAProxy and Envoy prefer it.
            alpn: vec!["h2".to_owned(), "http/1.1".to_owned()],
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            proxy_protocol: false,
        }
    }
}

/// What one reload installed: the configuration and the timeout that goes with it.
struct Generation {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    proxy_protocol: bool,
}

/// Terminates TLS for one listener. `Send + Sync`: share it between workers in an `Arc`.
pub struct Acceptor {
    current: ArcSwap<Generation>,
    /// Session ticket keys, rotated by rustls every 6 hours; kept across reloads.
    ticketer: Arc<dyn ProducesTickets>,
    /// TLS 1.2 sessions by ID; kept across reloads.
    sessions: Arc<dyn StoresServerSessions>,
}

impl Acceptor {
    /// Reads every certificate and key in `settings` and builds the acceptor.
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`] naming the file that cannot be read, does not parse, or whose
    /// key does not match its certificate.
    pub fn new(settings: &ListenerSettings) -> Result<Acceptor, TlsError> {
        let ticketer = super::ticketer()?;
        let sessions: Arc<dyn StoresServerSessions> =
            ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        let generation = generation(settings, &ticketer, &sessions)?;
        Ok(Acceptor { current: ArcSwap::from_pointee(generation), ticketer, sessions })
    }

    /// Runs a server handshake over `tcp` with the certificates current now.
    ///
    /// # Errors
    ///
    /// Why the handshake failed, including [`TlsError::Timeout`].
    pub async fn accept(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, TlsError> {
        // A clone of the generation, not a guard: the handshake awaits, and a guard held
        // across awaits would pin arc-swap's per-thread debt slots.
        let current = self.current.load_full();
        let handshake = current.acceptor.accept(tcp);
        match tokio::time::timeout(current.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(err)) => Err(TlsError::from_io(err)),
            Err(_) => Err(TlsError::Timeout),
        }
    }

    /// Whether new connections start with a PROXY protocol header (reloadable).
    pub fn proxy_protocol(&self) -> bool {
        self.current.load().proxy_protocol
    }

    /// Swaps in the certificates, versions and ALPN of `settings` for new connections.
    /// Live connections keep the configuration they started with.
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`] if any certificate or key is unusable; the acceptor then keeps
    /// serving what it served before.
    pub fn reload(&self, settings: &ListenerSettings) -> Result<(), TlsError> {
        self.install(self.prepare(settings)?);
        Ok(())
    }

    /// Reads and checks `settings` for [`Acceptor::install`], changing nothing yet, so a
    /// caller can check several listeners before swapping any.
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`] if any certificate or key is unusable.
    pub fn prepare(&self, settings: &ListenerSettings) -> Result<Prepared, TlsError> {
        generation(settings, &self.ticketer, &self.sessions).map(Prepared)
    }

    /// Swaps in what [`Acceptor::prepare`] built, for new connections.
    pub fn install(&self, prepared: Prepared) {
        self.current.store(Arc::new(prepared.0));
    }
}

/// Certificates read and checked by [`Acceptor::prepare`], ready to install.
pub struct Prepared(Generation);

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current.load();
        f.debug_struct("Acceptor")
            .field("handshake_timeout", &current.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// Builds everything a reload swaps, or fails without side effects.
fn generation(
    settings: &ListenerSettings,
    ticketer: &Arc<dyn ProducesTickets>,
    sessions: &Arc<dyn StoresServerSessions>,
) -> Result<Generation, TlsError> {
    if settings.handshake_timeout.is_zero() {
        return Err(TlsError::Config("handshake_timeout must be positive".to_owned()));
    }
    let provider = super::provider();
    let resolver = SniResolver::load(&settings.certs, &provider)?;
    let versions = settings.min_version.unwrap_or(TlsVersion::Tls12).and_newer();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|err| TlsError::Config(format!("TLS versions: {err}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = super::alpn_protocols(&settings.alpn)?;
    config.ticketer = Arc::clone(ticketer);
    config.session_storage = Arc::clone(sessions);
    config.send_tls13_tickets = TLS13_TICKETS_PER_HANDSHAKE;
    debug_assert!(config.ticketer.enabled());
    Ok(Generation {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        handshake_timeout: settings.handshake_timeout,
        proxy_protocol: settings.proxy_protocol,
    })
}
