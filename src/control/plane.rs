//! [`Plane`], the one owner of the control plane: every change to the running
//! configuration (API edits, reloads, DNS discovery, backends that finished draining)
//! goes through it, and it alone builds and swaps snapshots.

use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;

use tokio::sync::{watch, Notify};

use super::{listeners, Control, EditError, Loader, ReloadError, ReloadStats};
use crate::config::{validate, Config};
use crate::context::Context;
use crate::discovery;
use crate::metrics::FrontendStats;
use crate::shard::Sharded;
use crate::snapshot::{BuildError, Built, Registry, Snapshot};
use crate::state;

/// The control plane of a running balancer: the control state (the config file's view,
/// the state file, the loader), the registry of live backend state, and the writer of
/// the data path's snapshot. The control mutex serialises changes; it is always taken
/// before the registry mutex.
pub struct Plane {
    /// The data path's view; the plane is the only one that stores its snapshot.
    pub(super) data: Arc<Context>,
    /// Live backend state by identity; locked only while building a snapshot.
    pub(super) registry: Mutex<Registry>,
    /// The config file's view, the state file and the loader; serialises changes.
    pub(super) control: Mutex<Control>,
    /// Wakes the health thread after a swap, so probers follow the new snapshot.
    health_wake: Notify,
    /// The drain thread, unparked when a new snapshot may have started a drain and at
    /// shutdown (see [`super::spawn_drainer`]).
    pub(super) drainer: OnceLock<Thread>,
    /// `weir_config_reloads_total{result}`.
    reloads: ReloadStats,
    /// Counters of DNS discovery, for `/metrics`.
    dns: Arc<discovery::stats::Stats>,
    /// The fleet store, if any (also in `control`; here for status reads without the
    /// control lock).
    pub(super) store: Option<Arc<dyn super::Store>>,
    /// Where discovery sources hand their endpoint sets over.
    sink: Arc<discovery::coalesce::Sink>,
}

impl Plane {
    /// The control plane over `data`, starting from `control` and `registry` (which
    /// built the snapshot `data` holds).
    pub fn new(
        data: Arc<Context>,
        control: Control,
        registry: Registry,
        dns: Arc<discovery::stats::Stats>,
        sink: Arc<discovery::coalesce::Sink>,
    ) -> Plane {
        let store = control.store.clone();
        Plane {
            store,
            data,
            registry: Mutex::new(registry),
            control: Mutex::new(control),
            health_wake: Notify::new(),
            drainer: OnceLock::new(),
            reloads: ReloadStats::default(),
            dns,
            sink,
        }
    }

    /// The data path's view: the snapshot, counters, access log and listeners.
    pub fn data(&self) -> &Arc<Context> {
        &self.data
    }

    /// `weir_config_reloads_total{result}`.
    pub fn reloads(&self) -> &ReloadStats {
        &self.reloads
    }

    /// Counters of DNS discovery, for `/metrics`.
    pub fn dns(&self) -> &discovery::stats::Stats {
        &self.dns
    }

    /// Where discovery sources hand their complete endpoint sets over; rebuilds are
    /// coalesced ([`discovery::coalesce`]).
    pub fn sink(&self) -> &Arc<discovery::coalesce::Sink> {
        &self.sink
    }

    /// Unparks the drain thread: a drain may have started, or shutdown began.
    pub fn wake_drainer(&self) {
        if let Some(drainer) = self.drainer.get() {
            drainer.unpark();
        }
    }

    /// Replaces how the config file is re-read (the binary adds its flags).
    pub fn set_loader(&self, loader: Loader) {
        if let Ok(mut control) = self.control.lock() {
            control.loader = Some(loader);
        }
    }

    /// Refuses API changes from now on (`true`, as a binary upgrade begins) or again
    /// accepts them (`false`, after the upgrade failed). Waits for a change in progress,
    /// so one that was accepted is in the state file before the new process reads it.
    pub fn set_upgrading(&self, upgrading: bool) {
        match self.control.lock() {
            Ok(mut control) => control.upgrading = upgrading,
            Err(_) => tracing::error!("control lock poisoned; API changes not blocked"),
        }
    }

