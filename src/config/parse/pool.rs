//! `[[pool]]` tables: backends, strategy, and the strategy tables `[pool.hash]` and
//! `[pool.sticky]`, checked against the strategy they belong to. The health and retry
//! tables are read in [`super::health`].

use std::ops::Range;

use toml::de::DeValue;

use super::health::{slow_start, when_all_unhealthy};
use super::{duration, integer, string, text, wrong, Slot, Value, Walker};
use crate::config::hash::{is_prime, DEFAULT_TABLE_SIZE};
use crate::config::upstream::STREAMS_PER_CONNECTION;
use crate::config::{
    BackendAddress, BackendConfig, HashConfig, PoolConfig, Resolve, SameSite, StickyConfig,
    StrategyKind, MAX_WEIGHT,
};
use crate::config::{BackendProtocol, HashKey};

/// Upper bound on `max_idle` (0 disables pooling).
const MAX_IDLE: u64 = 100_000;
const BACKEND_HINT: &str = r#"an address or a table such as { address = "127.0.0.1:9001" }"#;
/// Maglev table sizes, as Envoy allows at the top (and a floor that keeps weights usable).
const TABLE_SIZES: (u64, u64) = (1_021, 5_000_011);
const KEY_HINT: &str = r#"key = "header:NAME" (or cookie:NAME, query:NAME, client_ip, path)"#;

/// Where the strategy-specific parts of a pool were written, for the checks that need the
/// whole pool.
#[derive(Default)]
struct Spans {
    strategy: Option<Range<usize>>,
    hash: Option<Range<usize>>,
    sticky: Option<Range<usize>>,
    ewma_decay: Option<Range<usize>>,
}

/// `[pool.hash]` as written: the key may be missing, or written but invalid.
struct HashDraft {
    key: Option<HashKey>,
    written: bool,
    table_size: usize,
}

impl Walker {
    /// `[[pool]]`, in file order, without the ones whose name is missing or repeated.
    pub(super) fn pools(&mut self, value: &Value<'_>) -> Vec<PoolConfig> {
        let mut pools: Vec<PoolConfig> = Vec::new();
        for item in self.tables("pool", value) {
            let Some((pool, name_span)) = self.pool(item) else {
                continue;
            };
            if pools.iter().any(|p| p.name == pool.name) {
                self.error(name_span, format!("duplicate pool name `{}`", pool.name));
                continue;
            }
            pools.push(pool);
        }
        pools
    }

    /// One `[[pool]]` table, with the span of its name.
    fn pool(&mut self, item: &Value<'_>) -> Option<(PoolConfig, Range<usize>)> {
        let table = self.table("pool", item)?;
        let mut pool = PoolConfig::new("", StrategyKind::RoundRobin, Vec::new());
        let (mut spans, mut hash) = (Spans::default(), None);
        for (key, value) in table {
            let slot = match key.get_ref().as_ref() {
                "name" => Slot::PoolName(&mut pool.name),
                "strategy" => {
                    spans.strategy = Some(value.span());
                    Slot::Strategy(&mut pool.strategy)
                }
                "backends" => Slot::Backends(&mut pool.backends),
                "connect_timeout" => Slot::Duration(&mut pool.connect_timeout, false),
                "response_timeout" => Slot::Duration(&mut pool.response_timeout, false),
                "read_timeout" => Slot::Duration(&mut pool.read_timeout, false),
                "idle_timeout" => Slot::Duration(&mut pool.idle_timeout, false),
                "tunnel_idle_timeout" => Slot::Duration(&mut pool.tunnel_idle_timeout, false),
                "stream_idle_timeout" => Slot::Duration(&mut pool.stream_idle_timeout, false),
                "max_idle" => Slot::Count(&mut pool.max_idle, 0, MAX_IDLE),
                "ewma_decay" => {
                    spans.ewma_decay = Some(key.span());
                    Slot::Duration(&mut pool.ewma_decay, false)
                }
                "hash" => {
                    spans.hash = Some(key.span());
                    hash = self.hash(value);
                    continue;
                }
                "sticky" => {
                    spans.sticky = Some(key.span());
                    pool.sticky = self.sticky(value);
                    continue;
                }
                "health" => {
                    pool.health = self.health(value);
                    continue;
                }
                "passive" => {
                    pool.passive = self.passive(value).unwrap_or_default();
                    continue;
                }
                "retry" => {
                    pool.retry = self.retry(value).unwrap_or_default();
                    continue;
                }
                "tls" => {
                    pool.tls = self.pool_tls(value);
                    continue;
                }
                name => other_slot(name, &mut pool),
            };
            self.fill(key, value, slot);
        }
        self.strategy_tables(&mut pool, hash, &spans, item.span());
        if let (Some(value), Err(message)) = (table.get("protocol"), fits_protocol(&pool)) {
            self.error(value.span(), message);
        }
        let Some(name) = table.get("name") else {
            self.error(item.span(), "[[pool]] needs a `name`".to_string());
            return None;
        };
        (!pool.name.is_empty()).then(|| (pool, name.span()))
    }

