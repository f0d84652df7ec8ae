//! The per-thread pseudo-random generator behind `random`, `least_requests`,
//! `peak_ewma` and the no-key fallback of `consistent_hash`.
//!
//! wyrand (Wang Yi's generator, as in `fastrand`): one 64-bit state, one multiply per
//! number, fine statistical quality, not cryptographic. Each thread seeds its state once,
//! on first use, from the process's random hash keys, the thread and the clock; never per
//! pick. A worker is one thread, so this is one generator per worker and no contention.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

const INCREMENT: u64 = 0xa076_1d64_78bd_642f;
const MIX: u64 = 0xe703_7ed1_a0b4_28db;

thread_local! {
    /// 0 means "not seeded yet"; the state passes through 0 once every 2^64 numbers, and
    /// then this thread simply seeds again.
    static STATE: Cell<u64> = const { Cell::new(0) };
}

/// A wyrand generator with an explicit state, for tests and simulations.
#[derive(Clone, Debug)]
pub struct WyRand(u64);

impl WyRand {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> WyRand {
        WyRand(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let (value, state) = step(self.0);
        self.0 = state;
        value
    }
}

fn step(state: u64) -> (u64, u64) {
    let state = state.wrapping_add(INCREMENT);
    let product = u128::from(state) * u128::from(state ^ MIX);
    ((product >> 64) as u64 ^ product as u64, state)
}

/// The next 64 random bits from this thread's generator.
pub fn next_u64() -> u64 {
    STATE.with(|cell| {
        let mut state = cell.get();
        if state == 0 {
            state = seed();
        }
        let (value, state) = step(state);
        cell.set(state);
        value
    })
}

/// A uniform number in `0..bound` (`bound > 0`), by Lemire's multiply-shift; the bias is
/// below 2^-32 for any bound a pool can have.
pub fn below(bound: u64) -> u64 {
    debug_assert!(bound > 0);
    ((u128::from(next_u64()) * u128::from(bound)) >> 64) as u64
}

/// [`below`] for indexes.
pub fn index(bound: usize) -> usize {
    below(bound as u64) as usize
}

/// Seeds this thread's generator: tests use it to make runs repeatable.
#[cfg(test)]
pub fn seed_thread(seed: u64) {
    STATE.with(|cell| cell.set(seed.max(1)));
}

fn seed() -> u64 {
    // Allocation-free: the process's random keys, this thread's state address (unique
    // among live threads), a stack address and the clock.
    let mut hasher = RandomState::new().build_hasher();
    STATE.with(|cell| (cell as *const Cell<u64> as usize).hash(&mut hasher));
    let local = 0u8;
    (&raw const local as usize).hash(&mut hasher);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    nanos.hash(&mut hasher);
    hasher.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wyrand_is_repeatable_and_seeds_differ() {
        let (mut a, mut b, mut c) = (WyRand::new(7), WyRand::new(7), WyRand::new(8));
        let first: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..4).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(first, (0..4).map(|_| c.next_u64()).collect::<Vec<_>>());
    }

    #[test]
    fn thread_generator_is_seeded_once_and_stays_in_bounds() {
        seed_thread(99);
        let mut reference = WyRand::new(99);
        assert_eq!(next_u64(), reference.next_u64());
        assert_eq!(next_u64(), reference.next_u64());
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[index(7)] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn unseeded_threads_differ() {
        let values: Vec<u64> =
            (0..4).map(|_| std::thread::spawn(next_u64).join().expect("thread")).collect();
        assert!(values.windows(2).all(|w| w[0] != w[1]), "{values:?}");
    }
}
