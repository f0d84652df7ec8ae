//! The local GCRA table: a fixed number of slots, each a key tag and the key's
//! "theoretical arrival time" (TAT), both atomics, so every worker decides without a lock.
//!
//! A key hashes to a bucket of [`BUCKET`] neighbouring slots (two cache lines). Its slot
//! is the one carrying its tag; a key not found takes an empty slot, else the slot of the
//! bucket whose TAT is oldest. A TAT already in the past is worth nothing (GCRA treats
//! such a key exactly as a new one), so replacing it loses no state; only replacing a key
//! whose TAT is still ahead loses some, and that is counted as an eviction.
//!
//! Races are settled by compare-and-swap, never by waiting. Two words cannot change in
//! one step, so a request racing the very moment its slot is taken over may be decided
//! on the previous owner's TAT; that only touches the oldest key of a full bucket, and
//! costs at most one wrong decision per takeover.

use std::sync::atomic::{AtomicU64, Ordering};

/// Slots a key may live in: 8 × 16 bytes is two cache lines, which the adjacent-line
/// prefetcher reads together, and 8 candidates keep a full table's evictions close to
/// least-recently-used.
pub const BUCKET: usize = 8;
/// Compare-and-swap attempts on one TAT before the request passes undecided: each failure
/// means another request on the same key was decided, so contention on one key ends in a
/// few tries; the bound only keeps a pathological spin finite (fail open, never closed).
const CAS_TRIES: u32 = 1024;

/// One key's state.
#[derive(Debug, Default)]
struct Slot {
    /// The key's hash with the low bit set; 0 marks an empty slot.
    tag: AtomicU64,
    /// When the key's next request conforms, in nanoseconds on [`super::now_nanos`]'s clock.
    tat: AtomicU64,
}

/// What GCRA says of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It conforms: pass now.
    Pass,
    /// It will conform in this many nanoseconds (within the delay bound): its place is
    /// taken, the caller waits, then passes.
    Wait(u64),
    /// It would conform only in this many nanoseconds, past the bound: refuse it.
    Reject(u64),
}

/// The parameters of one decision, in nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct Gcra {
    /// Time between requests at the rate.
    pub interval: u64,
    /// How far ahead of now a key's TAT may be and the request still pass: the burst.
    pub tolerance: u64,
    /// Longest wait a request may be given instead of a refusal (0 in reject mode).
    pub delay_max: u64,
}

impl Gcra {
    /// The decision for a key whose TAT is `tat`, at `now`, and its next TAT if taken.
    pub fn decide(self, tat: u64, now: u64) -> (Decision, Option<u64>) {
        let tat = tat.max(now);
        let wait = (tat - now).saturating_sub(self.tolerance);
        match wait {
            0 => (Decision::Pass, Some(tat + self.interval)),
            wait if wait <= self.delay_max => (Decision::Wait(wait), Some(tat + self.interval)),
            wait => (Decision::Reject(wait), None),
        }
    }
}

/// The table of one limit.
#[derive(Debug)]
pub struct Table {
    slots: Box<[Slot]>,
}

impl Table {
    /// A table of `size` slots, rounded up to whole buckets.
    pub fn new(size: usize) -> Table {
        let size = size.max(BUCKET).div_ceil(BUCKET) * BUCKET;
        Table { slots: (0..size).map(|_| Slot::default()).collect() }
    }

