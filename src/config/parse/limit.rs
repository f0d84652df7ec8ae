//! `[[limit]]` tables, a route's `limits = [...]`, and `[server]
//! max_connections_per_client`.

use std::ops::Range;
use std::time::Duration;

use toml::de::DeValue;

use super::{duration, integer, string, text, wrong, Slot, Value, Walker};
use crate::config::limit::{
    LimitConfig, LimitKey, LimitMode, OnStoreError, Rate, MAX_BURST, MAX_DELAY, MAX_TABLE_SIZE,
    MIN_TABLE_SIZE,
};

/// Most `[[limit]]` blocks: each is a table of its own, and a route checks each it names.
pub const MAX_LIMITS: usize = 64;
/// Most limits one route names: each costs a table lookup per request.
pub const MAX_ROUTE_LIMITS: usize = 8;

/// What a limit's table holds before its keys are checked against each other.
struct Draft {
    limit: LimitConfig,
    mode: Option<(String, Range<usize>)>,
    delay: Option<(Duration, Range<usize>)>,
    /// `delay` was written, maybe wrong (and reported already).
    delay_written: bool,
}

impl Walker {
    /// Every `[[limit]]`; a duplicate name is an error at the second one.
    pub(super) fn limits(&mut self, value: &Value<'_>) -> Vec<LimitConfig> {
        let mut limits: Vec<LimitConfig> = Vec::new();
        let items = self.tables("limit", value);
        if items.len() > MAX_LIMITS {
            self.error(value.span(), format!("at most {MAX_LIMITS} [[limit]] blocks"));
        }
        for item in items.iter().take(MAX_LIMITS) {
            let Some((limit, name_span)) = self.limit(item) else { continue };
            if limits.iter().any(|other| other.name == limit.name) {
                self.error(name_span, format!("duplicate limit name `{}`", limit.name));
                continue;
            }
            limits.push(limit);
        }
        limits
    }

    /// One `[[limit]]`, with the span of its name; `None` when a required key is missing.
    fn limit(&mut self, item: &Value<'_>) -> Option<(LimitConfig, Range<usize>)> {
        let table = self.table("limit", item)?;
        let placeholder = Rate { count: 1, per: Duration::from_secs(1) };
        let limit = LimitConfig::new("", LimitKey::ClientIp, placeholder);
        let mut draft = Draft { limit, mode: None, delay: None, delay_written: false };
        for (key, value) in table {
            self.limit_key(key.get_ref().as_ref(), key, value, &mut draft);
        }
        for required in ["name", "key", "rate"] {
            if !table.contains_key(required) {
                self.error(item.span(), format!("[[limit]] needs `{required}`"));
                return None;
            }
        }
        let limit = self.mode_of(draft)?;
        let name_span = table.get("name").map(|value| value.span()).unwrap_or_default();
        (!limit.name.is_empty()).then_some((limit, name_span))
    }

    /// One key of a `[[limit]]` table into `draft`.
    fn limit_key(
        &mut self,
        name: &str,
        key: &super::Key<'_>,
        value: &Value<'_>,
        draft: &mut Draft,
    ) {
        let out = &mut draft.limit;
        let slot = match name {
            "name" => Slot::Check(Box::new(|v| limit_name(v).map(|n| out.name = n))),
            "key" => {
                Slot::Check(Box::new(|v| LimitKey::parse(string("key", v)?).map(|k| out.key = k)))
            }
            "rate" => {
                Slot::Check(Box::new(|v| Rate::parse(string("rate", v)?).map(|r| out.rate = r)))
            }
            "burst" => {
                Slot::Check(Box::new(|v| integer("burst", v, 0, MAX_BURST).map(|b| out.burst = b)))
            }
            "table_size" => {
                let (low, high) = (MIN_TABLE_SIZE as u64, MAX_TABLE_SIZE as u64);
                Slot::Count(&mut out.table_size, low, high)
            }
            "store" => Slot::Check(Box::new(|v| store(v).map(|s| out.store = Some(s)))),
            "on_store_error" => Slot::Check(Box::new(|v| {
                on_store_error(v).map(|choice| out.on_store_error = choice)
            })),
            "store_timeout" => Slot::Duration(&mut out.store_timeout, false),
            "mode" => {
                let mode = string("mode", value.get_ref()).map(str::to_string);
                draft.mode = self.check(value, mode).map(|mode| (mode, value.span()));
                return;
            }
            "delay" => {
                draft.delay_written = true;
                let bound = duration("delay", value.get_ref(), false).and_then(|d| {
                    (d <= MAX_DELAY).then_some(d).ok_or_else(|| "`delay` is at most 60s".into())
                });
                draft.delay = self.check(value, bound).map(|bound| (bound, value.span()));
                return;
            }
            _ => Slot::Unknown("[[limit]]"),
        };
        self.fill(key, value, slot);
    }

