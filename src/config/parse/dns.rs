//! `[dns]`, and the DNS discovery keys of pools (`dns_refresh`) and backends (`resolve`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use toml::de::DeValue;

use super::{duration, string, wrong, Slot, Value, Walker};
use crate::config::dns::{MAX_DNS_REFRESH, MAX_DNS_SERVERS, MAX_DNS_TIMEOUT, MIN_DNS_REFRESH};
use crate::config::{BackendAddress, DnsConfig, Resolve, Scheme};

/// Port of a server written without one: DNS's.
const DNS_PORT: u16 = 53;
const SERVER_HINT: &str = r#"an address such as "10.0.0.2", "127.0.0.1:5353" or "[::1]:53""#;

impl Walker {
    /// `[dns]`: `servers` and `timeout`.
    pub(super) fn dns(&mut self, value: &Value<'_>) -> DnsConfig {
        let mut out = DnsConfig::default();
        for (key, value) in self.table("dns", value).into_iter().flatten() {
            let slot = match key.get_ref().as_ref() {
                "servers" => Slot::Check(Box::new(|v| servers(v).map(|s| out.servers = s))),
                "timeout" => Slot::Check(Box::new(|v| {
                    dns_timeout(v).map(|timeout| out.timeout = Some(timeout))
                })),
                _ => Slot::Unknown("[dns]"),
            };
            self.fill(key, value, slot);
        }
        out
    }
}

/// `[dns] servers`: one to [`MAX_DNS_SERVERS`] distinct addresses.
fn servers(v: &DeValue<'_>) -> Result<Vec<SocketAddr>, String> {
    let array = v.as_array().ok_or_else(|| wrong("servers", v, "an array of addresses"))?;
    if array.is_empty() || array.len() > MAX_DNS_SERVERS {
        return Err(format!(
            "`servers` needs one to {MAX_DNS_SERVERS} addresses; leave it out to use \
             /etc/resolv.conf"
        ));
    }
    let mut out = Vec::with_capacity(array.len());
    for item in array {
        let addr = server(item.get_ref())?;
        if out.contains(&addr) {
            return Err(format!("`servers`: {addr} is listed twice"));
        }
        out.push(addr);
    }
    Ok(out)
}

/// One DNS server: `IP`, `IP:PORT` or `[IPv6]:PORT`.
fn server(v: &DeValue<'_>) -> Result<SocketAddr, String> {
    let text = string("servers", v)?;
    let parsed = text.parse::<SocketAddr>().ok().or_else(|| {
        let ip = text.parse::<IpAddr>().ok()?;
        Some(SocketAddr::new(ip, DNS_PORT))
    });
    match parsed {
        Some(addr) if addr.port() != 0 => Ok(addr),
        _ => Err(format!("`servers`: expected {SERVER_HINT}, found \"{text}\"")),
    }
}

/// `[dns] timeout`: above zero, at most [`MAX_DNS_TIMEOUT`].
fn dns_timeout(v: &DeValue<'_>) -> Result<Duration, String> {
    match duration("timeout", v, false)? {
        timeout if timeout <= MAX_DNS_TIMEOUT => Ok(timeout),
        _ => Err(format!("`timeout` must be at most {}s", MAX_DNS_TIMEOUT.as_secs())),
    }
}

/// `dns_refresh`: from [`MIN_DNS_REFRESH`] to [`MAX_DNS_REFRESH`].
pub(super) fn dns_refresh(v: &DeValue<'_>) -> Result<Duration, String> {
    match duration("dns_refresh", v, false)? {
        d if (MIN_DNS_REFRESH..=MAX_DNS_REFRESH).contains(&d) => Ok(d),
        _ => Err(format!(
            "`dns_refresh` must be between {}s and {}s",
            MIN_DNS_REFRESH.as_secs(),
            MAX_DNS_REFRESH.as_secs()
        )),
    }
}

/// Whether `address` may be looked up with `resolve = true`: a DNS name, not an IP.
pub(super) fn resolvable(address: &BackendAddress) -> Result<(), String> {
    if address.host.parse::<IpAddr>().is_ok() {
        let host = &address.host;
        return Err(format!("`resolve = true` needs a host name; {host} is an IP address"));
    }
    crate::config::dns::check_name(&address.host)
        .map_err(|why| format!("`resolve = true`: `{}` is not a DNS name: {why}", address.host))
}

/// `resolve`: `false` (once, at load), `true` (A and AAAA records) or `"srv"`.
pub(super) fn resolve_mode(v: &DeValue<'_>) -> Result<Resolve, String> {
    match v {
        DeValue::Boolean(false) => Ok(Resolve::Once),
        DeValue::Boolean(true) => Ok(Resolve::Addresses),
        DeValue::String(text) if text == "srv" => Ok(Resolve::Srv),
        other => Err(wrong("resolve", other, "true, false or \"srv\"")),
    }
}

/// The address of a `resolve = "srv"` backend: an SRV name (`_http._tcp.api.example`,
/// optionally `http://`), without a port, since the records give it. Stored as port 0.
/// Plain HTTP only: TLS would need each target's own name for SNI and verification.
pub(super) fn srv_address(v: &DeValue<'_>) -> Result<BackendAddress, String> {
    let text = string("address", v)?;
    if text.starts_with("https://") {
        return Err("`resolve = \"srv\"` backends are plain HTTP for now: TLS would need \
                    each SRV target's name for SNI"
            .to_string());
    }
    let name = text.strip_prefix("http://").unwrap_or(text);
    let name = name.strip_suffix('/').unwrap_or(name);
    if name.contains(':') || name.contains('/') || name.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "`resolve = \"srv\"` needs an SRV name without a port, such as \
             \"_http._tcp.api.example\"; found \"{text}\""
        ));
    }
    crate::config::dns::check_name(name)
        .map_err(|why| format!("`resolve = \"srv\"`: `{name}` is not a DNS name: {why}"))?;
    Ok(BackendAddress { scheme: Scheme::Http, host: name.to_string(), port: 0 })
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
