//! The `weir-health` thread: one warden task per backend for the whole process, however
//! many workers there are.
//!
//! A warden runs its backend's active probes (`[pool.health]`, every `interval` ± half
//! the `jitter`, the first spread at random over one interval) and fires the timer that
//! ends a passive ejection when no probe will. The thread re-syncs its wardens with the
//! current snapshot when a reload wakes it (and once a second regardless): a backend
//! whose probe settings, addresses or passive settings changed gets a new warden, a
//! removed one loses its warden. Health state itself lives in [`BackendLive`], so a
//! restarted warden loses nothing.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle as Task;
use tokio::time::{sleep, sleep_until, Instant};

use super::probe::{Probe, ProbeError};
use super::{probe_result, step, Event, Rules, Subject};
use crate::config::{HealthConfig, PassiveConfig};
use crate::local_fault::{LocalFault, Op};
use crate::log_budget::LogBudget;
use crate::metrics::FrontendStats;
use crate::rng;
use crate::shard::Sharded;
use crate::snapshot::{Backend, BackendLive, Pool, Snapshot};

/// How often the thread looks for a new snapshot without being woken: a safety net, as
/// every reload wakes it.
const RESYNC_POLL: Duration = Duration::from_secs(1);

/// What a warden needs to know; any change restarts it.
#[derive(Clone, Debug, PartialEq)]
struct Duty {
    pool: String,
    label: String,
    /// `HOST:PORT` as configured: the probes' `Host` (a discovered backend's name).
    authority: String,
    addrs: Vec<SocketAddr>,
    health: Option<HealthConfig>,
    passive: PassiveConfig,
    slow_start: Option<Duration>,
    /// The pool speaks only HTTP/2 (`protocol = "h2c"` or `"h2"`), and so do its HTTP
    /// probes.
    http2_only: bool,
}

impl Duty {
    fn of(pool: &Pool, backend: &Backend) -> Duty {
        Duty {
            pool: pool.name.clone(),
            label: backend.label.clone(),
            authority: backend.address.authority(),
            addrs: backend.resolved.clone(),
            health: pool.settings.health.clone(),
            passive: pool.settings.passive.clone(),
            slow_start: pool.settings.slow_start,
            http2_only: pool.settings.protocol.is_http2(),
        }
    }

    fn rules(&self) -> Rules<'_> {
        Rules { probes: self.health.as_ref(), passive: &self.passive, slow_start: self.slow_start }
    }
}

struct Warden {
    duty: Duty,
    task: Task<()>,
}

/// What the health thread follows: the snapshot the control plane swaps in. Health state
/// itself lives in [`BackendLive`]; the thread changes nothing else.
pub trait Host: Send + Sync + 'static {
    /// The running snapshot.
    fn current(&self) -> Arc<Snapshot>;
    /// Becomes true once, when the balancer starts draining.
    fn shutdown(&self) -> watch::Receiver<bool>;
    /// Notified after every swap.
    fn changed(&self) -> &Notify;
    /// The frontend counters, where probes weir could not run count as local errors.
    fn frontend(&self) -> &Sharded<FrontendStats>;
}

/// Starts the health thread for the balancer `host` runs. It stops when the balancer
/// starts draining.
pub fn spawn(host: Arc<dyn Host>) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("weir-health".to_string()).spawn(move || {
        let built = tokio::runtime::Builder::new_current_thread().enable_all().build();
        match built {
            Ok(runtime) => runtime.block_on(run(host)),
            Err(error) => tracing::error!("cannot start the health thread: {error}"),
        }
    })
}

async fn run(host: Arc<dyn Host>) {
    let mut wardens: HashMap<u64, Warden> = HashMap::new();
    let mut shutdown = host.shutdown();
    let mut generation = 0;
    loop {
        let snapshot = host.current();
        if snapshot.generation != generation {
            generation = snapshot.generation;
            resync(&snapshot, &mut wardens, &host);
        }
        tokio::select! {
            _ = shutdown.wait_for(|draining| *draining) => break,
            () = host.changed().notified() => {}
            () = sleep(RESYNC_POLL) => {}
        }
    }
    wardens.values().for_each(|warden| warden.task.abort());
}

