//! Bursts of discovery changes are coalesced: a source that hands over a new endpoint set
//! 50 times a second for 20 seconds causes at most 10 snapshot rebuilds a second, read
//! from `/metrics`, and the last set it handed over is the one applied.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::{interval, Instant, MissedTickBehavior};

use crate::support::dnsmasq::Dnsmasq;
use crate::support::scrape::{metric, scrape};
use crate::support::Balancer;
use weir::config::StrategyKind;
use weir::config::{BackendAddress, BackendConfig, Config, DnsConfig, PoolConfig, Resolve};
use weir::discovery::Endpoint;

const NAME: &str = "flap.weir.test";
/// Changes a second, and for how long (the numbers).
const RATE: u32 = 50;
const FOR: Duration = Duration::from_secs(20);

/// The `i`-th set: 1 to 4 addresses, so consecutive sets always differ.
fn set(i: u32) -> Vec<Endpoint> {
    let n = 1 + (i % 4) as u8;
    (1..=n).map(|last| Endpoint::address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))).collect()
}

/// dnsmasq answering 127.0.0.1 for `name`, and weir (admin on) with a round-robin pool
/// over `name:port` with `resolve = true`: its DNS answer never changes, so the sets a
/// test hands the sink are the only changes.
pub(crate) fn name_on_dnsmasq(name: &str, port: u16) -> (Dnsmasq, Balancer) {
    let dns = Dnsmasq::start(&[(name, IpAddr::V4(Ipv4Addr::LOCALHOST))], &[]);
    let mut config = Config::default();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.workers = 2;
    config.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    config.dns = DnsConfig { servers: vec![dns.addr()], timeout: Some(Duration::from_millis(500)) };
    let address = BackendAddress::parse(&format!("{name}:{port}")).unwrap();
    let backend = BackendConfig { address, weight: 1, resolve: Resolve::Addresses };
    config.pools.push(PoolConfig::new("web", StrategyKind::RoundRobin, vec![backend]));
    (dns, Balancer::start(config))
}

async fn counter(weir: &Balancer, name: &str) -> f64 {
    metric(&scrape(weir.admin()).await, name, &[]).unwrap_or(0.0)
}

/// `weir_discovery_rebuilds_total` from `/metrics`, and when the scrape began and ended:
/// weir read the count somewhere between the two.
struct Read {
    before: Instant,
    count: f64,
    after: Instant,
}

async fn rebuilds_read(weir: &Balancer) -> Read {
    let before = Instant::now();
    let count = counter(weir, "weir_discovery_rebuilds_total").await;
    Read { before, count, after: Instant::now() }
}

#[tokio::test]
async fn fifty_changes_a_second_rebuild_at_most_ten_snapshots_a_second() {
    let (_dns, weir) = name_on_dnsmasq(NAME, 80);
    let sink = std::sync::Arc::clone(weir.shared().plane().sink());
    let generation = || weir.shared().snapshot.load().generation;
    let first_generation = generation();

    // Ticks missed under load are caught up, so the source averages RATE a second.
    let mut tick = interval(Duration::from_secs(1) / RATE);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let start = Instant::now();
    let (mut pushed, mut windows) = (0, Vec::new());
    let mut window = rebuilds_read(&weir).await;
    while pushed < RATE * FOR.as_secs() as u32 {
        tick.tick().await;
        sink.push(NAME.to_string(), set(pushed));
        pushed += 1;
        if window.after.elapsed() >= Duration::from_secs(1) {
            let now = rebuilds_read(&weir).await;
            // weir read the two counts somewhere inside their scrapes: at most this far
            // apart, however long each scrape took.
            windows.push((now.count - window.count, now.after - window.before));
            window = now;
        }
    }
    // Nothing is lost: every set is applied by a rebuild or replaced by a newer one of
    // the same name (one name here), and the last one is applied.
    let settled = || {
        let read = |counter: &std::sync::atomic::AtomicU64| counter.load(Relaxed);
        read(&sink.updates) == read(&sink.rebuilds) + read(&sink.coalesced)
    };
    let waited = weir.wait_for(Duration::from_secs(5), |_| settled()).await;
    assert!(waited.is_some(), "a set was neither applied nor replaced");
    // Every rebuild was made after `start` and before this: settled, nothing waits.
    let elapsed = start.elapsed();
    let last = set(pushed - 1);
    let mut want: Vec<String> = last.iter().map(|e| e.socket(80).to_string()).collect();
    want.sort();
    let snapshot = weir.shared().snapshot.load();
    let mut labels: Vec<String> =
        snapshot.pools[0].backends.iter().map(|b| b.label.clone()).collect();
    labels.sort();
    assert_eq!(labels, want, "the last set is applied");

    let rebuilds = counter(&weir, "weir_discovery_rebuilds_total").await;
    let updates = counter(&weir, "weir_discovery_updates_total").await;
    let coalesced = counter(&weir, "weir_discovery_updates_coalesced_total").await;
    eprintln!(
        "{pushed} sets in {elapsed:?}: {rebuilds} rebuilds, {coalesced} coalesced; per second: {:?}",
        windows.iter().map(|w| w.0).collect::<Vec<_>>()
    );
    assert_eq!(updates, f64::from(pushed));
    assert_eq!(updates, rebuilds + coalesced, "/metrics shows the same");
    assert_eq!(generation() - first_generation, rebuilds as u64, "each rebuild is one swap");
    // A rebuild starts at least `MIN_REBUILD_INTERVAL` after the one before, and is
    // counted when it ends: within a span, at most one start every 100 ms, plus the
    // rebuild that had started before the span and ended inside it.
    let bound = |span: Duration| 10.0 * span.as_secs_f64() + 2.0;
    assert!(rebuilds <= bound(elapsed), "{rebuilds} rebuilds in {elapsed:?}");
    for (count, span) in &windows {
        assert!(*count <= bound(*span), "{count} rebuilds in {span:?}");
    }
}
