//! The state file: what the admin API changed, kept across restarts and reloads.
//!
//! The state file never holds a whole configuration. It holds overrides of sections of
//! the config file, each with a fingerprint of the file's section it was based on:
//!
//! - a pool's backends (addresses, weights, drain marks): an API edit of a file pool;
//! - a whole pool absent from the file (`base` null): a pool the API added;
//! - a pool removed (`removed`): a file pool the API deleted;
//! - the route list.
//!
//! On start and on every reload the overrides are applied over the file. An override
//! whose section of the file changed since (the fingerprint differs) is dropped and
//! logged: a later edit of the file wins for what it changes, and only for that. The
//! overrides are the difference between the file and the running config ([`diff`]), so
//! they are never stored anywhere but here.

pub mod file;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::balance::key::hash_bytes;
use crate::config::HashKey;
use crate::config::{
    validate, BackendConfig, Config, HashConfig, HostMatch, PoolConfig, RouteConfig, StickyConfig,
    StrategyKind,
};
use crate::json::JsonWriter;

/// Name of the state file beside the config file when `[admin] state_file` is not set.
pub const DEFAULT_STATE_FILE: &str = "weir.state.json";

/// A pool as the API left it.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSpec {
    /// Strategy (used only for a pool the API added).
    pub strategy: StrategyKind,
    /// `consistent_hash` key (used only for a pool the API added).
    pub hash_key: Option<HashKey>,
    /// Backends, in order.
    pub backends: Vec<BackendConfig>,
    /// Backends set to drain.
    pub draining: BTreeSet<String>,
}

/// The API's version of one pool.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolOverride {
    /// Pool name.
    pub name: String,
    /// Fingerprint of the file's pool when the override was made; `None` when the file
    /// had no such pool.
    pub base: Option<u64>,
    /// The pool, or `None` when the API removed it.
    pub pool: Option<PoolSpec>,
}

/// The API's version of the route list.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutesOverride {
    /// Fingerprint of the file's route list when the override was made.
    pub base: u64,
    /// The routes, in order.
    pub routes: Vec<RouteConfig>,
}

/// Everything the API changed relative to the config file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// Pool overrides, in the running config's order (added pools last).
    pub pools: Vec<PoolOverride>,
    /// The route list, if the API changed it.
    pub routes: Option<RoutesOverride>,
}

impl Overrides {
    /// Whether the API changed nothing.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty() && self.routes.is_none()
    }
}

/// Where the state file of `config` lives: `[admin] state_file` (relative to the config
/// file's directory), else `weir.state.json` beside the config file. `None` when it is
/// `"off"`, or when there is no config file and no `state_file` is set.
pub fn path_for(config: &Config) -> Option<PathBuf> {
    beside_config(config, config.admin.state_file.as_deref(), DEFAULT_STATE_FILE)
}

/// A file weir keeps beside its config file: `setting` (relative to the config file's
/// directory), else `default` there. `None` when `setting` is `"off"`, or when there is
/// no config file and no setting.
pub fn beside_config(config: &Config, setting: Option<&str>, default: &str) -> Option<PathBuf> {
    let dir = config.source.as_deref().map(|p| p.parent().unwrap_or(Path::new("")));
    match (setting, dir) {
        (Some("off"), _) => None,
        (Some(name), Some(dir)) => Some(dir.join(name)),
        (Some(name), None) => Some(PathBuf::from(name)),
        (None, Some(dir)) => Some(dir.join(default)),
        (None, None) => None,
    }
}

/// The fingerprint of a file pool: what a pool override replaces (strategy, backends,
/// drain marks). Other settings (timeouts, health) may change without dropping it.
pub fn pool_fingerprint(pool: &PoolConfig) -> u64 {
    let mut text = format!("{}|", pool.strategy.name());
    for backend in &pool.backends {
        let resolve = match backend.resolve {
            crate::config::Resolve::Once => String::new(),
            crate::config::Resolve::Addresses => "+dns".to_string(),
            crate::config::Resolve::Srv => "+srv".to_string(),
            crate::config::Resolve::Kubernetes(port) => format!("+k8s:{}", port.text()),
        };
        let _ = write!(text, "{}={}{resolve},", backend.address, backend.weight);
    }
    for label in &pool.draining {
        let _ = write!(text, "drain:{label},");
    }
    hash_bytes(text.as_bytes())
}

/// The fingerprint of a route list.
pub fn routes_fingerprint(routes: &[RouteConfig]) -> u64 {
    let mut text = String::new();
    for route in routes {
        let host = route.host.as_ref().map(host_text).unwrap_or_default();
        let prefix = route.path_prefix.as_deref().unwrap_or("");
        let _ = write!(text, "{host}|{prefix}|{}|{:?}", route.pool, route.acl);
        // Only when present, so state files written before rules and limits existed
        // still match.
        if !route.limits.is_empty() {
            let _ = write!(text, "|limits:{:?}", route.limits);
        }
        if !route.rules.is_empty() {
            let _ = write!(text, "|{:?}", route.rules);
        }
        text.push(';');
    }
    hash_bytes(text.as_bytes())
}

/// A route's host as written in the file.
pub fn host_text(host: &HostMatch) -> String {
    match host {
        HostMatch::Exact(name) => name.clone(),
        HostMatch::Suffix(suffix) => format!("*{suffix}"),
    }
}

