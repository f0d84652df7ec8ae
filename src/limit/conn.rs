//! `[server] max_connections_per_client` (nginx `limit_conn`): the connections each
//! client address has open, in a fixed table shared by every worker, without a lock.
//!
//! Each slot is one `u64`: a 40-bit tag of the address's hash and a 24-bit count, so a
//! slot changes in one compare-and-swap and a count is never split from its key. A slot
//! whose count is zero is free. An address takes a free slot of its bucket ([`BUCKET`]
//! neighbours) when it opens its first connection; when every slot of the bucket holds a
//! client with open connections, the new client is let through uncounted (and counted as
//! such): the table never refuses anyone for its own lack of room.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Neighbouring slots an address may use: one cache line of `u64`s.
const BUCKET: usize = 8;
/// The count's bits; the tag takes the rest.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// Compare-and-swap rounds before a connection is let through uncounted: each failure
/// means another connection of the bucket was counted, so this ends quickly; the bound
/// keeps a pathological spin finite (fail open).
const CAS_TRIES: u32 = 64;

/// Whether a connection may open.
#[derive(Debug)]
pub enum Admission {
    /// Counted; dropping the lease counts it closed.
    Counted(Lease),
    /// The bucket had no room: let through, not counted.
    Untracked,
    /// The address has its maximum open already.
    Refused,
}

/// The open connections of every client address.
#[derive(Debug)]
pub struct ConnTable {
    slots: Box<[AtomicU64]>,
    seed: u64,
    /// Connections refused for their address's count (`weir_connections_refused_total`).
    pub refused: AtomicU64,
    /// Connections let through uncounted for lack of room.
    pub untracked: AtomicU64,
}

/// One counted connection.
#[derive(Debug)]
pub struct Lease {
    table: Arc<ConnTable>,
    index: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The count holds this connection, so it is at least one: no borrow into the tag.
        self.table.slots[self.index].fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnTable {
    /// A table for `max_connections` connections: twice as many slots (each client in it
    /// has one connection at least), so buckets seldom fill; 8 bytes a slot.
    pub fn new(max_connections: usize) -> ConnTable {
        let size = max_connections.saturating_mul(2).max(1024).div_ceil(BUCKET) * BUCKET;
        ConnTable {
            slots: (0..size).map(|_| AtomicU64::new(0)).collect(),
            seed: crate::rng::next_u64(),
            refused: AtomicU64::new(0),
            untracked: AtomicU64::new(0),
        }
    }

    /// The table's memory in bytes.
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    /// Counts a new connection from `ip`, unless it already has `most` open.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, most: usize) -> Admission {
        let octets = match ip.to_canonical() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let hash = crate::balance::key::xxh64(&octets, self.seed);
        let tag = (hash >> COUNT_BITS) | 1;
        let buckets = (self.slots.len() / BUCKET) as u64;
        let start = ((u128::from(hash) * u128::from(buckets)) >> 64) as usize * BUCKET;
        let most = (most as u64).min(COUNT_MASK);
        for _ in 0..CAS_TRIES {
            match self.try_admit(start, tag, most) {
                Some(Ok(index)) => {
                    return Admission::Counted(Lease { table: Arc::clone(self), index })
                }
                Some(Err(())) => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return Admission::Refused;
                }
                None => continue,
            }
        }
        self.untracked.fetch_add(1, Ordering::Relaxed);
        Admission::Untracked
    }

    /// One pass over the bucket: `Some(Ok(slot))` counted there, `Some(Err)` at the
    /// maximum, `None` when a race was lost (try again). A full bucket ends the tries by
    /// returning `None` until they run out; it is rare (twice the slots of connections).
    fn try_admit(&self, start: usize, tag: u64, most: u64) -> Option<Result<usize, ()>> {
        let bucket = &self.slots[start..start + BUCKET];
        let mut free = None;
        for (offset, slot) in bucket.iter().enumerate() {
            let word = slot.load(Ordering::Relaxed);
            let count = word & COUNT_MASK;
            if count == 0 {
                free = free.or(Some((offset, word)));
            } else if word >> COUNT_BITS == tag {
                if count >= most {
                    return Some(Err(()));
                }
                let swapped =
                    slot.compare_exchange(word, word + 1, Ordering::Relaxed, Ordering::Relaxed);
                return swapped.is_ok().then_some(Ok(start + offset));
            }
        }
        let (offset, word) = free?;
        let claimed = (tag << COUNT_BITS) | 1;
        let swapped =
            bucket[offset].compare_exchange(word, claimed, Ordering::Relaxed, Ordering::Relaxed);
        swapped.is_ok().then_some(Ok(start + offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_holds_at_most_its_share_and_closing_frees_it() {
        let table = Arc::new(ConnTable::new(100));
        let (a, b): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "::ffff:10.0.0.2".parse().unwrap());
        let first: Vec<_> = (0..3).map(|_| table.admit(a, 3)).collect();
        assert!(first.iter().all(|one| matches!(one, Admission::Counted(_))));
        assert!(matches!(table.admit(a, 3), Admission::Refused));
        assert!(matches!(table.admit(b, 3), Admission::Counted(_)), "another address is apart");
        drop(first);
        assert!(matches!(table.admit(a, 3), Admission::Counted(_)));
        assert_eq!(table.refused.load(Ordering::Relaxed), 1);
        assert_eq!(table.bytes(), 1024 * 8);
    }
}
