//! Picking a backend with health applied: half-open trials, and what happens when no
//! backend is healthy (`when_all_unhealthy`).
//!
//! Strategies see a half-open backend as usable while its trial waits for a request;
//! the pick that lands on it claims the trial, so exactly one request at a time is the
//! trial. A pick that lands on a trial another request just claimed picks again.

use std::sync::atomic::Ordering::Relaxed;

use super::Trial;
use crate::balance::PickRequest;
use crate::config::WhenAllUnhealthy;
use crate::snapshot::Pool;

/// Strategy picks tried before one pass over the backends. A pick only misses when it
/// lands on a backend already tried or on a trial just claimed, so a few suffice.
const PICKS: usize = 8;

/// A backend index, with its half-open trial when the request is the trial.
pub type Picked<'p> = (usize, Option<Trial<'p>>);

/// Picks a backend of `pool` that is not in `tried`, by the pool's strategy and then by
/// one pass in pool order. `None` when no such backend is usable.
pub fn pick<'p>(pool: &'p Pool, request: &PickRequest<'_>, tried: &[usize]) -> Option<Picked<'p>> {
    let backends = &pool.backends;
    if pool.tiered {
        pool.follow_tier();
    }
    for _ in 0..PICKS.min(backends.len().max(1)) {
        let index = pool.strategy.pick(backends, request)?;
        if !tried.contains(&index) {
            if let Some(picked) = admit(pool, index) {
                return Some(picked);
            }
        }
    }
    let found = (0..backends.len())
        .filter(|index| !tried.contains(index) && backends[*index].is_usable())
        .find_map(|index| admit(pool, index));
    match found {
        Some(picked) => Some(picked),
        // A retry that found its tier spent falls to the next tier with an untried
        // usable backend, without moving the pool's tier for other requests.
        None if pool.tiered && !tried.is_empty() => next_tier(pool, tried),
        None => None,
    }
}

/// The first untried usable backend of the lowest tier above those `tried` spent.
fn next_tier<'p>(pool: &'p Pool, tried: &[usize]) -> Option<Picked<'p>> {
    let backends = &pool.backends;
    let untried = (0..backends.len()).filter(|index| !tried.contains(index));
    let usable = untried.filter(|index| backends[*index].is_usable_in_any_tier());
    let mut by_tier: Vec<usize> = usable.collect();
    by_tier.sort_by_key(|index| backends[*index].tier);
    by_tier.into_iter().find_map(|index| admit(pool, index))
}

/// `index` as a pick: a healthy backend as it is; a half-open one only if this request
/// claims its trial; any other in panic mode. Claiming comes first even in panic mode:
/// a pool of one ejected backend would otherwise never hold the trial that ends it.
fn admit(pool: &Pool, index: usize) -> Option<Picked<'_>> {
    let live = &pool.backends[index].live;
    if live.is_healthy() {
        return Some((index, None));
    }
    if let Some(trial) = Trial::claim(live) {
        return Some((index, Some(trial)));
    }
    pool.live.panic.load(Relaxed).then_some((index, None))
}

/// The first pick of a request, with `when_all_unhealthy` applied. `Err` carries the
/// cause of the 503.
pub fn choose<'p>(pool: &'p Pool, request: &PickRequest<'_>) -> Result<Picked<'p>, String> {
    if let Some(picked) = pick(pool, request, &[]) {
        if pool.live.panic.load(Relaxed) {
            pool.live.stats.local().panic.inc();
        }
        return Ok(picked);
    }
    if pool.settings.when_all_unhealthy == WhenAllUnhealthy::TryAll && enter_panic(pool) {
        if let Some(picked) = pick(pool, request, &[]) {
            if pool.live.panic.load(Relaxed) {
                pool.live.stats.local().panic.inc();
            }
            return Ok(picked);
        }
    }
    pool.live.stats.local().no_healthy.inc();
    Err(format!("no healthy backend in pool {}", pool.name))
}

/// Puts the pool in panic mode, unless no backend has a weight or one turned healthy
/// meanwhile. Returns whether picking again is worth it.
fn enter_panic(pool: &Pool) -> bool {
    let weighted = || pool.backends.iter().filter(|b| b.weight > 0 && b.is_active());
    if weighted().next().is_none() {
        return false;
    }
    if !pool.live.panic.swap(true, Relaxed) {
        tracing::warn!(
            pool = %pool.name,
            "no healthy backend; balancing over all {} backends (when_all_unhealthy = \"try_all\")",
            weighted().count(),
        );
    }
    // A backend that recovered just before the flag was set would not clear it.
    if weighted().any(|b| b.live.is_healthy()) {
        pool.live.panic.store(false, Relaxed);
    }
    true
}
