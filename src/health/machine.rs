//! The health state machine of one backend, without threads, atomics or clocks of its
//! own: every event comes with `now`, so it replays exactly in tests.
//!
//! Two sources each own one flag, as in Envoy:
//! - **active** (`FAILED_ACTIVE_HC`): set after `unhealthy_threshold` failed probes in a
//!   row, cleared after `healthy_threshold` passed probes in a row;
//! - **passive** (`FAILED_OUTLIER_CHECK`): set when real traffic failed
//!   `consecutive_failures` times in a row (the caller counts), cleared by one passed
//!   probe when probes are configured, else by a half-open trial request once the
//!   ejection time is over.
//!
//! The backend is healthy when neither flag is set. The caller resets its count of
//! passive failures on every [`Change`], which is what makes "trip, probe passes, one
//! failure" leave the backend healthy.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::{HealthConfig, PassiveConfig, PoolConfig};

/// What the passive flag is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Passive {
    /// Not ejected.
    Clear,
    /// Ejected until `until` (without probes; with probes, until a probe passes).
    Ejected {
        /// When the ejection time is over.
        until: Instant,
    },
    /// The ejection time is over and no probe decides: the next request is a trial.
    HalfOpen,
}

/// What failed, for counting and for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The connect was refused or failed.
    Connect,
    /// The connect timed out.
    ConnectTimeout,
    /// The backend closed or reset the connection before a whole response.
    Reset,
    /// No response head within the response timeout.
    Timeout,
    /// A status listed in `failure_statuses`.
    Status(u16),
    /// A response weir refused to relay (bad framing).
    BadResponse,
}

impl Cause {
    /// Bit of this kind in a set of kinds (see [`describe_failures`]).
    pub fn bit(self) -> u8 {
        match self {
            Cause::Connect => 1,
            Cause::ConnectTimeout => 2,
            Cause::Reset => 4,
            Cause::Timeout => 8,
            Cause::Status(_) => 16,
            Cause::BadResponse => 32,
        }
    }

    /// The kind in words.
    pub fn name(self) -> &'static str {
        match self {
            Cause::Connect => "connect failure",
            Cause::ConnectTimeout => "connect timeout",
            Cause::Reset => "reset",
            Cause::Timeout => "response timeout",
            Cause::Status(_) => "failure status",
            Cause::BadResponse => "bad response",
        }
    }
}

/// Every kind, in the order [`describe_failures`] names them.
const CAUSES: [Cause; 6] = [
    Cause::Connect,
    Cause::ConnectTimeout,
    Cause::Reset,
    Cause::Timeout,
    Cause::Status(0),
    Cause::BadResponse,
];

/// `5 consecutive connect failures`, or `5 consecutive failures (reset, response timeout)`
/// when the kinds in `kinds` (a set of [`Cause::bit`]s) were mixed.
pub fn describe_failures(count: u32, kinds: u8) -> String {
    let names: Vec<&str> =
        CAUSES.iter().filter(|c| kinds & c.bit() != 0).map(|c| c.name()).collect();
    match names.as_slice() {
        [one] if count == 1 => format!("1 {one}"),
        [one] => format!("{count} consecutive {one}s"),
        _ => format!("{count} consecutive failures ({})", names.join(", ")),
    }
}

/// One input to the machine.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// An active probe finished; `detail` says why it failed.
    Probe {
        /// It passed.
        ok: bool,
        /// The failure, for the log.
        detail: &'a str,
    },
    /// The caller counted `failures` passive failures in a row, of the kinds in `kinds`,
    /// and the max-ejection guard allows an ejection.
    Trip {
        /// The count.
        failures: u32,
        /// [`Cause::bit`]s seen.
        kinds: u8,
    },
    /// The warden's timer: the ejection time may be over.
    Timer,
    /// The half-open trial request finished.
    Trial {
        /// It succeeded.
        ok: bool,
        /// Why it failed.
        cause: Option<Cause>,
    },
    /// Probes were turned off by a reload: the active flag no longer has an owner.
    ProbesRemoved,
    /// The discovery source reported the backend's readiness (on every snapshot
    /// published; only a change is a transition).
    Source {
        /// The source says it serves.
        serving: bool,
    },
}

