//! `[fleet]`: etcd endpoints, the key prefix, credentials and limits.

use toml::de::DeValue;

use super::{duration, string, text, wrong, Slot, Value, Walker};
use crate::config::fleet::{check_endpoint, check_prefix, FleetConfig, MAX_ENDPOINTS, MAX_TIMEOUT};

impl Walker {
    /// `[fleet]`; `None` when the section has no `etcd` endpoints (reported as an error).
    pub(super) fn fleet(&mut self, value: &Value<'_>) -> Option<FleetConfig> {
        let mut out = FleetConfig::default();
        let table = self.table("fleet", value);
        // A bad `etcd` value has its own error; "needs `etcd`" is for a missing key.
        let has_etcd = table.is_some_and(|t| t.get("etcd").is_some());
        for (key, value) in table.into_iter().flatten() {
            let slot = match key.get_ref().as_ref() {
                "etcd" => Slot::Check(Box::new(|v| endpoints(v).map(|e| out.etcd = e))),
                "prefix" => Slot::Check(Box::new(|v| {
                    let prefix = string("prefix", v)?;
                    check_prefix(prefix).map(|()| out.prefix = prefix.to_string())
                })),
                "name" => Slot::Check(Box::new(|v| name(v).map(|n| out.name = Some(n)))),
                "cache_file" => Slot::Check(Box::new(|v| {
                    text("cache_file", v).map(|path| out.cache_file = Some(path))
                })),
                "timeout" => Slot::Check(Box::new(|v| {
                    bounded("timeout", v).map(|timeout| out.timeout = timeout)
                })),
                "lease" => Slot::Check(Box::new(|v| bounded("lease", v).map(|l| out.lease = l))),
                "ca" => Slot::Check(Box::new(|v| text("ca", v).map(|p| out.ca = Some(p)))),
                "cert" => Slot::Check(Box::new(|v| text("cert", v).map(|p| out.cert = Some(p)))),
                "key" => Slot::Check(Box::new(|v| text("key", v).map(|p| out.key = Some(p)))),
                "username" => {
                    Slot::Check(Box::new(|v| text("username", v).map(|u| out.username = Some(u))))
                }
                "password" => {
                    Slot::Check(Box::new(|v| text("password", v).map(|p| out.password = Some(p))))
                }
                _ => Slot::Unknown("[fleet]"),
            };
            self.fill(key, value, slot);
        }
        let problem = fleet_problem(&out).filter(|_| !(has_etcd && out.etcd.is_empty()));
        if let Some(message) = problem {
            self.error(value.span(), message);
            return None;
        }
        Some(out)
    }
}

/// What makes a `[fleet]` section unusable as a whole, if anything.
fn fleet_problem(fleet: &FleetConfig) -> Option<String> {
    if fleet.etcd.is_empty() {
        return Some("[fleet] needs `etcd`, such as [\"http://127.0.0.1:2379\"]".into());
    }
    if fleet.cert.is_some() != fleet.key.is_some() {
        return Some("[fleet]: `cert` and `key` go together".into());
    }
    if fleet.username.is_some() != fleet.password.is_some() {
        return Some("[fleet]: `username` and `password` go together".into());
    }
    None
}

/// `etcd`: one to [`MAX_ENDPOINTS`] endpoints.
fn endpoints(v: &DeValue<'_>) -> Result<Vec<String>, String> {
    let array = v.as_array().ok_or_else(|| wrong("etcd", v, "an array of endpoints"))?;
    if array.is_empty() || array.len() > MAX_ENDPOINTS {
        return Err(format!("`etcd` needs one to {MAX_ENDPOINTS} endpoints"));
    }
    let mut out = Vec::with_capacity(array.len());
    for item in array {
        let endpoint = string("etcd", item.get_ref())?;
        check_endpoint(endpoint)?;
        out.push(endpoint.to_string());
    }
    Ok(out)
}

/// An instance name: 1 to 64 letters, digits, `.`, `-`, `_` or `:` (it is a key segment).
fn name(v: &DeValue<'_>) -> Result<String, String> {
    let name = text("name", v)?;
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':');
    if name.len() > 64 || !name.bytes().all(allowed) {
        return Err("`name` is 1 to 64 letters, digits, `.`, `-`, `_` or `:`".into());
    }
    Ok(name)
}

/// A duration above zero, at most [`MAX_TIMEOUT`] (`lease` has the same cap: a longer one
/// keeps a dead instance listed for longer than anyone waits).
fn bounded(name: &str, v: &DeValue<'_>) -> Result<std::time::Duration, String> {
    match duration(name, v, false)? {
        d if d <= MAX_TIMEOUT && (name != "lease" || d.as_secs() >= 2) => Ok(d),
        _ if name == "lease" => Err("`lease` must be between 2s and 30s".into()),
        _ => Err(format!("`{name}` must be at most {}s", MAX_TIMEOUT.as_secs())),
    }
}
