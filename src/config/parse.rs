//! Reads a TOML config file into [`Config`].
//!
//! Every problem is collected, never just the first: TOML syntax errors (the parser recovers
//! and goes on), unknown keys, wrong types, values out of range and references to missing
//! pools. Each becomes a [`ConfigError`] at the offending key or value, sorted by position.

use std::net::SocketAddr;
use std::ops::{Range, RangeInclusive};
use std::path::Path;
use std::time::Duration;

use toml::de::{DeInteger, DeString, DeTable, DeValue};
use toml::Spanned;

use super::units::{format_size, parse_duration, parse_size};
use super::{
    AdminConfig, BackendConfig, Config, ConfigError, HostMatch, LogConfig, PoolConfig,
    ServerConfig, StrategyKind, MAX_WORKERS,
};
use crate::config::{Format, Target};
use pool::{pool_name, strategy};
use route::{host_match, path_prefix, route_pool};

#[cfg(test)]
mod admin_tests;
mod dns;
mod fleet;
#[cfg(test)]
mod fleet_tests;
mod health;
mod http2;
pub mod kubernetes;
mod limit;
#[cfg(test)]
mod limit_tests;
#[cfg(test)]
mod log_tests;
mod pool;
mod route;
#[cfg(test)]
mod route_tests;
mod rules;
mod tls;
#[cfg(test)]
mod tls_tests;
pub mod value;

type Key<'i> = Spanned<DeString<'i>>;
type Value<'i> = Spanned<DeValue<'i>>;

/// Upper bound on `max_connections`: above any fd limit, but catches a few extra zeros.
const MAX_CONNECTIONS: u64 = 10_000_000;
/// Allowed `max_header_bytes`: room for a long request line, but no unbounded buffers.
const HEADER_BYTES: RangeInclusive<usize> = 1024..=1024 * 1024;
const MAX_HEADERS: u64 = 1000;
/// What the top level may hold.
const TOP_LEVEL: &str =
    "the file (expected [server], [admin], [log], [dns], [fleet], [[pool]], [[limit]] or [[route]])";
const DURATION_HINT: &str = r#"a duration string such as "5s""#;
const SIZE_HINT: &str = r#"a size such as 65536 or "64KiB""#;
const LISTEN_HINT: &str = r#"an address such as "127.0.0.1:8080" or "[::1]:8080""#;
const ADMIN_HINT: &str = r#"an address such as "127.0.0.1:9901", or "off""#;

/// Parses config `text`; `file` names it in errors.
///
/// Returns the config, or every problem found (syntax and meaning) sorted by position.
/// `config.source` is left `None`; [`load_file`] sets it.
pub fn parse_str(file: &str, text: &str) -> Result<Config, Vec<ConfigError>> {
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    let mut errors: Vec<(Range<usize>, String)> = syntax_errors
        .iter()
        .map(|error| (error.span().unwrap_or(0..0), error.message().into()))
        .collect();
    let mut walker = Walker::default();
    let config = walker.document(root.get_ref());
    walker.errors.retain(|(span, _)| !guessed(span, &errors));
    errors.append(&mut walker.errors);
    errors.sort_by_key(|(span, _)| span.start);
    let locate = |(span, message): (Range<usize>, _)| locate(file, text, span.start, message);
    let errors: Vec<_> = errors.into_iter().map(locate).collect();
    errors.is_empty().then_some(config).ok_or(errors)
}

/// Reads and parses the config file at `path`, and records it as `config.source`.
///
/// A file that cannot be read gives a single error at 1:1 carrying the I/O error text.
pub fn load_file(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let file = path.display().to_string();
    let mut config = match std::fs::read_to_string(path) {
        Ok(text) => parse_str(&file, &text)?,
        Err(error) => return Err(vec![locate(&file, "", 0, error.to_string())]),
    };
    config.source = Some(path.to_path_buf());
    Ok(config)
}

/// `message` about byte `offset` of `text`, at a 1-based line and column (in characters).
fn locate(file: &str, text: &str, offset: usize, message: String) -> ConfigError {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let col = before[line_start..].chars().count() + 1;
    ConfigError { file: file.to_string(), line, col, message }
}

/// Whether an error at `at` is about a value the parser guessed at after a `syntax` error
/// (one overlapping it, or a made-up value with an empty span); it would only repeat it.
fn guessed(at: &Range<usize>, syntax: &[(Range<usize>, String)]) -> bool {
    let overlaps = |(bad, _): &(Range<usize>, String)| at.start <= bad.end && bad.start <= at.end;
    !syntax.is_empty() && (at.is_empty() || syntax.iter().any(overlaps))
}

/// A check that also stores the value, for [`Slot::Check`].
type Check<'c> = Box<dyn FnOnce(&DeValue<'_>) -> Result<(), String> + 'c>;