    /// Checks that `[pool.hash]`, `[pool.sticky]` and `ewma_decay` go with the strategy,
    /// and that `consistent_hash` has its key; `at` is the pool, for a missing strategy.
    fn strategy_tables(
        &mut self,
        pool: &mut PoolConfig,
        hash: Option<HashDraft>,
        spans: &Spans,
        at: Range<usize>,
    ) {
        let strategy = pool.strategy;
        let base = match (strategy, &pool.sticky) {
            (StrategyKind::Sticky, Some(sticky)) => sticky.base,
            (StrategyKind::Sticky, None) => StickyConfig::default().base,
            (kind, _) => kind,
        };
        let uses = |table: &str, kind: StrategyKind| {
            let name = kind.name();
            format!(
                "{table} applies only to strategy = \"{name}\"; this pool uses \"{}\"",
                strategy.name()
            )
        };
        if let Some(span) = spans.hash.clone().filter(|_| base != StrategyKind::ConsistentHash) {
            self.error(span, uses("[pool.hash]", StrategyKind::ConsistentHash));
        }
        if let Some(span) = spans.sticky.clone().filter(|_| strategy != StrategyKind::Sticky) {
            self.error(span, uses("[pool.sticky]", StrategyKind::Sticky));
            pool.sticky = None;
        }
        if let Some(span) = spans.ewma_decay.clone().filter(|_| base != StrategyKind::PeakEwma) {
            self.error(span, uses("`ewma_decay`", StrategyKind::PeakEwma));
        }
        if strategy == StrategyKind::Sticky && pool.sticky.is_none() {
            // A sticky pool without a `[pool.sticky]` table uses the defaults.
            pool.sticky = Some(StickyConfig::default());
        }
        if base != StrategyKind::ConsistentHash {
            return;
        }
        let table_size = hash.as_ref().map_or(DEFAULT_TABLE_SIZE, |h| h.table_size);
        if hash.as_ref().is_some_and(|h| h.written && h.key.is_none()) {
            return; // The key is there, wrong, and reported already.
        }
        match (hash.and_then(|h| h.key), &spans.hash) {
            (Some(key), _) => pool.hash = Some(HashConfig { key, table_size }),
            (None, Some(span)) => self.error(span.clone(), format!("[pool.hash] needs {KEY_HINT}")),
            (None, None) => {
                let span = spans.strategy.clone().unwrap_or(at);
                self.error(
                    span,
                    format!("consistent_hash needs a [pool.hash] table with {KEY_HINT}"),
                );
            }
        }
    }

