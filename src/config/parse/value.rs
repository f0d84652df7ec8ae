//! The file's rules for single values, applied to text that came from elsewhere (the
//! admin API), so a value the API accepts is one the file would accept.

use std::borrow::Cow;

use toml::de::DeValue;

use crate::config::{BackendAddress, HostMatch, Resolve, StrategyKind};

fn de(text: &str) -> DeValue<'_> {
    DeValue::String(Cow::Borrowed(text))
}

/// A backend address, as `backends = [...]` accepts it.
pub fn backend_address(text: &str) -> Result<BackendAddress, String> {
    super::pool::backend_address(&de(text))
}

/// Whether `address` may be written with `resolve = true` (a name, not an IP).
pub fn resolvable(address: &BackendAddress) -> Result<(), String> {
    super::dns::resolvable(address)
}

/// A backend's address for its lookup mode, as `backends = [...]` accepts it: an SRV
/// name without a port for `"srv"`, a host name for `true`.
pub fn backend_for(text: &str, resolve: Resolve) -> Result<BackendAddress, String> {
    match resolve {
        Resolve::Srv => super::dns::srv_address(&de(text)),
        Resolve::Addresses => backend_address(text).and_then(|a| resolvable(&a).map(|()| a)),
        Resolve::Once => backend_address(text),
        Resolve::Kubernetes(port) => super::kubernetes::json_address(text, port),
    }
}

/// `resolve` as JSON (the admin API, the state file): absent, a flag, `"srv"`, or
/// `"kubernetes:PORT"` (the address then being `SERVICE.NAMESPACE.svc`).
pub fn resolve_json(value: Option<&serde_json::Value>) -> Result<Resolve, String> {
    match value {
        None | Some(serde_json::Value::Bool(false)) => Ok(Resolve::Once),
        Some(serde_json::Value::Bool(true)) => Ok(Resolve::Addresses),
        Some(serde_json::Value::String(text)) if text == "srv" => Ok(Resolve::Srv),
        Some(serde_json::Value::String(text)) if text.starts_with("kubernetes:") => {
            super::kubernetes::json_port(&text["kubernetes:".len()..]).map(Resolve::Kubernetes)
        }
        Some(_) => Err("`resolve` must be true, false, \"srv\" or \"kubernetes:PORT\"".to_string()),
    }
}

/// A pool name, as `[[pool]] name` accepts it.
pub fn pool_name(text: &str) -> Result<String, String> {
    let mut name = String::new();
    super::pool::pool_name(&mut name, super::text("name", &de(text))?)?;
    Ok(name)
}

/// A strategy name, as `[[pool]] strategy` accepts it.
pub fn strategy(text: &str) -> Result<StrategyKind, String> {
    super::pool::strategy(&de(text))
}

/// A route's `host`.
pub fn host(text: &str) -> Result<HostMatch, String> {
    super::host_match(&de(text))
}

/// A route's `path_prefix`.
pub fn path_prefix(text: &str) -> Result<String, String> {
    super::path_prefix(&de(text))
}

/// A limit's `store` URL (`redis://HOST:PORT`), as the `HOST:PORT` weir dials.
pub fn limit_store(text: &str) -> Result<String, String> {
    super::limit::store(&de(text))
}