/// Where a value goes, and how it is checked on the way there.
enum Slot<'c> {
    /// A duration string; the flag says whether zero is allowed.
    Duration(&'c mut Duration, bool),
    Count(&'c mut usize, u64, u64),
    Size(&'c mut usize, RangeInclusive<usize>),
    Text(&'c mut Option<String>),
    Flag(&'c mut bool),
    Listen(&'c mut Vec<SocketAddr>),
    AdminListen(&'c mut Option<SocketAddr>),
    PoolName(&'c mut String),
    Strategy(&'c mut StrategyKind),
    Backends(&'c mut Vec<BackendConfig>),
    Host(&'c mut Option<HostMatch>),
    PathPrefix(&'c mut Option<String>),
    PoolRef(&'c mut Option<String>, &'c [PoolConfig]),
    /// Any other check, written where the key is known.
    Check(Check<'c>),
    Unknown(&'static str),
}

/// Walks the parsed document, filling a [`Config`] and collecting errors with their spans.
#[derive(Default)]
struct Walker {
    errors: Vec<(Range<usize>, String)>,
}

impl Walker {
    fn error(&mut self, span: Range<usize>, message: String) {
        self.errors.push((span, message));
    }

    /// The value of `result`, or `None` after recording its error at `value`.
    fn check<T>(&mut self, value: &Value<'_>, result: Result<T, String>) -> Option<T> {
        result.map_err(|m| self.error(value.span(), m)).ok()
    }

    fn table<'v, 'i>(&mut self, name: &str, value: &'v Value<'i>) -> Option<&'v DeTable<'i>> {
        let v = value.get_ref();
        let table = v.as_table().ok_or_else(|| wrong(name, v, "a table"));
        self.check(value, table)
    }

    /// The elements of an array of tables such as `[[pool]]`.
    fn tables<'v, 'i>(&mut self, name: &str, value: &'v Value<'i>) -> &'v [Value<'i>] {
        let array = value.get_ref().as_array().map(|array| &array[..]);
        let message = format!("`{name}` must be an array of tables: write each as [[{name}]]");
        self.check(value, array.ok_or(message)).unwrap_or_default()
    }

    /// Checks `value` and stores it in `slot`; `key` names it in errors.
    fn fill(&mut self, key: &Key<'_>, value: &Value<'_>, slot: Slot<'_>) {
        let (name, v): (&str, _) = (key.get_ref(), value.get_ref());
        let at_key = matches!(slot, Slot::Unknown(_));
        let result = match slot {
            Slot::Duration(out, zero_ok) => duration(name, v, zero_ok).map(|d| *out = d),
            Slot::Count(out, min, max) => integer(name, v, min, max).map(|n| *out = n as usize),
            Slot::Size(out, range) => size(name, v, range).map(|n| *out = n),
            Slot::Text(out) => text(name, v).map(|text| *out = Some(text)),
            Slot::Flag(out) => boolean(name, v).map(|flag| *out = flag),
            Slot::Listen(out) => self.listen(value).map(|list| *out = list),
            Slot::AdminListen(out) => admin_listen(v).map(|addr| *out = addr),
            Slot::PoolName(out) => text(name, v).and_then(|text| pool_name(out, text)),
            Slot::Strategy(out) => strategy(v).map(|kind| *out = kind),
            Slot::Backends(out) => self.backends(value).map(|list| *out = list),
            Slot::Host(out) => host_match(v).map(|host| *out = Some(host)),
            Slot::PathPrefix(out) => path_prefix(v).map(|prefix| *out = Some(prefix)),
            Slot::PoolRef(out, pools) => route_pool(v, pools).map(|pool| *out = Some(pool)),
            Slot::Check(check) => check(v),
            Slot::Unknown(section) => Err(format!("unknown key `{name}` in {section}")),
        };
        if let Err(message) = result {
            self.error(if at_key { key.span() } else { value.span() }, message);
        }
    }

    fn document(&mut self, root: &DeTable<'_>) -> Config {
        let mut config = Config::default();
        let (mut routes, mut limits) = (None, None);
        for (key, value) in root.iter() {
            match key.get_ref().as_ref() {
                "server" => config.server = self.server(value),
                "admin" => config.admin = self.admin(value),
                "log" => config.log = self.log(value),
                "dns" => config.dns = self.dns(value),
                "fleet" => config.fleet = self.fleet(value),
                "pool" => config.pools = self.pools(value),
                // Routes name pools, so they are read once every pool is known.
                "route" => routes = Some(value),
                "limit" => limits = Some(value),
                _ => self.fill(key, value, Slot::Unknown(TOP_LEVEL)),
            }
        }
        config.limits = limits.map(|value| self.limits(value)).unwrap_or_default();
        for item in routes.map_or(&[][..], |value| self.tables("route", value)) {
            let ids = config.server.request_id.is_some();
            config.routes.extend(self.route(item, &config.pools, ids, &config.limits));
        }
        config
    }

    fn server(&mut self, value: &Value<'_>) -> ServerConfig {
        let mut out = ServerConfig::default();
        let mut listen_span = None;
        for (key, value) in self.table("server", value).into_iter().flatten() {
            let slot = match key.get_ref().as_ref() {
                "listen" => {
                    listen_span = Some(value.span());
                    Slot::Listen(&mut out.listen)
                }
                "workers" => Slot::Count(&mut out.workers, 0, MAX_WORKERS as u64),
                "max_connections" => Slot::Count(&mut out.max_connections, 1, MAX_CONNECTIONS),
                "header_timeout" => Slot::Duration(&mut out.header_timeout, false),
                "keepalive_timeout" => Slot::Duration(&mut out.keepalive_timeout, false),
                "body_timeout" => Slot::Duration(&mut out.body_timeout, false),
                "send_timeout" => Slot::Duration(&mut out.send_timeout, false),
                "max_header_bytes" => Slot::Size(&mut out.max_header_bytes, HEADER_BYTES),
                "max_headers" => Slot::Count(&mut out.max_headers, 1, MAX_HEADERS),
                // Zero is meaningful here: exit at once without waiting.
                "drain_timeout" => Slot::Duration(&mut out.drain_timeout, true),
                "pid_file" => Slot::Text(&mut out.pid_file),
                "h2c" => Slot::Flag(&mut out.h2c),
                "http2" => {
                    out.http2 = self.server_http2(value);
                    continue;
                }
                "tls" => {
                    out.tls = self.tls_listeners(value);
                    continue;
                }
                "proxy_protocol" => Slot::Flag(&mut out.proxy_protocol),
                "request_id" => {
                    out.request_id = self.request_id(value);
                    continue;
                }
                "trusted_proxies" => {
                    out.trusted_proxies = self.cidr_list("trusted_proxies", value);
                    continue;
                }
                "max_connections_per_client" => Slot::Check(Box::new(|v| {
                    let most = integer("max_connections_per_client", v, 1, MAX_CONNECTIONS);
                    most.map(|n| out.max_connections_per_client = Some(n as usize))
                })),
                _ => Slot::Unknown("[server]"),
            };
            self.fill(key, value, slot);
        }
        if let Some(both) = out.tls.iter().find(|tls| out.listen.contains(&tls.listen)) {
            let message = format!("{} is both a plain and a TLS listener", both.listen);
            self.error(listen_span.clone().unwrap_or_default(), message);
        }
        if let Some(span) = listen_span.filter(|_| out.listen.is_empty() && out.tls.is_empty()) {
            let message = "`listen` needs at least one address (or a [[server.tls]] listener)";
            self.error(span, message.to_string());
        }
        out
    }

    fn admin(&mut self, value: &Value<'_>) -> AdminConfig {
        let mut out = AdminConfig::default();
        let mut token_span = None;
        for (key, value) in self.table("admin", value).into_iter().flatten() {
            let slot = match key.get_ref().as_ref() {
                "listen" => Slot::AdminListen(&mut out.listen),
                "token" => {
                    token_span = Some(value.span());
                    Slot::Text(&mut out.token)
                }
                "state_file" => Slot::Text(&mut out.state_file),
                "metrics" => Slot::Flag(&mut out.metrics),
                "allow" | "deny" => {
                    self.acl_key(key, value, &mut out.acl);
                    continue;
                }
                _ => Slot::Unknown("[admin]"),
            };
            self.fill(key, value, slot);
        }
        if let (Some(span), Some(token)) = (token_span, &out.token) {
            // The token a client sends is trimmed, so a padded one would lock everyone
            // out (and a blank one is the empty token `Text` already refuses).
            if !token.is_empty() && token.trim() != token {
                let message = "`token` must not start or end with white space";
                self.error(span, message.to_string());
            }
        }
        out
    }

    fn log(&mut self, value: &Value<'_>) -> LogConfig {
        let mut out = LogConfig::default();
        for (key, value) in self.table("log", value).into_iter().flatten() {
            let slot = match key.get_ref().as_ref() {
                "access" => Slot::Check(Box::new(|v| access_target(v).map(|t| out.access = t))),
                "format" => Slot::Check(Box::new(|v| access_format(v).map(|f| out.format = f))),
                _ => Slot::Unknown("[log]"),
            };
            self.fill(key, value, slot);
        }
        out
    }

    /// `[server] listen`: one address or an array of them.
    fn listen(&mut self, value: &Value<'_>) -> Result<Vec<SocketAddr>, String> {
        let items = match value.get_ref() {
            DeValue::String(_) => std::slice::from_ref(value),
            DeValue::Array(array) if !array.is_empty() => &array[..],
            // TLS-only: checked once the whole [server] table is read.
            DeValue::Array(_) => return Ok(Vec::new()),
            other => return Err(wrong("listen", other, "one or more addresses")),
        };
        let mut addrs = Vec::new();
        for item in items {
            let addr = self.check(item, socket_addr("listen", item.get_ref(), LISTEN_HINT));
            if let Some(addr) = addr.filter(|addr| addrs.contains(addr)) {
                self.error(item.span(), format!("duplicate listen address {addr}"));
            }
            addrs.extend(addr);
        }
        Ok(addrs)
    }
}

/// `` `name`: expected WHAT, found TYPE ``.
fn wrong(name: &str, v: &DeValue<'_>, what: &str) -> String {
    format!("`{name}`: expected {what}, found {}", v.type_str())
}

fn boolean(name: &str, v: &DeValue<'_>) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| wrong(name, v, "true or false"))
}

fn string<'v>(name: &str, v: &'v DeValue<'_>) -> Result<&'v str, String> {
    v.as_str().ok_or_else(|| wrong(name, v, "a string"))
}

/// A non-empty string.
fn text(name: &str, v: &DeValue<'_>) -> Result<String, String> {
    match string(name, v)? {
        "" => Err(format!("`{name}` must not be empty")),
        text => Ok(text.to_string()),
    }
}

/// The value of a TOML integer, if it fits in `T`.
fn int_value<T: TryFrom<i128>>(integer: &DeInteger<'_>) -> Option<T> {
    let n = i128::from_str_radix(integer.as_str(), integer.radix()).ok()?;
    T::try_from(n).ok()
}

/// An integer in `min..=max`.
fn integer(name: &str, v: &DeValue<'_>, min: u64, max: u64) -> Result<u64, String> {
    let integer = v.as_integer().ok_or_else(|| wrong(name, v, "an integer"))?;
    let n = int_value(integer).filter(|n| (min..=max).contains(n));
    n.ok_or_else(|| format!("`{name}` must be between {min} and {max}, found {integer}"))
}

/// A duration string; zero is refused unless `zero_ok`.
fn duration(name: &str, v: &DeValue<'_>, zero_ok: bool) -> Result<Duration, String> {
    let text = v.as_str().ok_or_else(|| wrong(name, v, DURATION_HINT))?;
    match parse_duration(text) {
        Ok(d) if d.is_zero() && !zero_ok => Err(format!("`{name}` must be greater than zero")),
        result => result.map_err(|message| format!("`{name}`: {message}")),
    }
}

/// A size: an integer number of bytes or a string such as `"64KiB"`, within `range`.
fn size(name: &str, v: &DeValue<'_>, range: RangeInclusive<usize>) -> Result<usize, String> {
    let size = match v {
        DeValue::Integer(integer) => int_value(integer),
        DeValue::String(text) => Some(parse_size(text).map_err(|m| format!("`{name}`: {m}"))?),
        _ => return Err(wrong(name, v, SIZE_HINT)),
    };
    let (low, high) = (format_size(*range.start()), format_size(*range.end()));
    match size {
        Some(size) if range.contains(&size) => Ok(size),
        _ => Err(format!("`{name}` must be between {low} and {high}")),
    }
}

/// A socket address; `hint` says what is expected when it does not parse.
fn socket_addr(name: &str, v: &DeValue<'_>, hint: &str) -> Result<SocketAddr, String> {
    let text = string(name, v)?;
    let message = format!("`{name}`: expected {hint}, found \"{text}\"");
    text.parse().map_err(|_| message)
}

/// `[admin] listen`: an address, or `"off"` for none.
/// `[log] access`: `"off"`, `"stdout"` or a file path.
fn access_target(v: &DeValue<'_>) -> Result<Target, String> {
    match v.as_str() {
        Some("off") => Ok(Target::Off),
        Some("stdout") => Ok(Target::Stdout),
        Some("") => Err("`access` needs \"off\", \"stdout\" or a file path".to_string()),
        Some(path) => Ok(Target::Path(path.into())),
        None => Err(wrong("access", v, "\"off\", \"stdout\" or a file path")),
    }
}

/// `[log] format`: `"combined"` or `"json"`.
fn access_format(v: &DeValue<'_>) -> Result<Format, String> {
    match v.as_str() {
        Some("combined") => Ok(Format::Combined),
        Some("json") => Ok(Format::Json),
        _ => Err("`format` must be \"combined\" or \"json\"".to_string()),
    }
}

fn admin_listen(v: &DeValue<'_>) -> Result<Option<SocketAddr>, String> {
    match v.as_str() {
        Some("off") => Ok(None),
        _ => socket_addr("listen", v, ADMIN_HINT).map(Some),
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
