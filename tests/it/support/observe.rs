//! Helpers for the observability tests: weir in-process with its admin listener on port
//! 0, admin requests, and a small reader for the Prometheus text format. Every wait is
//! bounded.
// Each test binary uses only some helpers.
#![allow(dead_code)]

use crate::support::common::config_for;
use crate::support::{connect, roundtrip, Response};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::{sleep, Instant};
use weir::config::{Config, RouteConfig};
use weir::server::Handle;

/// How long a counter may take to catch up with responses already received: weir counts
/// a request after its last byte is written, so a fast client can scrape first.
pub const SETTLE: Duration = Duration::from_secs(5);

/// weir in-process with an admin listener; drains on drop without blocking the runtime.
pub struct Balancer {
    handle: Option<Handle>,
    /// Client listener.
    pub addr: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
}

impl Balancer {
    /// Starts weir over `backends` (pool `web`), admin on 127.0.0.1:0, after `tweak`.
    pub fn start(backends: &[SocketAddr], tweak: impl FnOnce(&mut Config)) -> Balancer {
        let mut config = config_for(backends);
        config.admin.listen = Some("127.0.0.1:0".parse().expect("literal address"));
        tweak(&mut config);
        let handle = weir::server::start(config).expect("weir starts");
        let addr = handle.listen_addrs()[0];
        let admin = handle.admin_addr().expect("admin listener on");
        Balancer { handle: Some(handle), addr, admin }
    }

    /// The live handle.
    pub fn handle(&self) -> &Handle {
        self.handle.as_ref().expect("running")
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

/// Adds a pool `name` over `backend`, and a route sending `prefix` to it.
pub fn add_routed_pool(config: &mut Config, name: &str, backend: SocketAddr, prefix: &str) {
    let mut pool = config_for(&[backend]).pools.remove(0);
    pool.name = name.to_string();
    config.pools.push(pool);
    config.routes.push(RouteConfig {
        host: None,
        path_prefix: Some(prefix.to_string()),
        pool: name.to_string(),
    });
}

/// `GET path` on a fresh connection to `addr`.
pub async fn admin_get(addr: SocketAddr, path: &str) -> Response {
    let mut stream = connect(addr).await.expect("connect to admin");
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n");
    roundtrip(&mut stream, req.as_bytes()).await.expect("admin response")
}

/// One scrape of `/metrics`.
pub async fn scrape(admin: SocketAddr) -> String {
    let response = admin_get(admin, "/metrics").await;
    assert_eq!(response.status, 200, "scrape: {}", response.text());
    response.text()
}

/// Parses `name{k="v",...}` into its name and labels. Label values here never hold
/// quotes or commas, which keeps this reader small.
fn series(text: &str) -> (&str, Vec<(&str, &str)>) {
    let Some((name, rest)) = text.split_once('{') else { return (text, Vec::new()) };
    let labels = rest
        .trim_end_matches('}')
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect();
    (name, labels)
}

/// Sum of every sample named `name` whose labels include all of `labels`; `None` when
/// no sample matches.
pub fn metric(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in scrape.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let Some((head, value)) = line.rsplit_once(' ') else { continue };
        let (sample, have) = series(head);
        if sample != name || !labels.iter().all(|want| have.contains(want)) {
            continue;
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in `{line}`"));
        total = Some(total.unwrap_or(0.0) + value);
    }
    total
}

/// Scrapes until `name{labels}` equals `want` (up to [`SETTLE`]), then returns that
/// scrape. Panics with the last value otherwise.
pub async fn scrape_until(
    admin: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
) -> String {
    let deadline = Instant::now() + SETTLE;
    loop {
        let text = scrape(admin).await;
        let value = metric(&text, name, labels);
        if value == Some(want) {
            return text;
        }
        assert!(Instant::now() < deadline, "{name}{labels:?} = {value:?}, want {want}\n{text}");
        sleep(Duration::from_millis(20)).await;
    }
}
