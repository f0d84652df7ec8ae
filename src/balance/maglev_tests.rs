//! Tests for the Maglev table: disruption, weights, order independence, failures.

use super::*;
use crate::balance::key::hash_bytes;
use crate::balance::testing::{backend, backends, counts, set_healthy};
use crate::rng;

const KEYS: u64 = 100_000;

fn key(i: u64) -> u64 {
    hash_bytes(format!("user-{i}").as_bytes())
}

/// The label each key maps to.
fn owners(pool: &[Backend], maglev: &Maglev) -> Vec<String> {
    (0..KEYS)
        .map(|i| pool[maglev.pick_key(pool, key(i)).expect("a backend")].label.clone())
        .collect()
}

#[test]
fn removing_one_of_ten_moves_few_keys() {
    let pool = backends(&[1; 10]);
    let before = owners(&pool, &Maglev::new(&pool, DEFAULT_TABLE_SIZE));
    let removed = pool[3].label.clone();
    let rest: Vec<Backend> =
        (0..10).filter(|&i| i != 3).map(|i| backend(&format!("10.0.0.{i}:80"), 1)).collect();
    let after = owners(&rest, &Maglev::new(&rest, DEFAULT_TABLE_SIZE));
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count() as f64;
    let kept: Vec<_> = before.iter().zip(&after).filter(|(b, _)| **b != removed).collect();
    let moved_kept = kept.iter().filter(|(b, a)| b != a).count() as f64;
    let (share, kept_share) = (moved / KEYS as f64, moved_kept / kept.len() as f64);
    assert!(share <= 0.12, "{:.2}% of keys moved", share * 100.0);
    assert!(kept_share <= 0.02, "{:.2}% of the others' keys moved", kept_share * 100.0);
}

#[test]
fn a_failed_backend_moves_only_its_own_keys() {
    let pool = backends(&[1; 10]);
    let maglev = Maglev::new(&pool, DEFAULT_TABLE_SIZE);
    let before = owners(&pool, &maglev);
    set_healthy(&pool, 3, false);
    let after = owners(&pool, &maglev);
    let mut spread = vec![0u64; 10];
    for (b, a) in before.iter().zip(&after) {
        if *b == pool[3].label {
            spread[pool.iter().position(|p| p.label == *a).expect("known")] += 1;
        } else {
            assert_eq!(b, a, "only the failed backend's keys move");
        }
    }
    // Its keys spread over all the others, not onto one neighbour.
    let moved: u64 = spread.iter().sum();
    assert_eq!(spread[3], 0);
    let each = moved / 9;
    assert!(spread.iter().enumerate().all(|(i, &n)| i == 3 || n > each / 2), "{spread:?}");
}

#[test]
fn entries_are_proportional_to_weight() {
    let pool = backends(&[1, 2, 3, 4, 0]);
    let maglev = Maglev::new(&pool, DEFAULT_TABLE_SIZE);
    let entries = counts(5, maglev.table.iter().map(|&i| Some(i as usize)));
    assert_eq!(entries[4], 0);
    for (i, &n) in entries.iter().take(4).enumerate() {
        let expected = DEFAULT_TABLE_SIZE as f64 * (i + 1) as f64 / 10.0;
        assert!((n as f64 - expected).abs() / expected < 0.01, "{entries:?}");
    }
}

#[test]
fn the_table_depends_only_on_identities_and_weights() {
    let forward = backends(&[1, 2, 3]);
    let reversed: Vec<Backend> =
        (0..3).rev().map(|i| backend(&format!("10.0.0.{i}:80"), i as u32 + 1)).collect();
    let (a, b) = (Maglev::new(&forward, 1_021), Maglev::new(&reversed, 1_021));
    for i in 0..10_000 {
        let (x, y) = (a.pick_key(&forward, key(i)), b.pick_key(&reversed, key(i)));
        assert_eq!(forward[x.unwrap()].label, reversed[y.unwrap()].label);
    }
    // Pinned: a change here remaps every key of every fleet that upgrades.
    let pool = backends(&[1; 4]);
    let maglev = Maglev::new(&pool, DEFAULT_TABLE_SIZE);
    let pinned: Vec<usize> = (0..8).map(|i| maglev.pick_key(&pool, key(i)).unwrap()).collect();
    assert_eq!(pinned, PINNED);
}

const PINNED: [usize; 8] = [1, 2, 3, 3, 2, 0, 1, 2];

#[test]
fn no_key_falls_back_to_weighted_random() {
    rng::seed_thread(21);
    let pool = backends(&[1, 3]);
    let maglev = Maglev::new(&pool, 1_021);
    let observed = counts(2, (0..4_000).map(|_| maglev.pick(&pool, &PickRequest::default())));
    assert!((2_800..3_200).contains(&observed[1]), "{observed:?}");
    let keyed = PickRequest { hash_key: Some(key(1)), sticky_id: None };
    let first = maglev.pick(&pool, &keyed);
    assert!((0..100).all(|_| maglev.pick(&pool, &keyed) == first));
}

#[test]
fn everything_down_gives_none_and_odd_sizes_are_replaced() {
    let pool = backends(&[1; 3]);
    let maglev = Maglev::new(&pool, 1_000);
    assert_eq!(maglev.table.len(), DEFAULT_TABLE_SIZE);
    (0..3).for_each(|i| set_healthy(&pool, i, false));
    assert_eq!(maglev.pick_key(&pool, 7), None);
    let zero = backends(&[0, 0]);
    assert_eq!(Maglev::new(&zero, 1_021).pick_key(&zero, 7), None);
    assert!(is_prime(65_537) && is_prime(5_000_011) && is_prime(1_021));
    assert!(!is_prime(65_536) && !is_prime(1) && !is_prime(1_023));
}