    /// Applies an admin API change: `change` edits a copy of the running config, which is
    /// checked, built, persisted and swapped in. `change` may name a backend, as (pool,
    /// `HOST:PORT`), that it removed and that skips its drain. On any error nothing
    /// changes.
    pub fn edit<E>(
        &self,
        change: impl FnOnce(&mut Config) -> Result<Option<(String, String)>, E>,
    ) -> Result<Arc<Snapshot>, EditError<E>> {
        let control = self.control.lock().map_err(|_| EditError::Poisoned)?;
        if control.upgrading {
            return Err(EditError::Upgrading);
        }
        if let Some(store) = control.store.clone() {
            return self.edit_shared(&control, &*store, change);
        }
        let current = self.data.snapshot.load_full();
        let (config, remove_now) = edited(&current.config, change)?;
        let mut registry = self.registry.lock().map_err(|_| EditError::Poisoned)?;
        // Put back on any error, so a refused change leaves no trace: no `?now=true` mark,
        // and removed backends keep their live state (id, counters, health).
        let saved = registry.clone();
        if let Some((pool, label)) = remove_now {
            registry.remove_now(&pool, &label);
        }
        // Names the running config has are not resolved again: a slow or failing
        // resolver must not hold the admin API (and its locks) up on unrelated changes.
        let built = self.build(&mut registry, &config, false).map_err(EditError::Build);
        // Nothing the build did reaches live state until the snapshot is published, so a
        // state file that cannot be written refuses the change without a trace.
        let saved_state = built.and_then(|built| match control.save(&config) {
            Ok(()) => Ok(built),
            Err(error) => Err(EditError::StateFile(error)),
        });
        match saved_state {
            Ok(built) => Ok(self.swap(built, "configuration changed by the admin API")),
            Err(refusal) => {
                *registry = saved;
                Err(refusal)
            }
        }
    }

    /// Swaps in a snapshot built from a freshly read config file, with the API's changes
    /// applied over it where the file did not change under them. On error the running
    /// snapshot stays. Counted in `weir_config_reloads_total`.
    pub fn reload(&self, file: Config) -> Result<u64, ReloadError> {
        let result = self.reload_file(file);
        let counter = if result.is_ok() { &self.reloads.success } else { &self.reloads.failure };
        counter.inc();
        result
    }

    /// Re-reads the config file with the loader and reloads it; every problem is returned
    /// (file problems as `FILE:LINE:COL: message`) and counted as a failed reload.
    pub fn reload_from_source(&self) -> Result<u64, ReloadError> {
        let loaded = match self.control.lock() {
            Ok(control) => match &control.loader {
                Some(load) => load().map_err(ReloadError::Load),
                None => Err(ReloadError::NoSource),
            },
            Err(_) => Err(ReloadError::Poisoned("internal")),
        };
        match loaded {
            Ok(config) => self.reload(config),
            Err(errors) => {
                self.reloads.failure.inc();
                Err(errors)
            }
        }
    }

    fn reload_file(&self, file: Config) -> Result<u64, ReloadError> {
        let mut control = self.control.lock().map_err(|_| ReloadError::Poisoned("control"))?;
        let current = self.data.snapshot.load_full();
        if file.server.workers != current.config.server.workers {
            tracing::warn!("a worker count change takes effect on restart or binary upgrade");
        }
        let (mut running, notes) = match &control.store {
            Some(store) => store.apply(&file),
            None => state::apply(&file, &state::diff(&control.file, &current.config)),
        };
        // The admin listener is bound at start and a reload cannot move it, so the token
        // rule is checked against the address it really listens on.
        running.admin.listen = current.config.admin.listen;
        validate::exposure(&running).map_err(ReloadError::Exposure)?;
        for note in &notes {
            tracing::warn!("reload: {note}");
        }
        let running = Arc::new(running);
        let mut registry = self.registry.lock().map_err(|_| ReloadError::Poisoned("registry"))?;
        // New addresses are bound first: one that cannot be bound refuses the reload.
        let listeners = listeners::prepare(&self.data.listeners, &file);
        let listeners = listeners.map_err(ReloadError::Listeners)?;
        let snapshot = self.build(&mut registry, &running, true).map_err(ReloadError::Build)?;
        control.file = Arc::new(file);
        if !notes.is_empty() && control.store.is_none() {
            control.persist(&running);
        }
        let generation = self.swap(snapshot, "configuration reloaded").generation;
        listeners::apply(&self.data.listeners, listeners);
        Ok(generation)
    }

    /// Builds the next snapshot, resolving every fixed backend again if `fresh`; the
    /// generation is read under the registry lock, so it grows by one with every swap
    /// whoever makes it.
    pub(super) fn build(
        &self,
        registry: &mut Registry,
        config: &Arc<Config>,
        fresh: bool,
    ) -> Result<Built, BuildError> {
        let generation = self.data.snapshot.load().generation + 1;
        if fresh {
            registry.build(config, generation)
        } else {
            registry.rebuild(config, generation)
        }
    }

