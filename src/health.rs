//! Backend health: one state machine per backend, fed by active probes and by the
//! outcomes of real requests.
//!
//! # One owner
//! Each [`BackendLive`] (keyed by backend identity, so it survives snapshot swaps and
//! reloads) holds a [`Health`]. Its [`machine::Machine`] keeps one flag per source, as
//! Envoy does, and the backend is healthy when no flag is set:
//!
//! ```text
//!                  probes: unhealthy_threshold failures in a row
//!        +--------------------------------------------------------------+
//!        |                                                              v
//!   +---------+  consecutive_failures in a row     +----------+   +-----------+
//!   | healthy | ---------------------------------> | ejected  |   | unhealthy |
//!   +---------+  (max-ejection guard permitting)   +----------+   |  (active  |
//!     ^  ^  ^                                       |       |     |   flag)   |
//!     |  |  |   one probe passes (probes configured)|       |     +-----------+
//!     |  |  +---------------------------------------+       |          |
//!     |  |                  ejection over (no probes)       v          |
//!     |  |   trial succeeds                           +-----------+     |
//!     |  +------------------------------------------- | half_open |     |
//!     |                                               +-----------+     |
//!     |              trial fails: ejected again for base × (n + 1)      |
//!     |                                                                 |
//!     +-----------------------------------------------------------------+
//!                  probes: healthy_threshold passes in a row
//! ```
//!
//! - The passive failure count lives in an atomic on the request path and is reset on
//!   every transition, whatever its source; so "passive trip, probe passes, one more
//!   failure" leaves the backend healthy (see `machine_tests.rs`).
//! - Probe streaks reset when the active flag changes, and on the opposite result.
//! - Failures seen while the backend is already unhealthy are not counted.
//! - An ejection lasts `base_ejection × n` (at most `max_ejection`), n counting
//!   consecutive ejections; each `base_ejection` spent un-ejected takes one off n.
//! - At most `max_ejection_percent` of a pool is ejected at once, but always at least one
//!   backend may be (Envoy's rule); a trip the guard refuses resets the count.
//!
//! # Publication
//! The result is one `AtomicBool` per backend, [`BackendLive::healthy`], next to the
//! other per-backend atomics the strategies already read: a strategy checks it with one
//! relaxed load, and it needs no rebuild on reload (a per-pool bitmap would be indexed
//! by position and rebuilt with every snapshot). The machine itself sits behind a mutex
//! that only transitions, probes and the admin API take; the request path takes it only
//! when a failure crosses the threshold or a half-open trial ends.

pub mod grpc_probe;
pub mod h2_probe;
pub mod machine;
pub mod probe;
pub mod select;
pub mod service;

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::snapshot::{Backend, BackendLive};
pub use machine::{Cause, Change, Event, Machine, Passive, Rules};

const NO_TRIAL: u8 = 0;
const TRIAL_AWAITING: u8 = 1;
const TRIAL_CLAIMED: u8 = 2;
/// Weight share of a backend at the start of its slow start, as in Envoy's
/// `min_weight_percent` default.
pub const RAMP_FLOOR_PERMILLE: u64 = 100;

/// The health of one backend; see the module documentation.
#[derive(Debug)]
pub struct Health {
    /// Passive failures in a row since the last success or transition.
    failures: AtomicU32,
    /// [`Cause::bit`]s of those failures.
    kinds: AtomicU8,
    /// The half-open trial: none, awaiting a request, or claimed by one.
    trial: AtomicU8,
    /// Slow start: when it began, as [`stamp`] nanoseconds; 0 when not ramping.
    ramp_since: AtomicU64,
    /// Slow start: its window in nanoseconds.
    ramp_window: AtomicU64,
    machine: Mutex<Machine>,
    /// Wakes this backend's warden in the health thread (a new ejection has a timer).
    wake: Notify,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            failures: AtomicU32::new(0),
            kinds: AtomicU8::new(0),
            trial: AtomicU8::new(NO_TRIAL),
            ramp_since: AtomicU64::new(0),
            ramp_window: AtomicU64::new(0),
            machine: Mutex::new(Machine::new(Instant::now())),
            wake: Notify::new(),
        }
    }
}

/// What one exchange told passive detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// A completed response whose status is not a failure status.
    Success,
    /// A failure of this kind.
    Failure(Cause),
}

