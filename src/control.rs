//! Live configuration changes: admin API edits, reloads of the config file, and the
//! state file that keeps API edits across both.
//!
//! Every change goes the same way: a new [`Config`] is checked, built into a snapshot by
//! the [`Registry`] (which keeps live state by identity and
//! drains removed backends), the state file is written if API changes are involved, and
//! only then is the snapshot swapped in, atomically. The control mutex serialises
//! changes; it is always taken before the registry mutex.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::{validate, Config};
use crate::server::Shared;
use crate::shard::Counter;
use crate::snapshot::{BuildError, Built, Registry, Snapshot};
use crate::state;

/// Re-reads the configuration the process was started with (file and flags).
pub type Loader = Box<dyn Fn() -> Result<Config, Vec<String>> + Send + Sync>;

/// How often the drain thread looks at backends draining out. Short, so a removed
/// backend leaves soon after its last request; the check is a few atomic loads.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// How long the drain thread sleeps while nothing drains. A change that starts a drain
/// unparks it at once, so this is only a backstop; it spares an idle process 20 wakeups
/// a second.
const DRAIN_IDLE_POLL: Duration = Duration::from_secs(10);

/// What changes the configuration needs besides the snapshot.
pub struct Control {
    /// The configuration as the file (and flags) give it, before API overrides.
    file: Arc<Config>,
    /// Where API changes persist; `None` when off.
    state_path: Option<PathBuf>,
    /// Re-reads the config file; `None` without one.
    loader: Option<Loader>,
    /// A binary upgrade is handing over: the new process has read (or is reading) the
    /// state file, so API changes here would be lost and are refused.
    upgrading: bool,
}

/// `weir_config_reloads_total{result}`.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Reloads applied.
    pub success: Counter,
    /// Reloads refused (unreadable or invalid file, unresolvable backend).
    pub failure: Counter,
}

/// Why an API change was refused: the status and the message for `{"error": ...}`.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// What is wrong.
    pub message: String,
}

impl Refusal {
    /// A refusal with `status`.
    pub fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal { status, message: message.into() }
    }
}

/// Reads the state file for `file` and applies it. Returns the control state and the
/// configuration to start with. Fails when the state file is unreadable or malformed:
/// starting without the API's changes would silently undo them.
pub fn prepare(file: Config) -> Result<(Control, Config), String> {
    let state_path = state::path_for(&file);
    let overrides = match &state_path {
        Some(path) => state::file::load(path)?,
        None => state::Overrides::default(),
    };
    match &state_path {
        Some(path) => tracing::info!("admin API changes persist in {}", path.display()),
        None => tracing::info!("admin API changes are not persisted (no state file)"),
    }
    let (running, notes) = state::apply(&file, &overrides);
    for note in &notes {
        tracing::warn!("state file: {note}");
    }
    let loader = file.source.clone().map(|path| -> Loader {
        Box::new(move || {
            crate::config::parse::load_file(&path)
                .map_err(|errors| errors.iter().map(ToString::to_string).collect())
        })
    });
    let control = Control { file: Arc::new(file), state_path, loader, upgrading: false };
    if !notes.is_empty() {
        control.persist(&running);
    }
    Ok((control, running))
}

impl Control {
    /// Writes the overrides that make `running` out of the file; logs a failure.
    fn persist(&self, running: &Config) {
        if let Err(error) = self.save(running) {
            tracing::error!("cannot write the state file: {error}");
        }
    }

    fn save(&self, running: &Config) -> std::io::Result<()> {
        match &self.state_path {
            Some(path) => state::file::save(path, &state::diff(&self.file, running)),
            None => Ok(()),
        }
    }
}

