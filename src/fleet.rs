//! The fleet: several weir instances share the admin API's changes through etcd
//! (`[fleet]`), instead of each keeping its own state file.
//!
//! The `weir-fleet` thread owns the etcd client. It lists the prefix once, then watches
//! it from the revision it has, and keeps a mirror of the fleet's objects
//! ([`objects`]). Every change it sees wakes the applier, which asks the control plane
//! to derive the running configuration again from the config file and the mirror
//! ([`crate::control::Plane::store_changed`]); a burst of changes inside
//! [`MIN_APPLY_GAP`] is one rebuild. An admin API change on any instance is written with
//! one transaction that compares every object it changes with the version this instance
//! saw (a conflict is a 409), and answered only once etcd accepted it.
//!
//! While etcd cannot be reached, the running configuration stays, and changes are
//! refused with 503. When it returns, the watch resumes from the last revision seen, or
//! the prefix is listed again if that revision was compacted away. Each instance keeps a
//! copy of the mirror in a cache file, which it starts from when etcd is down at start.
//!
//! - [`objects`]: the keys, their values, and how they combine with the config file.
//! - [`etcd`]: the thread's loops: list, watch, write, membership lease.
//! - [`cache`]: the local copy of the mirror.
//! - [`tasks`]: the applier and the membership lease.

pub mod cache;
mod etcd;
pub mod objects;
mod tasks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::config::{Config, FleetConfig};
use crate::control::{Plane, Store, StoreError, StoreStatus, View};
use crate::json::JsonWriter;
use objects::Objects;

/// Shortest time between two rebuilds from fleet changes: a burst of changes (a script
/// draining 50 backends) becomes a handful of snapshots, at most 20 a second, while one
/// change still applies within 50 ms.
pub const MIN_APPLY_GAP: Duration = Duration::from_millis(50);
/// Writes queued for the fleet thread. Admin API changes are serialised by the control
/// lock, so one is in flight at a time; the rest of the room absorbs callers that gave up.
const WRITE_QUEUE: usize = 16;
/// The key, under `{prefix}config/`, that every write also sets: its revision is the
/// configuration revision that instances report and compare.
pub const REVISION_KEY: &str = "revision";

/// What the fleet thread knows of etcd, shared with the control plane.
#[derive(Debug, Default)]
struct Mirror {
    /// The configuration objects, without the `{prefix}config/` part.
    objects: Objects,
    /// Fleet members: instance name to its JSON value.
    members: BTreeMap<String, String>,
    /// The highest etcd revision seen: the watch resumes after it.
    seen: i64,
    /// The configuration revision this instance has applied.
    applied: i64,
    /// The revision of this instance's last accepted write.
    written: i64,
    /// Whether etcd answers now.
    connected: bool,
    /// The objects came from the cache file and etcd has not been read since.
    from_cache: bool,
}

impl Mirror {
    /// The configuration revision of the objects held: that of the last write the watch
    /// (or a list of the prefix) brought, so every change up to it is held.
    fn config_revision(&self) -> i64 {
        self.objects.get(REVISION_KEY).map_or(0, |entry| entry.modified)
    }
}

/// `weir_fleet_*_total`.
#[derive(Debug, Default)]
struct Counters {
    applies: AtomicU64,
    conflicts: AtomicU64,
    write_failures: AtomicU64,
    relists: AtomicU64,
}

/// One object a write changes: its new value (`None` deletes it) and the revision it must
/// still have in etcd (0: it must not exist).
#[derive(Debug)]
struct Change {
    key: String,
    value: Option<String>,
    expected: i64,
}

/// What else must be as the edit saw it for the write to go through, though the write
/// does not change it: objects another edit could change so that, together, the two
/// break a rule of the config file (a route to a pool being removed).
#[derive(Debug, PartialEq, Eq)]
enum Guard {
    /// The object must still have this version (0: it must not exist).
    Key(String, i64),
    /// No object under this key prefix may have changed after this revision.
    Prefix(String, i64),
}

/// A write for the fleet thread, answered on `reply`.
struct Write {
    changes: Vec<Change>,
    guards: Vec<Guard>,
    /// Past this the caller gave up: the write is dropped, not sent late.
    deadline: Instant,
    reply: mpsc::SyncSender<Result<i64, StoreError>>,
}

/// A running fleet member: the mirror, the write queue, and the control plane it feeds.
pub struct Fleet {
    config: FleetConfig,
    /// This instance's name in the fleet list.
    name: String,
    /// The admin address other operators reach this instance on, for the fleet list.
    admin: Option<SocketAddr>,
    mirror: Mutex<Mirror>,
    writes: tokio::sync::mpsc::Sender<Write>,
    counters: Counters,
    cache: Option<PathBuf>,
    /// Wakes the applier after the mirror changed.
    wake: tokio::sync::Notify,
    /// Wakes the membership task after an apply, to publish the new revision.
    applied: tokio::sync::Notify,
    /// The control plane, once it exists; weak, since the plane holds the fleet.
    plane: OnceLock<Weak<Plane>>,
    /// Set when the balancer did not start after all: the thread ends.
    stopped: std::sync::atomic::AtomicBool,
}

