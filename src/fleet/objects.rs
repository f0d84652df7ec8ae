//! The fleet's objects: what the admin API changed, one etcd key per object, and how
//! they combine with the config file.
//!
//! Keys, under `{prefix}config/`:
//!
//! - `pools/{pool}`: a pool the API added (`base` null) or removed (`removed`, with the
//!   fingerprint of the file's pool it removed);
//! - `pools/{pool}/backends/{HOST:PORT}`: one backend the API added, edited (weight,
//!   drain) or removed, with the fingerprint of the file's version of that backend, if
//!   the file has one;
//! - `routes`: the route list, as the state file keeps it.
//!
//! One key per backend is what lets two operators change two backends of one pool at
//! once: their writes touch different keys, and both survive. The rule that combines the
//! keys with the file is the state file's, one object finer: an object based on a
//! version of the file that changed since is dropped (logged), and the file wins for it.
//! Every instance derives its running configuration from the file and the same keys,
//! in the same order (added backends by the revision that created them), so all agree on
//! backend order, and so on consistent-hash tables and sticky cookies.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::balance::key::hash_bytes;
use crate::config::{validate, BackendConfig, Config, HashKey, PoolConfig, MAX_WEIGHT};
use crate::json::JsonWriter;
use crate::state::{self, PoolSpec};

/// The key of the route list.
pub const ROUTES: &str = "routes";

/// One key as the fleet last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The value: a JSON object.
    pub value: String,
    /// The etcd revision that created the key: the order of added backends.
    pub created: i64,
    /// The etcd revision of the last change: what a compare-and-swap compares.
    pub modified: i64,
}

/// The fleet's keys (without the `{prefix}config/` part) and their entries.
pub type Objects = BTreeMap<String, Entry>;

/// The key of pool `name`.
pub fn pool_key(name: &str) -> String {
    format!("pools/{name}")
}

/// The key of backend `label` (`HOST:PORT`) of pool `pool`.
pub fn backend_key(pool: &str, label: &str) -> String {
    format!("pools/{pool}/backends/{}", label.to_ascii_lowercase())
}

/// The fingerprint of a file's backend: what a backend object is based on.
fn backend_base(backend: &BackendConfig, draining: bool) -> u64 {
    let text =
        format!("{}={}|{}|{draining}", backend.written(), backend.weight, backend.resolve.json());
    hash_bytes(text.as_bytes())
}

fn hex(base: Option<u64>) -> Option<String> {
    base.map(|b| format!("{b:016x}"))
}

fn is_draining(pool: &PoolConfig, label: &str) -> bool {
    pool.draining.iter().any(|d| d.eq_ignore_ascii_case(label))
}

/// The object values that make `running` out of `file`: the inverse of [`combine`].
pub fn values(file: &Config, running: &Config) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pool in &running.pools {
        let base = file.pools.iter().find(|p| p.name == pool.name);
        if base.is_none() {
            out.insert(pool_key(&pool.name), pool_value(pool, None, false));
        }
        backend_values(&mut out, base, pool);
    }
    for pool in file.pools.iter().filter(|p| !running.pools.iter().any(|r| r.name == p.name)) {
        out.insert(
            pool_key(&pool.name),
            pool_value(pool, Some(state::pool_fingerprint(pool)), true),
        );
    }
    if running.routes != file.routes {
        let mut json = JsonWriter::with_capacity(256);
        json.begin_object();
        json.key("base");
        json.opt_string(hex(Some(state::routes_fingerprint(&file.routes))).as_deref());
        json.key("list");
        state::write_routes(&mut json, &running.routes, false);
        json.end_object();
        out.insert(ROUTES.to_string(), json.finish());
    }
    out
}

