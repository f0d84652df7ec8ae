//! Reading and writing the state file: JSON, written atomically.
//!
//! A write goes to a temporary file in the same directory, which is fsynced, renamed over
//! the state file, and then the directory is fsynced, so a crash at any point leaves
//! either the old file or the new one, never a torn mix. Fingerprints are hex strings:
//! JSON numbers above 2^53 lose precision in many readers.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::Path;

use serde_json::Value;

use super::{Overrides, PoolOverride, PoolSpec, RoutesOverride};
use crate::config::parse::value;
use crate::config::HashKey;
use crate::config::{BackendConfig, Resolve, RouteConfig, MAX_WEIGHT};
use crate::json::JsonWriter;

/// The format version written and understood.
const VERSION: u64 = 1;
/// Test hook: with this set to `1`, weir aborts after writing the temporary file and
/// before the rename, as a crash there would; tests check the old state survives.
pub const CRASH_HOOK_ENV: &str = "WEIR_TEST_CRASH_BEFORE_RENAME";
/// The fields a route may have.
const ROUTE_FIELDS: [&str; 7] = ["host", "path_prefix", "pool", "index", "allow", "deny", "limits"];
/// The largest state file read. Thousands of backends fit in a few hundred KiB; this
/// bounds memory if the path points at something else by mistake. A save that would
/// write more is refused, so weir never writes a file it would refuse to start with.
pub const MAX_STATE_BYTES: u64 = 64 * 1024 * 1024;

/// Reads the overrides in `path`; a missing file means none. Errors name the file and,
/// for JSON syntax, the line and column.
pub fn load(path: &Path) -> Result<Overrides, String> {
    let shown = path.display();
    let text = match fs::metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Overrides::default()),
        Ok(meta) if meta.len() > MAX_STATE_BYTES => {
            return Err(format!("{shown}: state file larger than {MAX_STATE_BYTES} bytes"))
        }
        _ => fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?,
    };
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{shown}:{}:{}: {e}", e.line(), e.column()))?;
    decode(&doc).map_err(|message| format!("{shown}: {message}"))
}

/// Writes `overrides` to `path` atomically (temporary file, fsync, rename, fsync of the
/// directory). A text larger than [`MAX_STATE_BYTES`] is refused with
/// [`io::ErrorKind::FileTooLarge`] and nothing is written.
pub fn save(path: &Path, overrides: &Overrides) -> io::Result<()> {
    let text = encode(overrides);
    fits(text.len(), MAX_STATE_BYTES)?;
    write_atomically(path, &text, sync_dir)
}

/// Writes `text` to `path` atomically, as the state file is written (the fleet's cache
/// file uses it too).
pub fn save_text(path: &Path, text: &str) -> io::Result<()> {
    fits(text.len(), MAX_STATE_BYTES)?;
    write_atomically(path, text, sync_dir)
}

/// Refuses a state file of `len` bytes if weir would not read it back (`limit`).
fn fits(len: usize, limit: u64) -> io::Result<()> {
    if u64::try_from(len).unwrap_or(u64::MAX) <= limit {
        return Ok(());
    }
    let message =
        format!("the state file would be {len} bytes, more than the {limit} weir reads at start");
    Err(io::Error::new(io::ErrorKind::FileTooLarge, message))
}

