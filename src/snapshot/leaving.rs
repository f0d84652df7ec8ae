//! Backends on their way out: removed from the configuration (by the admin API or a
//! reload) while requests to them were still in flight.
//!
//! Such a backend stays in its pool's snapshot as [`BackendState::Leaving`], which no
//! strategy picks, until its in-flight count reaches zero or the drain timeout passes;
//! then [`Departures::settle`] lets it go and the caller builds a snapshot without it. A
//! removal asked for with `?now=true` skips this, as does one with nothing in flight.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::{Backend, BackendLive, BackendState, Registry};
use crate::config::{BackendAddress, Config};

/// Most backends draining out at once. Past it a removed backend leaves at once (its
/// in-flight requests still finish on the snapshot they started with): this only bounds
/// the list when backends churn by the thousand within one drain timeout.
const MAX_DEPARTURES: usize = 4096;

/// `(pool name, HOST:PORT)`: a backend's identity.
pub type Key = (String, String);

/// What a snapshot knew of a configured backend, kept so it can linger after it leaves.
#[derive(Clone, Debug)]
pub struct Known {
    /// Address as configured.
    pub address: BackendAddress,
    /// Addresses it resolved to.
    pub resolved: Vec<SocketAddr>,
    /// Its last weight.
    pub weight: u32,
}

impl Known {
    /// What `backend` is, as a snapshot has it.
    pub fn of(backend: &Backend) -> Known {
        let (address, resolved) = (backend.address.clone(), backend.resolved.clone());
        Known { address, resolved, weight: backend.weight }
    }
}

/// One backend draining out.
#[derive(Clone)]
struct Departure {
    key: Key,
    known: Known,
    live: Arc<BackendLive>,
    deadline: Instant,
}

/// Every backend draining out, and removals that skip the drain.
#[derive(Clone, Default)]
pub struct Departures {
    entries: Vec<Departure>,
    now: HashSet<Key>,
}

impl Departures {
    /// The next build removes `key` at once instead of draining it.
    pub fn remove_now(&mut self, key: Key) {
        self.now.insert(key);
    }

    /// Starts draining `key`, which just left the configuration, if requests to it are in
    /// flight; `deadline` bounds the wait.
    pub fn depart(&mut self, key: Key, known: Known, live: Arc<BackendLive>, deadline: Instant) {
        let busy = live.in_flight.load(Ordering::Relaxed) > 0;
        // `?now=true` names the configured identity; a discovered backend's key is IP:PORT.
        let configured = (key.0.clone(), known.address.authority());
        let now = self.now.contains(&key) || self.now.contains(&configured);
        if !busy || now || self.entries.iter().any(|d| d.key == key) {
            return;
        }
        if self.entries.len() >= MAX_DEPARTURES {
            tracing::warn!(backend = %key.1, "too many backends draining; removing at once");
            return;
        }
        tracing::info!(pool = %key.0, backend = %key.1, "backend removed; draining in-flight requests");
        self.entries.push(Departure { key, known, live, deadline });
        debug_assert!(self.entries.len() <= MAX_DEPARTURES);
    }

    /// Forgets departures that are configured again or whose pool is gone (`keep` says
    /// which stay), and the removals marked for this build.
    pub fn retain(&mut self, keep: impl Fn(&Key) -> bool) {
        let now = std::mem::take(&mut self.now);
        self.entries.retain(|d| keep(&d.key) && !now.contains(&d.key));
    }

    /// The departing backends of `pool`, as snapshot backends, with their identity.
    pub fn of_pool<'a>(&'a self, pool: &'a str) -> impl Iterator<Item = (Key, Backend)> + 'a {
        self.entries.iter().filter(move |d| d.key.0 == pool).map(|d| {
            let backend = Backend {
                address: d.known.address.clone(),
                label: d.key.1.clone(),
                resolved: d.known.resolved.clone(),
                weight: d.known.weight,
                // A leaving backend takes no new request in any tier.
                tier: 0,
                serving: true,
                state: BackendState::Leaving,
                live: Arc::clone(&d.live),
            };
            (d.key.clone(), backend)
        })
    }

    /// Lets go of backends whose requests finished or whose deadline passed. Returns
    /// whether any left, so the caller builds a snapshot without them.
    pub fn settle(&mut self, now: Instant) -> bool {
        let before = self.entries.len();
        self.entries.retain(|d| {
            let in_flight = d.live.in_flight.load(Ordering::Relaxed);
            if in_flight > 0 && now >= d.deadline {
                tracing::warn!(backend = %d.key.1, in_flight, "drain timeout passed; backend leaves");
            }
            in_flight > 0 && now < d.deadline
        });
        self.entries.len() != before
    }