    /// `[pool.hash]`: `key` and `table_size`.
    fn hash(&mut self, value: &Value<'_>) -> Option<HashDraft> {
        let table = self.table("hash", value)?;
        let written = table.contains_key("key");
        let mut draft = HashDraft { key: None, written, table_size: DEFAULT_TABLE_SIZE };
        for (key, value) in table {
            let slot = match key.get_ref().as_ref() {
                "key" => Slot::Check(Box::new(|v| {
                    let text = string("key", v)?;
                    HashKey::parse(text).map(|key| draft.key = Some(key))
                })),
                "table_size" => {
                    Slot::Check(Box::new(|v| table_size(v).map(|size| draft.table_size = size)))
                }
                _ => Slot::Unknown("[pool.hash]"),
            };
            self.fill(key, value, slot);
        }
        Some(draft)
    }

    /// `[pool.sticky]`: the cookie, its attributes and the base strategy.
    fn sticky(&mut self, value: &Value<'_>) -> Option<StickyConfig> {
        let table = self.table("sticky", value)?;
        let mut out = StickyConfig::default();
        let mut same_site_span = None;
        for (key, value) in table {
            let slot = match key.get_ref().as_ref() {
                "cookie" => Slot::Check(Box::new(|v| cookie_name(v).map(|n| out.cookie = n))),
                "base" => Slot::Check(Box::new(|v| base(v).map(|kind| out.base = kind))),
                "path" => Slot::Check(Box::new(|v| cookie_path(v).map(|p| out.path = p))),
                "max_age" => Slot::Check(Box::new(|v| {
                    duration("max_age", v, false).map(|d| out.max_age = Some(d))
                })),
                "secure" => Slot::Flag(&mut out.secure),
                "http_only" => Slot::Flag(&mut out.http_only),
                "same_site" => {
                    same_site_span = Some(value.span());
                    Slot::Check(Box::new(|v| same_site(v).map(|s| out.same_site = Some(s))))
                }
                "secret" => Slot::Text(&mut out.secret),
                "forward_cookie" => Slot::Flag(&mut out.forward_cookie),
                _ => Slot::Unknown("[pool.sticky]"),
            };
            self.fill(key, value, slot);
        }
        if let Some(span) = same_site_span.filter(|_| out.same_site == Some(SameSite::None)) {
            if !out.secure {
                let message = "`same_site = \"None\"` needs `secure = true`; browsers refuse it";
                self.error(span, message.to_string());
            }
        }
        Some(out)
    }

    /// A pool's `backends`; a repeated address is reported and left out.
    pub(super) fn backends(&mut self, value: &Value<'_>) -> Result<Vec<BackendConfig>, String> {
        let array = value.get_ref().as_array();
        let array = array.ok_or_else(|| wrong("backends", value.get_ref(), "an array"))?;
        let mut backends: Vec<BackendConfig> = Vec::new();
        for item in array {
            let Some((backend, span)) = self.backend(item) else {
                continue;
            };
            let identity = |b: &BackendConfig| b.address.authority().to_ascii_lowercase();
            if backends.iter().any(|b| identity(b) == identity(&backend)) {
                let message = format!("duplicate backend `{}` in this pool", backend.address);
                self.error(span, message);
                continue;
            }
            backends.push(backend);
        }
        Ok(backends)
    }

