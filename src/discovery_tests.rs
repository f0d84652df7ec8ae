use super::*;
use crate::config::{BackendAddress, PoolConfig, StrategyKind};
use crate::config::{BackendConfig, Resolve};

fn backend(address: &str, resolve: bool) -> BackendConfig {
    let resolve = if resolve { Resolve::Addresses } else { Resolve::Once };
    BackendConfig { address: BackendAddress::parse(address).unwrap(), weight: 1, resolve }
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

/// The endpoints of A/AAAA answers `list`.
fn eps(list: &[&str]) -> Vec<Endpoint> {
    ips(list).into_iter().map(Endpoint::address).collect()
}

fn found(list: &[&str], ttl: u32) -> Result<Found, Failure> {
    Ok(Found { addrs: ips(list), ttl: Some(ttl) })
}

fn empty() -> Result<Found, Failure> {
    Ok(Found::default())
}

/// A discovery of `api.test` every 30s, due now.
fn discovery() -> (Discovery, Instant) {
    let mut config = Config::default();
    let pool = PoolConfig::new("web", StrategyKind::RoundRobin, vec![backend("api.test:80", true)]);
    config.pools.push(pool);
    let mut discovery = Discovery::default();
    let now = Instant::now();
    discovery.sync(&config, now);
    (discovery, now)
}

#[test]
fn refresh_follows_the_ttl_within_bounds() {
    let refresh = Duration::from_secs(30);
    assert_eq!(next_wait(Some(10), refresh), Duration::from_secs(10));
    assert_eq!(next_wait(Some(0), refresh), MIN_REFRESH);
    assert_eq!(next_wait(Some(86_400), refresh), refresh);
    assert_eq!(next_wait(None, refresh), refresh);
    assert_eq!(next_wait(Some(5), Duration::from_millis(10)), MIN_REFRESH);
}

#[test]
fn names_take_the_shortest_refresh_of_their_pools() {
    let mut config = Config::default();
    for (name, secs) in [("a", 30), ("b", 5)] {
        let backends = vec![backend("API.test:80", true), backend("static.test:80", false)];
        let mut pool = PoolConfig::new(name, StrategyKind::RoundRobin, backends);
        pool.dns_refresh = Duration::from_secs(secs);
        config.pools.push(pool);
    }
    let names = names(&config);
    assert_eq!(names.len(), 1);
    assert_eq!(names["api.test"], Duration::from_secs(5));
}

#[test]
fn each_address_is_a_backend_labelled_ip_port() {
    let discovered = Addresses::from([("api.test".to_string(), eps(&["10.0.0.1", "fd00::1"]))]);
    let expanded = expand(&backend("api.test:8080", true), Vec::new(), &discovered);
    let labels: Vec<&str> = expanded.iter().map(|e| e.label.as_str()).collect();
    assert_eq!(labels, ["10.0.0.1:8080", "[fd00::1]:8080"]);
    assert!(expand(&backend("other.test:80", true), Vec::new(), &discovered).is_empty());
    let fixed = vec!["10.9.9.9:80".parse().unwrap()];
    let expanded = expand(&backend("static.test:80", false), fixed.clone(), &discovered);
    let label = "static.test:80".to_string();
    assert_eq!(expanded, [Expanded { label, addrs: fixed, weight: 1, tier: 0, serving: true }]);
}

#[test]
fn changes_are_reported_once_and_sorted() {
    let (mut discovery, now) = discovery();
    assert_eq!(discovery.due(now), ["api.test"]);
    let lookup = Lookup { v4: found(&["10.0.0.2", "10.0.0.1"], 7), v6: empty() };
    assert_eq!(
        discovery.apply("api.test", lookup.clone(), now),
        Some(eps(&["10.0.0.1", "10.0.0.2"]))
    );
    assert_eq!(discovery.next_due(), Some(now + Duration::from_secs(7)));
    assert_eq!(discovery.apply("api.test", lookup, now), None, "same set: no rebuild");
}

#[test]
fn failures_keep_the_last_addresses() {
    let (mut discovery, now) = discovery();
    let both = Lookup { v4: found(&["10.0.0.1"], 30), v6: found(&["fd00::1"], 30) };
    discovery.apply("api.test", both, now);
    let timeout = || Err(Failure::new(FailureKind::Timeout, "timeout"));
    for lookup in [Lookup { v4: timeout(), v6: timeout() }, Lookup { v4: empty(), v6: empty() }] {
        assert_eq!(discovery.apply("api.test", lookup, now), None);
        assert_eq!(discovery.addresses()["api.test"], eps(&["10.0.0.1", "fd00::1"]));
    }
    assert_eq!(discovery.next_due(), Some(now + RETRY_AFTER_FAILURE));
    // A failed AAAA query keeps the IPv6 addresses; the A answer still counts.
    let partial = Lookup {
        v4: found(&["10.0.0.9"], 30),
        v6: Err(Failure::new(FailureKind::Server, "SERVFAIL")),
    };
    assert_eq!(discovery.apply("api.test", partial, now), Some(eps(&["10.0.0.9", "fd00::1"])));
    assert_eq!(discovery.entries["api.test"].failures, 3);
    let good = Lookup { v4: found(&["10.0.0.9"], 30), v6: empty() };
    assert_eq!(discovery.apply("api.test", good, now), Some(eps(&["10.0.0.9"])));
    assert_eq!(discovery.entries["api.test"].failures, 0);
}

#[test]
fn answers_are_capped() {
    let (mut discovery, now) = discovery();
    let many: Vec<IpAddr> = (0..=MAX_ADDRESSES as u32)
        .map(|i| IpAddr::from(std::net::Ipv4Addr::from((10u32 << 24) + i)))
        .collect();
    let lookup = Lookup { v4: Ok(Found { addrs: many, ttl: Some(1) }), v6: empty() };
    let kept = discovery.apply("api.test", lookup, now).unwrap();
    assert_eq!(kept.len(), MAX_ADDRESSES);
    assert_eq!(kept[0].ip, IpAddr::from([10, 0, 0, 0]), "the lowest addresses are kept");
}

fn srv_backend() -> BackendConfig {
    let address = BackendAddress {
        host: "_http._tcp.API.test".into(),
        port: 0,
        ..backend("x:1", false).address
    };
    BackendConfig { address, weight: 7, resolve: Resolve::Srv }
}

#[test]
fn srv_endpoints_bring_port_weight_and_tier() {
    let srv = srv_backend();
    assert_eq!(key(&srv), "srv:_http._tcp.api.test");
    assert_eq!(source_label(&key(&srv)), "srv:_http._tcp.api.test");
    assert_eq!(source_label("api.test"), "dns:api.test");
    let endpoint = |ip: &str, port, weight, priority, terminating: bool| Endpoint {
        port: Some(port),
        weight: Some(weight),
        priority,
        readiness: Readiness { ready: !terminating, serving: true, terminating },
        ..Endpoint::address(ip.parse().unwrap())
    };
    let set =
        vec![endpoint("10.0.0.1", 8080, 60, 10, false), endpoint("10.0.0.2", 9090, 1, 20, true)];
    let discovered = Addresses::from([(key(&srv), set)]);
    let expanded = expand(&srv, Vec::new(), &discovered);
    let got: Vec<(&str, u32, u32)> =
        expanded.iter().map(|e| (e.label.as_str(), e.weight, e.tier)).collect();
    assert_eq!(got, [("10.0.0.1:8080", 60, 10), ("10.0.0.2:9090", 1, 20 + (1 << 16))]);
}

#[test]
fn a_failed_or_empty_srv_lookup_keeps_the_last_set() {
    let mut config = Config::default();
    config.pools.push(PoolConfig::new("web", StrategyKind::RoundRobin, vec![srv_backend()]));
    let mut discovery = Discovery::default();
    let now = Instant::now();
    discovery.sync(&config, now);
    let name = key(&srv_backend());
    let set = eps(&["10.0.0.1"]);
    let answer = |endpoints: Vec<Endpoint>| Answer::Srv(Ok(SrvAnswer { endpoints, ttl: Some(5) }));
    assert_eq!(discovery.record(&name, answer(set.clone()), now), Some(set.clone()));
    assert_eq!(discovery.record(&name, answer(Vec::new()), now), None, "empty");
    let refused = Failure::new(FailureKind::Server, "REFUSED");
    assert_eq!(discovery.record(&name, Answer::Srv(Err(refused)), now), None);
    assert_eq!(discovery.addresses()[&name], set);
    let stats = discovery.stats().of(&name).unwrap();
    assert_eq!((stats.generation, stats.endpoints, stats.failed), (1, 1, 2));
    assert_eq!(stats.errors[&FailureKind::Empty], 1);
    assert_eq!(stats.errors[&FailureKind::Server], 1);
    assert_eq!(stats.hash, endpoint::set_hash(&set));
}

#[test]
fn a_kubernetes_service_has_a_key_of_its_own_and_no_dns_lookup() {
    let port = crate::config::backend::KubePort::name("http").unwrap();
    let address = BackendAddress {
        host: "api.prod.svc".to_string(),
        port: 0,
        ..backend("a:1", false).address
    };
    let k8s = BackendConfig { address, weight: 1, resolve: Resolve::Kubernetes(port) };
    assert_eq!(key(&k8s), "k8s:prod/api:http");
    assert_eq!(source_label(&key(&k8s)), "k8s:prod/api:http");
    let mut config = Config::default();
    config.pools.push(PoolConfig::new(
        "p",
        StrategyKind::RoundRobin,
        vec![k8s, backend("b.test:80", true)],
    ));
    assert!(kubernetes::wanted(&config));
    let mut discovery = Discovery::default();
    discovery.sync(&config, Instant::now());
    assert_eq!(
        discovery.due(Instant::now()),
        ["b.test"],
        "the DNS thread leaves the Service alone"
    );
}