impl Shared {
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
    pub fn edit(
        &self,
        change: impl FnOnce(&mut Config) -> Result<Option<(String, String)>, Refusal>,
    ) -> Result<Arc<Snapshot>, Refusal> {
        let poisoned = || Refusal::new(500, "internal lock poisoned");
        let control = self.control.lock().map_err(|_| poisoned())?;
        if control.upgrading {
            let message = "binary upgrade in progress; retry the change on the new process";
            return Err(Refusal::new(503, message));
        }
        let current = self.snapshot.load_full();
        let mut config = (*current.config).clone();
        let remove_now = change(&mut config)?;
        validate::check(&config).map_err(|message| Refusal::new(400, message))?;
        let config = Arc::new(config);
        let mut registry = self.registry.lock().map_err(|_| poisoned())?;
        // Put back on any error, so a refused change leaves no trace: no `?now=true` mark,
        // and removed backends keep their live state (id, counters, health).
        let saved = registry.clone();
        if let Some((pool, label)) = remove_now {
            registry.remove_now(&pool, &label);
        }
        // Names the running config has are not resolved again: a slow or failing
        // resolver must not hold the admin API (and its locks) up on unrelated changes.
        let built = self.build(&mut registry, &config, false);
        let built = built.map_err(|error| Refusal::new(400, error.to_string()));
        // Nothing the build did reaches live state until the snapshot is published, so a
        // state file that cannot be written refuses the change without a trace.
        let saved_state = built.and_then(|built| match control.save(&config) {
            Ok(()) => Ok(built),
            Err(error) => {
                // Too large is this change's doing; anything else is the server's.
                let status = if error.kind() == ErrorKind::FileTooLarge { 400 } else { 500 };
                let message = format!("cannot write the state file ({error}); nothing changed");
                Err(Refusal::new(status, message))
            }
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
    pub fn reload(&self, file: Config) -> Result<u64, String> {
        let result = self.reload_file(file);
        let counter = if result.is_ok() { &self.reloads.success } else { &self.reloads.failure };
        counter.inc();
        result
    }

    /// Re-reads the config file with the loader and reloads it; every problem is returned
    /// (file problems as `FILE:LINE:COL: message`) and counted as a failed reload.
    pub fn reload_from_source(&self) -> Result<u64, Vec<String>> {
        let loaded = match self.control.lock() {
            Ok(control) => match &control.loader {
                Some(load) => load(),
                None => Err(vec!["no config file to reload: weir was started without one".into()]),
            },
            Err(_) => Err(vec!["internal lock poisoned".into()]),
        };
        match loaded {
            Ok(config) => self.reload(config).map_err(|error| vec![error]),
            Err(errors) => {
                self.reloads.failure.inc();
                Err(errors)
            }
        }
    }

    fn reload_file(&self, file: Config) -> Result<u64, String> {
        let mut control = self.control.lock().map_err(|_| "control lock poisoned".to_string())?;
        let current = self.snapshot.load_full();
        if file.server.workers != current.config.server.workers {
            tracing::warn!("a worker count change takes effect on restart or binary upgrade");
        }
        let overrides = state::diff(&control.file, &current.config);
        let (mut running, notes) = state::apply(&file, &overrides);
        // The admin listener is bound at start and a reload cannot move it, so the token
        // rule is checked against the address it really listens on.
        running.admin.listen = current.config.admin.listen;
        crate::admin::auth::check_exposure(&running)?;
        for note in &notes {
            tracing::warn!("reload: {note}");
        }
        let running = Arc::new(running);
        let mut registry =
            self.registry.lock().map_err(|_| "registry lock poisoned".to_string())?;
        // New addresses are bound first: one that cannot be bound refuses the reload.
        let listeners = self.prepare_listeners(&file)?;
        let snapshot = self.build(&mut registry, &running, true).map_err(|e| e.to_string())?;
        control.file = Arc::new(file);
        if !notes.is_empty() {
            control.persist(&running);
        }
        let generation = self.swap(snapshot, "configuration reloaded").generation;
        self.apply_listeners(listeners);
        Ok(generation)
    }

    /// Builds the next snapshot, resolving every fixed backend again if `fresh`; the
    /// generation is read under the registry lock, so it grows by one with every swap
    /// whoever makes it.
    fn build(
        &self,
        registry: &mut Registry,
        config: &Arc<Config>,
        fresh: bool,
    ) -> Result<Built, BuildError> {
        let generation = self.snapshot.load().generation + 1;
        if fresh {
            registry.build(config, generation)
        } else {
            registry.rebuild(config, generation)
        }
    }

    /// Publishes `built` (its effects on live state), swaps it in and logs `what`
    /// happened.
    pub(crate) fn swap(&self, built: Built, what: &str) -> Arc<Snapshot> {
        debug_assert_eq!(built.snapshot().generation, self.snapshot.load().generation + 1);
        let snapshot = Arc::new(built.publish());
        self.snapshot.store(Arc::clone(&snapshot));
        self.snapshot_changed();
        tracing::info!(generation = snapshot.generation, "{what}");
        snapshot
    }

    /// Tells the threads that follow the snapshot that it changed: the health thread
    /// re-reads its probes, and the drain thread looks for backends that began to drain.
    pub(crate) fn snapshot_changed(&self) {
        self.health_wake.notify_one();
        if let Some(drainer) = self.drainer.get() {
            drainer.unpark();
        }
    }

    /// Drops removed backends whose in-flight requests finished (or whose drain timed
    /// out) from the snapshot. Returns whether any backend is still draining.
    fn settle_departures(&self) -> bool {
        let Ok(mut registry) = self.registry.lock() else { return false };
        if !registry.has_departures() {
            return false;
        }
        if registry.settle() {
            let current = self.snapshot.load_full();
            // The config did not change: fixed backends keep the addresses they have.
            match registry.rebuild(&current.config, current.generation + 1) {
                Ok(built) => drop(self.swap(built, "drained backends removed")),
                Err(error) => tracing::warn!("cannot rebuild after a drain: {error}"),
            }
        }
        registry.has_departures()
    }
}

/// Starts the thread that lets drained backends go. It stops when the balancer drains.
/// While a backend drains it looks every `DRAIN_POLL`; otherwise it sleeps until a new
/// snapshot or shutdown unparks it (`Shared::snapshot_changed`, `Handle::begin_shutdown`).
pub fn spawn_drainer(shared: Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("weir-drain".into()).spawn(move || {
        // Set before the first look, so no change after it goes unnoticed: an unpark
        // that comes before a park makes that park return at once.
        let _ = shared.drainer.set(std::thread::current());
        // Bounded by shutdown: the flag is checked every pass, and shutdown unparks.
        while !*shared.shutdown.borrow() {
            let draining = shared.settle_departures();
            std::thread::park_timeout(if draining { DRAIN_POLL } else { DRAIN_IDLE_POLL });
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::Ordering;

    use crate::config::StrategyKind;
    use crate::config::{BackendAddress, BackendConfig, Config, HealthConfig, PoolConfig};
    use crate::health::{step, Event, Passive, Rules, Subject};

    fn config(ports: &[u16]) -> Config {
        let address = |port: &u16| BackendAddress::parse(&format!("127.0.0.1:{port}")).unwrap();
        let backends =
            ports.iter().map(|p| BackendConfig { address: address(p), weight: 1, resolve: false });
        let mut config = Config::default();
        config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.server.workers = 1;
        config.admin.listen = None;
        config.pools.push(PoolConfig::new("web", StrategyKind::RoundRobin, backends.collect()));
        config
    }

    /// Starts weir with `config` and a state file that cannot be written once started
    /// (its directory is a regular file), so every API change is refused with 500.
    /// Returns the handle and the directory to remove.
    fn start_unwritable(mut config: Config, name: &str) -> (crate::server::Handle, PathBuf) {
        let dir = std::env::temp_dir().join(format!("weir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let parent = dir.join("not-a-dir");
        config.admin.state_file = Some(parent.join("state.json").to_string_lossy().into_owned());
        let handle = crate::server::start(config).unwrap();
        std::fs::write(&parent, "").unwrap();
        (handle, dir)
    }

    #[test]
    fn a_change_the_state_file_refuses_keeps_pool_state() {
        // Goal: a change refused because the state file cannot be written leaves the
        // pool state it shares with the running snapshot as it was: the size, and the
        // ejection slot of an ejected backend the change would have removed.
        let (handle, dir) = start_unwritable(config(&[1, 2]), "control-pool");
        let shared = std::sync::Arc::clone(handle.shared());
        let snapshot = shared.snapshot.load_full();
        let (pool, backend) = (&snapshot.pools[0], &snapshot.pools[0].backends[1]);
        assert!(pool.live.reserve_ejection(100));
        let rules = Rules::of(&pool.settings);
        step(Subject::of("web", backend), rules, Event::Trip { failures: 5, kinds: 0 });
        assert!(matches!(backend.live.health.machine().passive, Passive::Ejected { .. }));
        let refused = shared.edit(|config| {
            config.pools[0].backends.remove(1);
            Ok(None)
        });
        assert_eq!(refused.err().map(|r| r.status), Some(500));
        assert_eq!(pool.live.ejected.load(Ordering::Relaxed), 1, "the slot is still held");
        assert_eq!(pool.live.size.load(Ordering::Relaxed), 2);
        handle.shutdown();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_refused_change_that_removes_probes_keeps_a_failed_backend_down() {
        // Goal: a change that turns probes off, refused because the state file cannot be
        // written, leaves a backend the probes took out down: building the snapshot that
        // was never swapped in must not have published it as healthy.
        let mut config = config(&[1, 2]);
        // Probes that do not run during the test: the flag is set by hand below.
        let interval = std::time::Duration::from_secs(3600);
        let probes = HealthConfig { interval, unhealthy_threshold: 1, ..HealthConfig::default() };
        config.pools[0].health = Some(probes);
        let (handle, dir) = start_unwritable(config, "control-probes");
        let shared = std::sync::Arc::clone(handle.shared());
        let snapshot = shared.snapshot.load_full();
        let (pool, backend) = (&snapshot.pools[0], &snapshot.pools[0].backends[1]);
        let failed = Event::Probe { ok: false, detail: "test" };
        step(Subject::of("web", backend), Rules::of(&pool.settings), failed);
        assert!(!backend.live.is_healthy(), "the probe took it out");
        let refused = shared.edit(|config| {
            config.pools[0].health = None;
            Ok(None)
        });
        assert_eq!(refused.err().map(|r| r.status), Some(500));
        let running = shared.snapshot.load_full();
        assert!(running.pools[0].settings.health.is_some(), "the change was refused");
        assert!(!running.pools[0].backends[1].live.is_healthy(), "still down after the refusal");
        handle.shutdown();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn api_changes_do_not_resolve_known_names_again() {
        // Goal: an API change resolves only names the registry has not seen, so a name
        // that stopped resolving (stood in for by one that never did, but is known)
        // does not refuse the change, while a new unresolvable name does.
        let known = "no-such-host.invalid:80";
        let address = |text: &str| BackendAddress::parse(text).unwrap();
        let backend =
            |text: &str| BackendConfig { address: address(text), weight: 1, resolve: false };
        let mut config = crate::config::Config::default();
        config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.server.workers = 1;
        config.admin.listen = None;
        config.pools.push(PoolConfig::new(
            "web",
            StrategyKind::RoundRobin,
            vec![backend("127.0.0.1:1")],
        ));
        let handle = crate::server::start(config).unwrap();
        let shared = std::sync::Arc::clone(handle.shared());
        let addr = "127.0.0.1:9".parse().unwrap();
        shared.registry.lock().unwrap().remember_fixed(known, vec![addr]);
        let added = shared.edit(|config| {
            config.pools[0].backends.push(backend(known));
            Ok(None)
        });
        assert_eq!(added.map(|s| s.pools[0].backends[1].resolved.clone()), Ok(vec![addr]));
        let refused = shared.edit(|config| {
            config.pools[0].backends.push(backend("other.invalid:80"));
            Ok(None)
        });
        assert_eq!(refused.err().map(|r| r.status), Some(400));
        handle.shutdown();
    }
}