    /// The table's memory in bytes, fixed at creation whatever the number of keys.
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    /// Decides a request on key `hash` at `now`. Returns the decision and whether a key
    /// still in use was evicted to make room.
    pub fn decide(&self, hash: u64, now: u64, gcra: Gcra) -> (Decision, bool) {
        let (slot, evicted) = self.slot(hash, now);
        let mut tat = slot.tat.load(Ordering::Relaxed);
        for _ in 0..CAS_TRIES {
            let (decision, next) = gcra.decide(tat, now);
            let Some(next) = next else { return (decision, evicted) };
            match slot.tat.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return (decision, evicted),
                Err(current) => tat = current,
            }
        }
        (Decision::Pass, evicted)
    }

    /// The slot of `hash`: its own, or one taken over for it.
    fn slot(&self, hash: u64, now: u64) -> (&Slot, bool) {
        let tag = hash | 1;
        let buckets = (self.slots.len() / BUCKET) as u64;
        // Multiply-shift maps the hash onto the buckets without a division.
        let start = ((u128::from(hash) * u128::from(buckets)) >> 64) as usize * BUCKET;
        let bucket = &self.slots[start..start + BUCKET];
        debug_assert_eq!(bucket.len(), BUCKET);
        if let Some(slot) = bucket.iter().find(|slot| slot.tag.load(Ordering::Relaxed) == tag) {
            return (slot, false);
        }
        // The oldest TAT; an empty slot's is 0, so it is taken first.
        let victim = bucket.iter().min_by_key(|slot| slot.tat.load(Ordering::Relaxed));
        let victim = victim.unwrap_or(&bucket[0]);
        let (old_tag, old_tat) =
            (victim.tag.load(Ordering::Relaxed), victim.tat.load(Ordering::Relaxed));
        if victim.tag.compare_exchange(old_tag, tag, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            // Another request took the slot this instant; share it rather than search
            // again (bounded work, and the next request of this key finds its own).
            return (victim, false);
        }
        // A fresh key has no TAT; a concurrent update already made stays.
        let _ = victim.tat.compare_exchange(old_tat, 0, Ordering::Relaxed, Ordering::Relaxed);
        (victim, old_tag != 0 && old_tat > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn gcra(per_second: u64, burst: u64, delay_max: u64) -> Gcra {
        let interval = SECOND / per_second;
        Gcra { interval, tolerance: burst * interval, delay_max }
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let table = Table::new(64);
        let rule = gcra(10, 4, 0);
        let now = 5 * SECOND;
        let passed = (0..20).filter(|_| table.decide(42, now, rule).0 == Decision::Pass).count();
        assert_eq!(passed, 5, "the request plus a burst of 4");
        assert!(
            matches!(table.decide(42, now, rule).0, Decision::Reject(wait) if wait == SECOND / 10)
        );
        assert_eq!(table.decide(42, now + SECOND / 10, rule).0, Decision::Pass);
        assert_eq!(table.decide(7, now, rule).0, Decision::Pass, "another key is apart");
    }

    #[test]
    fn delay_mode_queues_up_to_its_bound() {
        let table = Table::new(64);
        let rule = gcra(10, 0, SECOND / 4);
        let now = SECOND;
        assert_eq!(table.decide(1, now, rule).0, Decision::Pass);
        assert_eq!(table.decide(1, now, rule).0, Decision::Wait(SECOND / 10));
        assert_eq!(table.decide(1, now, rule).0, Decision::Wait(2 * SECOND / 10));
        assert!(matches!(table.decide(1, now, rule).0, Decision::Reject(_)));
    }

    #[test]
    fn a_million_keys_stay_in_the_fixed_table_and_evict_the_oldest() {
        let table = Table::new(1024);
        let bytes = table.bytes();
        assert_eq!(bytes, 1024 * 16);
        let rule = gcra(1, 0, 0);
        let mut evictions = 0;
        for key in 0..1_000_000u64 {
            let hash = crate::balance::key::hash_bytes(&key.to_le_bytes());
            let (decision, evicted) = table.decide(hash, SECOND, rule);
            assert_eq!(decision, Decision::Pass, "a new key passes");
            evictions += u64::from(evicted);
        }
        assert_eq!(table.bytes(), bytes);
        assert!(evictions >= 1_000_000 - 1024, "{evictions}");
        // Expired keys are replaced without counting: they carried no state.
        let later = 10 * SECOND;
        let hash = crate::balance::key::hash_bytes(b"late");
        assert_eq!(table.decide(hash, later, rule), (Decision::Pass, false));
    }
}
