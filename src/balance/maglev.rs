//! `consistent_hash`: Maglev hashing (Eisenbud et al., NSDI 2016), weighted as in Envoy.
//!
//! [`Maglev::new`] fills a lookup table of prime size (65,537 entries by default) when the
//! snapshot is built, off the request path. Each backend walks its own permutation of the
//! table, derived from hashes of its identity (`HOST:PORT`, lowercased), and claims free
//! entries in turns; a backend of weight `w` takes a turn in `w / max_weight` of the
//! rounds, so it ends with entries in proportion to its weight. Backends take turns in
//! order of identity, so the table depends only on the set of identities and weights:
//! never on configuration order, on the process or on the run. Two weir instances with the
//! same backends build the same table and send a key to the same backend.
//!
//! A pick is one table lookup at `key mod size`. When that backend is unusable the pick
//! walks to the following entries (at most [`WALK`]), which belong to backends spread in
//! proportion to weight, so only the failed backend's keys move. A request without a key
//! is placed by weighted random. During a backend's slow start, a key that maps to it
//! stays there only if a hash of the key falls under its ramp, so a stable share of its
//! keys (growing with the ramp) comes back, and the rest walk on as if it were down.

use super::random::WeightedRandom;
use super::{key::xxh64, PickRequest, Strategy};
use crate::config::hash::{is_prime, DEFAULT_TABLE_SIZE};
use crate::snapshot::Backend;

/// Entries walked past unusable backends before a plain pass over the backends.
pub const WALK: usize = 64;
const EMPTY: u32 = u32::MAX;
const OFFSET_SEED: u64 = 0x6d61_676c_6576_6f66;
const SKIP_SEED: u64 = 0x6d61_676c_6576_736b;

/// The Maglev table of one snapshot's pool; see the module documentation.
#[derive(Debug)]
pub struct Maglev {
    /// Backend index per entry; empty when no backend has a weight.
    table: Box<[u32]>,
    /// Placement of requests without a key.
    fallback: WeightedRandom,
}

/// A backend while the table is filled.
struct Builder {
    index: u32,
    weight: u64,
    offset: u64,
    skip: u64,
    /// Position in this backend's permutation.
    next: u64,
    /// The round count times weight at which it takes its next turn.
    target: u64,
}

impl Maglev {
    /// Builds the table for `backends` with `size` entries (a prime; see
    /// `[pool.hash] table_size`). A size that is not prime would leave permutations short,
    /// so it is replaced by [`DEFAULT_TABLE_SIZE`]; validation refuses one anyway.
    pub fn new(backends: &[Backend], size: usize) -> Maglev {
        let size = if is_prime(size) { size } else { DEFAULT_TABLE_SIZE };
        let fallback = WeightedRandom::new(backends);
        Maglev { table: fill(backends, size).into_boxed_slice(), fallback }
    }

    /// The table entry for `key`, before any check of health.
    pub fn owner(&self, key: u64) -> Option<usize> {
        let len = self.table.len() as u64;
        (len > 0).then(|| self.table[(key % len) as usize] as usize)
    }

    /// The backend for `key`: its entry's, or the next usable one along the table.
    pub fn pick_key(&self, backends: &[Backend], key: u64) -> Option<usize> {
        let len = self.table.len();
        if len == 0 {
            return None;
        }
        let slot = (key % len as u64) as usize;
        for step in 0..WALK.min(len) {
            let index = self.table[(slot + step) % len] as usize;
            // A backend in slow start keeps a stable, growing share of its keys.
            if backends.get(index).is_some_and(|b| b.is_usable() && b.admits_key(key)) {
                return Some(index);
            }
        }
        // Deterministic for the key, so it keeps its backend while this lasts.
        let start = (key % backends.len().max(1) as u64) as usize;
        let order = (0..backends.len()).map(|step| (start + step) % backends.len());
        order.into_iter().find(|&index| backends[index].is_usable())
    }
}

impl Strategy for Maglev {
    fn pick(&self, backends: &[Backend], request: &PickRequest<'_>) -> Option<usize> {
        match request.hash_key {
            Some(key) => self.pick_key(backends, key),
            None => self.fallback.pick(backends, request),
        }
    }
}

/// Fills a table of `size` entries; see the module documentation.
fn fill(backends: &[Backend], size: usize) -> Vec<u32> {
    let mut builders: Vec<(String, Builder)> = backends
        .iter()
        .enumerate()
        .filter(|(_, backend)| backend.weight > 0)
        .map(|(index, backend)| {
            let identity = backend.label.to_ascii_lowercase();
            let offset = xxh64(identity.as_bytes(), OFFSET_SEED) % size as u64;
            let skip = xxh64(identity.as_bytes(), SKIP_SEED) % (size as u64 - 1) + 1;
            let weight = u64::from(backend.weight);
            let builder = Builder { index: index as u32, weight, offset, skip, next: 0, target: 0 };
            (identity, builder)
        })
        .collect();
    if builders.is_empty() {
        return Vec::new();
    }
    builders.sort_by(|a, b| a.0.cmp(&b.0));
    let max_weight = builders.iter().map(|(_, b)| b.weight).max().unwrap_or(1);
    let mut table = vec![EMPTY; size];
    let (mut filled, mut round) = (0, 0u64);
    loop {
        round += 1;
        for (_, builder) in &mut builders {
            if round * builder.weight < builder.target {
                continue;
            }
            builder.target += max_weight;
            // The permutation visits every entry (size is prime), and one is still free.
            loop {
                let entry = ((builder.offset + builder.next * builder.skip) % size as u64) as usize;
                builder.next += 1;
                if table[entry] == EMPTY {
                    table[entry] = builder.index;
                    break;
                }
            }
            filled += 1;
            if filled == size {
                return table;
            }
        }
    }
}

#[cfg(test)]
#[path = "maglev_tests.rs"]
mod tests;
