//! `[pool.health]`, `[pool.passive]` and `[pool.retry]`, plus the pool keys
//! `when_all_unhealthy` and `slow_start`.

use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use toml::de::DeValue;

use super::{duration, int_value, integer, string, text, wrong, Slot, Value, Walker};
use crate::config::health::MAX_RETRY_ATTEMPTS;
use crate::config::{
    GrpcCodes, HealthConfig, PassiveConfig, ProbeKind, RetryConfig, RetryOn, StatusSet,
    WhenAllUnhealthy,
};

/// Probe intervals: below 10 ms probes become load of their own; above an hour a dead
/// backend would go unnoticed for too long to call it health checking.
const PROBE_INTERVALS: RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(3600);
/// Probe timeouts: at least a millisecond, at most a minute (a probe holds a socket).
const PROBE_TIMEOUTS: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(60);
/// Thresholds: HAProxy's `rise` and `fall` have no useful values beyond a few dozen.
const THRESHOLDS: (u64, u64) = (1, 100);
/// `consecutive_failures`: 0 turns passive ejection off; more than 1,000 never trips.
const MAX_CONSECUTIVE_FAILURES: u64 = 1_000;
/// Ejection times: at most a day, so a backend always gets another chance.
const EJECTIONS: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(24 * 3600);
/// `min_per_second`: a floor, not a rate limit; beyond this it would disable the budget.
const MAX_MIN_PER_SECOND: u64 = 10_000;
/// `replay_buffer`: memory held per in-flight request; 1 MiB is already generous.
const REPLAY_BUFFERS: RangeInclusive<usize> = 0..=1024 * 1024;
/// `slow_start` windows: zero turns it off; longer than an hour is a typo.
const SLOW_STARTS: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(3600);
/// Status codes that may count as failures: a 2xx or 3xx is never one.
const FAILURE_CODES: RangeInclusive<u16> = 400..=599;
/// Status codes a probe may expect, and a retry may name.
const STATUS_CODES: RangeInclusive<u16> = 200..=599;
const STATUS_HINT: &str = r#"a status, a range such as "200-399", or a list of them"#;
const ON_HINT: &str = r#""connect-failure", "reset", "timeout", "gateway-error", "5xx", "grpc-unavailable", "grpc-resource-exhausted" or a status code"#;

impl Walker {
    /// `[pool.health]`: active probes.
    pub(super) fn health(&mut self, value: &Value<'_>) -> Option<HealthConfig> {
        let table = self.table("health", value)?;
        let mut out = HealthConfig::default();
        let (mut jitter, mut jitter_span, mut service_span) = (None, None, None);
        for (key, value) in table {
            let slot = match key.get_ref().as_ref() {
                "type" => Slot::Check(Box::new(|v| probe_kind(v).map(|k| out.kind = k))),
                "service" => {
                    service_span = Some(value.span());
                    Slot::Check(Box::new(|v| grpc_service(v).map(|s| out.service = s)))
                }
                "path" => Slot::Check(Box::new(|v| probe_path(v).map(|p| out.path = p))),
                "host" => Slot::Check(Box::new(|v| probe_host(v).map(|h| out.host = Some(h)))),
                "expect_status" => Slot::Check(Box::new(|v| {
                    statuses("expect_status", v, STATUS_CODES).map(|s| out.expect_status = s)
                })),
                "interval" => Slot::Check(Box::new(|v| {
                    within("interval", v, PROBE_INTERVALS).map(|d| out.interval = d)
                })),
                "timeout" => Slot::Check(Box::new(|v| {
                    within("timeout", v, PROBE_TIMEOUTS).map(|d| out.timeout = d)
                })),
                "healthy_threshold" => Slot::Check(Box::new(|v| {
                    threshold("healthy_threshold", v).map(|n| out.healthy_threshold = n)
                })),
                "unhealthy_threshold" => Slot::Check(Box::new(|v| {
                    threshold("unhealthy_threshold", v).map(|n| out.unhealthy_threshold = n)
                })),
                "jitter" => {
                    jitter_span = Some(value.span());
                    Slot::Check(Box::new(|v| duration("jitter", v, true).map(|d| jitter = Some(d))))
                }
                _ => Slot::Unknown("[pool.health]"),
            };
            self.fill(key, value, slot);
        }
        out.jitter = match (jitter, jitter_span) {
            (Some(jitter), Some(span)) if jitter > out.interval => {
                self.error(span, "`jitter` must not exceed `interval`".to_string());
                out.interval / 10
            }
            (Some(jitter), _) => jitter,
            (None, _) => out.interval / 10,
        };
        if let (Some(span), false) = (service_span, out.kind == ProbeKind::Grpc) {
            self.error(span, "`service` is for `type = \"grpc\"` probes only".to_string());
        }
        Some(out)
    }

