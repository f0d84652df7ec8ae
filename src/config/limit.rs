//! `[[limit]]`: request rate limits that routes name (`limits = ["api"]`), and the
//! settings of their tables and fleet-wide store. The limiter itself is in
//! [`crate::limit`]; the settings live here so that the config reads no limiter code.

use std::fmt;
use std::time::Duration;

use super::HashKey;

/// Table slots when `table_size` is not set: 131,072 keys in 2 MiB (16 bytes a slot), about
/// the 160,000 states of the 10 MB zone in nginx's `limit_req_zone` examples, so a
/// translated config keeps as many clients.
pub const DEFAULT_TABLE_SIZE: usize = 1 << 17;
/// Smallest `table_size`: one probe window ([`crate::limit`] looks at 8 slots a key).
pub const MIN_TABLE_SIZE: usize = 8;
/// Largest `table_size`: 16 M slots, 256 MiB a limit; beyond that a typo, not a plan.
pub const MAX_TABLE_SIZE: usize = 1 << 24;
/// Largest `burst`: a million requests at once is no longer a limit.
pub const MAX_BURST: u64 = 1_000_000;
/// Largest count in `rate`: a million a second is beyond what one key can send.
pub const MAX_RATE: u64 = 1_000_000;
/// Longest `delay` bound: a request held longer than a minute has been given up on by its
/// client (and holds a connection meanwhile).
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// Redis answers on a LAN in well under a millisecond; 50 ms bounds what a slow store adds
/// to a request before weir decides without it.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(50);

/// What a limit counts requests by: `key`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// `client_ip`: the client address (`Client::address`: PROXY protocol and trusted
    /// `X-Forwarded-For` applied).
    ClientIp,
    /// `header:NAME`: a request header's value (name stored lowercase).
    Header(String),
    /// `cookie:NAME`: a cookie's value.
    Cookie(String),
    /// `route`: every request of the route counts against one bucket.
    Route,
}

const KEY_FORMS: &str = "client_ip, header:NAME, cookie:NAME or route";

impl LimitKey {
    /// Parses `client_ip | header:NAME | cookie:NAME | route`; names are checked as
    /// `[pool.hash] key` checks them.
    pub fn parse(text: &str) -> Result<LimitKey, String> {
        let bad = || format!("`key`: expected {KEY_FORMS}, found \"{text}\"");
        let header_or_cookie = text.starts_with("header:") || text.starts_with("cookie:");
        match HashKey::parse(text) {
            _ if text == "route" => Ok(LimitKey::Route),
            Ok(HashKey::ClientIp) => Ok(LimitKey::ClientIp),
            Ok(HashKey::Header(name)) => Ok(LimitKey::Header(name)),
            Ok(HashKey::Cookie(name)) => Ok(LimitKey::Cookie(name)),
            Err(message) if header_or_cookie => Err(message),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::ClientIp => f.write_str("client_ip"),
            LimitKey::Header(name) => write!(f, "header:{name}"),
            LimitKey::Cookie(name) => write!(f, "cookie:{name}"),
            LimitKey::Route => f.write_str("route"),
        }
    }
}

/// `rate`: `count` requests per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Requests allowed in each `per`; never zero.
    pub count: u64,
    /// The period: a second or a minute.
    pub per: Duration,
}

impl Rate {
    /// Parses `"100/s"` or `"6000/m"`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let hint =
            || format!("`rate`: expected a rate such as \"100/s\" or \"6000/m\", found \"{text}\"");
        let (count, unit) = text.split_once('/').ok_or_else(hint)?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            _ => return Err(hint()),
        };
        let count: u64 = count.trim().parse().map_err(|_| hint())?;
        match count {
            0 => Err("`rate` must be more than 0 requests (leave the limit off instead)".into()),
            n if n > MAX_RATE => Err(format!("`rate` allows at most {MAX_RATE} requests a period")),
            count => Ok(Rate { count, per }),
        }
    }

    /// The time between two requests at this rate, in nanoseconds (at least 1).
    pub fn interval_nanos(self) -> u64 {
        (self.per.as_nanos() / u128::from(self.count)).max(1) as u64
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.per.as_secs() == 60 { "m" } else { "s" };
        write!(f, "{}/{unit}", self.count)
    }
}

/// What happens to a request over the limit: `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitMode {
    /// `reject`: answer 429 with `Retry-After` at once (nginx `limit_req ... nodelay`).
    Reject,
    /// `delay`: hold the request until it conforms, if that is at most `delay` away
    /// (nginx's default queueing of a burst); else 429.
    Delay(Duration),
}

/// What a limit with a `store` does while the store cannot answer: `on_store_error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnStoreError {
    /// `local`: this instance's own table decides (each instance then allows the rate).
    Local,
    /// `open`: every request passes.
    Open,
}

/// `[[limit]]`: one named rate limit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LimitConfig {
    /// The name routes use, and the `limit` label of its metrics.
    pub name: String,
    /// What requests are counted by.
    pub key: LimitKey,
    /// The sustained rate.
    pub rate: Rate,
    /// Requests allowed beyond the rate at once (nginx `burst`).
    pub burst: u64,
    /// Reject or delay what exceeds it.
    pub mode: LimitMode,
    /// Slots of the local table: its memory is `16 × table_size` bytes, whatever the
    /// number of keys.
    pub table_size: usize,
    /// `store = "redis://HOST:PORT"`: the fleet-wide store, if any.
    pub store: Option<String>,
    /// What decides while the store cannot answer.
    pub on_store_error: OnStoreError,
    /// Longest wait for the store's answer before deciding without it.
    pub store_timeout: Duration,
}

impl LimitConfig {
    /// A reject-mode limit with no burst and default table and store settings.
    pub fn new(name: &str, key: LimitKey, rate: Rate) -> LimitConfig {
        LimitConfig {
            name: name.to_string(),
            key,
            rate,
            // nginx's default: no request beyond the rate.
            burst: 0,
            mode: LimitMode::Reject,
            table_size: DEFAULT_TABLE_SIZE,
            store: None,
            // Never fail closed: a broken store must not turn into an outage; each
            // instance limiting alone is the nearest to the configured behaviour.
            on_store_error: OnStoreError::Local,
            store_timeout: DEFAULT_STORE_TIMEOUT,
        }
    }
}
