//! A reload's listener changes: new addresses bound and TLS certificates read before the
//! reload is decided, applied only with its snapshot.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::listeners::{Listeners, Plan};
use crate::tls::Acceptor;

/// A reload's listener changes, checked and bound but not applied yet.
pub(crate) struct ListenerChanges {
    plan: Plan,
    tls: Vec<TlsListener>,
}

/// Binds a reload's new addresses (plain and TLS) and reads every TLS listener's
/// certificates, changing nothing yet: a broken certificate, an address that cannot be
/// bound, or one turning between plain and TLS refuses the reload.
pub(crate) fn prepare(listeners: &Listeners, config: &Config) -> Result<ListenerChanges, String> {
    let tls = acceptors(config, Some(listeners)).map_err(|e| e.to_string())?;
    if let Some(addr) = config.server.listen.iter().find(|a| listeners.acceptor(**a).is_some()) {
        let message = "it is a TLS listener now; changing that takes a restart";
        return Err(format!("listener {addr}: {message}"));
    }
    let plan = listeners.prepare(&every_listener(config)).map_err(|e| e.to_string())?;
    Ok(ListenerChanges { plan, tls })
}

/// Applies what [`prepare`] prepared: new certificates for new connections, then the
/// added and removed addresses.
pub(crate) fn apply(listeners: &Listeners, changes: ListenerChanges) {
    let mut tls = HashMap::with_capacity(changes.tls.len());
    for (addr, acceptor, certificates) in changes.tls {
        if let Some(certificates) = certificates {
            acceptor.install(certificates);
        }
        tls.insert(addr, acceptor);
    }
    listeners.set_tls(tls);
    listeners.commit(changes.plan);
}

/// Every listen address: the plain ones, then the `[[server.tls]]` ones.
pub fn every_listener(config: &Config) -> Vec<SocketAddr> {
    let tls = config.server.tls.iter().map(|listener| listener.listen);
    config.server.listen.iter().copied().chain(tls).collect()
}

/// What a TLS listener runs with after a start or reload: its acceptor, and certificates
/// to install in it (for an acceptor that already serves, on reload).
pub type TlsListener = (SocketAddr, Arc<Acceptor>, Option<crate::tls::server::Prepared>);

/// The acceptor of every `[[server.tls]]` listener, reading its certificates: the one
/// already serving the address (`running`, on reload) with new certificates prepared but
/// not installed, or a new one. Nothing changes until the caller installs them, so a
/// broken certificate refuses the whole reload and every listener keeps what it served.
/// An address cannot change between plain and TLS without a restart.
pub fn acceptors(config: &Config, running: Option<&Listeners>) -> io::Result<Vec<TlsListener>> {
    let mut out = Vec::with_capacity(config.server.tls.len());
    for listener in &config.server.tls {
        let addr = listener.listen;
        let context = |error| io::Error::other(format!("TLS listener {addr}: {error}"));
        if config.server.listen.contains(&addr) {
            let message = "it is also a plain HTTP listener";
            return Err(io::Error::other(format!("TLS listener {addr}: {message}")));
        }
        let existing = running.and_then(|listeners| listeners.acceptor(addr));
        let serving = running.is_some_and(|listeners| listeners.is_open(addr));
        out.push(match existing {
            Some(acceptor) => {
                let certificates = acceptor.prepare(&listener.settings).map_err(context)?;
                (addr, acceptor, Some(certificates))
            }
            None if serving => {
                let message = "it is a plain HTTP listener now; changing that takes a restart";
                return Err(io::Error::other(format!("TLS listener {addr}: {message}")));
            }
            None => (addr, Arc::new(Acceptor::new(&listener.settings).map_err(context)?), None),
        });
    }
    Ok(out)
}
