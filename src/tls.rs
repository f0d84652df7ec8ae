//! TLS building blocks: connectors to HTTPS backends and acceptors for TLS listeners.
//!
//! # Layout
//!
//! - [`client`]: [`client::Connector`], one per backend and shared by every worker. It holds
//!   the session cache, so TLS 1.3 tickets and TLS 1.2 sessions learnt by one worker resume
//!   the next connection of any worker.
//! - [`server`]: [`server::Acceptor`], one per TLS listener, choosing a certificate by SNI
//!   and swapping certificates on [`server::Acceptor::reload`] without touching live
//!   connections.
//! - [`TlsError`]: why a handshake or a settings file failed, as a short reason for
//!   `502 upstream TLS error: <reason>` and a fixed label for counters.
//!
//! Everything here takes plain settings structs ([`client::ClientSettings`],
//! [`server::ListenerSettings`]) rather than weir's configuration, so the data path decides
//! where settings come from. Files are read when a connector or acceptor is built (start
//! and reload), never on the request path.
//!
//! # Why ring
//!
//! rustls runs on the `ring` crypto provider. Both candidates build on a fresh machine with
//! only a C compiler: ring compiles its C and pre-generated assembly with `cc`, and
//! aws-lc-sys 0.47 also builds with `cc` (CMake only for FIPS and a few configurations).
//! Measured on the 2-core machine, from scratch: rustls with ring builds in 8 s (debug) and
//! 17 s (release), with aws-lc-rs in 22 s and 39 to 48 s. aws-lc-rs runs faster: in memory,
//! client and server on one thread, AES-256-GCM moves 4.8 GiB/s against 3.3 GiB/s, full
//! TLS 1.3 handshakes are 1.1 times as fast with ECDSA P-256 and twice with RSA-2048, and
//! resumptions 1.1 times. weir pools upstream connections and resumes sessions, so full
//! handshakes are rare and what remains is bulk encryption, a few percent of a core per
//! Gbit/s with either. ring is kept for the shorter build and smaller native part; it lacks
//! post-quantum key exchange (X25519MLKEM768) and FIPS. Moving to aws-lc-rs changes only
//! the Cargo features and `provider` and `ticketer` below.

pub mod client;
pub mod server;

mod error;
mod files;
mod insecure;
mod session;
mod sni;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::SupportedProtocolVersion;

pub use client::{ClientSettings, Connector, Handshake};
pub use error::{TlsError, REASONS};
pub use server::{Acceptor, ListenerSettings};

/// How long a handshake may take by default, on either side. A peer that opens a TCP
/// connection and then stalls must not hold a task forever.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most ALPN protocols a connector or listener advertises. Real lists have one or two
/// entries (`h2`, `http/1.1`); the bound keeps a configuration mistake small.
pub const MAX_ALPN_PROTOCOLS: usize = 8;

/// A TLS protocol version, for `min_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246).
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
}

impl TlsVersion {
    /// The versions enabled when this is the minimum, newest first.
    fn and_newer(self) -> &'static [&'static SupportedProtocolVersion] {
        static BOTH: [&SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        match self {
            TlsVersion::Tls12 => &BOTH,
            TlsVersion::Tls13 => &BOTH[..1],
        }
    }
}

/// The process-wide crypto provider: ring (see the module docs for why). Built once.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// Session ticket keys from the same provider, rotated every 6 hours by rustls.
pub(crate) fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, TlsError> {
    rustls::crypto::ring::Ticketer::new()
        .map_err(|err| TlsError::Config(format!("session tickets: {err}")))
}

/// Turns configured ALPN names into wire form, refusing empty or oversized ones.
fn alpn_protocols(names: &[String]) -> Result<Vec<Vec<u8>>, TlsError> {
    if names.len() > MAX_ALPN_PROTOCOLS {
        return Err(TlsError::Config(format!(
            "alpn: {} protocols, at most {MAX_ALPN_PROTOCOLS} allowed",
            names.len()
        )));
    }
    names
        .iter()
        .map(|name| {
            // RFC 7301 §3.1: a protocol name is 1 to 255 bytes.
            if name.is_empty() || name.len() > 255 {
                return Err(TlsError::Config(format!("alpn: invalid protocol name {name:?}")));
            }
            Ok(name.as_bytes().to_vec())
        })
        .collect()
}