    /// One backend, `"HOST:PORT"` or `{ address = "HOST:PORT", weight = N }`, and its span.
    fn backend(&mut self, item: &Value<'_>) -> Option<(BackendConfig, Range<usize>)> {
        let table = match item.get_ref() {
            DeValue::String(_) => {
                let address = self.check(item, backend_address(item.get_ref()))?;
                let backend = BackendConfig { address, weight: 1, resolve: Resolve::Once };
                return Some((backend, item.span()));
            }
            DeValue::Table(table) => table,
            other => return self.check(item, Err(wrong("backends", other, BACKEND_HINT))),
        };
        let (mut weight, mut resolve) = (1, Resolve::Once);
        for (key, value) in table {
            let slot = match key.get_ref().as_ref() {
                // Read after `resolve`: an SRV name has no port.
                "address" | "kubernetes" => continue,
                "weight" => Slot::Count(&mut weight, 0, MAX_WEIGHT.into()),
                "resolve" => Slot::Check(Box::new(|v| {
                    super::dns::resolve_mode(v).map(|mode| resolve = mode)
                })),
                _ => Slot::Unknown("a backend"),
            };
            self.fill(key, value, slot);
        }
        if let Some(at) = table.get("kubernetes") {
            let both = table.contains_key("address") || table.contains_key("resolve");
            let message =
                "a kubernetes backend has no `address` or `resolve`: its Service gives them";
            if both {
                self.error(item.span(), message.to_string());
                return None;
            }
            let backend = self.kubernetes(at, u32::try_from(weight).ok()?)?;
            return Some((backend, at.span()));
        }
        let Some(at) = table.get("address") else {
            let message = "a backend needs an `address` (or a `kubernetes` Service)";
            self.error(item.span(), message.to_string());
            return None;
        };
        let checked = match resolve {
            Resolve::Srv => super::dns::srv_address(at.get_ref()),
            _ => backend_address(at.get_ref()),
        };
        let (address, weight) = (self.check(at, checked)?, u32::try_from(weight).ok()?);
        if resolve == Resolve::Addresses {
            self.check(at, super::dns::resolvable(&address))?;
        }
        Some((BackendConfig { address, weight, resolve }, at.span()))
    }
}

/// Stores a pool's `name`, then checks it. A bad name is kept so routes to it still resolve.
pub(super) fn pool_name(out: &mut String, name: String) -> Result<(), String> {
    let bad = name.contains(|c: char| !c.is_ascii_alphanumeric() && !"_.-".contains(c));
    let message = format!("pool name `{name}` may use only letters, digits, `_`, `.` and `-`");
    *out = name;
    (!bad).then_some(()).ok_or(message)
}

pub(super) fn strategy(v: &DeValue<'_>) -> Result<StrategyKind, String> {
    let name = string("strategy", v)?;
    let kind = StrategyKind::from_name(name).ok_or_else(|| {
        let names = StrategyKind::NAMES.join(", ");
        format!("unknown strategy `{name}`; expected one of {names}")
    })?;
    let message = format!("strategy `{name}` is not implemented yet in this build");
    kind.is_available().then_some(kind).ok_or(message)
}

pub(super) fn backend_address(v: &DeValue<'_>) -> Result<BackendAddress, String> {
    let text = string("address", v)?;
    match BackendAddress::parse(text)? {
        address if address.port == 0 => Err(format!("backend `{text}`: port 0 is not usable")),
        address => Ok(address),
    }
}

/// `[pool.hash] table_size`: a prime in range.
fn table_size(v: &DeValue<'_>) -> Result<usize, String> {
    let size = integer("table_size", v, TABLE_SIZES.0, TABLE_SIZES.1)? as usize;
    let message = format!("`table_size` must be prime, as Maglev needs; {size} is not");
    is_prime(size).then_some(size).ok_or(message)
}

/// `[pool.sticky] base`: any strategy but `sticky`.
fn base(v: &DeValue<'_>) -> Result<StrategyKind, String> {
    match strategy(v)? {
        StrategyKind::Sticky => Err("`base` must be a strategy other than \"sticky\"".to_string()),
        kind => Ok(kind),
    }
}

/// A cookie name: an RFC 6265 token.
fn cookie_name(v: &DeValue<'_>) -> Result<String, String> {
    let name = text("cookie", v)?;
    match name.bytes().all(crate::http1::fields::is_tchar) {
        true => Ok(name),
        false => Err(format!("`cookie`: \"{name}\" is not a valid cookie name")),
    }
}

