//! Backend selection strategies.
//!
//! A [`Strategy`] picks an index into a pool's backend slice; the backend set itself lives
//! in the snapshot, so strategies stay small and the selection algorithm is separate from
//! the set it selects from (as in pingora-load-balancing). A pick allocates nothing, takes
//! no lock and looks at each backend at most once, so it is bounded by the pool size.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::StrategyKind;
use crate::snapshot::Backend;

/// Picks a backend for a new request.
pub trait Strategy: Send + Sync {
    /// Index of a usable backend in `backends`, or `None` when none is usable.
    fn pick(&self, backends: &[Backend]) -> Option<usize>;
}

/// Builds the strategy for a pool. Configuration validation refuses strategies this build
/// does not implement, so only available kinds reach here.
pub fn build(kind: StrategyKind, _backends: &[Backend]) -> Box<dyn Strategy> {
    debug_assert!(kind.is_available(), "validation lets {kind:?} through");
    Box::new(RoundRobin::default())
}

/// Rotates over usable backends. The cursor is shared by all workers, so the rotation is
/// global; one relaxed `fetch_add` per pick.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Strategy for RoundRobin {
    fn pick(&self, backends: &[Backend]) -> Option<usize> {
        let count = backends.len();
        if count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        // Bounded: each backend is looked at once at most.
        (0..count).map(|step| (start + step) % count).find(|&index| backends[index].is_usable())
    }
}
