//! `peak_ewma`: power of two choices on `rtt × (in_flight + 1) / weight`, in the style
//! of Finagle and linkerd.
//!
//! Each backend keeps a latency estimate in [`EwmaCell`], fed by [`observe_latency`]
//! with the time to the response head. The estimate is peak-sensitive: a sample above it
//! replaces it at once, so a backend that turns slow loses traffic on its first slow
//! answer; lower samples pull it down with weight `1 - exp(-elapsed / decay)`, so it
//! recovers over the decay window (`[pool] ewma_decay`, 10 s by default). At pick time
//! the estimate also decays towards zero with the time since its last sample, so a
//! backend that was avoided for being slow is tried again after a while. A backend with
//! no sample yet counts as [`DEFAULT_RTT`], so it gets tried.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::least_requests::p2c;
use super::{PickRequest, Strategy};
use crate::snapshot::{Backend, BackendLive};

/// The estimate of a backend without samples: low enough that it gets tried, high enough
/// that a new backend does not take all traffic before its first answer.
pub const DEFAULT_RTT: Duration = Duration::from_millis(5);
/// `[pool] ewma_decay` when not set.
pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);

/// A backend's latency estimate, shared by all workers.
#[derive(Debug)]
pub struct EwmaCell {
    /// The estimate in nanoseconds, as `f64` bits.
    rtt: AtomicU64,
    /// When it was last updated, in nanoseconds since [`epoch`] plus one; 0 = never.
    stamp: AtomicU64,
    /// The decay window in nanoseconds, set by the pool's strategy.
    decay: AtomicU64,
}

impl Default for EwmaCell {
    fn default() -> Self {
        EwmaCell {
            rtt: AtomicU64::new(0),
            stamp: AtomicU64::new(0),
            decay: AtomicU64::new(DEFAULT_DECAY.as_nanos() as u64),
        }
    }
}

impl EwmaCell {
    /// The estimate at `now` in nanoseconds, decayed towards zero since the last sample.
    pub fn rtt_at(&self, now: Instant) -> f64 {
        let stamp = self.stamp.load(Relaxed);
        if stamp == 0 {
            return DEFAULT_RTT.as_nanos() as f64;
        }
        let elapsed = since_epoch(now).saturating_sub(stamp - 1) as f64;
        f64::from_bits(self.rtt.load(Relaxed)) * (-elapsed / self.decay()).exp()
    }

    fn decay(&self) -> f64 {
        self.decay.load(Relaxed).max(1) as f64
    }
}

/// A process-wide origin for timestamps, a day before the first use when the clock
/// allows, so that instants taken just before it still count.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now)
    })
}

fn since_epoch(now: Instant) -> u64 {
    now.saturating_duration_since(epoch()).as_nanos() as u64
}

/// Feeds one observed latency (request sent to response head) into `live`'s estimate.
/// Concurrent observers may overwrite each other's update; each keeps the estimate valid.
pub fn observe_latency(live: &BackendLive, rtt: Duration, now: Instant) {
    let cell = &live.ewma;
    let sample = rtt.as_nanos() as f64;
    let now_ns = since_epoch(now);
    let stamp = cell.stamp.load(Relaxed);
    let previous = f64::from_bits(cell.rtt.load(Relaxed));
    let estimate = if stamp == 0 || sample >= previous {
        sample
    } else {
        let elapsed = now_ns.saturating_sub(stamp - 1) as f64;
        let keep = (-elapsed / cell.decay()).exp();
        previous * keep + sample * (1.0 - keep)
    };
    cell.rtt.store(estimate.to_bits(), Relaxed);
    cell.stamp.store(now_ns.max(stamp.saturating_sub(1)) + 1, Relaxed);
}

/// P2C on peak-EWMA latency; see the module documentation.
#[derive(Debug, Default)]
pub struct PeakEwma;

/// Sets the decay window of `backends`, which live state keeps across snapshots: done
/// when a snapshot is published ([`crate::balance::activate`]), so a refused change
/// leaves the running window alone.
pub fn set_decay(backends: &[Backend], decay: Duration) {
    let nanos = decay.as_nanos().clamp(1, u128::from(u64::MAX)) as u64;
    backends.iter().for_each(|b| b.live.ewma.decay.store(nanos, Relaxed));
}

impl PeakEwma {
    /// Sets the decay window of `backends` to `decay` at once, as publishing a snapshot
    /// does ([`set_decay`]); a snapshot build makes the strategy without it.
    pub fn new(backends: &[Backend], decay: Duration) -> PeakEwma {
        set_decay(backends, decay);
        PeakEwma
    }

    /// A pick as of `now` (simulated in tests).
    pub fn pick_at(&self, backends: &[Backend], now: Instant) -> Option<usize> {
        let cost = |b: &Backend| {
            let in_flight = b.live.in_flight.load(Relaxed) as f64;
            b.live.ewma.rtt_at(now) * (in_flight + 1.0)
        };
        // cost_a / weight_a against cost_b / weight_b, without dividing.
        // Weights in thousandths, so a backend in slow start counts at its ramped share.
        p2c(backends, |a, b| {
            let left = cost(a) * b.effective_weight_milli() as f64;
            left.total_cmp(&(cost(b) * a.effective_weight_milli() as f64))
        })
    }
}

impl Strategy for PeakEwma {
    fn pick(&self, backends: &[Backend], _request: &PickRequest<'_>) -> Option<usize> {
        self.pick_at(backends, Instant::now())
    }
}

#[cfg(test)]
#[path = "peak_ewma_tests.rs"]
mod tests;
