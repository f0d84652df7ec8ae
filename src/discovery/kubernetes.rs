//! Kubernetes discovery: a backend written
//! `{ kubernetes = { service = "api", namespace = "prod", port = "http" } }` stands for
//! the endpoints of the Service's EndpointSlices (those labelled
//! `kubernetes.io/service-name=api` in `prod`), each a backend of its own.
//!
//! The `weir-k8s` thread (started only when the config has such a backend) runs one
//! `kube` watcher per Service on a current-thread runtime. The watcher lists, then
//! watches from the list's `resourceVersion` (with bookmarks); after a 410 Gone it lists
//! again. The slices of an initial list are buffered until `InitDone` and then replace
//! the Service's set at once, so a re-list never shows a half set. Every change merges
//! all the Service's slices into one complete set ([`slices`]) and hands it to
//! [`coalesce`](super::coalesce) like any source. Errors back off (at most
//! [`MAX_BACKOFF`]) and keep the last set; they are counted per source and logged at
//! most once per [`FAILURE_LOG_INTERVAL`].
//!
//! Credentials come from `kube::Config::infer`: `KUBECONFIG` (or `~/.kube/config`),
//! else the in-cluster service account.

pub mod slices;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::task::AbortHandle;
use tokio::time::{sleep, Instant};

use super::coalesce::Sink;
use super::resolver::FailureKind;
use super::stats::Stats;
use super::{is_kubernetes, Endpoint, Host, FAILURE_LOG_INTERVAL, MAX_ADDRESSES};
use crate::config::backend::KubePort;
use crate::config::Config;
use slices::Slices;

/// First wait after an error; doubled on each error in a row.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between two tries while the API server fails: short enough that weir
/// resyncs within a few seconds of an outage's end, long enough that one weir costs the
/// API server at most one request per Service every 2 s while it struggles.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Most slices kept per Service (Kubernetes puts up to 100 endpoints in one): with
/// [`MAX_ADDRESSES`] it bounds what one API server can make weir hold.
const MAX_SLICES: usize = 1_024;
/// How often the thread checks the running config for Services added or removed by a
/// reload, and retries a client it could not build.
const RESYNC_POLL: Duration = Duration::from_secs(1);

/// What happened to the watches, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Lists after a Service's first one (a 410 Gone, or a watch the watcher restarted).
    pub relists: AtomicU64,
    /// Errors from the API server or the connection to it.
    pub errors: AtomicU64,
}

/// Whether `config` has a Kubernetes backend (and so needs the thread).
pub fn wanted(config: &Config) -> bool {
    super::names(config).keys().any(|key| is_kubernetes(key))
}

/// Starts the `weir-k8s` thread; it stops when the balancer starts draining.
pub fn spawn(
    host: Arc<dyn Host>,
    stats: Arc<Stats>,
    sink: Arc<Sink>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("weir-k8s".to_string()).spawn(move || {
        let built = tokio::runtime::Builder::new_current_thread().enable_all().build();
        match built {
            Ok(runtime) => runtime.block_on(run(host, stats, sink)),
            Err(error) => tracing::error!("cannot start the Kubernetes discovery thread: {error}"),
        }
    })
}

/// The Services `config` follows: key, namespace, service, port.
fn services(config: &Config) -> HashMap<String, (String, String, KubePort)> {
    let backends = config.pools.iter().flat_map(|pool| pool.backends.iter());
    let follow = |backend: &crate::config::BackendConfig| {
        let (namespace, service, port) = backend.kubernetes()?;
        Some((super::key(backend), (namespace.to_string(), service.to_string(), port)))
    };
    backends.filter_map(follow).collect()
}

async fn run(host: Arc<dyn Host>, stats: Arc<Stats>, sink: Arc<Sink>) {
    let mut shutdown = host.shutdown();
    let mut client: Option<Client> = None;
    let mut watches: HashMap<String, AbortHandle> = HashMap::new();
    let mut warned: Option<Instant> = None;
    loop {
        let wanted = services(&host.config());
        let before = watches.len();
        watches.retain(|key, watch| {
            let keep = wanted.contains_key(key);
            if !keep {
                watch.abort();
            }
            keep
        });
        if watches.len() != before {
            host.forget_names();
        }
        if client.is_none() && !wanted.is_empty() {
            client = connect(&mut warned, &sink).await;
        }
        for (key, (namespace, service, port)) in wanted {
            let Some(client) = &client else { break };
            if watches.contains_key(&key) {
                continue;
            }
            let watch = Watch { key: key.clone(), port, stats: stats.clone(), sink: sink.clone() };
            let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace);
            let task = tokio::spawn(watch.follow(api, service));
            watches.insert(key, task.abort_handle());
        }
        tokio::select! {
            _ = shutdown.wait_for(|draining| *draining) => break,
            () = sleep(RESYNC_POLL) => {}
        }
    }
    watches.values().for_each(AbortHandle::abort);
}

/// A client from `KUBECONFIG` or the service account; `None` if neither works, counted
/// and logged at most once per [`FAILURE_LOG_INTERVAL`] (it is retried every second).
async fn connect(warned: &mut Option<Instant>, sink: &Sink) -> Option<Client> {
    match Client::try_default().await {
        Ok(client) => Some(client),
        Err(error) => {
            sink.kubernetes.errors.fetch_add(1, Relaxed);
            let now = Instant::now();
            if warned.is_none_or(|at| now.duration_since(at) >= FAILURE_LOG_INTERVAL) {
                *warned = Some(now);
                tracing::error!(
                    "kubernetes: no usable credentials (KUBECONFIG or in-cluster): {error}"
                );
            }
            None
        }
    }
}

