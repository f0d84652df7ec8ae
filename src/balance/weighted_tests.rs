//! Tests for smooth weighted round robin, against a plain transcription of nginx's loop.

use super::*;
use crate::balance::testing::{backends, counts, reweighted, set_healthy};
use crate::rng::WyRand;

/// nginx's `ngx_http_upstream_get_peer`, weights only: the reference.
struct Nginx {
    current: Vec<i64>,
}

impl Nginx {
    fn new(len: usize) -> Nginx {
        Nginx { current: vec![0; len] }
    }

    fn pick(&mut self, weights: &[u32], usable: &[bool]) -> Option<usize> {
        let (mut best, mut total) = (None::<usize>, 0);
        for (i, &weight) in weights.iter().enumerate() {
            if weight == 0 || !usable[i] {
                continue;
            }
            self.current[i] += i64::from(weight);
            total += i64::from(weight);
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        self.current[best?] -= total;
        best
    }
}

fn picks(wrr: &WeightedRoundRobin, pool: &[Backend], n: usize) -> Vec<usize> {
    (0..n).map(|_| wrr.pick(pool, &PickRequest::default()).expect("a pick")).collect()
}

fn letters(picks: &[usize]) -> String {
    picks.iter().map(|&i| char::from(b'a' + i as u8).to_string()).collect::<Vec<_>>().join(" ")
}

#[test]
fn five_one_one_gives_the_smooth_sequence() {
    let pool = backends(&[5, 1, 1]);
    let wrr = WeightedRoundRobin::new(&pool);
    assert_eq!(wrr.schedule_len(), 7);
    assert_eq!(letters(&picks(&wrr, &pool, 7)), "a a b a c a a");
    assert_eq!(letters(&picks(&wrr, &pool, 7)), "a a b a c a a");
    // The same through the O(n) loop (a schedule that would not fit).
    let pool = backends(&[5, 1, 1]);
    let wrr = WeightedRoundRobin { schedule: None, ..WeightedRoundRobin::new(&pool) };
    assert_eq!(letters(&picks(&wrr, &pool, 14)), "a a b a c a a a a b a c a a");
}

#[test]
fn shares_are_exact_over_every_window() {
    let pool = backends(&[5, 3, 2]);
    let wrr = WeightedRoundRobin::new(&pool);
    let all = picks(&wrr, &pool, 10_000);
    assert_eq!(counts(3, all.iter().map(|&i| Some(i))), vec![5000, 3000, 2000]);
    for window in all.windows(10) {
        assert_eq!(counts(3, window.iter().map(|&i| Some(i))), vec![5, 3, 2], "{window:?}");
    }
    // Common factors do not lengthen the period.
    let pool = backends(&[500, 300, 200, 0]);
    let wrr = WeightedRoundRobin::new(&pool);
    assert_eq!(wrr.schedule_len(), 10);
    let all = picks(&wrr, &pool, 10_000);
    assert_eq!(counts(4, all.iter().map(|&i| Some(i))), vec![5000, 3000, 2000, 0]);
}

#[test]
fn matches_nginx_with_and_without_a_schedule() {
    let mut rng = WyRand::new(4);
    for round in 0..40 {
        let len = 1 + (rng.next_u64() % 12) as usize;
        let big = round % 4 == 0;
        let weights: Vec<u32> = (0..len)
            .map(|_| {
                if big {
                    9000 + (rng.next_u64() % 1000) as u32
                } else {
                    (rng.next_u64() % 7) as u32
                }
            })
            .collect();
        let pool = backends(&weights);
        let wrr = WeightedRoundRobin::new(&pool);
        let mut nginx = Nginx::new(len);
        let usable = vec![true; len];
        for step in 0..2000 {
            let expected = nginx.pick(&weights, &usable);
            let got = wrr.pick(&pool, &PickRequest::default());
            assert_eq!(got, expected, "weights {weights:?}, pick {step}");
        }
    }
}

#[test]
fn a_reload_continues_the_sequence() {
    let pool = backends(&[5, 1, 1]);
    let first = WeightedRoundRobin::new(&pool);
    let mut all = picks(&first, &pool, 3);
    // A new snapshot with the same backends and weights, built mid-period.
    let pool = reweighted(&pool, &[5, 1, 1]);
    let second = WeightedRoundRobin::new(&pool);
    all.extend(picks(&second, &pool, 11));
    assert_eq!(letters(&all), "a a b a c a a a a b a c a a");
}

#[test]
fn a_weight_change_applies_at_the_next_pick_and_keeps_state() {
    let pool = backends(&[5, 1, 1]);
    let first = WeightedRoundRobin::new(&pool);
    let mut nginx = Nginx::new(3);
    for _ in 0..3 {
        assert_eq!(first.pick(&pool, &PickRequest::default()), nginx.pick(&[5, 1, 1], &[true; 3]));
    }
    let pool = reweighted(&pool, &[5, 1, 4]);
    let second = WeightedRoundRobin::new(&pool);
    // nginx's state carries over untouched: the others' current weights are not reset.
    for step in 0..second.schedule_len() {
        let expected = nginx.pick(&[5, 1, 4], &[true; 3]);
        assert_eq!(second.pick(&pool, &PickRequest::default()), expected, "pick {step}");
    }
    // Then back on the schedule (reset to zero at most once, within a period).
    let all = picks(&second, &pool, 100 * second.schedule_len());
    let shares = counts(3, all.iter().map(|&i| Some(i)));
    let exact = [500u64, 100, 400];
    assert!(shares.iter().zip(exact).all(|(&s, e)| s.abs_diff(e) <= 1), "{shares:?}");
}

/// The all-usable smooth sequence, as nginx computes it, endlessly.
fn reference(weights: &[u32]) -> impl Iterator<Item = usize> + '_ {
    let mut nginx = Nginx::new(weights.len());
    let usable = vec![true; weights.len()];
    std::iter::from_fn(move || nginx.pick(weights, &usable))
}