    /// Whether any backend is draining out.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Registry {
    /// The next build drops backend `label` of `pool` (its configured `HOST:PORT`) at
    /// once, in-flight requests or not (they still finish on the snapshot they hold).
    pub fn remove_now(&mut self, pool: &str, label: &str) {
        self.departures.remove_now((pool.to_string(), label.to_string()));
    }

    /// Lets go of departing backends that are done; true when the caller should build a
    /// snapshot without them.
    pub fn settle(&mut self) -> bool {
        self.departures.settle(Instant::now())
    }

    /// Whether removed backends are still draining out.
    pub fn has_departures(&self) -> bool {
        !self.departures.is_empty()
    }

    /// Starts draining the backends of the last snapshot that the next one (`next`) no
    /// longer holds, in pools `config` still has, and forgets departures that came back
    /// or lost their pool.
    pub(super) fn track_departures(&mut self, config: &Config, next: &HashMap<Key, Known>) {
        let pool_names: HashSet<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
        let stays = |key: &Key| pool_names.contains(key.0.as_str()) && !next.contains_key(key);
        let deadline = Instant::now() + config.server.drain_timeout;
        for (key, known) in &self.known {
            if let Some(live) = self.live.get(key).filter(|_| stays(key)) {
                self.departures.depart(key.clone(), known.clone(), Arc::clone(live), deadline);
            }
        }
        self.departures.retain(stays);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BackendState, Registry, Snapshot};
    use crate::config::{BackendAddress, BackendConfig, Config, PoolConfig, StrategyKind};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    fn config(ports: &[u16]) -> Arc<Config> {
        let backends = ports
            .iter()
            .map(|port| BackendConfig {
                address: BackendAddress::parse(&format!("127.0.0.1:{port}")).unwrap(),
                weight: 1,
                resolve: crate::config::Resolve::Once,
            })
            .collect();
        let mut config = Config::default();
        config.pools.push(PoolConfig::new("web", StrategyKind::RoundRobin, backends));
        Arc::new(config)
    }

    fn states(snapshot: &Snapshot) -> Vec<(String, BackendState)> {
        snapshot.pools[0].backends.iter().map(|b| (b.label.clone(), b.state)).collect()
    }

    #[test]
    fn a_busy_removed_backend_lingers_until_its_requests_finish() {
        let mut registry = Registry::new(1);
        let first = registry.build(&config(&[1, 2]), 1).unwrap().publish();
        let busy = Arc::clone(&first.pools[0].backends[1].live);
        busy.in_flight.store(1, Ordering::Relaxed);
        let second = registry.build(&config(&[1]), 2).unwrap().publish();
        let leaving = ("127.0.0.1:2".to_string(), BackendState::Leaving);
        assert_eq!(states(&second)[1], leaving);
        assert!(!second.pools[0].backends[1].is_usable());
        assert!(Arc::ptr_eq(&second.pools[0].backends[1].live, &busy), "same live state");
        assert!(!registry.settle(), "still busy");
        busy.in_flight.store(0, Ordering::Relaxed);
        assert!(registry.settle());
        let third = registry.build(&config(&[1]), 3).unwrap().publish();
        assert_eq!(states(&third).len(), 1);
    }

    #[test]
    fn idle_or_now_removals_leave_at_once_and_re_adding_cancels() {
        let mut registry = Registry::new(1);
        let first = registry.build(&config(&[1, 2, 3]), 1).unwrap().publish();
        assert_eq!(
            states(&registry.build(&config(&[1, 2]), 2).unwrap().publish()).len(),
            2,
            "idle"
        );
        first.pools[0].backends[1].live.in_flight.store(1, Ordering::Relaxed);
        registry.remove_now("web", "127.0.0.1:2");
        assert_eq!(states(&registry.build(&config(&[1]), 3).unwrap().publish()).len(), 1, "now");
        let again = registry.build(&config(&[1, 2]), 4).unwrap().publish();
        assert_eq!(states(&again)[1].1, BackendState::Active);
        again.pools[0].backends[1].live.in_flight.store(1, Ordering::Relaxed);
        assert!(registry.build(&config(&[1]), 5).unwrap().publish().pools[0].backends.len() == 2);
        let back = registry.build(&config(&[1, 2]), 6).unwrap().publish();
        assert_eq!(
            states(&back),
            [
                ("127.0.0.1:1".to_string(), BackendState::Active),
                ("127.0.0.1:2".to_string(), BackendState::Active)
            ]
        );
    }
}
