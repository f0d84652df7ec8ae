//! `weighted_round_robin`: nginx's smooth weighted round robin, in O(1) per pick.
//!
//! # The algorithm
//! Each backend keeps a `current_weight`. On each pick, every usable backend's
//! `current_weight` grows by its weight, the largest wins (the first in pool order on a
//! tie), and the winner gives back the total. Weights 5, 1, 1 give `a a b a c a a`, and
//! any `sum(weights)` consecutive picks from a fresh start hold exactly `weight` picks of
//! each backend.
//!
//! # State
//! `current_weight` lives in [`BackendLive::wrr`](crate::snapshot::BackendLive::wrr),
//! one value per worker (workers pick independently, as nginx workers do, so they never
//! contend), keyed by backend identity. A reload keeps it for the backends that remain,
//! and a changed weight applies from the next pick on without resetting anybody's state.
//!
//! # Making it O(1)
//! The textbook loop touches every backend on every pick: about a microsecond at 256
//! backends. But from the all-zero state the picks are periodic, with period
//! `L = sum(weights) / gcd(weights)`, and the state returns to all-zero at the end of each
//! period. So [`WeightedRoundRobin::new`] precomputes one period (when `L` ≤ 65,536 and
//! `L × backends` ≤ 2^24, off the request path) and a pick in *schedule mode* just reads
//! the next entry at a per-worker cursor.
//!
//! The state stays exact in schedule mode without touching every backend: a [`WrrCell`]
//! holds `current_weight` as of the worker's pick count `at`, and grows implicitly by its
//! `weight` per pick after that; only the chosen backend's cell is written. A worker
//! recovers its pick count after a reload as the largest `at` in its cells.
//!
//! # Unusable backends
//! When the scheduled backend is unusable (unhealthy, draining or ejected), the schedule
//! mode *passes its turn*: the cursor moves on and the backend's cell is charged as if it
//! had been chosen, so the state stays exactly the schedule's. Over each period, every
//! usable backend therefore still gets exactly `weight / gcd` picks: the shares among the
//! backends that remain are exact, and a backend that comes back resumes its place in the
//! sequence with no burst. This is *not* nginx's sequence while a backend is down (nginx
//! spreads the lost turns smoothly over the others), but the shares are the same, and a
//! pick costs O(1) amortised instead of O(n): about 10 ns instead of 900 ns at 256
//! backends. At most [`MAX_PASSED_TURNS`] turns are passed in one pick; a longer run means
//! most of the pool is down, and the worker uses the loop, which is then no slower.
//!
//! A worker falls back to the exact nginx loop (*loop mode*, O(n)):
//! - when the state it carries over a reload is not all-zero (mid-period, or the weights
//!   changed); it returns to the schedule as soon as the state is all-zero again;
//! - when more than [`MAX_PASSED_TURNS`] scheduled turns in a row belong to unusable
//!   backends; the loop skips unusable backends as nginx does;
//! - while a backend is in slow start: the loop thins its turns (it takes part in a pick
//!   with the probability of its ramp), and its share grows with the ramp;
//! - always, when no schedule fits.
//!
//! The loop may never come back to all-zero by itself once weights changed or a backend
//! was skipped (it can cycle through other states). After one full period `L` of loop
//! picks with every backend usable, the worker therefore resets its state to zero and
//! resumes the schedule: this shifts each backend's long-run count by less than one pick.
//! (Resetting while a backend is down would not: the reset would repeat every period and
//! favour whoever the schedule serves first.)

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};

use super::{PickRequest, Strategy};
use crate::rng;
use crate::shard::Sharded;
use crate::snapshot::Backend;

/// Longest schedule precomputed: 65,536 entries of 4 bytes.
pub const MAX_SCHEDULE: u64 = 65_536;
/// Most loop steps spent building a schedule (entries × backends).
const MAX_BUILD_STEPS: u64 = 1 << 24;
/// Most scheduled turns of unusable backends passed in one pick. 64 keeps the worst pick
/// near 150 ns; a longer run means most of the pool is down, where the O(n) loop costs
/// about the same per pick and keeps nginx's exact redistribution.
pub const MAX_PASSED_TURNS: usize = 64;

/// One worker's smooth-WRR state for one backend.
#[derive(Debug, Default)]
pub struct WrrCell {
    /// `current_weight` as of pick number `at` of this worker in this pool.
    current_weight: AtomicI64,
    /// The worker's pick count when `current_weight` was last written.
    at: AtomicU64,
    /// The weight `current_weight` has grown by on every pick since `at`.
    weight: AtomicI64,
}

