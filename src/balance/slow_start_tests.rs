//! Slow start in each weighted strategy: a backend at the start of its ramp (10% of its
//! weight) gets about a tenth of its usual share, then all of it once the ramp is over.

use crate::rng;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::key::hash_bytes;
use super::testing::{backends, counts};
use super::*;
use crate::snapshot::Backend;

/// Long enough that the ramp stays at its floor (10%) for the whole test.
const WINDOW: Duration = Duration::from_secs(3600);
const PICKS: usize = 20_000;

fn ramp(backend: &Backend) {
    backend.live.health.start_ramp(Some(WINDOW), Instant::now());
}

/// Backend 0's share of `PICKS` picks, in percent.
fn share_of_first(pool: &[Backend], strategy: &dyn Strategy) -> f64 {
    let request = PickRequest::default();
    let observed = counts(pool.len(), (0..PICKS).map(|_| strategy.pick(pool, &request)));
    observed[0] as f64 * 100.0 / PICKS as f64
}

#[test]
fn random_and_weighted_round_robin_thin_a_ramping_backend() {
    rng::seed_thread(21);
    // Weights 1 and 1 with the first at 10%: about 1/11 of the picks, 9.1%.
    for build in [
        |pool: &[Backend]| Box::new(WeightedRandom::new(pool)) as Box<dyn Strategy>,
        |pool: &[Backend]| Box::new(WeightedRoundRobin::new(pool)) as Box<dyn Strategy>,
    ] {
        let pool = backends(&[1, 1]);
        let strategy = build(&pool);
        assert!((45.0..55.0).contains(&share_of_first(&pool, strategy.as_ref())));
        ramp(&pool[0]);
        let share = share_of_first(&pool, strategy.as_ref());
        assert!((5.0..14.0).contains(&share), "{share:.1}% while ramping");
    }
}

#[test]
fn least_requests_compares_with_the_ramped_weight() {
    rng::seed_thread(22);
    let pool = backends(&[1, 1]);
    pool[1].live.in_flight.store(5, Ordering::Relaxed);
    // Idle against 5 in flight: the idle one wins, unless it counts as a tenth:
    // (0 + 1) × 1 against (5 + 1) × 0.1.
    assert_eq!(share_of_first(&pool, &LeastRequests), 100.0);
    ramp(&pool[0]);
    assert_eq!(share_of_first(&pool, &LeastRequests), 0.0);
    assert_eq!(pool[0].effective_weight_milli(), 100);
}

#[test]
fn maglev_keeps_a_stable_tenth_of_a_ramping_backends_keys() {
    let pool = backends(&[1, 1, 1]);
    let maglev = Maglev::new(&pool, crate::config::hash::DEFAULT_TABLE_SIZE);
    let keys: Vec<u64> = (0..30_000u64).map(|i| hash_bytes(format!("k{i}").as_bytes())).collect();
    let owned: Vec<u64> =
        keys.iter().copied().filter(|&k| maglev.pick_key(&pool, k) == Some(0)).collect();
    ramp(&pool[0]);
    let kept: Vec<u64> =
        owned.iter().copied().filter(|&k| maglev.pick_key(&pool, k) == Some(0)).collect();
    let share = kept.len() as f64 * 100.0 / owned.len() as f64;
    assert!((7.0..13.0).contains(&share), "{share:.1}% of its keys kept");
    // The same keys each time: a key does not flap between backends.
    assert!(kept.iter().all(|&k| maglev.pick_key(&pool, k) == Some(0)));
    // No other backend's keys move to it.
    let stolen = keys.iter().filter(|k| !owned.contains(k));
    assert!(stolen.into_iter().all(|&k| maglev.pick_key(&pool, k) != Some(0)));
}