/// The backend objects of `pool`, against the file's version of it (`base`).
fn backend_values(
    out: &mut BTreeMap<String, String>,
    base: Option<&PoolConfig>,
    pool: &PoolConfig,
) {
    let file_backend = |label: &str| {
        base.and_then(|b| {
            b.backends.iter().find(|x| x.address.authority().eq_ignore_ascii_case(label))
        })
    };
    for backend in &pool.backends {
        let label = backend.address.authority();
        let drain = is_draining(pool, &label);
        let of_file = file_backend(&label);
        let file_drain = base.is_some_and(|b| is_draining(b, &label));
        if of_file.is_some_and(|f| f == backend && file_drain == drain) {
            continue;
        }
        let base = of_file.map(|f| backend_base(f, file_drain));
        out.insert(backend_key(&pool.name, &label), backend_value(backend, false, base, drain));
    }
    for gone in base.iter().flat_map(|b| &b.backends) {
        let label = gone.address.authority();
        if !pool.backends.iter().any(|b| b.address.authority().eq_ignore_ascii_case(&label)) {
            let file_drain = base.is_some_and(|b| is_draining(b, &label));
            let base = Some(backend_base(gone, file_drain));
            out.insert(backend_key(&pool.name, &label), backend_value(gone, true, base, false));
        }
    }
}

fn pool_value(pool: &PoolConfig, base: Option<u64>, removed: bool) -> String {
    let mut json = JsonWriter::with_capacity(96);
    json.begin_object();
    json.key("base");
    json.opt_string(hex(base).as_deref());
    json.key("removed");
    json.bool(removed);
    json.key("strategy");
    json.string(pool.strategy.name());
    json.key("hash_key");
    json.opt_string(pool.hash.as_ref().map(|h| h.key.to_string()).as_deref());
    json.end_object();
    json.finish()
}

/// A backend object; `removed` for a file backend the API removed (`backend` is then
/// the file's version).
fn backend_value(backend: &BackendConfig, removed: bool, base: Option<u64>, drain: bool) -> String {
    let mut json = JsonWriter::with_capacity(128);
    json.begin_object();
    json.key("base");
    json.opt_string(hex(base).as_deref());
    json.key("removed");
    json.bool(removed);
    state::file::write_backend(&mut json, backend);
    json.key("drain");
    json.bool(drain);
    json.end_object();
    json.finish()
}

/// `file` with the fleet's objects applied, and a line for every object dropped (the
/// file changed under it, or it does not parse). When the result breaks a rule of the
/// config file, every object is dropped, as the state file's rule does.
pub fn combine(file: &Config, objects: &Objects) -> (Config, Vec<String>) {
    let mut notes = Vec::new();
    let config = apply_all(file, objects, true, &mut notes);
    let Err(error) = validate::check(&config) else { return (config, notes) };
    // Guards keep two writes from breaking a rule together, but the file may change
    // under the objects; the route list is what most often stops fitting (a route to a
    // pool the file or the fleet dropped), so it goes first, and the rest stays.
    let without_routes = apply_all(file, objects, false, &mut Vec::new());
    if objects.contains_key(ROUTES) && validate::check(&without_routes).is_ok() {
        notes.push(format!("{ROUTES}: no longer fits ({error}); the file's routes apply"));
        return (without_routes, notes);
    }
    notes
        .push(format!("the fleet's changes no longer fit the config file ({error}); none applied"));
    (file.clone(), notes)
}

/// `file` with every object applied (the route list only if `routes`), noting the ones
/// dropped.
fn apply_all(file: &Config, objects: &Objects, routes: bool, notes: &mut Vec<String>) -> Config {
    let mut config = file.clone();
    for (key, entry) in objects {
        let parts: Vec<&str> = key.split('/').collect();
        if let ["pools", pool] = parts[..] {
            if let Err(note) = apply_pool(&mut config, file, pool, &entry.value) {
                notes.push(format!("{key}: {note}"));
            }
        }
    }
    let mut backends: Vec<(&String, &Entry)> =
        objects.iter().filter(|(key, _)| key.contains("/backends/")).collect();
    backends.sort_by_key(|(key, entry)| (entry.created, key.as_str()));
    for (key, entry) in backends {
        let pool = key.split('/').nth(1).unwrap_or_default();
        if let Err(note) = apply_backend(&mut config, file, pool, &entry.value) {
            notes.push(format!("{key}: {note}"));
        }
    }
    match objects.get(ROUTES) {
        Some(entry) if routes => {
            if let Err(note) = apply_routes(&mut config, file, &entry.value) {
                notes.push(format!("{ROUTES}: {note}"));
            }
        }
        _ => {}
    }
    config
}

