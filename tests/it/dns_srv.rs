//! `resolve = "srv"` against a real dnsmasq (`--srv-host`): ports, priorities and weights
//! come from the records, only the lowest priority takes traffic, weights give the
//! shares, and a removed record drains its backend within the TTL plus a second.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::support::dnsmasq::Dnsmasq;
use crate::support::{get_close, Balancer, TestBackend};

use weir::config::{
    BackendAddress, BackendConfig, Config, DnsConfig, PoolConfig, Resolve, StrategyKind,
};

/// The SRV name.
pub const SERVICE: &str = "_http._tcp.api.weir.test";
/// The records' TTL (dnsmasq's `--local-ttl=1`).
const TTL: Duration = Duration::from_secs(1);
/// Bound on waits for things that should happen at once.
const SOON: Duration = Duration::from_secs(10);

/// The target names of backends 0, 1 and 2 (all on 127.0.0.1, each on its own port).
pub fn target(i: usize) -> String {
    format!("t{i}.weir.test")
}

/// dnsmasq options for an SRV record per `(backend, priority, weight)`.
pub fn srv_records(backends: &[TestBackend], records: &[(usize, u16, u16)]) -> Vec<String> {
    let record = |&(i, priority, weight): &(usize, u16, u16)| {
        let port = backends[i].addr().port();
        format!("--srv-host={SERVICE},{},{port},{priority},{weight}", target(i))
    };
    records.iter().map(record).collect()
}

/// Three backends and dnsmasq serving their targets' A records and `records`.
pub async fn srv_setup(records: &[(usize, u16, u16)]) -> (Dnsmasq, Vec<TestBackend>) {
    let mut backends = Vec::new();
    for name in ["zero", "one", "two"] {
        backends.push(TestBackend::start(name).await);
    }
    let hosts: Vec<(String, IpAddr)> =
        (0..3).map(|i| (target(i), IpAddr::V4(Ipv4Addr::LOCALHOST))).collect();
    let hosts: Vec<(&str, IpAddr)> = hosts.iter().map(|(n, ip)| (n.as_str(), *ip)).collect();
    let dns = Dnsmasq::start(&hosts, &srv_records(&backends, records));
    (dns, backends)
}

/// A pool of `strategy` over `SERVICE`, asking `dns`, looked up every second.
pub fn srv_config(dns: SocketAddr, strategy: StrategyKind) -> Config {
    let mut config = Config::default();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.workers = 2;
    config.server.drain_timeout = Duration::from_secs(2);
    config.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    config.dns = DnsConfig { servers: vec![dns], timeout: Some(Duration::from_millis(500)) };
    let address =
        BackendAddress { port: 0, ..BackendAddress::parse(&format!("{SERVICE}:1")).unwrap() };
    let backend = BackendConfig { address, weight: 1, resolve: Resolve::Srv };
    let mut pool = PoolConfig::new("web", strategy, vec![backend]);
    pool.dns_refresh = Duration::from_secs(1);
    config.pools.push(pool);
    config
}

/// The labels of the pool's backends that take new requests, sorted.
pub fn active(weir: &Balancer) -> Vec<String> {
    let snapshot = weir.shared().snapshot.load();
    let active = snapshot.pools[0].backends.iter().filter(|b| b.is_active());
    let mut labels: Vec<String> = active.map(|b| b.label.clone()).collect();
    labels.sort();
    labels
}

fn labels(backends: &[&TestBackend]) -> Vec<String> {
    let mut labels: Vec<String> = backends.iter().map(|b| b.addr().to_string()).collect();
    labels.sort();
    labels
}

/// `n` requests; how many each backend answered, by name.
async fn shares(weir: &Balancer, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let response = get_close(weir.addr(), "/").await;
        assert_eq!(response.status, 200, "{}", response.text());
        *counts.entry(response.header("x-backend").unwrap_or("?").to_string()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn srv_priorities_and_weights_give_the_shares_and_a_removed_record_drains() {
    // Priority 10: zero (weight 60) and one (weight 20), so 75% and 25%; two has
    // priority 20 and gets nothing while priority 10 serves.
    let records = [(0, 10, 60), (1, 10, 20), (2, 20, 100)];
    let (mut dns, backends) = srv_setup(&records).await;
    let weir = Balancer::start(srv_config(dns.addr(), StrategyKind::WeightedRoundRobin));
    let all = labels(&[&backends[0], &backends[1], &backends[2]]);
    assert_eq!(active(&weir), all, "every target's address is a backend, with its port");
    let counts = shares(&weir, 3000).await;
    let share = |name: &str| counts.get(name).copied().unwrap_or(0) as f64 / 3000.0;
    eprintln!("shares over 3,000 requests: {counts:?}");
    assert!((share("zero") - 0.75).abs() <= 0.05, "{counts:?}");
    assert!((share("one") - 0.25).abs() <= 0.05, "{counts:?}");
    assert_eq!(share("two"), 0.0, "a higher priority gets nothing: {counts:?}");

    // Remove one's record (dnsmasq reads --srv-host at start only: restart it).
    dns.restart(&srv_records(&backends, &[(0, 10, 60), (2, 20, 100)]));
    let restarted = tokio::time::Instant::now();
    let want = labels(&[&backends[0], &backends[2]]);
    let took = weir.wait_for(SOON, |weir| active(weir) == want).await;
    let took = took.expect("the removed record's backend left");
    eprintln!("the removed record's backend left after {took:?} (TTL {TTL:?})");
    assert!(restarted.elapsed() <= TTL + Duration::from_secs(1), "took {took:?}");
    let before = backends[1].requests();
    let counts = shares(&weir, 50).await;
    assert_eq!(counts.get("zero"), Some(&50), "{counts:?}");
    assert_eq!(backends[1].requests(), before, "no new request reached the removed target");
}

#[tokio::test]
async fn all_of_the_lowest_priority_down_falls_to_the_next_and_comes_back() {
    // zero has priority 10, one priority 20: one gets traffic only while zero is down.
    let (_dns, backends) = srv_setup(&[(0, 10, 10), (1, 20, 10)]).await;
    let mut config = srv_config(_dns.addr(), StrategyKind::RoundRobin);
    let interval = Duration::from_millis(50);
    let health = weir::config::HealthConfig {
        path: "/health".into(),
        interval,
        healthy_threshold: 1,
        unhealthy_threshold: 1,
        ..Default::default()
    };
    config.pools[0].health = Some(health);
    let weir = Balancer::start(config);
    assert_eq!(shares(&weir, 20).await.get("zero"), Some(&20), "priority 10 only");

    // Probes fail: priority 20 takes over.
    backends[0].set_healthy(false);
    let zero = backends[0].addr();
    let down = weir.wait_for(SOON, |w| !w.status(zero).healthy).await;
    assert!(down.is_some(), "zero's probes failed");
    assert_eq!(shares(&weir, 20).await.get("one"), Some(&20), "fell to priority 20");
    // It recovers: back to priority 10.
    backends[0].set_healthy(true);
    assert!(weir.wait_for(SOON, |w| w.status(zero).healthy).await.is_some());
    assert_eq!(shares(&weir, 20).await.get("zero"), Some(&20), "back to priority 10");

    // zero dies before any probe notices: each request's retry goes to priority 20, so
    // no request fails (`shares` asserts every status is 200).
    backends[0].stop();
    let counts = shares(&weir, 20).await;
    assert_eq!(counts.get("one"), Some(&20), "{counts:?}");
}