/// The state of a backend for the admin API and logs.
#[derive(Clone, Debug)]
pub struct Status {
    /// No flag set.
    pub healthy: bool,
    /// `healthy`, `unhealthy`, `ejected`, `half_open` or `not_serving`.
    pub state: &'static str,
    /// Why it last changed.
    pub reason: String,
    /// When it last changed.
    pub since: SystemTime,
    /// Consecutive ejections (the multiplier of the next ejection time).
    pub ejections: u32,
    /// Passive failures counted since the last success or transition.
    pub consecutive_failures: u32,
}

/// A backend as the health module addresses it: live state plus names for the log.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// The live state.
    pub live: &'a BackendLive,
    /// Pool name.
    pub pool: &'a str,
    /// `HOST:PORT`.
    pub label: &'a str,
}

impl<'a> Subject<'a> {
    /// `backend` of pool `pool`.
    pub fn of(pool: &'a str, backend: &'a Backend) -> Subject<'a> {
        Subject { live: &backend.live, pool, label: &backend.label }
    }
}

impl Health {
    /// The machine, for reading (tests, admin) or stepping.
    pub fn machine(&self) -> MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The state for the admin API.
    pub fn status(&self) -> Status {
        let machine = self.machine();
        Status {
            healthy: machine.is_healthy(),
            state: machine.state_name(),
            reason: machine.reason.clone(),
            since: machine.since_wall,
            ejections: machine.ejections,
            consecutive_failures: self.failures.load(Relaxed),
        }
    }

    /// Passive failures counted since the last success or transition.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Relaxed)
    }

    /// Whether a half-open trial waits for a request.
    pub fn awaits_trial(&self) -> bool {
        self.trial.load(Relaxed) == TRIAL_AWAITING
    }

    /// Resolves when the warden should look at the state again.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Starts a slow start of `window` at `now` (nothing without a window).
    pub fn start_ramp(&self, window: Option<Duration>, now: Instant) {
        if let Some(window) = window.filter(|w| !w.is_zero()) {
            self.ramp_window.store(window.as_nanos().min(u128::from(u64::MAX)) as u64, Relaxed);
            self.ramp_since.store(stamp(now), Relaxed);
        }
    }

    /// The weight share while slow start lasts, in permille (100 to 1000); `None` when
    /// not ramping. Reads the clock only while ramping.
    pub fn ramp_permille(&self) -> Option<u64> {
        let since = self.ramp_since.load(Relaxed);
        if since == 0 {
            return None;
        }
        let elapsed = stamp(Instant::now()).saturating_sub(since);
        let window = self.ramp_window.load(Relaxed);
        if elapsed >= window {
            // Over: later picks skip the clock. A racing restart of the ramp wins.
            let _ = self.ramp_since.compare_exchange(since, 0, Relaxed, Relaxed);
            return None;
        }
        let span = 1000 - RAMP_FLOOR_PERMILLE;
        let ramp = u128::from(span) * u128::from(elapsed) / u128::from(window.max(1));
        Some(RAMP_FLOOR_PERMILLE + ramp as u64)
    }
}

/// Nanoseconds since a process-wide origin, plus one (0 means "not set").
fn stamp(now: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now)
    });
    now.saturating_duration_since(epoch).as_nanos().min(u128::from(u64::MAX - 1)) as u64 + 1
}

/// Feeds one exchange's outcome to passive detection. Allocates nothing and takes no
/// lock, except when a failure trips an ejection.
pub fn observe(subject: Subject<'_>, rules: Rules<'_>, observed: Observed) {
    let health = &subject.live.health;
    match observed {
        Observed::Success => {
            // A load first: a healthy backend's line stays shared between workers.
            if health.failures.load(Relaxed) != 0 {
                health.failures.store(0, Relaxed);
                health.kinds.store(0, Relaxed);
            }
        }
        Observed::Failure(cause) => {
            let threshold = rules.passive.consecutive_failures;
            if threshold == 0 || !subject.live.is_healthy() {
                return;
            }
            health.kinds.fetch_or(cause.bit(), Relaxed);
            let failures = health.failures.fetch_add(1, Relaxed) + 1;
            if failures == threshold {
                trip(subject, rules, failures);
            }
        }
    }
}

