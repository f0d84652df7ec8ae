//! Route matching: exact or `*.suffix` host, plus an optional path prefix.
//!
//! Prefixes match the normalised path ([`target::normalise_path`]), so every spelling of
//! a path takes the same route; the backend still gets the path as received.

use std::borrow::Cow;

use crate::config::HostMatch;
use crate::http1::target;
use crate::snapshot::{Pool, Route, Snapshot};

/// The pool for a request: the first matching route's, else the first pool; with the
/// route, if one matched. `None` only when there are no pools at all.
/// `host` is the `Host` value, or an absolute-form target's authority; `origin` is the
/// target's origin form (path and query).
pub fn select<'s>(
    snapshot: &'s Snapshot,
    host: Option<&[u8]>,
    origin: &[u8],
) -> Option<(&'s Pool, Option<&'s Route>)> {
    // Most configurations have no host rules: the port is stripped only when one is met,
    // and the path normalised only when a prefix rule is.
    let mut stripped: Option<Option<&[u8]>> = None;
    let mut host = || *stripped.get_or_insert_with(|| host.map(plain_host));
    let mut normal: Option<Cow<'_, [u8]>> = None;
    let route = snapshot.routes.iter().find(|route| {
        route.host.as_ref().is_none_or(|m| host().is_some_and(|h| host_matches(m, h)))
            && route.path_prefix.as_ref().is_none_or(|prefix| {
                if prefix == "/" {
                    return catch_all_holds(origin);
                }
                let path =
                    normal.get_or_insert_with(|| target::normalise_path(target::path_of(origin)));
                path.starts_with(prefix.as_bytes())
            })
    });
    let pool = snapshot.pools.get(route.map_or(0, |route| route.pool))?;
    Some((pool, route))
}

/// Whether the normalised path of `origin` starts with `/`, without normalising it:
/// a path that starts with `/` keeps it, an empty one becomes `/`, and any other
/// (`*`) is left as it is. The catch-all prefix `/` is the most common one.
fn catch_all_holds(origin: &[u8]) -> bool {
    matches!(origin.first(), None | Some(b'/' | b'?'))
}

/// The name a host route compares: without the port, and without the trailing dot of a
/// fully qualified name (`example.com.` is `example.com`, and both reach the same site).
fn plain_host(host: &[u8]) -> &[u8] {
    let host = strip_port(host);
    host.strip_suffix(b".").unwrap_or(host)
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
pub fn strip_port(host: &[u8]) -> &[u8] {
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

    #[test]
    fn the_catch_all_prefix_holds_what_normalised_paths_start_with_a_slash() {
        let origins: [&[u8]; 8] = [b"", b"?x=1", b"*", b"/", b"/a/../..", b"/%2F", b"//x", b"a/b"];
        for origin in origins {
            let normal = target::normalise_path(target::path_of(origin));
            assert_eq!(
                catch_all_holds(origin),
                normal.starts_with(b"/"),
                "{}",
                origin.escape_ascii()
            );
        }
    }

    #[test]
    fn a_trailing_dot_names_the_same_host() {
        assert_eq!(plain_host(b"A.com.:8080"), b"A.com");
        assert_eq!(plain_host(b"a.com."), b"a.com");
        assert_eq!(plain_host(b"[::1]:80"), b"[::1]");
    }
}
