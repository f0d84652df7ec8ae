//! Rate limits (`[[limit]]`): one GCRA decision per request and limit, on a fixed-size
//! table shared by every worker ([`table`]), or on Redis for a fleet ([`store`]).
//!
//! GCRA keeps one number per key, the "theoretical arrival time" (TAT): when the key's
//! next request would conform at the configured rate. A request passes when the TAT is at
//! most `burst` intervals ahead of now, and pushes it one interval further. It lets
//! through `rate × elapsed + burst + 1` requests over any stretch, which is what nginx's
//! `limit_req` and HAProxy's `sc_http_req_rate` approximate.
//!
//! A [`Limiter`] is kept by its configuration ([`Registry`]): a reload that leaves a
//! `[[limit]]` unchanged keeps its table and counters; a changed one starts afresh.

pub mod conn;
pub mod report;
pub mod resp;
pub mod store;
pub mod table;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::config::{LimitConfig, LimitMode, OnStoreError};
use crate::shard::{Counter, Sharded};
use table::{Decision, Gcra, Table};

/// What a limit says of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Pass now.
    Pass,
    /// Pass after this wait (delay mode); the request's place is already taken.
    Wait(Duration),
    /// Refuse with 429; the request would conform after this long (`Retry-After`).
    Reject(Duration),
}

/// A limit's counters, per worker (`weir_limit_*`).
#[derive(Debug, Default)]
pub struct LimitStats {
    /// Requests passed at once.
    pub passed: Counter,
    /// Requests passed after a wait.
    pub delayed: Counter,
    /// Requests refused with 429.
    pub rejected: Counter,
    /// Requests with no key (the header or cookie absent): not limited.
    pub unkeyed: Counter,
    /// Keys still in use pushed out of the full table.
    pub evictions: Counter,
    /// Store calls that failed or timed out.
    pub store_errors: Counter,
    /// Requests decided without the store (`on_store_error`) because it failed.
    pub store_fallbacks: Counter,
}

/// One configured limit and its state.
#[derive(Debug)]
pub struct Limiter {
    /// Its configuration; also its identity.
    pub config: LimitConfig,
    table: Table,
    /// Seed of the local table's key hash, random per limiter, so no client can aim its
    /// keys at one bucket.
    seed: u64,
    gcra: Gcra,
    /// Counters, one shard per worker.
    pub stats: Sharded<LimitStats>,
    store: Option<store::Store>,
}

/// Nanoseconds since the first call in this process: the clock of every TAT. It starts
/// at one second so a TAT of 0 always lies in the past.
pub fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| Instant::now() - Duration::from_secs(1));
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl Limiter {
    /// A fresh limiter for `config`, in a process with `workers` workers.
    pub fn new(config: LimitConfig, workers: usize) -> Limiter {
        let interval = config.rate.interval_nanos();
        let delay_max = match config.mode {
            LimitMode::Reject => 0,
            LimitMode::Delay(bound) => u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX),
        };
        let gcra = Gcra { interval, tolerance: interval.saturating_mul(config.burst), delay_max };
        let store = config.store.as_ref().map(|address| store::Store::new(address, &config));
        Limiter {
            table: Table::new(config.table_size),
            seed: crate::rng::next_u64(),
            gcra,
            stats: Sharded::new(workers),
            store,
            config,
        }
    }

    /// The local table's memory in bytes: fixed, whatever the number of keys.
    pub fn table_bytes(&self) -> usize {
        self.table.bytes()
    }

    /// Decides a request whose key is `key`, and counts it.
    pub async fn check(&self, key: &[u8]) -> Verdict {
        let decision = match &self.store {
            Some(store) => match store.decide(&self.config.name, key, self.gcra).await {
                Ok(decision) => Some(decision),
                Err(error) => {
                    let stats = self.stats.local();
                    if !matches!(error, store::StoreError::Resting) {
                        stats.store_errors.inc();
                    }
                    stats.store_fallbacks.inc();
                    store.report(&self.config.name, &error);
                    None
                }
            },
            None => None,
        };
        let decision = match decision {
            Some(decision) => decision,
            None if self.store.is_some() && self.config.on_store_error == OnStoreError::Open => {
                Decision::Pass
            }
            None => self.local(key),
        };
        self.count(decision)
    }

    /// The local table's decision.
    fn local(&self, key: &[u8]) -> Decision {
        let hash = crate::balance::key::xxh64(key, self.seed);
        let (decision, evicted) = self.table.decide(hash, now_nanos(), self.gcra);
        if evicted {
            self.stats.local().evictions.inc();
        }
        decision
    }

    /// Counts a request without a key (not limited).
    pub fn unkeyed(&self) {
        self.stats.local().unkeyed.inc();
        self.stats.local().passed.inc();
    }

    fn count(&self, decision: Decision) -> Verdict {
        let stats = self.stats.local();
        match decision {
            Decision::Pass => {
                stats.passed.inc();
                Verdict::Pass
            }
            Decision::Wait(nanos) => {
                stats.delayed.inc();
                Verdict::Wait(Duration::from_nanos(nanos))
            }
            Decision::Reject(nanos) => {
                stats.rejected.inc();
                Verdict::Reject(Duration::from_nanos(nanos))
            }
        }
    }

    /// The sum of one counter over every worker.
    pub fn total(&self, read: fn(&LimitStats) -> &Counter) -> u64 {
        self.stats.iter().map(|stats| read(stats).get()).sum()
    }
}

/// The limits of one route, in the order it names them.
#[derive(Debug)]
pub struct RouteLimits {
    /// The limiters.
    pub limiters: Vec<Arc<Limiter>>,
    /// The key of `key = "route"`: the route's host and prefix, so it outlives reloads
    /// that keep the route.
    pub route_key: Box<[u8]>,
}

/// Keeps limiters by configuration across snapshots. Used only on the reload path.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    limiters: HashMap<LimitConfig, Arc<Limiter>>,
}

impl Registry {
    /// The limiters of `limits`, in order: the kept one for a configuration seen before,
    /// a fresh one otherwise. Those no longer configured are forgotten.
    pub fn build(&mut self, limits: &[LimitConfig], workers: usize) -> Vec<Arc<Limiter>> {
        let mut kept = HashMap::with_capacity(limits.len());
        let built = limits
            .iter()
            .map(|config| {
                let limiter = self.limiters.get(config).cloned();
                let limiter =
                    limiter.unwrap_or_else(|| Arc::new(Limiter::new(config.clone(), workers)));
                kept.insert(config.clone(), Arc::clone(&limiter));
                limiter
            })
            .collect();
        self.limiters = kept;
        built
    }
}
