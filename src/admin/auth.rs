//! Who may change the configuration through the admin API.
//!
//! Mutating calls need `Authorization: Bearer TOKEN` when `[admin] token` is set; reads
//! (`GET`, `HEAD`) never do, so scrapers and the status page need no secret. weir refuses
//! to start with an admin listener on a non-loopback address and no token, so an
//! unauthenticated mutating API is only ever reachable from the host itself.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::http::{Request, Response};
use super::routes::json_error;
use crate::config::Config;

/// Checks that the admin listener is not open to the network without a token.
pub fn check_exposure(config: &Config) -> Result<(), String> {
    match config.admin.listen {
        Some(addr) if !addr.ip().is_loopback() && config.admin.token.is_none() => Err(format!(
            "the admin listener {addr} is not on loopback and `[admin] token` is not set; \
             set a token or listen on 127.0.0.1"
        )),
        _ => Ok(()),
    }
}

/// `Ok` when `request` may mutate: no token is configured, or it carries the right one.
/// Otherwise the 401 to send; the refusal is logged with the peer address.
pub fn authorize(request: &Request, token: Option<&str>) -> Result<(), Response> {
    let Some(token) = token else { return Ok(()) };
    let given = request.header("authorization").and_then(bearer);
    if given.is_some_and(|given| same(given.as_bytes(), token.as_bytes())) {
        return Ok(());
    }
    let why = if given.is_some() { "wrong token" } else { "no bearer token" };
    let left_out = REFUSAL_LOG.lock().unwrap_or_else(PoisonError::into_inner).take(Instant::now());
    if let Some(left_out) = left_out {
        let peer = request.peer.map_or_else(|| "?".to_string(), |p: SocketAddr| p.to_string());
        let (method, path) = (&request.method, &request.path);
        if left_out == 0 {
            tracing::warn!(peer, %method, %path, "admin API: refused, {why}");
        } else {
            tracing::warn!(peer, %method, %path, "admin API: refused, {why} ({left_out} earlier refusals not logged)");
        }
    }
    Err(json_error(401, "a valid `Authorization: Bearer TOKEN` is needed")
        .with_header("WWW-Authenticate", "Bearer realm=\"weir\""))
}

/// Most refusals logged per second. Each line names the peer, which is what an operator
/// needs, but a client guessing tokens could otherwise write the log as fast as it can
/// send requests. Ten a second shows any real attempt; the rest are counted and the count
/// rides on the next line logged.
const REFUSALS_LOGGED_PER_SECOND: u32 = 10;

/// The log budget of refusals. A lock is fine here: the admin API is not the data path.
static REFUSAL_LOG: Mutex<LogBudget> = Mutex::new(LogBudget::new());

/// Refusals logged in the current one-second window, and those left out.
struct LogBudget {
    window_start: Option<Instant>,
    logged: u32,
    left_out: u64,
}

impl LogBudget {
    const fn new() -> LogBudget {
        LogBudget { window_start: None, logged: 0, left_out: 0 }
    }

    /// `Some(n)` if a refusal at `now` may be logged, `n` being how many were left out
    /// since the last one logged; `None` if the window's budget is spent.
    fn take(&mut self, now: Instant) -> Option<u64> {
        let second = Duration::from_secs(1);
        if self.window_start.is_none_or(|start| now.saturating_duration_since(start) >= second) {
            self.window_start = Some(now);
            self.logged = 0;
        }
        if self.logged >= REFUSALS_LOGGED_PER_SECOND {
            self.left_out += 1;
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.left_out))
    }
}

/// The token of a `Bearer` credential (the scheme is case-insensitive, RFC 9110 11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares in time that depends only on the expected token's length, never on where
/// the first difference is, so response timing reveals nothing of the token.
fn same(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = u8::from(given.len() != expected.len());
    for (index, byte) in expected.iter().enumerate() {
        difference |= byte ^ given.get(index).copied().unwrap_or(!byte);
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_tokens() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secreT", b"secret"));
        assert!(!same(b"secret-and-more", b"secret"));
        assert!(!same(b"sec", b"secret"));
        assert!(!same(b"", b"secret"));
    }

    #[test]
    fn refusal_logs_are_bounded_per_second_and_count_the_rest() {
        let mut budget = LogBudget::new();
        let start = Instant::now();
        let logged = (0..15).filter(|_| budget.take(start).is_some()).count();
        assert_eq!(logged, REFUSALS_LOGGED_PER_SECOND as usize);
        let later = start + Duration::from_millis(999);
        assert_eq!(budget.take(later), None, "still the same window");
        let next = start + Duration::from_secs(1);
        assert_eq!(budget.take(next), Some(6), "the next line carries the count left out");
        assert_eq!(budget.take(next), Some(0));
    }

    #[test]
    fn reads_bearer_credentials() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn refuses_open_admin_without_token() {
        let mut config = Config::default();
        config.admin.listen = Some("0.0.0.0:9901".parse().unwrap());
        assert!(check_exposure(&config).unwrap_err().contains("token"));
        config.admin.token = Some("t".into());
        assert!(check_exposure(&config).is_ok());
        config.admin.token = None;
        config.admin.listen = Some("[::1]:9901".parse().unwrap());
        assert!(check_exposure(&config).is_ok());
    }
}
