//! The seed scenario, and a table that walks every transition of the state diagram on a
//! paused tokio clock, through the same entry points the data path and the health
//! thread use.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::select;
use super::*;
use crate::balance::PickRequest;
use crate::config::{
    BackendAddress, BackendConfig, Config, HealthConfig, PoolConfig, StrategyKind, WhenAllUnhealthy,
};
use crate::snapshot::{Registry, Snapshot};

/// A snapshot with one round-robin pool `web` of `n` backends on 127.0.0.1.
fn snapshot(n: usize, setup: fn(&mut PoolConfig)) -> (Registry, Arc<Config>, Snapshot) {
    let backends = (0..n)
        .map(|i| BackendConfig {
            address: BackendAddress::parse(&format!("127.0.0.1:{}", 10_000 + i)).unwrap(),
            weight: 1,
            resolve: crate::config::Resolve::Once,
        })
        .collect();
    let mut pool = PoolConfig::new("web", StrategyKind::RoundRobin, backends);
    pool.passive.base_ejection = Duration::from_secs(1);
    pool.passive.max_ejection = Duration::from_secs(3);
    setup(&mut pool);
    let mut config = Config::default();
    config.pools.push(pool);
    let config = Arc::new(config);
    let mut registry = Registry::new(1);
    let built = registry.build(&config, 1).expect("loopback resolves").publish();
    (registry, config, built)
}

fn probes(pool: &mut PoolConfig) {
    pool.health = Some(HealthConfig::default());
}

fn no_probes(_: &mut PoolConfig) {}

/// One input, on backend `.0` where it has one.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// This many passive failures (connect refused).
    Fail(usize, u32),
    /// One completed response.
    Succeed(usize),
    /// One probe result.
    Probe(usize, bool),
    /// The warden's timer fires.
    Timer(usize),
    /// A request claims the half-open trial and gives its verdict.
    Trial(usize, bool),
    /// Let time pass (milliseconds).
    Advance(u64),
    /// A request arrives: `ok`, `panic` (balanced over all) or `503`.
    Choose,
}

/// One row of the table: a pool, then steps, each with the state of every backend after
/// it (space-separated) and a text the touched backend's reason (or the verdict of
/// `Choose`) must contain.
struct Row {
    name: &'static str,
    backends: usize,
    setup: fn(&mut PoolConfig),
    steps: &'static [(Step, &'static str, &'static str)],
}

async fn run(step: Step, snapshot: &Snapshot) -> (Option<usize>, String) {
    let pool = &snapshot.pools[0];
    let rules = Rules::of(&pool.settings);
    let subject = |i: usize| Subject::of(&pool.name, &pool.backends[i]);
    let touched = match step {
        Step::Fail(i, n) => {
            (0..n).for_each(|_| observe(subject(i), rules, Observed::Failure(Cause::Connect)));
            Some(i)
        }
        Step::Succeed(i) => {
            observe(subject(i), rules, Observed::Success);
            Some(i)
        }
        Step::Probe(i, ok) => {
            probe_result(subject(i), rules, ok, "connection refused");
            Some(i)
        }
        Step::Timer(i) => {
            step_event(subject(i), rules);
            Some(i)
        }
        Step::Trial(i, ok) => {
            let trial = Trial::claim(&pool.backends[i].live).expect("a trial awaits");
            assert!(Trial::claim(&pool.backends[i].live).is_none(), "one trial at a time");
            let verdict = if ok { Observed::Success } else { Observed::Failure(Cause::Reset) };
            trial.resolve(subject(i), rules, verdict);
            Some(i)
        }
        Step::Advance(ms) => {
            tokio::time::advance(Duration::from_millis(ms)).await;
            None
        }
        Step::Choose => {
            let verdict = match select::choose(pool, &PickRequest::default()) {
                Err(_) => "503",
                Ok(_) if pool.live.panic.load(Relaxed) => "panic",
                Ok(_) => "ok",
            };
            return (None, verdict.to_string());
        }
    };
    let reason = touched.map(|i| pool.backends[i].live.health.status().reason);
    (touched, reason.unwrap_or_default())
}

fn step_event(subject: Subject<'_>, rules: Rules<'_>) {
    step(subject, rules, Event::Timer);
}

fn states(snapshot: &Snapshot) -> String {
    let pool = &snapshot.pools[0];
    let names: Vec<&str> = pool.backends.iter().map(|b| b.live.health.status().state).collect();
    names.join(" ")
}

