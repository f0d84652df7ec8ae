//! Tests for the peak-EWMA estimate and for traffic shifting, in simulated time.

use std::sync::atomic::Ordering;

use super::*;
use crate::balance::testing::{backends, set_healthy};
use crate::rng;

const MS: Duration = Duration::from_millis(1);

#[test]
fn the_estimate_jumps_up_and_decays_down() {
    let pool = backends(&[1]);
    let live = &pool[0].live;
    let start = Instant::now() + Duration::from_secs(1);
    assert_eq!(live.ewma.rtt_at(start), DEFAULT_RTT.as_nanos() as f64);
    observe_latency(live, 10 * MS, start);
    assert_eq!(live.ewma.rtt_at(start), 10e6);
    // A peak replaces the estimate at once.
    observe_latency(live, 100 * MS, start + MS);
    assert_eq!(live.ewma.rtt_at(start + MS), 100e6);
    // A lower sample one decay window later keeps exp(-1) of the old estimate.
    let later = start + MS + DEFAULT_DECAY;
    observe_latency(live, 10 * MS, later);
    let expected = 100e6 * (-1f64).exp() + 10e6 * (1.0 - (-1f64).exp());
    assert!((live.ewma.rtt_at(later) - expected).abs() < 1.0, "{}", live.ewma.rtt_at(later));
    // Without samples it decays towards zero, so an avoided backend is tried again.
    let idle = live.ewma.rtt_at(later + 3 * DEFAULT_DECAY);
    assert!((idle - expected * (-3f64).exp()).abs() < 1.0, "{idle}");
}

/// Simulates one request per millisecond for `seconds`, with `rtt(backend, now)`; returns
/// the picks per backend in each 500 ms interval.
fn simulate(
    pool: &[Backend],
    strategy: &PeakEwma,
    start: Instant,
    seconds: u64,
    rtt: impl Fn(usize, Duration) -> Duration,
) -> Vec<Vec<u64>> {
    let mut pending: Vec<(Instant, usize, Duration)> = Vec::new();
    let mut intervals = vec![vec![0; pool.len()]; seconds as usize * 2];
    for ms in 0..seconds * 1000 {
        let elapsed = Duration::from_millis(ms);
        let now = start + elapsed;
        pending.retain(|&(done, index, took)| {
            let finished = done <= now;
            if finished {
                pool[index].live.in_flight.fetch_sub(1, Ordering::Relaxed);
                observe_latency(&pool[index].live, took, done);
            }
            !finished
        });
        let index = strategy.pick_at(pool, now).expect("a pick");
        pool[index].live.in_flight.fetch_add(1, Ordering::Relaxed);
        let took = rtt(index, elapsed);
        pending.push((now + took, index, took));
        intervals[(ms / 500) as usize][index] += 1;
    }
    intervals
}

#[test]
fn a_backend_20_times_slower_loses_over_80_percent_within_2_seconds() {
    rng::seed_thread(41);
    let pool = backends(&[1, 1, 1, 1]);
    let strategy = PeakEwma::new(&pool, DEFAULT_DECAY);
    let start = Instant::now() + Duration::from_secs(1);
    let slow_from = Duration::from_secs(2);
    let rtt = |index, elapsed| if index == 0 && elapsed >= slow_from { 200 * MS } else { 10 * MS };
    let intervals = simulate(&pool, &strategy, start, 4, rtt);
    let share = |range: std::ops::Range<usize>| {
        let picks: Vec<u64> = intervals[range].iter().flatten().copied().collect();
        let slow: u64 = picks.iter().step_by(4).sum();
        slow as f64 / picks.iter().sum::<u64>() as f64
    };
    let before = share(2..4);
    assert!((0.15..0.35).contains(&before), "share before: {before:.3} {intervals:?}");
    let after = share(4..8);
    assert!(after < 0.2 * before, "share after: {after:.3} vs {before:.3}: {intervals:?}");
}

#[test]
fn weights_scale_the_cost_and_unusable_backends_are_skipped() {
    rng::seed_thread(42);
    let pool = backends(&[1, 4]);
    let strategy = PeakEwma::new(&pool, DEFAULT_DECAY);
    let now = Instant::now() + Duration::from_secs(1);
    observe_latency(&pool[0].live, 10 * MS, now);
    observe_latency(&pool[1].live, 20 * MS, now);
    // 20 ms / 4 beats 10 ms / 1.
    assert!((0..100).all(|_| strategy.pick_at(&pool, now) == Some(1)));
    set_healthy(&pool, 1, false);
    assert!((0..100).all(|_| strategy.pick_at(&pool, now) == Some(0)));
    set_healthy(&pool, 0, false);
    assert_eq!(strategy.pick_at(&pool, now), None);
    assert_eq!(strategy.pick(&pool, &PickRequest::default()), None);
}
