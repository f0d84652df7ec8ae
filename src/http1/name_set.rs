//! [`NameSet`]: what the request parse remembers of a head's field names, so that a
//! route's `remove` and `set` rules skip their pass over the upstream head when no
//! field can have a name they drop, which is most requests (a rule removes a field
//! that is rarely there). bench/RESULTS.md, "Route policy cost", has the numbers.

/// A 64-bit Bloom filter with one hash (a name's length and first byte, letter case
/// folded): "might a field be named N?" is never answered no when one is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameSet(u64);

impl NameSet {
    /// Every name may be there: the answer for a head whose names were not gathered.
    pub const ALL: NameSet = NameSet(u64::MAX);

    /// Adds `name`.
    #[inline]
    pub fn add(&mut self, name: &[u8]) {
        self.0 |= bit(name);
    }

    /// Whether some name of `other` may be in this set.
    #[inline]
    pub fn meets(self, other: NameSet) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether a field named `name` (any case) may be in this set.
    pub fn may_hold(self, name: &[u8]) -> bool {
        self.0 & bit(name) != 0
    }
}

/// `name`'s bit. `| 0x20` gives both cases of a letter one value, so names equal but for
/// case get one bit (other bytes map consistently, which is all a Bloom filter needs).
fn bit(name: &[u8]) -> u64 {
    let first = name.first().map_or(0, |&b| b | 0x20);
    let hash = (name.len() as u64).wrapping_mul(7).wrapping_add(u64::from(first));
    1 << (hash & 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_added_in_any_case_is_always_found_and_most_others_are_not() {
        let mut set = NameSet::default();
        for name in ["Host", "User-Agent", "Accept", "x-request-id"] {
            set.add(name.as_bytes());
        }
        for name in ["host", "USER-AGENT", "accept", "X-Request-ID"] {
            assert!(set.may_hold(name.as_bytes()), "{name}");
        }
        assert!(!set.may_hold(b"X-Debug") && !set.may_hold(b"X-Env"));
        let mut dropped = NameSet::default();
        dropped.add(b"X-DEBUG");
        assert!(!set.meets(dropped));
        set.add(b"x-debug");
        assert!(set.meets(dropped));
        assert!(NameSet::ALL.may_hold(b"anything") && !NameSet::default().may_hold(b"Host"));
    }
}
