//! Where the backends of a snapshot connect: the addresses of fixed backends, resolved
//! at load, and the TLS connectors of `https://` ones.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};

use super::{BuildError, Registry};
use crate::config::{BackendAddress, BackendConfig, PoolConfig};
use crate::tls::Connector;

impl Registry {
    /// Records what a fixed backend resolved to, as a load would have.
    #[cfg(test)]
    pub(crate) fn remember_fixed(&mut self, authority: &str, addrs: Vec<SocketAddr>) {
        self.fixed.insert(authority.to_string(), addrs);
    }

    /// The addresses of a backend without `resolve = true` (none for one with it):
    /// resolved now if `fresh` or unknown, else as at the last load. Recorded in `fixed`.
    pub(super) fn fixed_addresses(
        &self,
        backend: &BackendConfig,
        fresh: bool,
        fixed: &mut HashMap<String, Vec<SocketAddr>>,
    ) -> Result<Vec<SocketAddr>, BuildError> {
        if backend.is_discovered() {
            return Ok(Vec::new());
        }
        let authority = backend.address.authority();
        let addrs = match self.fixed.get(&authority).filter(|_| !fresh) {
            Some(addrs) => addrs.clone(),
            None => resolve(&backend.address)?,
        };
        fixed.insert(authority, addrs.clone());
        Ok(addrs)
    }
}

/// A backend's TLS connectors: its own ([`super::BackendLive::tls`]) and, in an `auto`
/// pool, the one offering h2 ([`super::BackendLive::tls_auto`]); none for a plain backend.
pub(super) type Connectors = (Option<Connector>, Option<Connector>);

/// The TLS connectors of an `https://` backend, from its pool's `[pool.tls]` (defaults
/// when absent); `None` for a plain backend. Reads the CA and client certificate files.
pub(super) fn connectors(
    pool: &PoolConfig,
    backend: &BackendConfig,
) -> Result<Connectors, BuildError> {
    use crate::config::BackendProtocol;
    if backend.address.scheme != crate::config::Scheme::Https {
        return Ok((None, None));
    }
    let mut settings = pool.tls.clone().unwrap_or_default();
    if pool.protocol == BackendProtocol::H2 {
        // The pool speaks HTTP/2 only: a backend that would choose HTTP/1.1 fails the
        // handshake (no common protocol) instead of getting HTTP/2 it did not agree to.
        settings.alpn = vec!["h2".to_owned()];
    }
    // A connection that starts with a PROXY header names one client, so it cannot
    // become an HTTP/2 connection shared by many: such a pool stays HTTP/1.1.
    let auto = pool.protocol == BackendProtocol::Auto && pool.send_proxy_protocol.is_none();
    let auto = auto.then(|| {
        // h2 first, as curl and Envoy list it: the server picks (RFC 7301 §3.2), and
        // this is the client's preference when it weighs one.
        let alpn = vec!["h2".to_owned(), "http/1.1".to_owned()];
        crate::tls::ClientSettings { alpn, ..settings.clone() }
    });
    let connect = |settings: &crate::tls::ClientSettings| {
        Connector::new(settings, &backend.address.host).map_err(|error| BuildError::Tls {
            pool: pool.name.clone(),
            backend: backend.address.authority(),
            error,
        })
    };
    Ok((Some(connect(&settings)?), auto.as_ref().map(connect).transpose()?))
}

/// Resolves a backend host once, at load; `resolve = true` backends are discovered
/// instead ([`crate::discovery`]).
fn resolve(address: &BackendAddress) -> Result<Vec<SocketAddr>, BuildError> {
    let backend = || address.authority();
    let addrs: Vec<SocketAddr> = (address.host.as_str(), address.port)
        .to_socket_addrs()
        .map_err(|error| BuildError::Resolve { backend: backend(), error })?
        .collect();
    if addrs.is_empty() {
        return Err(BuildError::NoAddress { backend: backend() });
    }
    Ok(addrs)
}
