//! Live configuration changes: admin API edits, reloads of the config file, and the
//! state file that keeps API edits across both.
//!
//! Every change goes the same way: a new [`Config`] is checked, built into a snapshot by
//! the [`Registry`](crate::snapshot::Registry) (which keeps live state by identity and
//! drains removed backends), the state file is written if API changes are involved, and
//! only then is the snapshot swapped in, atomically. The control mutex serialises
//! changes; it is always taken before the registry mutex. [`Plane`] owns all of it.

mod error;
pub mod listeners;
mod plane;
mod shared;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::Config;
use crate::shard::Counter;
use crate::state;
pub use error::{EditError, ReloadError, StateError};
pub use plane::Plane;
pub use store::{Store, StoreError, StoreStatus, View};

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
    /// Where API changes persist; `None` when off, or when they go to `store`.
    state_path: Option<PathBuf>,
    /// The fleet store that takes API changes instead of the state file (`[fleet]`).
    store: Option<Arc<dyn Store>>,
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

/// Reads the state file for `file` and applies it. Returns the control state and the
/// configuration to start with. Fails when the state file is unreadable or malformed:
/// starting without the API's changes would silently undo them.
pub fn prepare(
    file: Config,
    store: Option<Arc<dyn Store>>,
) -> Result<(Control, Config), StateError> {
    let loader = file.source.clone().map(|path| -> Loader {
        Box::new(move || {
            crate::config::parse::load_file(&path)
                .map_err(|errors| errors.iter().map(ToString::to_string).collect())
        })
    });
    if let Some(store) = store {
        tracing::info!("admin API changes go to the fleet store; the state file is not used");
        let (running, notes) = store.apply(&file);
        for note in &notes {
            tracing::warn!("fleet: {note}");
        }
        let file = Arc::new(file);
        let control =
            Control { file, state_path: None, store: Some(store), loader, upgrading: false };
        return Ok((control, running));
    }
    let state_path = state::path_for(&file);
    let overrides = match &state_path {
        Some(path) => state::file::load(path).map_err(StateError)?,
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
    let control =
        Control { file: Arc::new(file), state_path, store: None, loader, upgrading: false };
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

/// Starts the thread that lets drained backends go. It stops when the balancer drains.
/// While a backend drains it looks every `DRAIN_POLL`; otherwise it sleeps until a new
/// snapshot or shutdown unparks it ([`Plane::wake_drainer`]).
pub fn spawn_drainer(plane: Arc<Plane>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("weir-drain".into()).spawn(move || {
        // Set before the first look, so no change after it goes unnoticed: an unpark
        // that comes before a park makes that park return at once.
        let _ = plane.drainer.set(std::thread::current());
        // Bounded by shutdown: the flag is checked every pass, and shutdown unparks.
        while !*plane.data().shutdown.borrow() {
            let draining = plane.settle_departures();
            std::thread::park_timeout(if draining { DRAIN_POLL } else { DRAIN_IDLE_POLL });
        }
    })
}

#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;
