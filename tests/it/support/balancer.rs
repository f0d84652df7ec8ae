//! weir running in-process: [`Balancer`] starts it on 127.0.0.1 port 0 and stops it, and
//! reads its live state (health, counters, metrics) for the tests that assert on them.
//! [`config_for`] is the configuration most tests start from.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep, Instant};
use weir::config::{BackendConfig, Config, PoolConfig, RouteConfig, StrategyKind};
use weir::health::Status;
use weir::metrics::{BackendStats, PoolStats};
use weir::server::{Handle, Shared};

use super::TestBackend;

/// A configuration with one round-robin pool `web` over `backends`, listening on
/// 127.0.0.1:0 with two workers and no admin listener.
pub fn config_for(backends: &[SocketAddr]) -> Config {
    let mut config = Config::default();
    config.server.listen = vec!["127.0.0.1:0".parse().expect("literal address")];
    config.server.workers = 2;
    config.server.drain_timeout = Duration::from_secs(2);
    config.admin.listen = None;
    let list = backends.iter().copied().map(BackendConfig::at).collect();
    config.pools.push(PoolConfig::new("web", StrategyKind::RoundRobin, list));
    config
}

/// Adds a pool `name` over `backend`, and a route sending `prefix` to it.
pub fn add_routed_pool(config: &mut Config, name: &str, backend: SocketAddr, prefix: &str) {
    let mut pool = config_for(&[backend]).pools.remove(0);
    pool.name = name.to_string();
    config.pools.push(pool);
    config.routes.push(RouteConfig {
        host: None,
        path_prefix: Some(prefix.to_string()),
        pool: name.to_string(),
        acl: Default::default(),
        rules: Default::default(),
        limits: Vec::new(),
    });
}

/// weir running in-process. Dropping it starts a drain and joins on a side thread, so the
/// test runtime (which also runs the backends) never blocks; [`Balancer::stop`] waits
/// for the drain instead.
pub struct Balancer {
    handle: Option<Handle>,
}

impl Balancer {
    /// Starts weir with `config`.
    pub fn start(config: Config) -> Balancer {
        Balancer { handle: Some(weir::server::start(config).expect("weir starts")) }
    }

    /// Starts weir in front of `backend` with [`config_for`] defaults.
    pub fn front(backend: &TestBackend) -> Balancer {
        Balancer::over(&[backend.addr()], |_| {})
    }

    /// Starts weir over `backends` ([`config_for`]), after `tweak` adjusts the config.
    pub fn over(backends: &[SocketAddr], tweak: impl FnOnce(&mut Config)) -> Balancer {
        let mut config = config_for(backends);
        tweak(&mut config);
        Balancer::start(config)
    }

    /// [`Balancer::over`] with an admin listener on 127.0.0.1:0 (before `tweak`).
    pub fn with_admin(backends: &[SocketAddr], tweak: impl FnOnce(&mut Config)) -> Balancer {
        Balancer::over(backends, |config| {
            config.admin.listen = Some("127.0.0.1:0".parse().expect("literal address"));
            tweak(config);
        })
    }

    /// The live handle.
    pub fn handle(&self) -> &Handle {
        self.handle.as_ref().expect("running")
    }

    /// State shared with the workers.
    pub fn shared(&self) -> &Arc<Shared> {
        self.handle().shared()
    }

    /// The first plain client listener.
    pub fn addr(&self) -> SocketAddr {
        self.handle().listen_addrs()[0]
    }

    /// The first TLS client listener.
    pub fn tls_addr(&self) -> SocketAddr {
        self.handle().tls_addrs()[0]
    }

    /// The admin listener.
    pub fn admin(&self) -> SocketAddr {
        self.handle().admin_addr().expect("admin listener on")
    }

    /// Swaps in `config`.
    pub fn reload(&self, config: Config) -> Result<u64, String> {
        self.handle().reload(config)
    }

    /// Drains and waits until weir stopped (the access log is flushed then).
    pub async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            tokio::task::spawn_blocking(move || handle.shutdown()).await.expect("drain");
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.begin_shutdown();
            std::thread::spawn(move || handle.shutdown());
        }
    }
}

/// Live state: health, counters summed over the shards, and the metrics text.
impl Balancer {
    /// The Prometheus text weir would serve now.
    pub fn metrics(&self) -> String {
        let shared = self.shared();
        let snapshot = shared.snapshot.load();
        let mut text = weir::exposition::render(&shared.frontend, &snapshot);
        let per_client = shared.per_client.get().map(|table| &**table);
        weir::limit::report::render(&mut text, &snapshot.limits, per_client);
        text
    }

    /// The value of the series whose line starts with `series` (name and labels).
    pub fn metric(&self, series: &str) -> Option<u64> {
        let text = self.metrics();
        let line = text.lines().find(|line| line.starts_with(series))?;
        line.rsplit(' ').next()?.parse().ok()
    }

    /// A counter of backend `addr` (of the first pool), summed over the shards.
    pub fn backend_total(&self, addr: SocketAddr, read: fn(&BackendStats) -> u64) -> u64 {
        let snapshot = self.shared().snapshot.load();
        let backend = snapshot.pools[0]
            .backends
            .iter()
            .find(|b| b.label == addr.to_string())
            .expect("backend in the pool");
        backend.live.stats.iter().map(read).sum()
    }

    /// Attempts weir made on backend `addr`: relayed responses, connect failures, resets
    /// and timeouts.
    pub fn attempts(&self, addr: SocketAddr) -> u64 {
        let read: fn(&BackendStats) -> u64 = |s| {
            let relayed: u64 = (0..5).map(|class| s.requests.get(class)).sum();
            relayed + s.connect_failures.get() + s.resets.get() + s.timeouts.get()
        };
        self.backend_total(addr, read)
    }

    /// Requests in flight to backend `addr` now.
    pub fn in_flight(&self, addr: SocketAddr) -> u64 {
        let snapshot = self.shared().snapshot.load();
        let pool = &snapshot.pools[0];
        let backend = pool.backends.iter().find(|b| b.label == addr.to_string()).unwrap();
        backend.live.in_flight.load(Ordering::Relaxed)
    }

    /// The health of backend `addr`.
    pub fn status(&self, addr: SocketAddr) -> Status {
        self.status_of(&addr.to_string())
    }

    /// The health of the backend whose `HOST:PORT` is `label`.
    pub fn status_of(&self, label: &str) -> Status {
        let snapshot = self.shared().snapshot.load();
        let pool = &snapshot.pools[0];
        let backend = pool.backends.iter().find(|b| b.label == label).expect("backend");
        backend.live.health.status()
    }

    /// A counter of the first pool, summed over the shards.
    pub fn pool_total(&self, read: fn(&PoolStats) -> u64) -> u64 {
        self.shared().snapshot.load().pools[0].live.stats.iter().map(read).sum()
    }

    /// Waits up to `limit` for `condition`; returns how long it took, or `None`.
    pub async fn wait_for(
        &self,
        limit: Duration,
        condition: impl Fn(&Self) -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if condition(self) {
                return Some(start.elapsed());
            }
            sleep(Duration::from_millis(5)).await;
        }
        condition(self).then(|| start.elapsed())
    }
}
