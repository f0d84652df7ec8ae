//! The client session cache one [`super::Connector`] shares between all workers.
//!
//! rustls's `ClientSessionMemoryCache` keeps 8 TLS 1.3 tickets per server. A ticket is used
//! once, and each new connection brings back one or two, so a burst of more than 8
//! concurrent new connections to one backend (every worker refilling its pool at once)
//! would fall back to full handshakes. This cache keeps up to
//! [`MAX_TLS13_TICKETS_PER_NAME`] tickets for the few names one connector uses.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use rustls::NamedGroup;

/// Most server names remembered. A connector always sends one name; the bound only keeps
/// the cache finite whatever calls it.
const MAX_SERVER_NAMES: usize = 4;

/// Most TLS 1.3 tickets kept per name. A ticket with its copy of the server's chain takes
/// a few KiB, so this bounds one backend's cache to well under a MiB while absorbing
/// bursts of that many concurrent new connections.
pub(crate) const MAX_TLS13_TICKETS_PER_NAME: usize = 128;

struct Entry {
    name: ServerName<'static>,
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    /// Oldest first; the newest is used first, as it is the least likely to be expired.
    tls13: VecDeque<Tls13ClientSessionValue>,
}

/// Sessions and tickets by server name, behind one mutex taken once or twice per new
/// connection (never per request).
pub(crate) struct SessionCache {
    entries: Mutex<Vec<Entry>>,
}

impl SessionCache {
    /// An empty cache.
    pub(crate) fn new() -> SessionCache {
        SessionCache { entries: Mutex::new(Vec::with_capacity(1)) }
    }

    /// Every operation leaves the entries consistent, so a panic elsewhere while the lock
    /// was held cannot have broken them: a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `edit` on the entry for `name`, creating it (and evicting the oldest name when
    /// full) if needed.
    fn edit(&self, name: ServerName<'static>, edit: impl FnOnce(&mut Entry)) {
        let mut entries = self.lock();
        let index = match entries.iter().position(|entry| entry.name == name) {
            Some(index) => index,
            None => {
                if entries.len() == MAX_SERVER_NAMES {
                    entries.remove(0);
                }
                entries.push(Entry { name, kx_hint: None, tls12: None, tls13: VecDeque::new() });
                entries.len() - 1
            }
        };
        edit(&mut entries[index]);
        debug_assert!(entries.len() <= MAX_SERVER_NAMES);
    }

    fn read<T>(&self, name: &ServerName<'_>, read: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut entries = self.lock();
        entries.iter_mut().find(|entry| entry.name == *name).map(read)
    }
}

impl ClientSessionStore for SessionCache {
    fn set_kx_hint(&self, name: ServerName<'static>, group: NamedGroup) {
        self.edit(name, |entry| entry.kx_hint = Some(group));
    }

    fn kx_hint(&self, name: &ServerName<'_>) -> Option<NamedGroup> {
        self.read(name, |entry| entry.kx_hint).flatten()
    }

    fn set_tls12_session(&self, name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.edit(name, |entry| entry.tls12 = Some(value));
    }

    fn tls12_session(&self, name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.read(name, |entry| entry.tls12.clone()).flatten()
    }

    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.read(name, |entry| entry.tls12 = None);
    }

    fn insert_tls13_ticket(&self, name: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.edit(name, |entry| {
            if entry.tls13.len() == MAX_TLS13_TICKETS_PER_NAME {
                entry.tls13.pop_front();
            }
            entry.tls13.push_back(value);
            debug_assert!(entry.tls13.len() <= MAX_TLS13_TICKETS_PER_NAME);
        });
    }

    fn take_tls13_ticket(&self, name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.read(name, |entry| entry.tls13.pop_back()).flatten()
    }
}

impl fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Sessions hold secrets: show only how many there are. `try_lock`, because a
        // formatter must never wait, nor deadlock when called with the lock held.
        let mut debug = f.debug_struct("SessionCache");
        if let Ok(entries) = self.entries.try_lock() {
            let tickets: usize = entries.iter().map(|entry| entry.tls13.len()).sum();
            debug.field("names", &entries.len()).field("tls13_tickets", &tickets);
        }
        debug.finish_non_exhaustive()
    }
}
