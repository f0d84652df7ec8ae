//! Route matching: exact or `*.suffix` host, plus an optional path prefix.

use crate::config::HostMatch;
use crate::snapshot::{Pool, Snapshot};

/// The pool for a request: the first matching route, else the first pool. `None` only
/// when there are no pools at all.
pub fn select<'s>(snapshot: &'s Snapshot, host: Option<&[u8]>, path: &[u8]) -> Option<&'s Pool> {
    // Most configurations have no host rules: the port is stripped only when one is met.
    let mut stripped: Option<Option<&[u8]>> = None;
    let mut host = || *stripped.get_or_insert_with(|| host.map(strip_port));
    let index = snapshot
        .routes
        .iter()
        .find(|route| {
            route.host.as_ref().is_none_or(|m| host().is_some_and(|h| host_matches(m, h)))
                && route
                    .path_prefix
                    .as_ref()
                    .is_none_or(|prefix| path.starts_with(prefix.as_bytes()))
        })
        .map_or(0, |route| route.pool);
    snapshot.pools.get(index)
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(host: &[u8]) -> &[u8] {
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) if !host[colon..].contains(&b']') => &host[..colon],
        _ => host,
    }
}

fn host_matches(rule: &HostMatch, host: &[u8]) -> bool {
    match rule {
        HostMatch::Exact(name) => host.eq_ignore_ascii_case(name.as_bytes()),
        HostMatch::Suffix(suffix) => {
            host.len() > suffix.len()
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_exactly_or_by_suffix() {
        assert_eq!(strip_port(b"a.com:80"), b"a.com");
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
        assert_eq!(strip_port(b"[::1]"), b"[::1]");
        assert!(host_matches(&HostMatch::Exact("a.com".into()), b"A.com"));
        assert!(!host_matches(&HostMatch::Exact("a.com".into()), b"b.a.com"));
        let wildcard = HostMatch::Suffix(".a.com".into());
        assert!(host_matches(&wildcard, b"x.A.com"));
        assert!(!host_matches(&wildcard, b"a.com"));
        assert!(!host_matches(&wildcard, b".a.com"));
    }
}