/// Starts, restarts and stops wardens to match `snapshot`.
fn resync(snapshot: &Snapshot, wardens: &mut HashMap<u64, Warden>, host: &Arc<dyn Host>) {
    let mut current = HashSet::new();
    for (pool, backend) in snapshot.backends() {
        let id = backend.live.id;
        current.insert(id);
        let duty = Duty::of(pool, backend);
        if wardens.get(&id).is_some_and(|warden| warden.duty == duty) {
            continue;
        }
        if let Some(old) = wardens.remove(&id) {
            old.task.abort();
        }
        let task = tokio::spawn(watch(Arc::clone(&backend.live), duty.clone(), Arc::clone(host)));
        wardens.insert(id, Warden { duty, task });
    }
    wardens.retain(|id, warden| {
        let keep = current.contains(id);
        if !keep {
            warden.task.abort();
        }
        keep
    });
}

/// One backend's warden: probes on schedule, and the ejection timer.
async fn watch(live: Arc<BackendLive>, duty: Duty, host: Arc<dyn Host>) {
    // Probes offer what the pool's requests offer by ALPN: to an `auto` backend, the
    // connector that offers h2 too (an HTTP probe then speaks HTTP/2 if the backend
    // chooses it, as requests would); an `http1` pool's is the pool's own.
    let tls = live.tls_auto.clone().or_else(|| live.tls.clone());
    let probe = duty.health.as_ref().map(|config| {
        let probe = Probe::new(config, &duty.authority).with_tls(tls.clone());
        (probe.with_http2_only(duty.http2_only), config)
    });
    let subject = || Subject { live: &live, pool: &duty.pool, label: &duty.label };
    let mut next_probe = probe.as_ref().map(|(_, config)| Instant::now() + first_wait(config));
    loop {
        let expiry = live.health.machine().deadline(duty.rules());
        tokio::select! {
            () = at(next_probe) => {
                if let (Some((probe, config)), Some(due)) = (&probe, next_probe) {
                    match probe.run(&duty.addrs).await {
                        Err(ProbeError::Local(fault)) => probe_skipped(&*host, &duty, fault),
                        Err(ProbeError::Backend(detail)) => {
                            probe_result(subject(), duty.rules(), false, &detail);
                        }
                        Ok(()) => probe_result(subject(), duty.rules(), true, ""),
                    }
                    next_probe = Some(next_due(due, config, Instant::now()));
                }
            }
            () = at(expiry) => step(subject(), duty.rules(), Event::Timer),
            () = live.health.woken() => {}
        }
    }
}

/// Most probes skipped for a local fault logged per second: as many as failed accepts,
/// since the fault is the same and `weir_local_errors_total{op="probe"}` counts them all.
const SKIPPED_PROBES_LOGGED_PER_SECOND: u32 = 10;

/// The log budget of skipped probes, shared by every backend's warden.
static SKIPPED_PROBE_LOG: Mutex<LogBudget> =
    Mutex::new(LogBudget::new(SKIPPED_PROBES_LOGGED_PER_SECOND));

/// A probe weir could not run (out of files, memory or ports) is no verdict on the
/// backend: it is counted and logged as weir's fault, and the backend's health stays.
fn probe_skipped(host: &dyn Host, duty: &Duty, fault: LocalFault) {
    host.frontend().local().local_errors.record(Op::Probe, fault);
    if let Some(left_out) = LogBudget::take_shared(&SKIPPED_PROBE_LOG) {
        let (backend, kind) = (&duty.label, fault.label());
        tracing::warn!(%backend, "health probe not run: weir is out of resources ({kind}; {left_out} earlier not logged)");
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn at(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// When the probe after the one `due` then is due: counted from `due`, not from when the
/// probe ran, so late wake-ups on a busy machine do not stretch the interval. A probe
/// that overran a whole interval (a slow timeout) restarts the schedule from `now`
/// rather than firing a burst to catch up.
fn next_due(due: Instant, config: &HealthConfig, now: Instant) -> Instant {
    let next = due + wait(config);
    if next + config.interval < now {
        now + wait(config)
    } else {
        next
    }
}

/// `interval` ± half the jitter, uniformly: the mean stays `interval`.
fn wait(config: &HealthConfig) -> Duration {
    let jitter = config.jitter.min(config.interval);
    let nanos = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
    let offset = Duration::from_nanos(rng::below(nanos.saturating_add(1)));
    config.interval - jitter / 2 + offset
}

/// The first probe comes at a random point of the first interval, so the probes of many
/// backends spread out (HAProxy spreads its first checks the same way).
fn first_wait(config: &HealthConfig) -> Duration {
    let nanos = u64::try_from(config.interval.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng::below(nanos.max(1)))
}
