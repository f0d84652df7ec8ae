//! `random`: weighted random, O(log n) per pick.
//!
//! [`WeightedRandom::new`] stores the cumulative weights once per snapshot; a pick draws a
//! number below the total from the thread's generator ([`crate::rng`], seeded once per
//! thread) and binary-searches it. An unusable backend costs a redraw, a few at most;
//! after that a single pass draws among the usable backends only, so a pick stays bounded
//! however many backends are down. A backend in slow start keeps a draw with the
//! probability of its ramp (rejection sampling), so its share follows its ramped weight
//! without rebuilding the cumulative table.

use super::{PickRequest, Strategy};
use crate::rng;
use crate::snapshot::Backend;

/// Redraws before falling back to the pass over usable backends.
const DRAWS: usize = 4;

/// Weighted random; see the module documentation.
#[derive(Debug)]
pub struct WeightedRandom {
    /// `cumulative[i]` is the sum of the weights of backends `0..=i`.
    cumulative: Box<[u64]>,
}

impl WeightedRandom {
    /// Precomputes the cumulative weights of `backends`.
    pub fn new(backends: &[Backend]) -> WeightedRandom {
        let cumulative = backends
            .iter()
            .scan(0u64, |sum, backend| {
                *sum += u64::from(backend.weight);
                Some(*sum)
            })
            .collect();
        WeightedRandom { cumulative }
    }

    /// The backend that the random number `draw` (below the total weight) selects.
    fn select(&self, draw: u64) -> usize {
        self.cumulative.partition_point(|&sum| sum <= draw)
    }

    /// A weighted random pick, with `next` as the source of random numbers below a bound.
    pub(crate) fn pick_with(
        &self,
        backends: &[Backend],
        mut below: impl FnMut(u64) -> u64,
    ) -> Option<usize> {
        let total = self.cumulative.last().copied().filter(|&total| total > 0)?;
        for _ in 0..DRAWS {
            let index = self.select(below(total));
            let backend = backends.get(index)?;
            // A backend in slow start keeps a draw with its ramp's probability.
            if backend.is_usable() && backend.ramp_permille().is_none_or(|p| below(1000) < p) {
                return Some(index);
            }
        }
        // Many are down (or ramping): one pass to total the usable weight (in thousandths,
        // ramps applied), one to find the draw.
        let usable = |b: &Backend| if b.is_usable() { b.effective_weight_milli() } else { 0 };
        let total: u64 = backends.iter().map(usable).sum();
        if total == 0 {
            return None;
        }
        let mut draw = below(total);
        for (index, backend) in backends.iter().enumerate() {
            let weight = usable(backend);
            if draw < weight {
                return Some(index);
            }
            draw -= weight;
        }
        debug_assert!(false, "the draw is below the usable total");
        None
    }
}

impl Strategy for WeightedRandom {
    fn pick(&self, backends: &[Backend], _request: &PickRequest<'_>) -> Option<usize> {
        self.pick_with(backends, rng::below)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{backends, counts, set_healthy};

    /// Pearson's chi-square statistic of `observed` against `weights`.
    fn chi_square(observed: &[u64], weights: &[u32]) -> f64 {
        let n: u64 = observed.iter().sum();
        let total: u32 = weights.iter().sum();
        let expected = weights.iter().map(|&w| n as f64 * f64::from(w) / f64::from(total));
        observed.iter().zip(expected).map(|(&o, e)| (o as f64 - e).powi(2) / e).sum()
    }

    #[test]
    fn chi_square_passes_at_p_0_001_for_weights_1_2_7() {
        // Critical value of chi-square with 2 degrees of freedom at p = 0.001.
        const CRITICAL: f64 = 13.816;
        let weights = [1, 2, 7];
        let pool = backends(&weights);
        let random = WeightedRandom::new(&pool);
        for seed in [1, 2, 3] {
            rng::seed_thread(seed);
            let picks = (0..100_000).map(|_| random.pick(&pool, &PickRequest::default()));
            let observed = counts(3, picks);
            let statistic = chi_square(&observed, &weights);
            assert!(statistic < CRITICAL, "seed {seed}: {observed:?} gives {statistic}");
        }
        // And the test can fail: a uniform pick does not pass it.
        let uniform = [33_333, 33_333, 33_334];
        assert!(chi_square(&uniform, &weights) > CRITICAL);
    }

    #[test]
    fn selects_by_cumulative_weight() {
        let pool = backends(&[2, 0, 3]);
        let random = WeightedRandom::new(&pool);
        let selected: Vec<usize> = (0..5).map(|draw| random.select(draw)).collect();
        assert_eq!(selected, vec![0, 0, 2, 2, 2]);
    }

    #[test]
    fn skips_unusable_backends_and_weight_zero() {
        rng::seed_thread(5);
        let pool = backends(&[1, 0, 1000, 1]);
        set_healthy(&pool, 2, false);
        let random = WeightedRandom::new(&pool);
        let observed = counts(4, (0..10_000).map(|_| random.pick(&pool, &PickRequest::default())));
        assert_eq!(observed[1] + observed[2], 0, "{observed:?}");
        assert!(observed[0].abs_diff(observed[3]) < 500, "{observed:?}");
        for index in [0, 3] {
            set_healthy(&pool, index, false);
        }
        assert_eq!(random.pick(&pool, &PickRequest::default()), None);
        let zero = backends(&[0, 0]);
        assert_eq!(WeightedRandom::new(&zero).pick(&zero, &PickRequest::default()), None);
        assert_eq!(WeightedRandom::new(&[]).pick(&[], &PickRequest::default()), None);
    }
}
