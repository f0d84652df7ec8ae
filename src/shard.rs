//! Per-worker sharded state: one padded slot per worker thread, plus one for every other
//! thread, so hot-path counters and cursors are written by one thread each and never
//! share a cache line. Used by metrics, balancing (WRR cursors), retries and snapshots.
//!
//! Shard 0 belongs to threads that are not workers (admin, control); workers use 1..=N
//! after calling [`set_worker_shard`].

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as worker `index` (0-based); its counters go to shard index+1.
pub fn set_worker_shard(index: usize) {
    SHARD.with(|shard| shard.set(index + 1));
}

fn shard_index() -> usize {
    SHARD.with(Cell::get)
}

/// Pads a value to two cache lines, so neighbouring shards never share a line (adjacent
/// line prefetch on x86 pulls pairs of 64-byte lines).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

/// One `T` per worker, plus one for every other thread.
#[derive(Debug)]
pub struct Sharded<T> {
    shards: Box<[Padded<T>]>,
}

impl<T: Default> Sharded<T> {
    /// Shards for `workers` workers.
    pub fn new(workers: usize) -> Sharded<T> {
        Sharded { shards: (0..=workers).map(|_| Padded::default()).collect() }
    }
}

impl<T> Sharded<T> {
    /// This thread's shard.
    pub fn local(&self) -> &T {
        let index = shard_index();
        debug_assert!(index < self.shards.len());
        &self.shards[index.min(self.shards.len() - 1)].0
    }

    /// Every shard, for a scrape.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|padded| &padded.0)
    }
}

/// A monotonic counter written by one thread and read by scrapes.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
