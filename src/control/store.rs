//! The seam between the control plane and a shared store of the admin API's changes
//! ([`crate::fleet`], on etcd), which then takes the state file's place.

use crate::config::Config;

/// A store the admin API's changes go to, shared by several instances. The control
/// plane writes through it, and derives the running configuration from the config file
/// and what it holds.
pub trait Store: Send + Sync {
    /// The running configuration for `file`: the store's changes over it, and a line for
    /// each change dropped because the file changed under it.
    fn apply(&self, file: &Config) -> (Config, Vec<String>);
    /// What an edit starts from: the running configuration the store's objects give over
    /// `file`, with the version of each object, read together. Refused while the store
    /// cannot be reached.
    fn view(&self, file: &Config) -> Result<View, StoreError>;
    /// Writes what changes from `before` to `after` (a running configuration over `file`),
    /// each object compared with its version in `before`; returns once the store accepted
    /// the write, with the store's revision.
    fn write(&self, file: &Config, before: &View, after: &Config) -> Result<i64, StoreError>;
    /// What `/metrics`, `/status` and the API show about the store.
    fn status(&self) -> StoreStatus;
    /// `GET /api/v1/fleet`: the instances sharing the store, as JSON.
    fn members_json(&self) -> String;
}

/// A running configuration and the versions of the store's objects it was derived from.
#[derive(Clone, Debug)]
pub struct View {
    /// The running configuration: the config file with the store's objects applied.
    pub config: Config,
    /// Each object's version (its last change's store revision), by key.
    pub versions: std::collections::BTreeMap<String, i64>,
    /// The store revision the view was read at: no object changed after it.
    pub revision: i64,
}

/// The store's state as the admin listener shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStatus {
    /// The store revision whose changes this instance has applied.
    pub revision: i64,
    /// The store revision of this instance's last accepted write (0: none yet).
    pub written: i64,
    /// Whether the store answers now.
    pub connected: bool,
    /// The state came from the local cache file (the store was down at start) and no
    /// fresh copy has been read since.
    pub from_cache: bool,
    /// Changes read from the store and applied (snapshot rebuilds).
    pub applies: u64,
    /// Writes refused because another instance changed the object first.
    pub conflicts: u64,
    /// Writes that failed because the store did not answer.
    pub write_failures: u64,
    /// Full re-reads of the store (at start, after a compaction or an outage).
    pub relists: u64,
}

/// Why the store refused a write. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The store cannot be reached; the running configuration stays.
    Unavailable(String),
    /// The write was sent but the store did not confirm it in time: it may still apply.
    Unknown(String),
    /// Another instance changed an object this write changes since this instance last
    /// saw it; `current` is a JSON object of those objects as the store holds them now.
    Conflict {
        /// What happened, for `{"error": ...}`.
        message: String,
        /// The objects as the store holds them (`null` for a deleted one).
        current: String,
    },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(why) => {
                write!(f, "the fleet store (etcd) is unreachable ({why}); nothing changed, and the running configuration stays")
            }
            StoreError::Unknown(why) => {
                write!(f, "the fleet store (etcd) did not confirm the change in time ({why}); it may still apply: see GET /api/v1/pools")
            }
            StoreError::Conflict { message, .. } => f.write_str(message),
        }
    }
}