/// The configuration the machine applies.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    /// Active probes, if configured.
    pub probes: Option<&'a HealthConfig>,
    /// Passive ejection.
    pub passive: &'a PassiveConfig,
    /// Slow-start window for a backend that recovers.
    pub slow_start: Option<Duration>,
}

impl<'a> Rules<'a> {
    /// The rules of a pool.
    pub fn of(settings: &'a PoolConfig) -> Rules<'a> {
        Rules {
            probes: settings.health.as_ref(),
            passive: &settings.passive,
            slow_start: settings.slow_start,
        }
    }
}

/// A transition, for the caller to publish and log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Healthy before.
    pub was_healthy: bool,
    /// Healthy after.
    pub healthy: bool,
    /// The passive flag before.
    pub passive_before: Passive,
    /// This change is a new ejection.
    pub ejected: bool,
    /// Why, for the log (`5 consecutive connect failures, for 20s`).
    pub reason: String,
}

/// The state of one backend; see the module documentation.
#[derive(Clone, Debug)]
pub struct Machine {
    /// The active flag.
    pub active_failed: bool,
    /// Passed probes in a row since the last failed one or the last active transition.
    pub probe_passes: u32,
    /// Failed probes in a row since the last passed one or the last active transition.
    pub probe_failures: u32,
    /// The passive flag.
    pub passive: Passive,
    /// The source flag (Envoy's EDS health status): the discovery source says the
    /// backend does not serve (Kubernetes `serving: false`).
    pub source_down: bool,
    /// Consecutive ejections: the next ejection lasts `base × (this + 1)`.
    pub ejections: u32,
    /// When the passive flag was last cleared: each `base_ejection` since then takes one
    /// off `ejections`.
    pub clear_since: Instant,
    /// When the state last changed.
    pub since: Instant,
    /// The same, on the wall clock, for the admin API.
    pub since_wall: SystemTime,
    /// Why the state last changed.
    pub reason: String,
}

impl Machine {
    /// A backend starts healthy, as in HAProxy: traffic flows at once, and a dead backend
    /// is found by its first failures.
    pub fn new(now: Instant) -> Machine {
        Machine {
            active_failed: false,
            probe_passes: 0,
            probe_failures: 0,
            passive: Passive::Clear,
            source_down: false,
            ejections: 0,
            clear_since: now,
            since: now,
            since_wall: SystemTime::now(),
            reason: "started".to_string(),
        }
    }

    /// Whether no flag is set.
    pub fn is_healthy(&self) -> bool {
        !self.active_failed && self.passive == Passive::Clear && !self.source_down
    }