/// Routes as a JSON array of `{"index", "host", "path_prefix", "pool", "allow", "deny",
/// "limits"}`; the state file uses the same form, and the admin API's `/api/v1/routes`
/// shows it, with `rules` (each route's header rules, redirect, rewrite and `max_body`),
/// which the state file does not keep.
pub fn write_routes(json: &mut JsonWriter, routes: &[RouteConfig], rules: bool) {
    json.begin_array();
    for (index, route) in routes.iter().enumerate() {
        json.begin_object();
        json.key("index");
        json.u64(index as u64);
        json.key("host");
        json.opt_string(route.host.as_ref().map(host_text).as_deref());
        json.key("path_prefix");
        json.opt_string(route.path_prefix.as_deref());
        json.key("pool");
        json.string(&route.pool);
        for (key, list) in [("allow", &route.acl.allow), ("deny", &route.acl.deny)] {
            json.key(key);
            json.begin_array();
            for block in list {
                json.string(&block.to_string());
            }
            json.end_array();
        }
        json.key("limits");
        json.begin_array();
        for name in &route.limits {
            json.string(name);
        }
        json.end_array();
        if rules {
            json.key("rules");
            route.rules.write_json(json);
        }
        json.end_object();
    }
    json.end_array();
}

fn spec(pool: &PoolConfig) -> PoolSpec {
    PoolSpec {
        strategy: pool.strategy,
        hash_key: pool.hash.as_ref().map(|hash| hash.key.clone()),
        backends: pool.backends.clone(),
        draining: pool.draining.clone(),
    }
}

/// What `running` changed relative to `file`, based on `file`'s sections.
pub fn diff(file: &Config, running: &Config) -> Overrides {
    let mut overrides = Overrides::default();
    for pool in &running.pools {
        let base = file.pools.iter().find(|p| p.name == pool.name);
        if base.is_some_and(|b| b.backends == pool.backends && b.draining == pool.draining) {
            continue;
        }
        let name = pool.name.clone();
        let base = base.map(pool_fingerprint);
        overrides.pools.push(PoolOverride { name, base, pool: Some(spec(pool)) });
    }
    for pool in file.pools.iter().filter(|p| !running.pools.iter().any(|r| r.name == p.name)) {
        let base = Some(pool_fingerprint(pool));
        overrides.pools.push(PoolOverride { name: pool.name.clone(), base, pool: None });
    }
    if running.routes != file.routes {
        let base = routes_fingerprint(&file.routes);
        overrides.routes = Some(RoutesOverride { base, routes: running.routes.clone() });
    }
    overrides
}

/// `file` with `overrides` applied, and a line for every override dropped because the
/// file changed under it. When the result breaks a rule, every override is dropped.
pub fn apply(file: &Config, overrides: &Overrides) -> (Config, Vec<String>) {
    let mut config = file.clone();
    let mut notes = Vec::new();
    for over in &overrides.pools {
        let at = config.pools.iter().position(|p| p.name == over.name);
        if at.map(|i| pool_fingerprint(&file.pools[i])) != over.base {
            notes.push(format!(
                "the config file changed pool `{}` since the admin API did; the file wins",
                over.name
            ));
            continue;
        }
        match (at, &over.pool) {
            (Some(i), None) => drop(config.pools.remove(i)),
            (Some(i), Some(spec)) => {
                config.pools[i].backends = spec.backends.clone();
                config.pools[i].draining = spec.draining.clone();
            }
            (None, Some(spec)) => config.pools.push(new_pool(&over.name, spec)),
            (None, None) => {}
        }
    }
    if let Some(routes) = &overrides.routes {
        if routes_fingerprint(&file.routes) == routes.base {
            config.routes = routes.routes.clone();
            keep_file_rules(&mut config.routes, file);
        } else {
            notes.push(
                "the config file changed the routes since the admin API did; the file wins".into(),
            );
        }
    }
    if let Err(error) = validate::check(&config) {
        notes.push(format!(
            "admin API changes no longer fit the config file ({error}); dropping them all"
        ));
        return (file.clone(), notes);
    }
    (config, notes)
}

/// Gives each route of an API route list the rules of the file's route with the same
/// host, prefix and pool: the state file and the fleet keep no route rules, which come
/// from the config file only.
pub fn keep_file_rules(routes: &mut [RouteConfig], file: &Config) {
    for route in routes {
        let same = |r: &&RouteConfig| {
            (&r.host, &r.path_prefix, &r.pool) == (&route.host, &route.path_prefix, &route.pool)
        };
        if let Some(twin) = file.routes.iter().find(same) {
            route.rules = twin.rules.clone();
        }
    }
}

/// A pool the API added, with default settings.
pub fn new_pool(name: &str, spec: &PoolSpec) -> PoolConfig {
    let mut pool = PoolConfig::new(name, spec.strategy, spec.backends.clone());
    pool.draining = spec.draining.clone();
    if let Some(key) = &spec.hash_key {
        let table_size = crate::config::hash::DEFAULT_TABLE_SIZE;
        pool.hash = Some(HashConfig { key: key.clone(), table_size });
    }
    if spec.strategy == StrategyKind::Sticky {
        pool.sticky = Some(StickyConfig::default());
    }
    pool
}

#[cfg(test)]
#[path = "state_tests.rs"]
pub(crate) mod tests;