fn parse(value: &str) -> Result<Value, String> {
    serde_json::from_str(value).map_err(|e| format!("not JSON ({e})"))
}

fn base_of(doc: &Value) -> Result<Option<u64>, String> {
    match doc.get("base") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_str()
            .and_then(|t| u64::from_str_radix(t, 16).ok())
            .map(Some)
            .ok_or("bad `base`".into()),
    }
}

const FILE_WINS: &str = "the config file changed it since the admin API did; the file wins";

fn apply_pool(config: &mut Config, file: &Config, name: &str, value: &str) -> Result<(), String> {
    let doc = parse(value)?;
    let base = base_of(&doc)?;
    let of_file = file.pools.iter().find(|p| p.name == name);
    if of_file.map(state::pool_fingerprint) != base {
        return Err(FILE_WINS.into());
    }
    if doc.get("removed").and_then(Value::as_bool) == Some(true) {
        config.pools.retain(|p| p.name != name);
        return Ok(());
    }
    let strategy = doc.get("strategy").and_then(Value::as_str).ok_or("no `strategy`")?;
    let strategy = crate::config::parse::value::strategy(strategy)?;
    let hash_key = doc.get("hash_key").and_then(Value::as_str).map(HashKey::parse).transpose()?;
    let spec = PoolSpec { strategy, hash_key, backends: Vec::new(), draining: Default::default() };
    let name = crate::config::parse::value::pool_name(name)?;
    config.pools.push(state::new_pool(&name, &spec));
    Ok(())
}

fn apply_backend(
    config: &mut Config,
    file: &Config,
    pool: &str,
    value: &str,
) -> Result<(), String> {
    let doc = parse(value)?;
    let base = base_of(&doc)?;
    let removed = doc.get("removed").and_then(Value::as_bool) == Some(true);
    let parsed = backend_of(&doc)?;
    let label = parsed.address.authority();
    let backend = (!removed).then_some(parsed);
    let Some(target) = config.pools.iter_mut().find(|p| p.name == pool) else {
        return Err(format!("no pool `{pool}` to apply it to"));
    };
    let of_file = file.pools.iter().find(|p| p.name == pool).and_then(|p| {
        let b = p.backends.iter().find(|b| b.address.authority().eq_ignore_ascii_case(&label))?;
        Some(backend_base(b, is_draining(p, &label)))
    });
    if of_file != base {
        return Err(FILE_WINS.into());
    }
    let at =
        target.backends.iter().position(|b| b.address.authority().eq_ignore_ascii_case(&label));
    target.draining.retain(|d| !d.eq_ignore_ascii_case(&label));
    match (at, backend) {
        (Some(i), None) => drop(target.backends.remove(i)),
        (Some(i), Some(backend)) => target.backends[i] = backend,
        (None, Some(backend)) => target.backends.push(backend),
        (None, None) => {}
    }
    if doc.get("drain").and_then(Value::as_bool) == Some(true) {
        target.draining.insert(label);
    }
    Ok(())
}

fn backend_of(doc: &Value) -> Result<BackendConfig, String> {
    let resolve = crate::config::parse::value::resolve_json(doc.get("resolve"))?;
    let address = doc.get("address").and_then(Value::as_str).ok_or("no `address`")?;
    let address = crate::config::parse::value::backend_for(address, resolve)?;
    let weight = doc.get("weight").and_then(Value::as_u64).unwrap_or(1);
    let weight = u32::try_from(weight).ok().filter(|w| *w <= MAX_WEIGHT).ok_or("bad `weight`")?;
    Ok(BackendConfig { address, weight, resolve })
}

fn apply_routes(config: &mut Config, file: &Config, value: &str) -> Result<(), String> {
    let doc = parse(value)?;
    if base_of(&doc)? != Some(state::routes_fingerprint(&file.routes)) {
        return Err(FILE_WINS.into());
    }
    let list = doc.get("list").and_then(Value::as_array).ok_or("no `list`")?;
    let mut routes = list.iter().map(state::file::decode_route).collect::<Result<Vec<_>, _>>()?;
    state::keep_file_rules(&mut routes, file);
    config.routes = routes;
    Ok(())
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