/// A cookie `Path`: starts with `/`, no `;` and no control characters.
fn cookie_path(v: &DeValue<'_>) -> Result<String, String> {
    let path = string("path", v)?;
    let bad = |c: char| c == ';' || c.is_control();
    match path.starts_with('/') && !path.contains(bad) {
        true => Ok(path.to_string()),
        false => Err(format!("`path` must start with '/' and hold no ';': \"{path}\"")),
    }
}

fn same_site(v: &DeValue<'_>) -> Result<SameSite, String> {
    match string("same_site", v)? {
        "Strict" => Ok(SameSite::Strict),
        "Lax" => Ok(SameSite::Lax),
        "None" => Ok(SameSite::None),
        other => {
            Err(format!("`same_site`: expected \"Strict\", \"Lax\" or \"None\", found \"{other}\""))
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;

/// `send_proxy_protocol`: `"v1"` or `"v2"`.
/// The slots of the `[[pool]]` keys read by a check of their own: health policy, DNS,
/// and how backends are spoken to.
fn other_slot<'c>(name: &str, pool: &'c mut PoolConfig) -> Slot<'c> {
    match name {
        "when_all_unhealthy" => {
            Slot::Check(Box::new(|v| when_all_unhealthy(v).map(|w| pool.when_all_unhealthy = w)))
        }
        "slow_start" => Slot::Check(Box::new(|v| slow_start(v).map(|w| pool.slow_start = w))),
        "dns_refresh" => {
            Slot::Check(Box::new(|v| super::dns::dns_refresh(v).map(|d| pool.dns_refresh = d)))
        }
        "send_proxy_protocol" => Slot::Check(Box::new(|v| send_proxy(v, pool))),
        "protocol" => Slot::Check(Box::new(|v| {
            pool.protocol = BackendProtocol::parse(string("protocol", v)?)?;
            Ok(())
        })),
        "max_streams_per_connection" => {
            let (low, high) = STREAMS_PER_CONNECTION.into_inner();
            Slot::Count(&mut pool.h2.max_streams_per_connection, low, high)
        }
        "ping_interval" => Slot::Duration(&mut pool.h2.ping_interval, false),
        "ping_timeout" => Slot::Duration(&mut pool.h2.ping_timeout, false),
        _ => Slot::Unknown("[[pool]]"),
    }
}

/// Whether the pool's other settings allow its `protocol`: cleartext HTTP/2 is for
/// `http://` backends and HTTP/2 over TLS for `https://` ones; a multiplexed connection
/// and a multiplexed connection carries many clients' requests, so it cannot start with
/// a PROXY header naming one. (HTTP probes speak the pool's protocol: HTTP/2 here.)
fn fits_protocol(pool: &PoolConfig) -> Result<(), String> {
    use crate::config::Scheme;
    let protocol = pool.protocol;
    if !protocol.is_http2() {
        return Ok(());
    }
    let (tls, name) = (protocol == BackendProtocol::H2, protocol.name());
    if let Some(backend) = pool.backends.iter().find(|b| (b.address.scheme == Scheme::Https) != tls)
    {
        let what = if tls { "HTTP/2 over TLS, for https://" } else { "cleartext, for http://" };
        let address = backend.address.authority();
        return Err(format!("`protocol = \"{name}\"` is {what} backends; {address} is not one"));
    }
    if pool.send_proxy_protocol.is_some() {
        return Err(format!("`send_proxy_protocol` cannot go with `protocol = \"{name}\"`: one HTTP/2 connection carries many clients' requests"));
    }
    Ok(())
}

fn send_proxy(v: &DeValue<'_>, pool: &mut PoolConfig) -> Result<(), String> {
    use crate::proxy_protocol::Version;
    pool.send_proxy_protocol = Some(match v.as_str() {
        Some("v1") => Version::V1,
        Some("v2") => Version::V2,
        _ => {
            return Err(
                r#"`send_proxy_protocol` must be "v1" or "v2" (leave it out for none)"#.into()
            )
        }
    });
    Ok(())
}