impl Fleet {
    /// Starts the `weir-fleet` thread for `file`'s `[fleet]` and reads the fleet state:
    /// from etcd if it answers within the fleet `timeout`, else from the cache file
    /// (logged as an error). `None` without `[fleet]`.
    pub fn start(file: &Config) -> std::io::Result<Option<Arc<Fleet>>> {
        let Some(config) = file.fleet.clone() else { return Ok(None) };
        let (writes, queue) = tokio::sync::mpsc::channel(WRITE_QUEUE);
        let fleet = Arc::new(Fleet {
            name: config.name.clone().unwrap_or_else(|| default_name(file.admin.listen)),
            admin: file.admin.listen,
            cache: cache::path_for(file, &config),
            config,
            mirror: Mutex::new(Mirror::default()),
            writes,
            counters: Counters::default(),
            wake: tokio::sync::Notify::new(),
            applied: tokio::sync::Notify::new(),
            plane: OnceLock::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
        });
        let (first, listed) = mpsc::sync_channel(1);
        etcd::spawn(Arc::clone(&fleet), queue, first)?;
        let wait = fleet.config.timeout * 2 + Duration::from_secs(1);
        match listed.recv_timeout(wait) {
            Ok(Ok(revision)) => {
                tracing::info!(revision, prefix = %fleet.config.prefix, "fleet: state read from etcd")
            }
            Ok(Err(why)) => fleet.start_from_cache(&why),
            Err(_) => fleet.start_from_cache("no answer in time"),
        }
        Ok(Some(fleet))
    }

    fn start_from_cache(&self, why: &str) {
        let loaded = self.cache.as_deref().map(cache::load);
        let mut mirror = self.lock();
        if mirror.connected {
            // The first read of etcd finished after all, just past the wait: it wins.
            return;
        }
        match loaded {
            Some(Ok(objects)) => {
                mirror.objects = objects;
                mirror.applied = mirror.config_revision();
                mirror.from_cache = true;
                tracing::error!(
                    revision = mirror.applied,
                    "fleet: etcd is unreachable at start ({why}); serving the fleet state \
                     cached in {} until etcd answers, and refusing API changes",
                    self.cache.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
                );
            }
            Some(Err(error)) => tracing::error!("fleet: etcd is unreachable at start ({why}) and the cache file cannot be read ({error}); starting from the config file alone"),
            None => tracing::error!("fleet: etcd is unreachable at start ({why}) and there is no cache file; starting from the config file alone"),
        }
    }

    /// Ends the fleet thread (and its lease) of a balancer that failed to start.
    pub fn stop(&self) {
        self.stopped.store(true, Relaxed);
    }

    /// Hands the fleet its control plane: from now on, changes seen in etcd are applied.
    pub fn attach(&self, plane: &Arc<Plane>) {
        let _ = self.plane.set(Arc::downgrade(plane));
        self.wake.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, Mirror> {
        // The mirror holds no invariant a panic could break half-way (each field is
        // replaced whole), so a poisoned lock is still safe to use.
        self.mirror.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The full etcd key of a relative configuration key.
    fn config_key(&self, key: &str) -> String {
        format!("{}config/{key}", self.config.prefix)
    }

    /// The full etcd key of this instance's membership.
    fn member_key(&self) -> String {
        format!("{}instances/{}", self.config.prefix, self.name)
    }
}

/// An instance's default name: the host name and admin port, unique on a host.
fn default_name(admin: Option<SocketAddr>) -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    let host = if host.is_empty() { "weir".to_string() } else { host };
    // A fixed admin port tells instances on one host apart; port 0 does not.
    match admin.filter(|addr| addr.port() != 0) {
        Some(addr) => format!("{host}:{}", addr.port()),
        None => format!("{host}:pid{}", std::process::id()),
    }
}

impl Store for Fleet {
    fn apply(&self, file: &Config) -> (Config, Vec<String>) {
        let objects = self.lock().objects.clone();
        objects::combine(file, &objects)
    }

    fn view(&self, file: &Config) -> Result<View, StoreError> {
        self.catch_up();
        let (objects, revision) = {
            let mirror = self.lock();
            if !mirror.connected {
                self.counters.write_failures.fetch_add(1, Relaxed);
                return Err(StoreError::Unavailable("not connected".into()));
            }
            (mirror.objects.clone(), mirror.seen)
        };
        let versions = objects.iter().map(|(key, entry)| (key.clone(), entry.modified)).collect();
        let config = objects::combine(file, &objects).0;
        Ok(View { config, versions, revision })
    }

