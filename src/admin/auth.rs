//! Who may change the configuration through the admin API.
//!
//! Mutating calls need `Authorization: Bearer TOKEN` when `[admin] token` is set; reads
//! (`GET`, `HEAD`) never do, so scrapers and the status page need no secret. weir refuses
//! to start with an admin listener on a non-loopback address and no token, so an
//! unauthenticated mutating API is only ever reachable from the host itself
//! ([`crate::config::validate::exposure`]).

use std::net::SocketAddr;
use std::sync::Mutex;

use super::http::{Request, Response};
use super::routes::json_error;
use crate::log_budget::LogBudget;

/// `Ok` when `request` may mutate: no token is configured, or it carries the right one.
/// Otherwise the 401 to send; the refusal is logged with the peer address.
pub fn authorize(request: &Request, token: Option<&str>) -> Result<(), Response> {
    let Some(token) = token else { return Ok(()) };
    let given = request.header("authorization").and_then(bearer);
    if given.is_some_and(|given| same(given.as_bytes(), token.as_bytes())) {
        return Ok(());
    }
    let why = if given.is_some() { "wrong token" } else { "no bearer token" };
    let left_out = LogBudget::take_shared(&REFUSAL_LOG);
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
static REFUSAL_LOG: Mutex<LogBudget> = Mutex::new(LogBudget::new(REFUSALS_LOGGED_PER_SECOND));

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
    fn reads_bearer_credentials() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