/// One Service's watch.
struct Watch {
    key: String,
    port: KubePort,
    stats: Arc<Stats>,
    sink: Arc<Sink>,
}

/// The watch's state between events.
#[derive(Default)]
struct Seen {
    /// The slices in use.
    slices: Slices,
    /// Slices of a list in progress, applied at `InitDone`.
    listing: Option<Slices>,
    /// Lists started.
    lists: u64,
    /// The set last handed over, `None` before the first.
    set: Option<Vec<Endpoint>>,
    /// Errors since the last set, and when one was last logged.
    failures: u64,
    warned: Option<Instant>,
}

impl Watch {
    /// Follows the Service's slices until aborted.
    async fn follow(self, api: Api<EndpointSlice>, service: String) {
        let selector = format!("kubernetes.io/service-name={service}");
        let config = watcher::Config::default().labels(&selector);
        let mut events = watcher::watcher(api, config).backoff(Doubling::default()).boxed();
        let mut seen = Seen::default();
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => self.event(&mut seen, event),
                Err(error) => self.failed(&mut seen, &error),
            }
        }
    }

    fn event(&self, seen: &mut Seen, event: Event<EndpointSlice>) {
        let name = |slice: &EndpointSlice| slice.metadata.name.clone().unwrap_or_default();
        match event {
            Event::Init => {
                seen.lists += 1;
                if seen.lists > 1 {
                    self.sink.kubernetes.relists.fetch_add(1, Relaxed);
                }
                seen.listing = Some(Slices::new());
            }
            Event::InitApply(slice) => {
                let listing = seen.listing.get_or_insert_with(Slices::new);
                if listing.len() < MAX_SLICES {
                    listing.insert(name(&slice), slice);
                }
            }
            Event::InitDone => {
                seen.slices = seen.listing.take().unwrap_or_default();
                self.publish(seen);
            }
            Event::Apply(slice) => {
                if seen.slices.len() < MAX_SLICES || seen.slices.contains_key(&name(&slice)) {
                    seen.slices.insert(name(&slice), slice);
                }
                self.publish(seen);
            }
            Event::Delete(slice) => {
                seen.slices.remove(&name(&slice));
                self.publish(seen);
            }
        }
    }

    /// Hands the merged set over if it changed; an empty set keeps the last one, as every
    /// source does.
    fn publish(&self, seen: &mut Seen) {
        let key = &self.key;
        let set = slices::endpoints(&seen.slices, self.port, MAX_ADDRESSES);
        if set.is_empty() {
            let kept = seen.set.as_ref().map_or(0, Vec::len);
            self.stats.failed(key, FailureKind::Empty, kept);
            return self.log(seen, "no endpoint has the port");
        }
        if seen.failures > 0 {
            tracing::info!(
                source = key,
                "kubernetes: {key} synced again after {} errors",
                seen.failures
            );
            (seen.failures, seen.warned) = (0, None);
        }
        let changed = seen.set.as_ref() != Some(&set);
        self.stats.found(key, None, &set, changed);
        if changed {
            tracing::info!(source = key, "kubernetes: {key} has {} endpoints", set.len());
            seen.set = Some(set.clone());
            self.sink.push(key.clone(), set);
        }
    }

    fn failed(&self, seen: &mut Seen, error: &watcher::Error) {
        self.sink.kubernetes.errors.fetch_add(1, Relaxed);
        let kept = seen.set.as_ref().map_or(0, Vec::len);
        self.stats.failed(&self.key, kind(error), kept);
        self.log(seen, &error.to_string());
    }

    /// Logs a failure, at most once per [`FAILURE_LOG_INTERVAL`].
    fn log(&self, seen: &mut Seen, why: &str) {
        seen.failures += 1;
        let now = Instant::now();
        if seen.warned.is_some_and(|at| now.duration_since(at) < FAILURE_LOG_INTERVAL) {
            return;
        }
        seen.warned = Some(now);
        let (key, failures) = (&self.key, seen.failures);
        let kept = match seen.set.as_ref().map_or(0, Vec::len) {
            0 => "no endpoint known yet".to_string(),
            n => format!("keeping the last {n} known endpoints"),
        };
        tracing::warn!(source = key, failures, "kubernetes: {key}: {why}; {kept}");
    }
}

/// The kind an error counts as in `weir_discovery_errors_total`.
fn kind(error: &watcher::Error) -> FailureKind {
    let client = match error {
        watcher::Error::WatchError(_) => return FailureKind::Server,
        watcher::Error::NoResourceVersion => return FailureKind::Other,
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => e,
    };
    match client {
        kube::Error::Api(_) => FailureKind::Server,
        kube::Error::HyperError(_) | kube::Error::Service(_) => FailureKind::Network,
        _ => FailureKind::Other,
    }
}

/// Backoff from [`MIN_BACKOFF`] doubling to [`MAX_BACKOFF`], reset by any event.
#[derive(Debug, Default)]
struct Doubling {
    next: Option<Duration>,
}

impl Iterator for Doubling {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let wait = self.next.unwrap_or(MIN_BACKOFF);
        self.next = Some((wait * 2).min(MAX_BACKOFF));
        Some(wait)
    }
}

impl Backoff for Doubling {
    fn reset(&mut self) {
        self.next = None;
    }
}

/// Appends the watch counters to `/metrics`.
pub fn render(counters: &Counters, out: &mut String) {
    let relists =
        "EndpointSlice lists after a Service's first (after a 410 Gone or a restarted watch).";
    let errors = "Errors from the Kubernetes API server or the connection to it (each backs off).";
    super::coalesce::write_counters(
        out,
        &[
            ("weir_kubernetes_relists_total", relists, &counters.relists),
            ("weir_kubernetes_errors_total", errors, &counters.errors),
        ],
    );
}
