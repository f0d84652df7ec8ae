//! The fleet's cache file: the last fleet state this instance applied, so that an
//! instance that starts while etcd is down serves what the fleet last agreed on rather
//! than the bare config file. Written atomically after every apply, as the state file is.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::objects::{Entry, Objects};
use crate::config::{Config, FleetConfig};
use crate::json::JsonWriter;

/// Name of the cache file beside the config file when `cache_file` is not set.
pub const DEFAULT_CACHE_FILE: &str = "weir.fleet.json";
/// The format version written and understood.
const VERSION: u64 = 1;
/// Largest cache file read: the state file's bound, for the same reason.
const MAX_CACHE_BYTES: u64 = crate::state::file::MAX_STATE_BYTES;

/// Where the cache file lives: `cache_file` (relative to the config file's directory),
/// else `weir.fleet.json` beside the config file; `None` without either.
pub fn path_for(file: &Config, fleet: &FleetConfig) -> Option<PathBuf> {
    crate::state::beside_config(file, fleet.cache_file.as_deref(), DEFAULT_CACHE_FILE)
}

/// The cache file's text for `objects`.
pub fn encode(objects: &Objects) -> String {
    let mut json = JsonWriter::with_capacity(256);
    json.begin_object();
    json.key("version");
    json.u64(VERSION);
    json.key("objects");
    json.begin_array();
    for (key, entry) in objects {
        json.begin_object();
        json.key("key");
        json.string(key);
        json.key("value");
        json.string(&entry.value);
        json.key("created");
        json.u64(u64::try_from(entry.created).unwrap_or(0));
        json.key("modified");
        json.u64(u64::try_from(entry.modified).unwrap_or(0));
        json.end_object();
    }
    json.end_array();
    json.end_object();
    json.finish()
}

/// Writes the cache file; a failure is logged, not fatal: etcd holds the truth.
pub fn save(path: &Path, objects: &Objects) {
    if let Err(error) = crate::state::file::save_text(path, &encode(objects)) {
        tracing::warn!("fleet: cannot write the cache file {}: {error}", path.display());
    }
}

/// Reads the cache file.
pub fn load(path: &Path) -> Result<Objects, String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_CACHE_BYTES => {
            return Err(format!("{shown}: larger than {MAX_CACHE_BYTES} bytes"))
        }
        Err(error) => return Err(format!("{shown}: {error}")),
        Ok(_) => {}
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{shown}:{}:{}: {e}", e.line(), e.column()))?;
    decode(&doc).map_err(|e| format!("{shown}: {e}"))
}

/// Objects from a parsed cache file.
pub fn decode(doc: &Value) -> Result<Objects, String> {
    if doc.get("version").and_then(Value::as_u64) != Some(VERSION) {
        return Err("unsupported cache file version; expected 1".into());
    }
    let list = doc.get("objects").and_then(Value::as_array).ok_or("`objects` must be an array")?;
    let mut objects = Objects::new();
    for item in list {
        let text = |name: &str| item.get(name).and_then(Value::as_str).map(str::to_string);
        let number = |name: &str| item.get(name).and_then(Value::as_i64).unwrap_or(0);
        let key = text("key").ok_or("an object without `key`")?;
        let value = text("value").ok_or("an object without `value`")?;
        objects
            .insert(key, Entry { value, created: number("created"), modified: number("modified") });
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_round_trip_through_the_cache_text() {
        let mut objects = Objects::new();
        let value = r#"{"base":null,"removed":false}"#.to_string();
        objects.insert("pools/a".into(), Entry { value, created: 3, modified: 7 });
        let doc: Value = serde_json::from_str(&encode(&objects)).expect("valid JSON");
        assert_eq!(decode(&doc).expect("decodes"), objects);
        assert!(decode(&serde_json::json!({"version": 2, "objects": []})).is_err());
    }
}
