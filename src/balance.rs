//! Backend selection strategies.
//!
//! A [`Strategy`] picks an index into a pool's backend slice; the backend set itself lives
//! in the snapshot, so strategies stay small and the selection algorithm is separate from
//! the set it selects from (as in pingora-load-balancing). [`build`] runs when a snapshot
//! is built, off the request path: it precomputes whatever a strategy needs (schedules,
//! cumulative weights, the Maglev table, sticky ids), so a pick is cheap.
//!
//! Every pick:
//! - allocates nothing and takes no lock;
//! - looks at each backend at most a constant number of times, so it is bounded;
//! - returns `None` when no backend is usable (the caller answers 503);
//! - never sends new traffic to a weight-0 backend, except a sticky request that names it.
//!
//! Slow start (`[pool] slow_start`) ramps a joining or recovering backend from 10% to
//! 100% of its weight: `weighted_round_robin` (thinned turns, in its O(n) loop while the
//! ramp lasts), `random` (rejection sampling), `least_requests` and `peak_ewma` (the
//! weight in their comparison) and `consistent_hash` (a growing, stable share of its
//! keys). `round_robin` ignores weights and does not ramp; `sticky` ramps through its
//! base strategy, and a client pinned by cookie still goes to its backend.
//!
//! State that must survive a snapshot swap (smooth WRR weights, latency estimates,
//! in-flight counts) lives in [`BackendLive`](crate::snapshot::BackendLive), keyed by
//! backend identity; a strategy object itself is rebuilt with every snapshot.
//!
//! | strategy | file | pick cost |
//! |---|---|---|
//! | `round_robin` | [`round_robin`] | O(1), O(n) only past unusable backends |
//! | `weighted_round_robin` | [`weighted`] | O(1) on a precomputed smooth schedule, else O(n) |
//! | `random` | [`random`] | O(log n) |
//! | `least_requests` | [`least_requests`] | O(1) (two choices) |
//! | `consistent_hash` | [`maglev`] | O(1) table lookup |
//! | `sticky` | [`sticky`] | O(log n) id lookup, then the base strategy |
//! | `peak_ewma` | [`peak_ewma`] | O(1) (two choices) |

pub mod key;
pub mod least_requests;
pub mod maglev;
pub mod peak_ewma;
pub mod random;
pub mod round_robin;
pub mod sticky;
pub mod weighted;

#[cfg(test)]
mod slow_start_tests;
#[cfg(test)]
mod testing;

use crate::config::{PoolConfig, StrategyKind};
use crate::snapshot::Backend;

pub use least_requests::LeastRequests;
pub use maglev::Maglev;
pub use peak_ewma::{observe_latency, PeakEwma};
pub use random::WeightedRandom;
pub use round_robin::RoundRobin;
pub use sticky::Sticky;
pub use weighted::WeightedRoundRobin;

/// What a pick may look at besides the backends.
#[derive(Clone, Copy, Debug, Default)]
pub struct PickRequest<'a> {
    /// The request's hash key for `consistent_hash` ([`key::hash_bytes`] of the configured
    /// header, cookie, query parameter, client address or path), or `None` when the
    /// request lacks it; `consistent_hash` then picks at random.
    pub hash_key: Option<u64>,
    /// The value of the sticky cookie, if the request carries one.
    pub sticky_id: Option<&'a [u8]>,
}

/// Picks a backend for a new request.
pub trait Strategy: Send + Sync {
    /// Index of a usable backend in `backends`, or `None` when none is usable. `backends`
    /// is the slice this strategy was built for.
    fn pick(&self, backends: &[Backend], request: &PickRequest<'_>) -> Option<usize>;

    /// The cookie value that pins a client to `backends[index]`, for sticky pools.
    fn sticky_id(&self, _index: usize) -> Option<&str> {
        None
    }
}

/// Builds the strategy for a pool whose backends are `backends`. Runs when a snapshot is
/// built, never on the request path.
pub fn build(settings: &PoolConfig, backends: &[Backend]) -> Box<dyn Strategy> {
    match settings.strategy {
        StrategyKind::Sticky => Box::new(Sticky::new(settings, backends)),
        kind => build_kind(kind, settings, backends),
    }
}

/// Sets what a pool's strategy keeps in the live state its backends share with other
/// snapshots (peak EWMA's decay window). Runs when a snapshot is published, not when it
/// is built, so a change refused after its build leaves the running state alone.
pub fn activate(settings: &PoolConfig, backends: &[Backend]) {
    let kind = match settings.strategy {
        StrategyKind::Sticky => settings.sticky.clone().unwrap_or_default().base,
        kind => kind,
    };
    if kind == StrategyKind::PeakEwma {
        peak_ewma::set_decay(backends, settings.ewma_decay);
    }
}

/// Builds a non-sticky strategy of `kind` (the base of a sticky pool is one of these).
fn build_kind(
    kind: StrategyKind,
    settings: &PoolConfig,
    backends: &[Backend],
) -> Box<dyn Strategy> {
    match kind {
        StrategyKind::RoundRobin => Box::new(RoundRobin::default()),
        StrategyKind::WeightedRoundRobin => Box::new(WeightedRoundRobin::new(backends)),
        StrategyKind::Random => Box::new(WeightedRandom::new(backends)),
        StrategyKind::LeastRequests => Box::new(LeastRequests),
        StrategyKind::ConsistentHash => {
            let size = settings
                .hash
                .as_ref()
                .map_or(crate::config::hash::DEFAULT_TABLE_SIZE, |h| h.table_size);
            Box::new(Maglev::new(backends, size))
        }
        // The decay window is live state; `activate` sets it when the snapshot is published.
        StrategyKind::PeakEwma => Box::new(PeakEwma),
        // Validation refuses a sticky base; should one get here, plain least requests is
        // the documented default base.
        StrategyKind::Sticky => Box::new(LeastRequests),
    }
}