const TABLE: &[Row] = &[
    Row {
        name: "probe fall and rise thresholds",
        backends: 1,
        setup: probes,
        steps: &[
            (Step::Probe(0, false), "healthy", ""),
            (Step::Probe(0, false), "healthy", ""),
            (Step::Probe(0, true), "healthy", ""),
            (Step::Probe(0, false), "healthy", ""),
            (Step::Probe(0, false), "healthy", ""),
            (Step::Probe(0, false), "unhealthy", "3 probes failed in a row"),
            (Step::Probe(0, true), "unhealthy", ""),
            (Step::Probe(0, true), "healthy", "2 probes passed in a row"),
        ],
    },
    Row {
        name: "passive ejection with growing backoff and half-open trials",
        backends: 2,
        setup: no_probes,
        steps: &[
            (Step::Fail(0, 4), "healthy healthy", ""),
            (Step::Succeed(0), "healthy healthy", ""),
            (Step::Fail(0, 4), "healthy healthy", ""),
            (Step::Fail(0, 1), "ejected healthy", "5 consecutive connect failures, for 1s"),
            (Step::Advance(999), "ejected healthy", ""),
            (Step::Timer(0), "ejected healthy", ""),
            (Step::Advance(1), "ejected healthy", ""),
            (Step::Timer(0), "half_open healthy", "the next request is a trial"),
            (Step::Trial(0, false), "ejected healthy", "trial request failed (reset), for 2s"),
            (Step::Advance(2000), "ejected healthy", ""),
            (Step::Timer(0), "half_open healthy", ""),
            (Step::Trial(0, false), "ejected healthy", "for 3s"),
            (Step::Advance(3000), "ejected healthy", ""),
            (Step::Timer(0), "half_open healthy", ""),
            (Step::Trial(0, false), "ejected healthy", "for 3s"),
            (Step::Advance(3000), "ejected healthy", ""),
            (Step::Timer(0), "half_open healthy", ""),
            (Step::Trial(0, true), "healthy healthy", "trial request succeeded"),
            (Step::Fail(0, 5), "ejected healthy", "for 3s"),
        ],
    },
    Row {
        name: "max-ejection guard, and at least one may always go",
        backends: 3,
        setup: no_probes,
        steps: &[
            (Step::Fail(0, 5), "ejected healthy healthy", "for 1s"),
            (Step::Fail(1, 5), "ejected healthy healthy", ""),
            // The refused trip reset the count: four more failures do not eject.
            (Step::Fail(1, 4), "ejected healthy healthy", ""),
            (Step::Advance(1000), "ejected healthy healthy", ""),
            (Step::Timer(0), "half_open healthy healthy", ""),
            (Step::Trial(0, true), "healthy healthy healthy", ""),
            (Step::Fail(1, 1), "healthy ejected healthy", "5 consecutive"),
        ],
    },
    Row {
        name: "a passed probe ends a passive ejection",
        backends: 2,
        setup: probes,
        steps: &[
            (Step::Fail(0, 5), "ejected healthy", "until a probe passes"),
            (Step::Advance(60_000), "ejected healthy", ""),
            (Step::Timer(0), "ejected healthy", ""),
            (Step::Probe(0, true), "healthy healthy", "ends the passive ejection"),
        ],
    },
    Row {
        name: "when_all_unhealthy = fail answers 503",
        backends: 2,
        setup: |pool| {
            probes(pool);
            pool.when_all_unhealthy = WhenAllUnhealthy::Fail;
            pool.health.as_mut().unwrap().unhealthy_threshold = 1;
        },
        steps: &[
            (Step::Probe(0, false), "unhealthy healthy", ""),
            (Step::Choose, "unhealthy healthy", "ok"),
            (Step::Probe(1, false), "unhealthy unhealthy", ""),
            (Step::Choose, "unhealthy unhealthy", "503"),
        ],
    },
    Row {
        name: "when_all_unhealthy = try_all balances over all until one recovers",
        backends: 2,
        setup: |pool| {
            probes(pool);
            pool.health.as_mut().unwrap().unhealthy_threshold = 1;
            pool.health.as_mut().unwrap().healthy_threshold = 1;
        },
        steps: &[
            (Step::Probe(0, false), "unhealthy healthy", ""),
            (Step::Probe(1, false), "unhealthy unhealthy", ""),
            (Step::Choose, "unhealthy unhealthy", "panic"),
            (Step::Choose, "unhealthy unhealthy", "panic"),
            (Step::Probe(1, true), "unhealthy healthy", ""),
            (Step::Choose, "unhealthy healthy", "ok"),
        ],
    },
    Row {
        name: "a pool of one: ejected, balanced over in panic, ended by a half-open trial",
        backends: 1,
        setup: no_probes,
        steps: &[
            (Step::Fail(0, 5), "ejected", "5 consecutive connect failures, for 1s"),
            (Step::Choose, "ejected", "panic"),
            (Step::Advance(1000), "ejected", ""),
            (Step::Timer(0), "half_open", ""),
            (Step::Choose, "half_open", "panic"),
            (Step::Trial(0, true), "healthy", "trial request succeeded"),
            (Step::Choose, "healthy", "ok"),
        ],
    },
];