/// The failure count reached the threshold: eject, if the guard permits.
fn trip(subject: Subject<'_>, rules: Rules<'_>, failures: u32) {
    let health = &subject.live.health;
    let pool = &subject.live.pool;
    let kinds = health.kinds.load(Relaxed);
    if !pool.reserve_ejection(rules.passive.max_ejection_percent) {
        health.failures.store(0, Relaxed);
        health.kinds.store(0, Relaxed);
        let what = machine::describe_failures(failures, kinds);
        tracing::warn!(
            pool = subject.pool,
            "backend {} not ejected after {what}: max_ejection_percent ({}%) of the pool is \
             already ejected",
            subject.label,
            rules.passive.max_ejection_percent,
        );
        return;
    }
    let mut machine = health.machine();
    match machine.step(Event::Trip { failures, kinds }, rules, Instant::now()) {
        Some(change) => apply(subject, rules, &machine, change),
        None => {
            pool.release_ejection();
            health.failures.store(0, Relaxed);
        }
    }
}

/// Feeds one probe result (from the health thread).
pub fn probe_result(subject: Subject<'_>, rules: Rules<'_>, ok: bool, detail: &str) {
    if !ok {
        subject.live.stats.local().probe_failures.inc();
    }
    step(subject, rules, Event::Probe { ok, detail });
}

/// Steps the machine with `event` at the current time, and publishes any change.
pub fn step(subject: Subject<'_>, rules: Rules<'_>, event: Event<'_>) {
    let mut machine = subject.live.health.machine();
    if let Some(change) = machine.step(event, rules, Instant::now()) {
        apply(subject, rules, &machine, change);
    }
}

/// Publishes a change: counters, the healthy bit, the ejection count, the trial, slow
/// start, panic mode, metrics and the log. Runs with the machine locked.
fn apply(subject: Subject<'_>, rules: Rules<'_>, machine: &Machine, change: Change) {
    let (live, health) = (subject.live, &subject.live.health);
    // Counters reset on every transition, whatever its source.
    health.failures.store(0, Relaxed);
    health.kinds.store(0, Relaxed);
    live.healthy.store(change.healthy, Relaxed);
    if change.passive_before != Passive::Clear && machine.passive == Passive::Clear {
        live.pool.release_ejection();
    }
    let trial = if machine.passive == Passive::HalfOpen { TRIAL_AWAITING } else { NO_TRIAL };
    health.trial.store(trial, Relaxed);
    if change.ejected {
        live.stats.local().ejections.inc();
        health.wake.notify_one();
    }
    if change.healthy && !change.was_healthy {
        health.start_ramp(rules.slow_start, Instant::now());
        live.pool.leave_panic(subject.pool, subject.label);
    }
    let state = machine.state_name();
    tracing::info!(pool = subject.pool, "backend {} {state}: {}", subject.label, change.reason);
}

/// A claimed half-open trial: the request that holds it decides the backend's fate. A
/// trial dropped without a verdict (the client went away) is offered to the next request.
#[derive(Debug)]
pub struct Trial<'a> {
    live: &'a BackendLive,
    done: bool,
}

impl<'a> Trial<'a> {
    /// Claims `live`'s trial, if one awaits a request.
    pub fn claim(live: &'a BackendLive) -> Option<Trial<'a>> {
        let health = &live.health;
        let claimed =
            health.trial.compare_exchange(TRIAL_AWAITING, TRIAL_CLAIMED, Relaxed, Relaxed);
        claimed.ok().map(|_| Trial { live, done: false })
    }

    /// Gives the verdict.
    pub fn resolve(mut self, subject: Subject<'_>, rules: Rules<'_>, observed: Observed) {
        self.done = true;
        let health = &self.live.health;
        // A probe or reload may have ended the trial meanwhile; then there is no verdict.
        if health.trial.compare_exchange(TRIAL_CLAIMED, NO_TRIAL, Relaxed, Relaxed).is_err() {
            return;
        }
        let (ok, cause) = match observed {
            Observed::Success => (true, None),
            Observed::Failure(cause) => (false, Some(cause)),
        };
        step(subject, rules, Event::Trial { ok, cause });
    }
}

impl Drop for Trial<'_> {
    fn drop(&mut self) {
        if !self.done {
            let trial = &self.live.health.trial;
            let _ = trial.compare_exchange(TRIAL_CLAIMED, TRIAL_AWAITING, Relaxed, Relaxed);
        }
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