    fn write(&self, file: &Config, before: &View, after: &Config) -> Result<i64, StoreError> {
        let (changes, guards) = changes(file, before, after);
        if changes.is_empty() {
            return Ok(self.lock().applied);
        }
        let wait = self.config.timeout + Duration::from_millis(500);
        let (reply, answer) = mpsc::sync_channel(1);
        let write = Write { changes, guards, deadline: Instant::now() + wait, reply };
        let result = match self.writes.try_send(write) {
            Err(_) => Err(StoreError::Unavailable("the fleet thread is busy".into())),
            Ok(()) => answer.recv_timeout(wait).unwrap_or_else(|_| {
                Err(StoreError::Unknown(format!("no answer within {}ms", wait.as_millis())))
            }),
        };
        match &result {
            Err(StoreError::Conflict { .. }) => self.counters.conflicts.fetch_add(1, Relaxed),
            Err(_) => self.counters.write_failures.fetch_add(1, Relaxed),
            Ok(_) => 0,
        };
        result
    }

    fn status(&self) -> StoreStatus {
        let mirror = self.lock();
        StoreStatus {
            revision: mirror.applied,
            written: mirror.written,
            connected: mirror.connected,
            from_cache: mirror.from_cache,
            applies: self.counters.applies.load(Relaxed),
            conflicts: self.counters.conflicts.load(Relaxed),
            write_failures: self.counters.write_failures.load(Relaxed),
            relists: self.counters.relists.load(Relaxed),
        }
    }

    fn members_json(&self) -> String {
        let mirror = self.lock();
        members_json(&self.name, &mirror)
    }
}

impl Fleet {
    /// Waits (at most the fleet `timeout`) until the watch has brought this instance's own
    /// last write: a view older than it would make the next structural write conflict
    /// with itself.
    fn catch_up(&self) {
        let until = Instant::now() + self.config.timeout;
        while Instant::now() < until {
            let mirror = self.lock();
            if mirror.seen >= mirror.written || !mirror.connected {
                return;
            }
            drop(mirror);
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The objects `after` changes relative to `before`, each with its version in `before`;
/// and the guards that keep two such writes from breaking a rule together: a write that
/// changes a pool object (adds or removes a pool) or the route list requires every pool
/// object and the route list to be as `before` saw them.
fn changes(file: &Config, before: &View, after: &Config) -> (Vec<Change>, Vec<Guard>) {
    let old = objects::values(file, &before.config);
    let new = objects::values(file, after);
    let keys = old.keys().chain(new.keys()).collect::<std::collections::BTreeSet<_>>();
    let version = |key: &str| before.versions.get(key).copied().unwrap_or(0);
    let changes: Vec<Change> = keys
        .into_iter()
        .filter(|key| old.get(*key) != new.get(*key))
        .map(|key| Change {
            key: key.clone(),
            value: new.get(key).cloned(),
            expected: version(key),
        })
        .collect();
    let structural = changes.iter().any(|c| c.key == objects::ROUTES || is_pool_key(&c.key));
    let mut guards = Vec::new();
    if structural {
        if !changes.iter().any(|c| c.key == objects::ROUTES) {
            guards.push(Guard::Key(objects::ROUTES.into(), version(objects::ROUTES)));
        }
        guards.push(Guard::Prefix("pools/".into(), before.revision));
    }
    (changes, guards)
}

/// `pools/{pool}`, not one of its backends.
fn is_pool_key(key: &str) -> bool {
    key.strip_prefix("pools/").is_some_and(|rest| !rest.contains('/'))
}

/// `GET /api/v1/fleet`: this instance's view, and every member with a `lagging` flag
/// (its applied revision is below the highest any member reports).
fn members_json(name: &str, mirror: &Mirror) -> String {
    let members: Vec<serde_json::Value> =
        mirror.members.values().filter_map(|v| serde_json::from_str(v).ok()).collect();
    let revision_of =
        |m: &serde_json::Value| m.get("revision").and_then(serde_json::Value::as_i64).unwrap_or(0);
    let highest = members.iter().map(revision_of).max().unwrap_or(0).max(mirror.applied);
    let mut json = JsonWriter::with_capacity(256);
    json.begin_object();
    json.key("name");
    json.string(name);
    json.key("revision");
    json.u64(u64::try_from(mirror.applied).unwrap_or(0));
    json.key("connected");
    json.bool(mirror.connected);
    json.key("from_cache");
    json.bool(mirror.from_cache);
    json.end_object();
    let mut text = json.finish();
    text.pop();
    text.push_str(",\"instances\":[");
    for (index, member) in members.iter().enumerate() {
        let mut member = member.clone();
        if let Some(fields) = member.as_object_mut() {
            fields.insert(
                "lagging".into(),
                (revision_of(&serde_json::Value::Object(fields.clone())) < highest).into(),
            );
        }
        if index > 0 {
            text.push(',');
        }
        text.push_str(&member.to_string());
    }
    text.push_str("]}");
    text
}
