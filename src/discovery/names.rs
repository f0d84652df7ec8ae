//! Which names a configuration discovers (their keys), and the backends a discovered
//! name's endpoint set expands into.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::{Addresses, Endpoint};
use crate::config::{BackendConfig, Config, Resolve};

/// Prefix of an SRV name's key: `:` cannot occur in a DNS name, so the SRV and the A/AAAA
/// lookups of one name never share a key.
pub const SRV_PREFIX: &str = "srv:";

/// Prefix of a Kubernetes Service's key, `k8s:NAMESPACE/SERVICE:PORT`: `/` cannot occur
/// in a DNS name, so no DNS key can collide with it.
pub const K8S_PREFIX: &str = "k8s:";

/// The key of a backend's name in [`Addresses`]: lower case, without a trailing dot,
/// [`SRV_PREFIX`]ed for an SRV name; `k8s:NAMESPACE/SERVICE:PORT` for a Kubernetes one.
pub fn key(backend: &BackendConfig) -> String {
    if let Some((namespace, service, port)) = backend.kubernetes() {
        return format!("{K8S_PREFIX}{namespace}/{service}:{}", port.text());
    }
    let host = &backend.address.host;
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    match backend.resolve {
        Resolve::Srv => format!("{SRV_PREFIX}{host}"),
        _ => host,
    }
}

/// Whether a key names a Kubernetes Service (followed by its own thread, not by DNS).
pub fn is_kubernetes(key: &str) -> bool {
    key.starts_with(K8S_PREFIX)
}

/// The source a key names, as `/metrics` and the API label it: `dns:NAME`, `srv:NAME`
/// or `k8s:NAMESPACE/SERVICE:PORT`.
pub fn source_label(key: &str) -> String {
    if is_kubernetes(key) {
        return key.to_string();
    }
    match key.strip_prefix(SRV_PREFIX) {
        Some(name) => format!("{SRV_PREFIX}{name}"),
        None => format!("dns:{key}"),
    }
}

/// One backend a configured backend stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expanded {
    /// Its identity and metric label: `HOST:PORT` as configured, `IP:PORT` discovered.
    pub label: String,
    /// Where it connects.
    pub addrs: Vec<SocketAddr>,
    /// Its weight: the endpoint's, else the configured one.
    pub weight: u32,
    /// Its tier ([`Endpoint::tier`]); 0 for a configured backend.
    pub tier: u32,
    /// Whether the source says it serves (a configured backend always does).
    pub serving: bool,
}

/// The backends `backend` stands for: itself with its `fixed` addresses, or one per
/// discovered endpoint, labelled `IP:PORT`.
pub fn expand(
    backend: &BackendConfig,
    fixed: Vec<SocketAddr>,
    discovered: &Addresses,
) -> Vec<Expanded> {
    if !backend.is_discovered() {
        let label = backend.address.authority();
        return vec![Expanded {
            label,
            addrs: fixed,
            weight: backend.weight,
            tier: 0,
            serving: true,
        }];
    }
    let endpoints = discovered.get(&key(backend)).map_or(&[][..], Vec::as_slice);
    let one = |endpoint: &Endpoint| {
        let addr = endpoint.socket(backend.address.port);
        Expanded {
            label: addr.to_string(),
            addrs: vec![addr],
            weight: endpoint.weight.unwrap_or(backend.weight),
            tier: endpoint.tier(),
            serving: endpoint.readiness.serving,
        }
    };
    endpoints.iter().map(one).collect()
}

/// The names `config` asks to discover, each with its longest wait between lookups.
pub fn names(config: &Config) -> HashMap<String, Duration> {
    let mut names: HashMap<String, Duration> = HashMap::new();
    for pool in &config.pools {
        for backend in pool.backends.iter().filter(|backend| backend.is_discovered()) {
            let refresh = names.entry(key(backend)).or_insert(pool.dns_refresh);
            *refresh = (*refresh).min(pool.dns_refresh);
        }
    }
    names
}