    /// `[pool.passive]`: ejection on failed traffic.
    pub(super) fn passive(&mut self, value: &Value<'_>) -> Option<PassiveConfig> {
        let table = self.table("passive", value)?;
        let mut out = PassiveConfig::default();
        let mut max_span: Option<Range<usize>> = None;
        for (key, value) in table {
            let slot = match key.get_ref().as_ref() {
                "consecutive_failures" => Slot::Check(Box::new(|v| {
                    let n = integer("consecutive_failures", v, 0, MAX_CONSECUTIVE_FAILURES)?;
                    out.consecutive_failures = n as u32;
                    Ok(())
                })),
                "base_ejection" => Slot::Check(Box::new(|v| {
                    within("base_ejection", v, EJECTIONS).map(|d| out.base_ejection = d)
                })),
                "max_ejection" => {
                    max_span = Some(value.span());
                    Slot::Check(Box::new(|v| {
                        within("max_ejection", v, EJECTIONS).map(|d| out.max_ejection = d)
                    }))
                }
                "max_ejection_percent" => Slot::Check(Box::new(|v| {
                    let n = integer("max_ejection_percent", v, 0, 100)?;
                    out.max_ejection_percent = n as u32;
                    Ok(())
                })),
                "failure_statuses" => Slot::Check(Box::new(|v| {
                    statuses("failure_statuses", v, FAILURE_CODES).map(|s| out.failure_statuses = s)
                })),
                _ => Slot::Unknown("[pool.passive]"),
            };
            self.fill(key, value, slot);
        }
        if out.max_ejection < out.base_ejection {
            let span = max_span.unwrap_or_else(|| value.span());
            self.error(span, "`max_ejection` must be at least `base_ejection`".to_string());
        }
        Some(out)
    }

    /// `[pool.retry]`: attempts, what is retried, and the budget.
    pub(super) fn retry(&mut self, value: &Value<'_>) -> Option<RetryConfig> {
        let table = self.table("retry", value)?;
        let mut out = RetryConfig::default();
        for (key, value) in table {
            let slot = match key.get_ref().as_ref() {
                "attempts" => Slot::Check(Box::new(|v| {
                    let n = integer("attempts", v, 0, MAX_RETRY_ATTEMPTS.into())?;
                    out.attempts = n as u32;
                    Ok(())
                })),
                "on" => Slot::Check(Box::new(|v| retry_on(v).map(|on| out.on = on))),
                "budget_percent" => Slot::Check(Box::new(|v| {
                    let n = integer("budget_percent", v, 0, 100)?;
                    out.budget_percent = n as u32;
                    Ok(())
                })),
                "min_per_second" => Slot::Check(Box::new(|v| {
                    let n = integer("min_per_second", v, 0, MAX_MIN_PER_SECOND)?;
                    out.min_per_second = n as u32;
                    Ok(())
                })),
                "replay_buffer" => Slot::Size(&mut out.replay_buffer, REPLAY_BUFFERS),
                _ => Slot::Unknown("[pool.retry]"),
            };
            self.fill(key, value, slot);
        }
        Some(out)
    }
}

/// `[pool] when_all_unhealthy`.
pub(super) fn when_all_unhealthy(v: &DeValue<'_>) -> Result<WhenAllUnhealthy, String> {
    match string("when_all_unhealthy", v)? {
        "fail" => Ok(WhenAllUnhealthy::Fail),
        "try_all" => Ok(WhenAllUnhealthy::TryAll),
        other => Err(format!(
            "`when_all_unhealthy`: expected \"fail\" or \"try_all\", found \"{other}\""
        )),
    }
}

/// `[pool] slow_start`: a window, or `"0s"` for none.
pub(super) fn slow_start(v: &DeValue<'_>) -> Result<Option<Duration>, String> {
    let window = within("slow_start", v, SLOW_STARTS)?;
    Ok((!window.is_zero()).then_some(window))
}

/// A duration within `range`.
fn within(
    name: &str,
    v: &DeValue<'_>,
    range: RangeInclusive<Duration>,
) -> Result<Duration, String> {
    let value = duration(name, v, range.start().is_zero())?;
    if range.contains(&value) {
        return Ok(value);
    }
    Err(format!("`{name}` must be between {:?} and {:?}", range.start(), range.end()))
}

fn threshold(name: &str, v: &DeValue<'_>) -> Result<u32, String> {
    integer(name, v, THRESHOLDS.0, THRESHOLDS.1).map(|n| n as u32)
}

fn probe_kind(v: &DeValue<'_>) -> Result<ProbeKind, String> {
    match string("type", v)? {
        "http" => Ok(ProbeKind::Http),
        "tcp" => Ok(ProbeKind::Tcp),
        "grpc" => Ok(ProbeKind::Grpc),
        "https" => Err("probes to https:// backends speak TLS by themselves; \
                        use type = \"http\""
            .to_string()),
        other => Err(format!("`type`: expected \"http\", \"tcp\" or \"grpc\", found \"{other}\"")),
    }
}