    /// Publishes `built` (its effects on live state), swaps it in and logs `what`
    /// happened.
    pub(super) fn swap(&self, built: Built, what: &str) -> Arc<Snapshot> {
        debug_assert_eq!(built.snapshot().generation, self.data.snapshot.load().generation + 1);
        let snapshot = Arc::new(built.publish());
        self.data.snapshot.store(Arc::clone(&snapshot));
        self.snapshot_changed();
        tracing::info!(generation = snapshot.generation, "{what}");
        snapshot
    }

    /// Tells the threads that follow the snapshot that it changed: the health thread
    /// re-reads its probes, and the drain thread looks for backends that began to drain.
    fn snapshot_changed(&self) {
        self.health_wake.notify_one();
        self.wake_drainer();
    }

    /// Drops removed backends whose in-flight requests finished (or whose drain timed
    /// out) from the snapshot. Returns whether any backend is still draining.
    pub(super) fn settle_departures(&self) -> bool {
        let Ok(mut registry) = self.registry.lock() else { return false };
        if !registry.has_departures() {
            return false;
        }
        if registry.settle() {
            let current = self.data.snapshot.load_full();
            // The config did not change: fixed backends keep the addresses they have.
            match registry.rebuild(&current.config, current.generation + 1) {
                Ok(built) => drop(self.swap(built, "drained backends removed")),
                Err(error) => tracing::warn!("cannot rebuild after a drain: {error}"),
            }
        }
        registry.has_departures()
    }

    /// Records new endpoint sets of discovered names ([`crate::discovery`]) and swaps in
    /// a snapshot of the running config built with them. Refused for the causes a reload
    /// is ([`ReloadError::Build`], a poisoned lock).
    pub fn rediscover(
        &self,
        changed: Vec<(String, Vec<discovery::Endpoint>)>,
    ) -> Result<u64, ReloadError> {
        let mut registry = self.registry.lock().map_err(|_| ReloadError::Poisoned("registry"))?;
        // Loaded under the lock, so a reload cannot slip in between and be undone.
        let current = self.data.snapshot.load_full();
        // A set that waited in the sink while a reload removed its name is dropped.
        let names = discovery::names(&current.config);
        let known = changed.into_iter().filter(|(name, _)| names.contains_key(name));
        registry.discovered_mut().extend(known);
        let built = registry.rebuild(&current.config, current.generation + 1);
        let built = built.map_err(ReloadError::Build)?;
        Ok(self.swap(built, "backend addresses changed").generation)
    }

    /// Forgets the discovered addresses of names the running config no longer has.
    fn prune_discovered(&self) {
        let Ok(mut registry) = self.registry.lock() else { return };
        // Loaded under the lock: a change that adds a name back keeps its addresses.
        let current = self.data.snapshot.load_full();
        registry.prune_discovered(&current.config);
    }
}

/// A backend an API change removed without a drain: (pool, `HOST:PORT`).
pub(super) type RemovedNow = Option<(String, String)>;

/// `running` after `change`, checked by the config file's rules; and the backend, if
/// any, that `change` removed without a drain.
pub(super) fn edited<E>(
    running: &Config,
    change: impl FnOnce(&mut Config) -> Result<RemovedNow, E>,
) -> Result<(Arc<Config>, RemovedNow), EditError<E>> {
    let mut config = running.clone();
    let remove_now = change(&mut config).map_err(EditError::Change)?;
    validate::check(&config).map_err(EditError::Invalid)?;
    Ok((Arc::new(config), remove_now))
}

/// The DNS thread hands its findings to the plane; it never locks the registry.
impl discovery::Host for Plane {
    fn config(&self) -> Arc<Config> {
        Arc::clone(&self.data.snapshot.load().config)
    }

    fn shutdown(&self) -> watch::Receiver<bool> {
        self.data.shutdown.subscribe()
    }

    fn rediscovered(&self, changed: Vec<(String, Vec<discovery::Endpoint>)>) {
        if let Err(error) = self.rediscover(changed) {
            tracing::error!("dns: new addresses not applied: {error}");
        }
    }

    fn forget_names(&self) {
        self.prune_discovered();
    }
}

/// The health thread follows the snapshot the plane swaps in.
impl crate::health::service::Host for Plane {
    fn current(&self) -> Arc<Snapshot> {
        self.data.snapshot.load_full()
    }

    fn shutdown(&self) -> watch::Receiver<bool> {
        self.data.shutdown.subscribe()
    }

    fn changed(&self) -> &Notify {
        &self.health_wake
    }

    fn frontend(&self) -> &Sharded<FrontendStats> {
        &self.data.frontend
    }
}
