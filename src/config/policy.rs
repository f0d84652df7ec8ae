//! Access lists (`allow`/`deny` on a `[[route]]` and on `[admin]`).

use std::net::IpAddr;

use crate::cidr::{self, Cidr};

/// Which client addresses are served. The rule, simpler to read than nginx's
/// first-match-in-file-order: an address in `deny` is refused; otherwise, when `allow`
/// is not empty, only an address in it is served. Empty lists serve everyone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acl {
    /// Blocks served when not denied; empty means every address.
    pub allow: Vec<Cidr>,
    /// Blocks refused, whatever `allow` says.
    pub deny: Vec<Cidr>,
}

impl Acl {
    /// Whether the lists are both empty, so no address is ever refused: the request path
    /// then skips the check.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether `client` is served.
    pub fn permits(&self, client: IpAddr) -> bool {
        !cidr::any_contains(&self.deny, client)
            && (self.allow.is_empty() || cidr::any_contains(&self.allow, client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(blocks: &[&str]) -> Vec<Cidr> {
        blocks.iter().map(|b| Cidr::parse(b).expect("test block")).collect()
    }

    #[test]
    fn deny_wins_then_allow_lists_the_rest() {
        let ip = |text: &str| text.parse::<IpAddr>().expect("test address");
        let open = Acl::default();
        assert!(open.is_open() && open.permits(ip("203.0.113.7")));
        let acl = Acl { allow: list(&["10.0.0.0/8"]), deny: list(&["10.9.0.0/16"]) };
        assert!(acl.permits(ip("10.1.2.3")));
        assert!(!acl.permits(ip("10.9.2.3")), "deny wins over a wider allow");
        assert!(!acl.permits(ip("192.0.2.1")), "not allowed");
        let deny_only = Acl { allow: Vec::new(), deny: list(&["192.0.2.0/24"]) };
        assert!(!deny_only.permits(ip("192.0.2.1")) && deny_only.permits(ip("10.1.2.3")));
    }
}
