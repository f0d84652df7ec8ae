//! `[dns]` and the DNS discovery keys of pools and backends: which servers answer the
//! lookups of `resolve = true` backends, and how often names are looked up again.
//!
//! The README section "DNS discovery" documents the keys, [`crate::discovery`] what is
//! done with them.

use std::net::SocketAddr;
use std::time::Duration;

/// Shortest `dns_refresh`: a lower one would query the DNS server several times a second
/// per name for changes that DNS itself propagates in seconds at best.
pub const MIN_DNS_REFRESH: Duration = Duration::from_secs(1);
/// Longest `dns_refresh`: past an hour, the "last known addresses" are mostly a guess.
pub const MAX_DNS_REFRESH: Duration = Duration::from_secs(3600);
/// Default `dns_refresh`, as issue #8 fixes it; a Kubernetes service record's TTL is 30s
/// too, so the two line up.
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(30);
/// Most `[dns] servers`: glibc reads at most three nameservers (`MAXNS`), and each one
/// that does not answer costs a whole `timeout` per attempt.
pub const MAX_DNS_SERVERS: usize = 3;
/// Longest `[dns] timeout`: glibc's own cap on `options timeout:`.
pub const MAX_DNS_TIMEOUT: Duration = Duration::from_secs(30);

/// `[dns]`: where the lookups of `resolve = true` backends go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// Servers to ask, in order; empty means the `nameserver` lines of /etc/resolv.conf
    /// (with its `search`, `ndots`, `timeout` and `attempts`).
    pub servers: Vec<SocketAddr>,
    /// Time to wait for one answer before trying again or moving on; `None` takes
    /// resolv.conf's `options timeout:` (or the resolver's default).
    pub timeout: Option<Duration>,
}

/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL: usize = 63;
/// Longest name as text: 255 wire bytes less the length octets and the root.
pub const MAX_NAME_TEXT: usize = 253;

/// Checks that `name` can be sent in a query: dot-separated labels of letters, digits,
/// `-` and `_`, 1 to 63 bytes each, 253 in all; one trailing dot is allowed.
pub fn check_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() || bare.len() > MAX_NAME_TEXT {
        return Err(format!("a name has 1 to {MAX_NAME_TEXT} characters"));
    }
    for label in bare.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL {
            return Err(format!("each dot-separated label has 1 to {MAX_LABEL} characters"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err("only letters, digits, `-` and `_` are allowed".to_string());
        }
    }
    Ok(())
}
