//! `[[route]]` tables, and the `allow`/`deny` and `trusted_proxies` address lists.

use toml::de::DeValue;

use super::{string, wrong, Key, Slot, Value, Walker};
use crate::cidr::{Cidr, MAX_BLOCKS};
use crate::config::{Acl, HostMatch, LimitConfig, PoolConfig, RouteConfig};

impl Walker {
    /// One `[[route]]`; `pools` and `limits` are the pools and limits it may name.
    pub(super) fn route(
        &mut self,
        item: &Value<'_>,
        pools: &[PoolConfig],
        ids: bool,
        limits: &[LimitConfig],
    ) -> Option<RouteConfig> {
        let table = self.table("route", item)?;
        let (mut host, mut path_prefix, mut pool) = (None, None, None);
        let (mut acl, mut route_limits) = (Acl::default(), Vec::new());
        let mut rules = crate::config::RouteRules::default();
        for (key, value) in table {
            let slot = match key.get_ref().as_ref() {
                "host" => Slot::Host(&mut host),
                "path_prefix" => Slot::PathPrefix(&mut path_prefix),
                "pool" => Slot::PoolRef(&mut pool, pools),
                "allow" | "deny" => {
                    self.acl_key(key, value, &mut acl);
                    continue;
                }
                name if super::rules::ROUTE_KEYS.contains(&name) => {
                    self.route_rule(key, value, &mut rules, ids);
                    continue;
                }
                "limits" => {
                    route_limits = self.route_limits(value, limits);
                    continue;
                }
                _ => Slot::Unknown("[[route]]"),
            };
            self.fill(key, value, slot);
        }
        if !table.contains_key("pool") {
            self.error(item.span(), "[[route]] needs a `pool`".to_string());
        }
        Some(RouteConfig { host, path_prefix, pool: pool?, acl, rules, limits: route_limits })
    }

    /// `allow` or `deny` (named by `key`) into `acl`.
    pub(super) fn acl_key(&mut self, key: &Key<'_>, value: &Value<'_>, acl: &mut Acl) {
        let name = key.get_ref().as_ref();
        let list = self.cidr_list(name, value);
        match name {
            "allow" => acl.allow = list.unwrap_or_default(),
            _ => acl.deny = list.unwrap_or_default(),
        }
    }

    /// An array of address blocks; each bad one is an error at its own position.
    pub(super) fn cidr_list(&mut self, name: &str, value: &Value<'_>) -> Option<Vec<Cidr>> {
        let hint = r#"an array of blocks such as ["10.0.0.0/8", "::1"]"#;
        let Some(items) = value.get_ref().as_array() else {
            let message = wrong(name, value.get_ref(), hint);
            self.error(value.span(), message);
            return None;
        };
        if items.len() > MAX_BLOCKS {
            self.error(value.span(), format!("`{name}` holds at most {MAX_BLOCKS} blocks"));
            return None;
        }
        let before = self.errors.len();
        let mut list = Vec::with_capacity(items.len());
        for item in items {
            let cidr = string(name, item.get_ref())
                .and_then(|text| Cidr::parse(text).map_err(|m| format!("`{name}`: {m}")));
            list.extend(self.check(item, cidr));
        }
        (self.errors.len() == before).then_some(list)
    }
}

/// A route's `host`: `"*.example.com"` or `"api.example.com"`.
pub(super) fn host_match(v: &DeValue<'_>) -> Result<HostMatch, String> {
    let text = string("host", v)?;
    let wildcard = r#"a wildcard is allowed only as a leading "*.", as in "*.example.com""#;
    match text.strip_prefix("*.") {
        _ if text.is_empty() || text == "*" => Err("leave `host` out to match every host".into()),
        _ if text.contains(|c: char| c.is_whitespace() || c == '/') => {
            Err(format!("`host` must be a bare host name, not \"{text}\""))
        }
        Some(rest) if !rest.is_empty() && !rest.contains('*') => {
            Ok(HostMatch::Suffix(format!(".{}", rest.to_ascii_lowercase())))
        }
        None if !text.contains('*') => Ok(HostMatch::Exact(text.to_ascii_lowercase())),
        _ => Err(wildcard.to_string()),
    }
}

/// A route's path prefix. Routing compares it with the normalised request path
/// ([`crate::http1::target::normalise_path`]), so a prefix that is not normal itself
/// (`/%61dmin`, `//a`, `/a/../b`) could never match: refused, naming the normal form.
pub(super) fn path_prefix(v: &DeValue<'_>) -> Result<String, String> {
    let text = string("path_prefix", v)?;
    if !text.starts_with('/') {
        return Err(format!("`path_prefix` must start with '/': \"{text}\""));
    }
    match crate::http1::target::normalise_path(text.as_bytes()) {
        normal if *normal == *text.as_bytes() => Ok(text.to_string()),
        normal => Err(format!(
            "`path_prefix` must be a normalised path (routing matches normalised paths): \
             write \"{}\" for \"{text}\"",
            String::from_utf8_lossy(&normal)
        )),
    }
}

/// A route's `pool`, which must name one of `pools`.
pub(super) fn route_pool(v: &DeValue<'_>, pools: &[PoolConfig]) -> Result<String, String> {
    let name = string("pool", v)?;
    if pools.iter().any(|pool| pool.name == name) {
        return Ok(name.to_string());
    }
    let names: Vec<&str> = pools.iter().map(|pool| pool.name.as_str()).collect();
    Err(format!("no pool named `{name}`; defined pools: [{}]", names.join(", ")))
}