    /// The state in one word: `not_serving` (its source says so), `healthy`,
    /// `unhealthy` (failed probes), `ejected` or `half_open`.
    pub fn state_name(&self) -> &'static str {
        if self.source_down {
            return "not_serving";
        }
        match (self.active_failed, self.passive) {
            (true, _) => "unhealthy",
            (false, Passive::Clear) => "healthy",
            (false, Passive::Ejected { .. }) => "ejected",
            (false, Passive::HalfOpen) => "half_open",
        }
    }

    /// Applies `event` at `now`; returns the change, if any.
    pub fn step(&mut self, event: Event<'_>, rules: Rules<'_>, now: Instant) -> Option<Change> {
        let (was_healthy, passive_before) = (self.is_healthy(), self.passive);
        let (reason, ejected) = match event {
            Event::Probe { ok: true, .. } => (self.probe_passed(rules)?, false),
            Event::Probe { ok: false, detail } => (self.probe_failed(rules, detail)?, false),
            Event::Trip { failures, kinds } if self.passive == Passive::Clear => {
                let what = describe_failures(failures, kinds);
                (self.eject(rules, now, &what)?, true)
            }
            Event::Trip { .. } => return None,
            Event::Timer => (self.expire(rules, now)?, false),
            Event::Trial { ok: true, .. } if self.passive == Passive::HalfOpen => {
                self.passive = Passive::Clear;
                self.clear_since = now;
                ("the half-open trial request succeeded".to_string(), false)
            }
            Event::Trial { ok: false, cause } if self.passive == Passive::HalfOpen => {
                let what = match cause {
                    Some(cause) => format!("the half-open trial request failed ({})", cause.name()),
                    None => "the half-open trial request failed".to_string(),
                };
                (self.eject(rules, now, &what)?, true)
            }
            Event::Trial { .. } => return None,
            Event::ProbesRemoved if self.active_failed => {
                self.active_failed = false;
                ("probes were turned off".to_string(), false)
            }
            Event::ProbesRemoved => return None,
            Event::Source { serving } if serving == self.source_down => {
                self.source_down = !serving;
                let what = if serving { "serves again" } else { "does not serve" };
                (format!("its discovery source says it {what}"), false)
            }
            Event::Source { .. } => return None,
        };
        self.since = now;
        self.since_wall = SystemTime::now();
        self.reason.clone_from(&reason);
        let healthy = self.is_healthy();
        Some(Change { was_healthy, healthy, passive_before, ejected, reason })
    }

    fn probe_passed(&mut self, rules: Rules<'_>) -> Option<String> {
        let threshold = rules.probes.map_or(1, |p| p.healthy_threshold);
        self.probe_failures = 0;
        self.probe_passes = self.probe_passes.saturating_add(1);
        let mut reasons = Vec::new();
        if self.active_failed && self.probe_passes >= threshold {
            self.active_failed = false;
            self.probe_passes = 0;
            reasons.push(format!("{threshold} probes passed in a row"));
        }
        if self.passive != Passive::Clear {
            // Envoy's `successful_active_health_check_uneject_host`.
            self.passive = Passive::Clear;
            reasons.push("a probe passed, which ends the passive ejection".to_string());
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    fn probe_failed(&mut self, rules: Rules<'_>, detail: &str) -> Option<String> {
        let threshold = rules.probes.map_or(1, |p| p.unhealthy_threshold);
        self.probe_passes = 0;
        self.probe_failures = self.probe_failures.saturating_add(1);
        if self.active_failed || self.probe_failures < threshold {
            return None;
        }
        self.active_failed = true;
        self.probe_failures = 0;
        Some(format!("{threshold} probes failed in a row (last: {detail})"))
    }

    /// Ejects for `base × n`, where n counts consecutive ejections after the decay.
    fn eject(&mut self, rules: Rules<'_>, now: Instant, what: &str) -> Option<String> {
        match self.passive {
            Passive::Clear => self.ejections = self.decayed_ejections(rules, now),
            Passive::HalfOpen => {}
            Passive::Ejected { .. } => return None,
        }
        self.ejections = self.ejections.saturating_add(1);
        let length = ejection_time(rules.passive, self.ejections);
        self.passive = Passive::Ejected { until: now + length };
        Some(match rules.probes {
            Some(_) => format!("{what}, until a probe passes"),
            None => format!("{what}, for {length:?}"),
        })
    }

    /// `ejections` after the time spent clear: one less per `base_ejection`.
    fn decayed_ejections(&self, rules: Rules<'_>, now: Instant) -> u32 {
        let base = rules.passive.base_ejection.as_nanos().max(1);
        let periods = now.saturating_duration_since(self.clear_since).as_nanos() / base;
        self.ejections.saturating_sub(u32::try_from(periods).unwrap_or(u32::MAX))
    }

    fn expire(&mut self, rules: Rules<'_>, now: Instant) -> Option<String> {
        match self.passive {
            Passive::Ejected { until } if rules.probes.is_none() && now >= until => {
                self.passive = Passive::HalfOpen;
                Some("the ejection time is over; the next request is a trial".to_string())
            }
            _ => None,
        }
    }

    /// When the warden must fire [`Event::Timer`]: the end of an ejection that no probe
    /// will end.
    pub fn deadline(&self, rules: Rules<'_>) -> Option<Instant> {
        match self.passive {
            Passive::Ejected { until } if rules.probes.is_none() => Some(until),
            _ => None,
        }
    }
}

/// How long the `n`-th consecutive ejection lasts: `base × n`, at most `max`.
pub fn ejection_time(passive: &PassiveConfig, n: u32) -> Duration {
    passive.base_ejection.saturating_mul(n.max(1)).min(passive.max_ejection)
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
