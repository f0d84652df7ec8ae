//! `round_robin`: plain rotation over usable backends, ignoring weights (except 0).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{PickRequest, Strategy};
use crate::snapshot::Backend;

/// Rotates over usable backends. The cursor is shared by all workers, so the rotation is
/// global; one relaxed `fetch_add` per pick.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Strategy for RoundRobin {
    fn pick(&self, backends: &[Backend], _request: &PickRequest<'_>) -> Option<usize> {
        let count = backends.len();
        if count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        // Bounded: each backend is looked at once at most.
        (0..count).map(|step| (start + step) % count).find(|&index| backends[index].is_usable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{backends, counts, set_healthy};

    #[test]
    fn rotates_and_skips_unusable_backends() {
        let pool = backends(&[1, 0, 5, 1]);
        set_healthy(&pool, 3, false);
        let rr = RoundRobin::default();
        let picks: Vec<_> = (0..6).map(|_| rr.pick(&pool, &PickRequest::default())).collect();
        assert!(picks.iter().all(|p| matches!(p, Some(0 | 2))), "{picks:?}");
        let counts = counts(4, (0..1000).map(|_| rr.pick(&pool, &PickRequest::default())));
        assert_eq!(counts[1] + counts[3], 0);
        assert!(counts[0].abs_diff(counts[2]) <= 500, "{counts:?}");
        set_healthy(&pool, 0, false);
        set_healthy(&pool, 2, false);
        assert_eq!(rr.pick(&pool, &PickRequest::default()), None);
        assert_eq!(rr.pick(&[], &PickRequest::default()), None);
    }
}