#[test]
fn a_down_backend_passes_its_turns_and_keeps_its_place() {
    let weights = [5, 1, 1, 0];
    let pool = backends(&weights);
    let wrr = WeightedRoundRobin::new(&pool);
    let mut sequence = reference(&weights);
    for _ in 0..2 {
        assert_eq!(wrr.pick(&pool, &PickRequest::default()), sequence.next());
    }
    // While b is down, the picks are the smooth sequence with b's turns left out: still
    // O(1) on the schedule, and exact shares among a and c in every period.
    set_healthy(&pool, 1, false);
    let mut down = Vec::new();
    while down.len() < 600 {
        let expected = sequence.by_ref().find(|&i| i != 1);
        let got = wrr.pick(&pool, &PickRequest::default());
        assert_eq!(got, expected, "pick {}", down.len());
        down.push(got);
    }
    assert_eq!(counts(4, down), vec![500, 0, 100, 0]);
    // b comes back exactly where the sequence is: no burst, no reset.
    set_healthy(&pool, 1, true);
    for step in 0..70 {
        assert_eq!(wrr.pick(&pool, &PickRequest::default()), sequence.next(), "pick {step}");
    }
    for index in 0..3 {
        set_healthy(&pool, index, false);
    }
    assert_eq!(wrr.pick(&pool, &PickRequest::default()), None);
    let zero = backends(&[0, 0]);
    assert_eq!(WeightedRoundRobin::new(&zero).pick(&zero, &PickRequest::default()), None);
    assert_eq!(WeightedRoundRobin::new(&[]).pick(&[], &PickRequest::default()), None);
}

#[test]
fn shares_stay_exact_with_one_of_256_down() {
    let weights: Vec<u32> = (0..256).map(|i| 1 + i % 4).collect();
    let pool = backends(&weights);
    let wrr = WeightedRoundRobin::new(&pool);
    let period = wrr.schedule_len();
    assert_eq!(period, weights.iter().sum::<u32>() as usize);
    set_healthy(&pool, 77, false);
    // The worker starts on the schedule at position 0, so each run of `period - 2`
    // picks (backend 77 has weight 2) is one whole period.
    for _ in 0..3 {
        let window = picks(&wrr, &pool, period - 2);
        let mut expected: Vec<u64> = weights.iter().map(|&w| u64::from(w)).collect();
        expected[77] = 0;
        assert_eq!(counts(256, window.iter().map(|&i| Some(i))), expected);
    }
}

#[test]
fn a_long_run_of_down_turns_falls_back_to_the_loop() {
    let weights = vec![1u32; 100];
    let pool = backends(&weights);
    let wrr = WeightedRoundRobin::new(&pool);
    // 80 consecutive turns down: more than one pick may pass.
    const { assert!(80 > MAX_PASSED_TURNS) };
    for index in 10..90 {
        set_healthy(&pool, index, false);
    }
    // The switch to the loop carries the schedule's state over, which the loop evens out
    // within a bounded number of picks; from then on every usable backend gets exactly
    // one pick in every 20, and a down one none.
    let warm_up = picks(&wrr, &pool, 1000);
    assert!(warm_up.iter().all(|&i| !(10..90).contains(&i)), "{warm_up:?}");
    let all = picks(&wrr, &pool, 2000);
    for window in all.chunks(20) {
        let shares = counts(100, window.iter().map(|&i| Some(i)));
        for (index, &share) in shares.iter().enumerate() {
            assert_eq!(share, u64::from(!(10..90).contains(&index)), "{window:?}");
        }
    }
}

#[test]
fn schedules_that_would_be_too_big_use_the_loop() {
    let weights: Vec<u32> = (0..20).map(|i| 9_000 + i).collect();
    let pool = backends(&weights);
    let wrr = WeightedRoundRobin::new(&pool);
    assert_eq!(wrr.schedule_len(), 0);
    let all = picks(&wrr, &pool, weights.iter().sum::<u32>() as usize);
    let shares = counts(20, all.iter().map(|&i| Some(i)));
    assert_eq!(shares, weights.iter().map(|&w| u64::from(w)).collect::<Vec<_>>());
}
