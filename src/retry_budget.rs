//! The retry budget of a pool: retries may add only a share of the requests, so a failing
//! backend cannot multiply the load on the others. The retry policy spends it
//! ([`crate::proxy::retry`]); the snapshot's live pool state holds it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::RetryConfig;
use crate::shard::Sharded;

/// The budget window is one second of this many buckets, so it slides by a tenth of a
/// second: fine enough to follow a burst, coarse enough to stay ten counters.
const BUCKETS: u64 = 10;

/// One bucket of a sliding window.
#[derive(Debug, Default)]
struct Slot {
    tick: AtomicU64,
    count: AtomicU64,
}

/// Counts in a sliding window of [`BUCKETS`] buckets.
#[derive(Debug, Default)]
struct Window([Slot; BUCKETS as usize]);

impl Window {
    fn add(&self, tick: u64) {
        let slot = &self.0[(tick % BUCKETS) as usize];
        if slot.tick.load(Relaxed) != tick && slot.tick.swap(tick, Relaxed) != tick {
            // Racing writers may lose a count here; the budget is an estimate.
            slot.count.store(0, Relaxed);
        }
        slot.count.fetch_add(1, Relaxed);
    }

    fn sum(&self, tick: u64) -> u64 {
        let live = |slot: &&Slot| tick.wrapping_sub(slot.tick.load(Relaxed)) < BUCKETS;
        self.0.iter().filter(live).map(|slot| slot.count.load(Relaxed)).sum()
    }
}

/// The retry budget of a pool: over the last second, retries may add at most
/// `budget_percent` of the requests, or `min_per_second`, whichever is more. Requests are
/// counted per worker (no shared write on the request path); retries, which are rare,
/// in one shared window.
#[derive(Debug)]
pub struct Budget {
    requests: Sharded<Window>,
    retries: Window,
}

impl Budget {
    /// An empty budget for `workers` workers.
    pub fn new(workers: usize) -> Budget {
        Budget { requests: Sharded::new(workers), retries: Window::default() }
    }

    /// Counts one client request at `now`.
    pub fn on_request(&self, now: Instant) {
        self.requests.local().add(tick(now));
    }

    /// Spends one retry at `now` if the budget allows it.
    pub fn try_retry(&self, config: &RetryConfig, now: Instant) -> bool {
        let tick = tick(now);
        let requests: u64 = self.requests.iter().map(|window| window.sum(tick)).sum();
        let by_share = requests * u64::from(config.budget_percent) / 100;
        let allowed = by_share.max(u64::from(config.min_per_second));
        if self.retries.sum(tick) >= allowed {
            return false;
        }
        self.retries.add(tick);
        true
    }
}

/// The bucket of `now`, counted from a process-wide origin a day before first use (so
/// instants taken just before it still count).
fn tick(now: Instant) -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now)
    });
    // Integer seconds and milliseconds: no 128-bit division on the request path.
    let elapsed = now.saturating_duration_since(origin);
    let bucket_ms = (1000 / BUCKETS) as u32;
    elapsed.as_secs() * BUCKETS + u64::from(elapsed.subsec_millis() / bucket_ms) + BUCKETS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(budget_percent: u32, min_per_second: u32) -> RetryConfig {
        RetryConfig { budget_percent, min_per_second, ..RetryConfig::default() }
    }

    #[tokio::test(start_paused = true)]
    async fn budget_allows_a_share_of_requests_or_the_floor() {
        let budget = Budget::new(1);
        let config = retry(20, 3);
        let now = Instant::now();
        // No traffic: the floor.
        assert_eq!((0..10).filter(|_| budget.try_retry(&config, now)).count(), 3);
        // 100 requests in the window: 20 retries in all.
        (0..100).for_each(|_| budget.on_request(now));
        assert_eq!((0..50).filter(|_| budget.try_retry(&config, now)).count(), 17);
        // A second later the window has slid past all of it.
        let later = now + Duration::from_millis(1000);
        assert_eq!((0..10).filter(|_| budget.try_retry(&config, later)).count(), 3);
        // Half a second later, half the window remains (requests and retries alike).
        let budget = Budget::new(1);
        (0..100).for_each(|_| budget.on_request(now));
        assert_eq!((0..50).filter(|_| budget.try_retry(&config, now)).count(), 20);
        let half = now + Duration::from_millis(500);
        assert_eq!((0..50).filter(|_| budget.try_retry(&config, half)).count(), 0);
        (0..100).for_each(|_| budget.on_request(half));
        assert_eq!((0..50).filter(|_| budget.try_retry(&config, half)).count(), 20);
    }
}
