//! `[fleet]`: several weir instances share the admin API's changes through etcd.
//!
//! The README section "Fleet" documents the keys, [`crate::fleet`] what is done with them.
//! Without `[fleet]` no etcd code runs and API changes go to the state file as before.

use std::time::Duration;

/// Most etcd endpoints: a cluster has 3 or 5 members; a few more leave room for a
/// migration, and each one is tried in turn on a failure.
pub const MAX_ENDPOINTS: usize = 7;
/// Longest key prefix: etcd keys are bytes, but a prefix is typed by hand and shown in
/// logs; 200 bytes is far beyond any real one and keeps every key under etcd's limits.
pub const MAX_PREFIX: usize = 200;
/// Default `timeout`: one etcd request (a write, a list). etcd answers on loopback in a
/// millisecond and across zones in tens; 2s is a dead member, and the admin API must
/// answer 503 soon rather than hang an operator's call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest `timeout`: past it an admin call hangs longer than any HTTP client waits.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `lease`: how long an instance stays listed in the fleet after it stops
/// renewing. 10s is etcd's usual session TTL (`concurrency.NewSession` uses 60s, Kubernetes
/// leader leases 15s): short enough that a dead instance leaves the list soon.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// `[fleet]`: where the shared state lives and how weir reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetConfig {
    /// etcd endpoints, `http://HOST:PORT` or `https://HOST:PORT`.
    pub etcd: Vec<String>,
    /// Every key weir reads and writes starts with this; it ends with `/`.
    pub prefix: String,
    /// This instance's name in the fleet list; default: the host name and admin port.
    pub name: Option<String>,
    /// The local copy of the fleet state, read at start when etcd cannot be reached;
    /// relative to the config file's directory. Default `weir.fleet.json` beside it.
    pub cache_file: Option<String>,
    /// One etcd request's time limit.
    pub timeout: Duration,
    /// The membership lease's time to live.
    pub lease: Duration,
    /// CA certificate (PEM) that signs etcd's certificate, for `https://` endpoints.
    pub ca: Option<String>,
    /// Client certificate and key (PEM) for etcd's client-certificate authentication.
    pub cert: Option<String>,
    /// The client certificate's private key.
    pub key: Option<String>,
    /// etcd user name (with `password`), for etcd's password authentication.
    pub username: Option<String>,
    /// etcd password.
    pub password: Option<String>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            etcd: Vec::new(),
            prefix: "/weir/".into(),
            name: None,
            cache_file: None,
            timeout: DEFAULT_TIMEOUT,
            lease: DEFAULT_LEASE,
            ca: None,
            cert: None,
            key: None,
            username: None,
            password: None,
        }
    }
}

/// Checks one endpoint: a scheme, a host and a port, nothing else.
pub fn check_endpoint(text: &str) -> Result<(), String> {
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .ok_or_else(|| format!("`etcd`: \"{text}\" needs http:// or https://"))?;
    let port_ok = rest
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
    if !port_ok || rest.contains('/') {
        return Err(format!("`etcd`: expected \"http://HOST:PORT\", found \"{text}\""));
    }
    Ok(())
}

/// Checks a key prefix: starts and ends with `/`, printable ASCII, at most [`MAX_PREFIX`].
pub fn check_prefix(text: &str) -> Result<(), String> {
    let printable = text.bytes().all(|b| b.is_ascii_graphic());
    if text.len() < 2 || text.len() > MAX_PREFIX || !printable {
        return Err(format!("`prefix` is 2 to {MAX_PREFIX} printable characters"));
    }
    if !text.starts_with('/') || !text.ends_with('/') {
        return Err(format!(
            "`prefix` starts and ends with `/`, as \"/weir/prod/\"; found \"{text}\""
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_prefixes_are_checked() {
        assert!(check_endpoint("http://127.0.0.1:2379").is_ok());
        assert!(check_endpoint("https://etcd.internal:2379").is_ok());
        assert!(check_endpoint("127.0.0.1:2379").is_err());
        assert!(check_endpoint("http://127.0.0.1").is_err());
        assert!(check_endpoint("http://127.0.0.1:0").is_err());
        assert!(check_endpoint("http://h:1/x").is_err());
        assert!(check_prefix("/weir/prod/").is_ok());
        assert!(check_prefix("weir/").is_err());
        assert!(check_prefix("/weir").is_err());
        assert!(check_prefix("/we ir/").is_err());
    }
}