#[tokio::test(start_paused = true)]
async fn every_transition_of_the_state_diagram() {
    for row in TABLE {
        let (_registry, _config, snapshot) = snapshot(row.backends, row.setup);
        for (number, &(step, expected, reason)) in row.steps.iter().enumerate() {
            let (_, said) = run(step, &snapshot).await;
            let at = format!("{}, step {number} ({step:?})", row.name);
            assert_eq!(states(&snapshot), expected, "{at}");
            assert!(said.contains(reason), "{at}: {said:?} lacks {reason:?}");
        }
        // The published bits agree with the machines.
        for backend in &snapshot.pools[0].backends {
            let machine = backend.live.health.machine().is_healthy();
            assert_eq!(backend.live.is_healthy(), machine, "{}", row.name);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn seed_scenario_passive_trip_then_probe_then_one_failure() {
    // The Zig balancer's bug: the breaker tripped, a probe marked the backend up, and the
    // breaker's stale count re-tripped it on the next single failure.
    let (_registry, _config, snapshot) = snapshot(2, probes);
    let pool = &snapshot.pools[0];
    let (backend, rules) = (&pool.backends[0], Rules::of(&pool.settings));
    let subject = Subject::of(&pool.name, backend);
    for _ in 0..5 {
        observe(subject, rules, Observed::Failure(Cause::Connect));
    }
    assert_eq!(backend.live.health.status().state, "ejected");
    assert!(!backend.live.is_healthy());
    probe_result(subject, rules, true, "");
    assert!(backend.live.is_healthy());
    observe(subject, rules, Observed::Failure(Cause::Connect));
    let status = backend.live.health.status();
    assert_eq!((status.state, status.healthy), ("healthy", true));
    assert_eq!(status.consecutive_failures, 1, "one failure counted since the transition");
    assert_eq!(backend.live.stats.iter().map(|s| s.ejections.get()).sum::<u64>(), 1);
    assert_eq!(pool.live.ejected.load(Relaxed), 0, "the ejection slot was given back");
    assert!(backend.live.is_healthy());
}

#[tokio::test(start_paused = true)]
async fn slow_start_ramps_from_ten_to_a_hundred_percent() {
    let (_registry, _config, snapshot) = snapshot(2, |pool| {
        pool.slow_start = Some(Duration::from_secs(10));
        pool.health = Some(HealthConfig { healthy_threshold: 1, ..HealthConfig::default() });
    });
    let pool = &snapshot.pools[0];
    let (backend, rules) = (&pool.backends[0], Rules::of(&pool.settings));
    let subject = Subject::of(&pool.name, backend);
    // Backends present at startup do not ramp.
    assert_eq!(backend.ramp_permille(), None);
    for _ in 0..3 {
        probe_result(subject, rules, false, "down");
    }
    probe_result(subject, rules, true, "");
    assert!(backend.live.is_healthy());
    let mut seen = Vec::new();
    for _ in 0..=4 {
        seen.push(backend.ramp_permille());
        tokio::time::advance(Duration::from_millis(2500)).await;
    }
    assert_eq!(seen, vec![Some(100), Some(325), Some(550), Some(775), None]);
    assert_eq!(backend.effective_weight_milli(), 1000);
}

#[tokio::test(start_paused = true)]
async fn a_backend_joining_by_reload_ramps() {
    let (mut registry, config, _first) = snapshot(1, |pool| {
        pool.slow_start = Some(Duration::from_secs(4));
    });
    let mut grown = (*config).clone();
    let address = BackendAddress::parse("127.0.0.1:10001").unwrap();
    grown.pools[0].backends.push(BackendConfig {
        address,
        weight: 2,
        resolve: crate::config::Resolve::Once,
    });
    let second = registry.build(&Arc::new(grown), 2).unwrap().publish();
    let (old, new) = (&second.pools[0].backends[0], &second.pools[0].backends[1]);
    assert_eq!(old.ramp_permille(), None);
    assert_eq!(new.effective_weight_milli(), 200, "10% of weight 2");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(new.effective_weight_milli(), 1100);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(new.effective_weight_milli(), 2000);
}