/// Writes `text` to `path` atomically; `sync` makes the rename durable. The temporary
/// file's name holds the pid, so two processes (an old and a new one during a binary
/// upgrade) never write the same one; it is removed if the write fails.
fn write_atomically(path: &Path, text: &str, sync: fn(&Path) -> io::Result<()>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("weir.state.json");
    let temp = dir.join(temp_name(name));
    let written = write_temp(&temp, text).and_then(|()| {
        if std::env::var_os(CRASH_HOOK_ENV).is_some_and(|v| v == "1") {
            std::process::abort();
        }
        fs::rename(&temp, path)
    });
    if let Err(error) = written {
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    // The change is saved (readers see the new file); only its durability across a
    // power loss is in doubt, so the caller must not report it as not made.
    if let Err(error) = sync(dir) {
        tracing::warn!(
            "state file {} saved, but syncing its directory failed: {error}",
            path.display()
        );
    }
    Ok(())
}

/// The temporary file a save writes first, beside the state file named `name`.
pub fn temp_name(name: &str) -> String {
    format!(".{name}.{}.tmp", std::process::id())
}

fn write_temp(temp: &Path, text: &str) -> io::Result<()> {
    let mut file = File::create(temp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The state file text for `overrides`.
pub fn encode(overrides: &Overrides) -> String {
    let mut json = JsonWriter::with_capacity(256);
    json.begin_object();
    json.key("version");
    json.u64(VERSION);
    json.key("pools");
    json.begin_array();
    for pool in &overrides.pools {
        encode_pool(&mut json, pool);
    }
    json.end_array();
    json.key("routes");
    match &overrides.routes {
        None => json.null(),
        Some(routes) => {
            json.begin_object();
            json.key("base");
            json.string(&format!("{:016x}", routes.base));
            json.key("list");
            super::write_routes(&mut json, &routes.routes, false);
            json.end_object();
        }
    }
    json.end_object();
    let mut text = json.finish();
    text.push('\n');
    text
}

fn encode_pool(json: &mut JsonWriter, pool: &PoolOverride) {
    json.begin_object();
    json.key("name");
    json.string(&pool.name);
    json.key("base");
    json.opt_string(pool.base.map(|base| format!("{base:016x}")).as_deref());
    json.key("removed");
    json.bool(pool.pool.is_none());
    if let Some(spec) = &pool.pool {
        json.key("strategy");
        json.string(spec.strategy.name());
        json.key("hash_key");
        json.opt_string(spec.hash_key.as_ref().map(ToString::to_string).as_deref());
        json.key("backends");
        json.begin_array();
        for backend in &spec.backends {
            json.begin_object();
            write_backend(json, backend);
            json.end_object();
        }
        json.end_array();
        json.key("draining");
        json.begin_array();
        spec.draining.iter().for_each(|label| json.string(label));
        json.end_array();
    }
    json.end_object();
}

/// A backend's `address`, `weight` and `resolve` fields, as the state file and the
/// fleet's backend objects write them (and the admin API's body takes them).
pub fn write_backend(json: &mut JsonWriter, backend: &BackendConfig) {
    json.key("address");
    json.string(&backend.written());
    json.key("weight");
    json.u64(u64::from(backend.weight));
    json.key("resolve");
    match backend.resolve {
        Resolve::Srv => json.string("srv"),
        Resolve::Kubernetes(_) => json.string(&backend.resolve.json()),
        other => json.bool(other == Resolve::Addresses),
    }
}

/// Overrides from a parsed state file.
pub fn decode(doc: &Value) -> Result<Overrides, String> {
    match doc.get("version").and_then(Value::as_u64) {
        Some(VERSION) => {}
        other => return Err(format!("unsupported state file version {other:?}; expected 1")),
    }
    let mut overrides = Overrides::default();
    for (index, pool) in array(doc, "pools")?.iter().enumerate() {
        overrides.pools.push(decode_pool(pool).map_err(|e| format!("pools[{index}]: {e}"))?);
    }
    overrides.routes = match doc.get("routes") {
        None | Some(Value::Null) => None,
        Some(routes) => {
            let base = fingerprint(routes.get("base")).ok_or("routes: bad `base`")?;
            let mut list = Vec::new();
            for (index, route) in array(routes, "list")?.iter().enumerate() {
                list.push(decode_route(route).map_err(|e| format!("routes[{index}]: {e}"))?);
            }
            Some(RoutesOverride { base, routes: list })
        }
    };
    Ok(overrides)
}

fn array<'v>(doc: &'v Value, key: &str) -> Result<&'v Vec<Value>, String> {
    doc.get(key).and_then(Value::as_array).ok_or_else(|| format!("`{key}` must be an array"))
}

fn string<'v>(doc: &'v Value, key: &str) -> Result<&'v str, String> {
    doc.get(key).and_then(Value::as_str).ok_or_else(|| format!("`{key}` must be a string"))
}