    /// The limit with its `mode`: `delay` needs the `delay` bound, `reject` refuses one.
    fn mode_of(&mut self, draft: Draft) -> Option<LimitConfig> {
        let Draft { mut limit, mode, delay, delay_written } = draft;
        let (mode, mode_span) = mode.unzip();
        match (mode.as_deref(), delay) {
            (None | Some("reject"), None) => {}
            (None | Some("reject"), Some((_, span))) => {
                self.error(span, "`delay` applies only with mode = \"delay\"".into());
                return None;
            }
            (Some("delay"), Some((bound, _))) => limit.mode = LimitMode::Delay(bound),
            (Some("delay"), None) if delay_written => return None,
            (Some("delay"), None) => {
                let message = "mode = \"delay\" needs `delay`, the longest wait, as in \"500ms\"";
                self.error(mode_span.unwrap_or_default(), message.into());
                return None;
            }
            (Some(other), _) => {
                let message = format!("`mode` must be \"reject\" or \"delay\", found \"{other}\"");
                self.error(mode_span.unwrap_or_default(), message);
                return None;
            }
        }
        Some(limit)
    }

    /// A route's `limits = ["api", ...]`: each must name a `[[limit]]`.
    pub(super) fn route_limits(
        &mut self,
        value: &Value<'_>,
        limits: &[LimitConfig],
    ) -> Vec<String> {
        let hint = r#"an array of limit names such as ["api"]"#;
        let Some(items) = value.get_ref().as_array() else {
            self.error(value.span(), wrong("limits", value.get_ref(), hint));
            return Vec::new();
        };
        if items.len() > MAX_ROUTE_LIMITS {
            self.error(value.span(), format!("a route names at most {MAX_ROUTE_LIMITS} limits"));
            return Vec::new();
        }
        let mut names: Vec<String> = Vec::new();
        for item in items {
            let name = string("limits", item.get_ref()).and_then(|name| known(name, limits));
            match self.check(item, name) {
                Some(name) if names.contains(&name) => {
                    self.error(item.span(), format!("limit `{name}` is named twice"));
                }
                Some(name) => names.push(name),
                None => {}
            }
        }
        names
    }
}

/// `name`: a non-empty label of letters, digits, `-`, `_` and `.` (it is a metric label
/// and a Redis key part).
fn limit_name(v: &DeValue<'_>) -> Result<String, String> {
    let name = text("name", v)?;
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
    match name.len() <= 64 && name.bytes().all(ok) {
        true => Ok(name),
        false => Err(format!(
            "limit `name` must be up to 64 letters, digits, '-', '_' or '.', found \"{name}\""
        )),
    }
}

/// `name` if one of `limits` has it.
fn known(name: &str, limits: &[LimitConfig]) -> Result<String, String> {
    if limits.iter().any(|limit| limit.name == name) {
        return Ok(name.to_string());
    }
    let names: Vec<&str> = limits.iter().map(|limit| limit.name.as_str()).collect();
    Err(format!("no limit named `{name}`; defined limits: [{}]", names.join(", ")))
}

/// `store = "redis://HOST:PORT"` (port 6379 when left out): the `HOST:PORT` to dial.
pub fn store(v: &DeValue<'_>) -> Result<String, String> {
    let url = string("store", v)?;
    let hint = || format!("`store`: expected \"redis://HOST:PORT\", found \"{url}\"");
    let rest = url.strip_prefix("redis://").ok_or_else(hint)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let bad = authority.is_empty() || authority.contains(['/', '@', '?', '#', ' ']);
    if bad {
        return Err(hint());
    }
    let has_port = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => {
            port.parse::<u16>().map_err(|_| hint())?;
            !host.is_empty() || return Err(hint())
        }
        _ => false,
    };
    Ok(if has_port { authority.to_string() } else { format!("{authority}:6379") })
}

/// `on_store_error = "local" | "open"`.
fn on_store_error(v: &DeValue<'_>) -> Result<OnStoreError, String> {
    match v.as_str() {
        Some("local") => Ok(OnStoreError::Local),
        Some("open") => Ok(OnStoreError::Open),
        _ => Err("`on_store_error` must be \"local\" or \"open\" (weir never fails closed)".into()),
    }
}