impl WrrCell {
    /// `current_weight` after pick number `tick`, had this backend not been chosen since.
    fn current(&self, tick: u64) -> i64 {
        let elapsed = tick.saturating_sub(self.at.load(Relaxed));
        let growth = (elapsed as i64).wrapping_mul(self.weight.load(Relaxed));
        self.current_weight.load(Relaxed).wrapping_add(growth)
    }

    fn set(&self, current_weight: i64, at: u64) {
        self.current_weight.store(current_weight, Relaxed);
        self.at.store(at, Relaxed);
    }

    /// This worker's `current_weight` for the backend, as of its last pick in the pool.
    pub fn current_weight(&self) -> i64 {
        self.current_weight.load(Relaxed)
    }
}

const UNSET: u8 = 0;
const SCHEDULE: u8 = 1;
const LOOP: u8 = 2;

/// One worker's position in this snapshot's pool.
#[derive(Debug, Default)]
struct Cursor {
    mode: AtomicU8,
    /// Picks made by this worker in this pool (carried across snapshots via the cells).
    tick: AtomicU64,
    /// Next schedule entry.
    position: AtomicUsize,
    /// Loop picks in a row with every backend usable.
    clean: AtomicU64,
}

/// Smooth weighted round robin; see the module documentation.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    /// Sum of all weights: what the chosen backend gives back in schedule mode.
    total: i64,
    /// One period from the all-zero state, as backend indexes, if it fits.
    schedule: Option<Box<[u32]>>,
    cursors: Sharded<Cursor>,
}

impl WeightedRoundRobin {
    /// Precomputes the schedule for `backends` and their weights.
    pub fn new(backends: &[Backend]) -> WeightedRoundRobin {
        let workers = backends.first().map_or(0, |b| b.live.wrr.iter().count().saturating_sub(1));
        WeightedRoundRobin {
            total: backends.iter().map(|b| i64::from(b.weight)).sum(),
            schedule: build_schedule(backends),
            cursors: Sharded::new(workers),
        }
    }

    /// Length of the precomputed schedule, or 0 when the pool runs the O(n) loop.
    pub fn schedule_len(&self) -> usize {
        self.schedule.as_deref().map_or(0, <[u32]>::len)
    }

    /// First pick of this worker on this snapshot: bring every cell to the worker's pick
    /// count under the weights it grew by so far, then switch them to the new weights.
    fn adopt(&self, backends: &[Backend], cursor: &Cursor) -> u8 {
        let tick = backends.iter().map(|b| b.live.wrr.local().at.load(Relaxed)).max();
        let tick = tick.unwrap_or(0);
        // Bounds the burst a backend gets after its weight (or the total) fell sharply.
        let bound = self.total.max(1).saturating_mul(2);
        let mut zero = true;
        for backend in backends {
            let cell = backend.live.wrr.local();
            let current = cell.current(tick).clamp(-bound, bound);
            cell.set(current, tick);
            cell.weight.store(i64::from(backend.weight), Relaxed);
            zero &= current == 0;
        }
        cursor.tick.store(tick, Relaxed);
        let mode = if zero && self.schedule.is_some() { SCHEDULE } else { LOOP };
        self.enter(cursor, mode);
        mode
    }

    fn enter(&self, cursor: &Cursor, mode: u8) {
        cursor.position.store(0, Relaxed);
        cursor.clean.store(0, Relaxed);
        cursor.mode.store(mode, Relaxed);
    }

    /// The next scheduled usable backend, passing the turns of unusable ones (each is
    /// charged as if chosen, so the state stays the schedule's); writes only the cells of
    /// the backends whose turns it takes. `None` sends the worker to the loop.
    fn scheduled(&self, backends: &[Backend], cursor: &Cursor) -> Option<usize> {
        let schedule = self.schedule.as_deref()?;
        let (mut position, mut tick) = (cursor.position.load(Relaxed), cursor.tick.load(Relaxed));
        let mut chosen = None;
        for _ in 0..=MAX_PASSED_TURNS {
            let index = *schedule.get(position)? as usize;
            let backend = backends.get(index)?;
            // A backend in slow start sends the worker to the loop, which thins its turns.
            if backend.ramp_permille().is_some() {
                break;
            }
            tick += 1;
            let cell = backend.live.wrr.local();
            cell.set(cell.current(tick) - self.total, tick);
            position = if position + 1 == schedule.len() { 0 } else { position + 1 };
            if backend.is_usable() {
                chosen = Some(index);
                break;
            }
        }
        // Also on `None`: the passed turns are part of the state the loop starts from.
        cursor.tick.store(tick, Relaxed);
        cursor.position.store(position, Relaxed);
        chosen
    }

