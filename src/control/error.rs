//! Why a control-plane change was refused, by cause. The texts are what users read (the
//! admin API's `{"error": ...}`, the log, `weir`'s exit message); which HTTP status a
//! cause gets is decided by the admin API, at its edge.

use std::fmt;
use std::io;

use crate::snapshot::BuildError;

/// The message of a poisoned internal lock, as API clients read it.
const POISONED: &str = "internal lock poisoned";

/// Why an admin API change was refused. Nothing changed.
#[derive(Debug)]
pub enum EditError<E> {
    /// The change itself refused, for its own reason (a missing pool, a bad body).
    Change(E),
    /// The changed configuration breaks a rule of the config file.
    Invalid(String),
    /// The changed configuration cannot be built (a backend does not resolve).
    Build(BuildError),
    /// The state file cannot be written; its I/O error says whether it grew too large.
    StateFile(io::Error),
    /// A binary upgrade is handing over: a change here would be lost.
    Upgrading,
    /// An internal lock was poisoned by a panic.
    Poisoned,
    /// The fleet store refused or could not take the change.
    Store(super::StoreError),
}

impl<E: fmt::Display> fmt::Display for EditError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::Change(refusal) => refusal.fmt(f),
            EditError::Invalid(message) => f.write_str(message),
            EditError::Build(error) => error.fmt(f),
            EditError::StateFile(error) => {
                write!(f, "cannot write the state file ({error}); nothing changed")
            }
            EditError::Upgrading => {
                f.write_str("binary upgrade in progress; retry the change on the new process")
            }
            EditError::Poisoned => f.write_str(POISONED),
            EditError::Store(error) => error.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for EditError<E> {}

/// Why a reload was refused. The running snapshot stays.
#[derive(Debug)]
pub enum ReloadError {
    /// The config file cannot be read again, or is invalid: every problem, file
    /// problems as `FILE:LINE:COL: message`.
    Load(Vec<String>),
    /// weir was started without a config file.
    NoSource,
    /// The reloaded configuration would open the admin API to the network without a
    /// token.
    Exposure(String),
    /// A new listener address cannot be bound, a TLS listener's certificates cannot be
    /// read, or a listener would change between plain and TLS.
    Listeners(String),
    /// The reloaded configuration cannot be built (a backend does not resolve).
    Build(BuildError),
    /// An internal lock was poisoned by a panic; names which.
    Poisoned(&'static str),
}

impl ReloadError {
    /// Every problem, one message each: what the admin API lists and the log shows.
    pub fn messages(self) -> Vec<String> {
        match self {
            ReloadError::Load(errors) => errors,
            other => vec![other.to_string()],
        }
    }
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Load(errors) => f.write_str(&errors.join("; ")),
            ReloadError::NoSource => {
                f.write_str("no config file to reload: weir was started without one")
            }
            ReloadError::Exposure(message) | ReloadError::Listeners(message) => {
                f.write_str(message)
            }
            ReloadError::Build(error) => error.fmt(f),
            ReloadError::Poisoned(which) => write!(f, "{which} lock poisoned"),
        }
    }
}

impl std::error::Error for ReloadError {}

/// Why the state file kept the balancer from starting: starting without the API's
/// changes would silently undo them.
#[derive(Debug)]
pub struct StateError(pub String);

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StateError {}