fn optional<'v>(doc: &'v Value, key: &str) -> Result<Option<&'v str>, String> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => string(doc, key).map(Some),
    }
}

fn fingerprint(value: Option<&Value>) -> Option<u64> {
    u64::from_str_radix(value?.as_str()?, 16).ok()
}

fn decode_pool(doc: &Value) -> Result<PoolOverride, String> {
    let name = value::pool_name(string(doc, "name")?)?;
    let base = match doc.get("base") {
        None | Some(Value::Null) => None,
        base => Some(fingerprint(base).ok_or("bad `base`")?),
    };
    if doc.get("removed").and_then(Value::as_bool) == Some(true) {
        return Ok(PoolOverride { name, base, pool: None });
    }
    let strategy = value::strategy(string(doc, "strategy")?)?;
    let hash_key = optional(doc, "hash_key")?.map(HashKey::parse).transpose()?;
    let mut backends = Vec::new();
    for backend in array(doc, "backends")? {
        let resolve = value::resolve_json(backend.get("resolve"))?;
        let address = value::backend_for(string(backend, "address")?, resolve)?;
        let weight = backend.get("weight").and_then(Value::as_u64).unwrap_or(1);
        let weight = u32::try_from(weight).ok().filter(|w| *w <= MAX_WEIGHT);
        let weight = weight.ok_or(format!("`weight` must be between 0 and {MAX_WEIGHT}"))?;
        backends.push(BackendConfig { address, weight, resolve });
    }
    let draining = array(doc, "draining")?
        .iter()
        .map(|label| label.as_str().map(str::to_string).ok_or("`draining` holds strings"))
        .collect::<Result<_, _>>()?;
    let spec = PoolSpec { strategy, hash_key, backends, draining };
    Ok(PoolOverride { name, base, pool: Some(spec) })
}

/// One route from its JSON form (also the admin API's `POST /api/v1/routes` body).
pub fn decode_route(doc: &Value) -> Result<RouteConfig, String> {
    let Some(fields) = doc.as_object() else {
        return Err("a route is an object".to_string());
    };
    // `index` is where the route sits; it is written for readers and not needed back.
    if let Some(key) = fields.keys().find(|k| !ROUTE_FIELDS.contains(&k.as_str())) {
        return Err(format!("unknown field `{key}`"));
    }
    let host = optional(doc, "host")?.map(value::host).transpose()?;
    let path_prefix = optional(doc, "path_prefix")?.map(value::path_prefix).transpose()?;
    let pool = string(doc, "pool")?.to_string();
    let acl = crate::config::Acl { allow: blocks(doc, "allow")?, deny: blocks(doc, "deny")? };
    let limits = match doc.get("limits") {
        None => Vec::new(),
        Some(items) => {
            let items = items.as_array().ok_or("`limits` is an array of limit names")?;
            let name = |item: &Value| item.as_str().map(str::to_string);
            items.iter().map(name).collect::<Option<_>>().ok_or("`limits` holds names")?
        }
    };
    Ok(RouteConfig { host, path_prefix, pool, acl, rules: Default::default(), limits })
}

/// A route's `allow` or `deny`: an optional array of address blocks.
fn blocks(doc: &Value, key: &str) -> Result<Vec<crate::cidr::Cidr>, String> {
    let Some(items) = doc.get(key) else {
        return Ok(Vec::new());
    };
    let items = items.as_array().ok_or(format!("`{key}` is an array of address blocks"))?;
    if items.len() > crate::cidr::MAX_BLOCKS {
        return Err(format!("`{key}` holds at most {} blocks", crate::cidr::MAX_BLOCKS));
    }
    let block = |item: &Value| {
        let text = item.as_str().ok_or(format!("`{key}` holds strings"))?;
        crate::cidr::Cidr::parse(text).map_err(|m| format!("`{key}`: {m}"))
    };
    items.iter().map(block).collect()
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
