//! The file's rules for single values, applied to text that came from elsewhere (the
//! admin API), so a value the API accepts is one the file would accept.

use std::borrow::Cow;

use toml::de::DeValue;

use crate::config::{BackendAddress, HostMatch, StrategyKind};

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