/// A probe path: starts with `/`, no spaces or control characters (it goes verbatim
/// into the request line), and a valid `:path` (an HTTP/2 probe sends it as one: a path
/// `http` refuses would fail every probe of a healthy backend; a `#` would be dropped).
fn probe_path(v: &DeValue<'_>) -> Result<String, String> {
    let path = string("path", v)?;
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '#';
    let valid = path.parse::<http::uri::PathAndQuery>().is_ok();
    match path.starts_with('/') && !path.contains(bad) && valid {
        true => Ok(path.to_string()),
        false => Err(format!("`path` must start with '/' and hold no spaces or '#': \"{path}\"")),
    }
}

/// Longest gRPC service name a probe may ask about: real ones (`package.Service`) are
/// well under a hundred bytes, and the whole request must stay one small frame.
const MAX_SERVICE_NAME: usize = 1024;

/// A gRPC probe's `service`: a name of printable ASCII (it goes into a protobuf string,
/// which must be UTF-8; servers register services by such names).
fn grpc_service(v: &DeValue<'_>) -> Result<String, String> {
    let service = string("service", v)?;
    if service.len() > MAX_SERVICE_NAME {
        return Err(format!("`service` is longer than {MAX_SERVICE_NAME} bytes"));
    }
    match service.bytes().all(|b| b.is_ascii_graphic()) {
        true => Ok(service.to_string()),
        false => Err(format!(
            "`service` must be a service name such as \"pkg.Service\", not \"{service}\""
        )),
    }
}

/// A probe `Host`: no spaces or control characters (it goes verbatim into the head),
/// and a valid `:authority` for an HTTP/2 probe.
fn probe_host(v: &DeValue<'_>) -> Result<String, String> {
    let host = text("host", v)?;
    let valid = host.parse::<http::uri::Authority>().is_ok();
    match host.contains(|c: char| c.is_whitespace() || c.is_control()) || !valid {
        false => Ok(host),
        true => Err(format!("`host` must be a bare host name, not \"{host}\"")),
    }
}

/// A status code, a range `"LOW-HIGH"`, or an array of them, each within `allowed`.
fn statuses(
    name: &str,
    v: &DeValue<'_>,
    allowed: RangeInclusive<u16>,
) -> Result<StatusSet, String> {
    let items = match v {
        DeValue::Array(array) if array.is_empty() => return Ok(StatusSet::empty()),
        DeValue::Array(array) => array.iter().map(|item| item.get_ref()).collect(),
        other => vec![other],
    };
    let mut set = StatusSet::empty();
    for item in items {
        set.extend(status_item(name, item, &allowed)?);
    }
    Ok(set)
}

fn status_item(
    name: &str,
    v: &DeValue<'_>,
    allowed: &RangeInclusive<u16>,
) -> Result<StatusSet, String> {
    let (low, high) = match v {
        DeValue::Integer(integer) => {
            let code = int_value::<u16>(integer).unwrap_or(0);
            (code, code)
        }
        DeValue::String(text) => parse_range(text)
            .ok_or_else(|| format!("`{name}`: expected {STATUS_HINT}, found \"{text}\""))?,
        other => return Err(wrong(name, other, STATUS_HINT)),
    };
    if low > high || !allowed.contains(&low) || !allowed.contains(&high) {
        let (min, max) = (allowed.start(), allowed.end());
        return Err(format!("`{name}`: status codes must be between {min} and {max}"));
    }
    Ok(StatusSet::range(low, high))
}

/// `"503"` or `"500-599"`.
fn parse_range(text: &str) -> Option<(u16, u16)> {
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    Some((low.trim().parse().ok()?, high.trim().parse().ok()?))
}

/// `[pool.retry] on`: an array of conditions and status codes.
fn retry_on(v: &DeValue<'_>) -> Result<RetryOn, String> {
    let array = v.as_array().ok_or_else(|| wrong("on", v, "an array"))?;
    let mut on = RetryOn {
        connect_failure: false,
        reset: false,
        timeout: false,
        statuses: StatusSet::empty(),
        grpc: GrpcCodes::default(),
    };
    for item in array.iter().map(|item| item.get_ref()) {
        match item.as_str() {
            Some("connect-failure") => on.connect_failure = true,
            Some("reset") => on.reset = true,
            Some("timeout") => on.timeout = true,
            Some("gateway-error") => on.statuses.extend(StatusSet::range(502, 504)),
            Some("5xx") => on.statuses.extend(StatusSet::range(500, 599)),
            Some("grpc-unavailable") => on.grpc.insert(GrpcCodes::UNAVAILABLE),
            Some("grpc-resource-exhausted") => on.grpc.insert(GrpcCodes::RESOURCE_EXHAUSTED),
            Some(other) if parse_range(other).is_none() => {
                return Err(format!("`on`: expected {ON_HINT}, found \"{other}\""));
            }
            _ => on.statuses.extend(status_item("on", item, &STATUS_CODES)?),
        }
    }
    Ok(on)
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
