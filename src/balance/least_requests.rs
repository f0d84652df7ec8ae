//! `least_requests`: the power of two choices on in-flight requests, scaled by weight.
//!
//! Two distinct backends are drawn at random and the less loaded one wins, where load is
//! Envoy's `(in_flight + 1) / weight` (compared as `(a + 1) × weight_b` against
//! `(b + 1) × weight_a`, in integers). The `+ 1` makes weights count on an idle pool too:
//! with only `in_flight / weight`, every idle backend would tie at 0. The in-flight counts
//! are [`BackendLive::in_flight`](crate::snapshot::BackendLive::in_flight), shared by all
//! workers. `p2c` is shared with `peak_ewma`, which only changes the cost.

use std::cmp::Ordering as Order;
use std::sync::atomic::Ordering;

use super::{PickRequest, Strategy};
use crate::rng;
use crate::snapshot::Backend;

/// Draws of a candidate pair before the pass over every backend.
const ATTEMPTS: usize = 4;

/// Power of two choices on in-flight requests; see the module documentation.
#[derive(Debug, Default)]
pub struct LeastRequests;

impl Strategy for LeastRequests {
    fn pick(&self, backends: &[Backend], _request: &PickRequest<'_>) -> Option<usize> {
        // Weights in thousandths, so a backend in slow start counts at its ramped share.
        p2c(backends, |a, b| {
            let load = |x: &Backend| u128::from(x.live.in_flight.load(Ordering::Relaxed)) + 1;
            let weight = |x: &Backend| u128::from(x.effective_weight_milli());
            (load(a) * weight(b)).cmp(&(load(b) * weight(a)))
        })
    }
}

/// Power of two choices over usable backends: `compare(a, b)` orders two usable backends
/// by cost (`Less` means `a` is the better choice). Ties go to the first drawn, which is
/// random. When the pairs drawn keep hitting unusable backends, one pass over all
/// backends from a random start keeps the cheapest usable one, so a pick is bounded.
pub(crate) fn p2c(
    backends: &[Backend],
    mut compare: impl FnMut(&Backend, &Backend) -> Order,
) -> Option<usize> {
    match backends.len() {
        0 => return None,
        1 => return backends[0].is_usable().then_some(0),
        _ => {}
    }
    let len = backends.len();
    for _ in 0..ATTEMPTS {
        let a = rng::index(len);
        let b = (a + 1 + rng::index(len - 1)) % len;
        match (backends[a].is_usable(), backends[b].is_usable()) {
            (true, true) => {
                let b_better = compare(&backends[a], &backends[b]) == Order::Greater;
                return Some(if b_better { b } else { a });
            }
            (true, false) => return Some(a),
            (false, true) => return Some(b),
            (false, false) => {}
        }
    }
    let start = rng::index(len);
    let mut best: Option<usize> = None;
    for index in (0..len).map(|step| (start + step) % len) {
        if backends[index].is_usable()
            && best.is_none_or(|b| compare(&backends[index], &backends[b]) == Order::Less)
        {
            best = Some(index);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{backends, counts, set_healthy};

    fn hold(backends: &[Backend], index: usize, in_flight: u64) {
        backends[index].live.in_flight.store(in_flight, Ordering::Relaxed);
    }

    #[test]
    fn a_backend_held_at_50_in_flight_gets_under_10_percent() {
        rng::seed_thread(11);
        for len in [2, 3, 4, 10] {
            let pool = backends(&vec![1; len]);
            hold(&pool, 0, 50);
            let picks = (0..10_000).map(|_| LeastRequests.pick(&pool, &PickRequest::default()));
            let observed = counts(len, picks);
            assert!(observed[0] < 1_000, "{len} backends: {observed:?}");
        }
    }

    #[test]
    fn spreads_an_idle_pool_by_weight_and_load() {
        rng::seed_thread(12);
        let pool = backends(&[1, 1, 1, 1]);
        let picks = (0..8_000).map(|_| LeastRequests.pick(&pool, &PickRequest::default()));
        let observed = counts(4, picks);
        assert!(observed.iter().all(|&n| (1_600..2_400).contains(&n)), "{observed:?}");
        // Weight 3 against weight 1 at equal load: the heavier wins every comparison.
        let pool = backends(&[3, 1]);
        assert!((0..100).all(|_| LeastRequests.pick(&pool, &PickRequest::default()) == Some(0)));
        // ... until it carries over three times the load: (6 + 1) × 1 > (1 + 1) × 3.
        hold(&pool, 0, 6);
        hold(&pool, 1, 1);
        assert!((0..100).all(|_| LeastRequests.pick(&pool, &PickRequest::default()) == Some(1)));
    }

    #[test]
    fn skips_unusable_backends_in_bounded_time() {
        rng::seed_thread(13);
        let pool = backends(&[1; 64]);
        for index in 0..63 {
            set_healthy(&pool, index, false);
        }
        assert!((0..1000).all(|_| LeastRequests.pick(&pool, &PickRequest::default()) == Some(63)));
        set_healthy(&pool, 63, false);
        assert_eq!(LeastRequests.pick(&pool, &PickRequest::default()), None);
        let zero = backends(&[0]);
        assert_eq!(LeastRequests.pick(&zero, &PickRequest::default()), None);
        assert_eq!(LeastRequests.pick(&[], &PickRequest::default()), None);
    }
}