    /// Writes every cell's implicit growth down, for the loop.
    fn leave_schedule(&self, backends: &[Backend], cursor: &Cursor) {
        let tick = cursor.tick.load(Relaxed);
        for backend in backends {
            let cell = backend.live.wrr.local();
            cell.set(cell.current(tick), tick);
        }
        self.enter(cursor, LOOP);
    }

    /// nginx's loop over every backend, skipping unusable ones.
    fn smooth(&self, backends: &[Backend], cursor: &Cursor) -> Option<usize> {
        let tick = cursor.tick.load(Relaxed) + 1;
        let (mut best, mut best_current, mut total) = (None, i64::MIN, 0i64);
        let (mut nonzero, mut all_usable) = (0usize, true);
        for (index, backend) in backends.iter().enumerate() {
            let cell = backend.live.wrr.local();
            let mut current = cell.current_weight.load(Relaxed);
            // A backend in slow start takes part in a pick with its ramp's probability
            // (as if down otherwise), and keeps the worker in the loop until it is done.
            let ramp = backend.ramp_permille();
            if backend.is_usable() && ramp.is_none_or(|p| rng::below(1000) < p) {
                let weight = i64::from(backend.weight);
                current += weight;
                total += weight;
                if current > best_current {
                    (best, best_current) = (Some(index), current);
                }
            } else if backend.weight > 0 {
                all_usable = false;
            }
            all_usable &= ramp.is_none();
            nonzero += usize::from(current != 0);
            cell.set(current, tick);
        }
        cursor.tick.store(tick, Relaxed);
        let index = best?;
        let after = best_current - total;
        backends[index].live.wrr.local().current_weight.store(after, Relaxed);
        let zero = nonzero - usize::from(best_current != 0) + usize::from(after != 0) == 0;
        self.maybe_resume(backends, cursor, all_usable, zero);
        Some(index)
    }

    /// Back to the schedule once the state is all-zero, or after a full clean period.
    fn maybe_resume(&self, backends: &[Backend], cursor: &Cursor, all_usable: bool, zero: bool) {
        let period = self.schedule_len() as u64;
        if period == 0 {
            return;
        }
        if !all_usable {
            cursor.clean.store(0, Relaxed);
            return;
        }
        let clean = cursor.clean.load(Relaxed) + 1;
        if zero || clean >= period {
            let tick = cursor.tick.load(Relaxed);
            if !zero {
                backends.iter().for_each(|b| b.live.wrr.local().set(0, tick));
            }
            self.enter(cursor, SCHEDULE);
        } else {
            cursor.clean.store(clean, Relaxed);
        }
    }
}

impl Strategy for WeightedRoundRobin {
    fn pick(&self, backends: &[Backend], _request: &PickRequest<'_>) -> Option<usize> {
        if backends.is_empty() {
            // An empty pool (the API can make one) has no worker count to size cursors by.
            return None;
        }
        let cursor = self.cursors.local();
        let mut mode = cursor.mode.load(Relaxed);
        if mode == UNSET {
            mode = self.adopt(backends, cursor);
        }
        if mode == SCHEDULE {
            if let Some(index) = self.scheduled(backends, cursor) {
                return Some(index);
            }
            self.leave_schedule(backends, cursor);
        }
        self.smooth(backends, cursor)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// One period of smooth WRR from the all-zero state, with weights divided by their gcd.
fn build_schedule(backends: &[Backend]) -> Option<Box<[u32]>> {
    let divisor = backends.iter().fold(0, |g, b| gcd(g, u64::from(b.weight)));
    if divisor == 0 || u32::try_from(backends.len()).is_err() {
        return None;
    }
    let weights: Vec<i64> =
        backends.iter().map(|b| (u64::from(b.weight) / divisor) as i64).collect();
    let period: i64 = weights.iter().sum();
    let steps = (period as u64).saturating_mul(backends.len() as u64);
    if period as u64 > MAX_SCHEDULE || steps > MAX_BUILD_STEPS {
        return None;
    }
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(period as usize);
    for _ in 0..period {
        let mut best: Option<usize> = None;
        for (index, &weight) in weights.iter().enumerate().filter(|(_, &w)| w > 0) {
            current[index] += weight;
            if best.is_none_or(|b| current[index] > current[b]) {
                best = Some(index);
            }
        }
        let best = best?;
        current[best] -= period;
        schedule.push(best as u32);
    }
    debug_assert!(current.iter().all(|&c| c == 0), "a period ends in the all-zero state");
    Some(schedule.into_boxed_slice())
}

#[cfg(test)]
#[path = "weighted_tests.rs"]
mod tests;
