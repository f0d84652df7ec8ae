//! DNS discovery end to end: dnsmasq, whose A records change, and weir's pool following
//! them within `dns_refresh` plus a second; the in-process test server where a failure
//! dnsmasq cannot give is needed (silence, SERVFAIL). Backends listen on one port of
//! 127.0.0.1, 127.0.0.2 and 127.0.0.3 (all loopback on Linux), so one name and port
//! reach each of them.

use crate::support::dns::{DnsMode, TestDns};
use crate::support::dnsmasq::Dnsmasq;
use crate::support::process::WeirProcess;
use crate::support::{self, get_close, BackendOptions, Balancer, TestBackend};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::time::{sleep, Instant};
use weir::config::{
    BackendAddress, BackendConfig, Config, DnsConfig, HealthConfig, PoolConfig, StrategyKind,
};

const NAME: &str = "api.weir.test";
/// The pool's `dns_refresh`.
const REFRESH: Duration = Duration::from_secs(1);
/// How soon a change must show: the refresh, plus the second the issue allows.
const FOLLOW: Duration = Duration::from_secs(2);
/// Bound on the waits for lookups that fail on purpose.
const FAILING: Duration = Duration::from_secs(10);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// Backends `one`, `two` and `three` on 127.0.0.1, .2 and .3, one port.
async fn trio() -> [TestBackend; 3] {
    for _ in 0..20 {
        let one = TestBackend::start("one").await;
        let port = one.addr().port();
        let at = |last| SocketAddr::from((ip(last), port));
        let opts = BackendOptions::default;
        let Ok(two) = TestBackend::start_at("two", at(2), opts()).await else { continue };
        let Ok(three) = TestBackend::start_at("three", at(3), opts()).await else { continue };
        return [one, two, three];
    }
    panic!("no port free on 127.0.0.1, .2 and .3");
}

/// One round-robin pool over `NAME:port` with `resolve = true`, asking `dns`.
fn config(dns: SocketAddr, port: u16) -> Config {
    let mut config = Config::default();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.workers = 2;
    config.server.drain_timeout = Duration::from_secs(2);
    config.admin.listen = None;
    config.dns = DnsConfig { servers: vec![dns], timeout: Some(Duration::from_millis(200)) };
    let address = BackendAddress::parse(&format!("{NAME}:{port}")).unwrap();
    let backend = BackendConfig { address, weight: 1, resolve: weir::config::Resolve::Addresses };
    let mut pool = PoolConfig::new("web", StrategyKind::RoundRobin, vec![backend]);
    pool.dns_refresh = REFRESH;
    config.pools.push(pool);
    config
}

/// `NAME` with the addresses `ips`, for dnsmasq.
fn records(ips: &[Ipv4Addr]) -> Vec<(&'static str, IpAddr)> {
    ips.iter().map(|ip| (NAME, IpAddr::V4(*ip))).collect()
}

/// dnsmasq answering `first` for `NAME`, the three backends, and the config.
async fn setup(first: &[Ipv4Addr]) -> (Dnsmasq, [TestBackend; 3], Config) {
    let dns = Dnsmasq::start(&records(first), &[]);
    let backends = trio().await;
    let config = config(dns.addr(), backends[0].addr().port());
    (dns, backends, config)
}

/// The in-process test server answering `first` for `NAME`, for failures dnsmasq cannot
/// give; the three backends, and the config.
async fn setup_fake(first: &[Ipv4Addr]) -> (TestDns, [TestBackend; 3], Config) {
    let dns = TestDns::start();
    let backends = trio().await;
    dns.set_a(NAME, first);
    let config = config(dns.addr(), backends[0].addr().port());
    (dns, backends, config)
}

/// The labels of the pool's backends, sorted.
/// The backends of the pool that take new requests (a vanished address with requests in
/// flight stays, leaving, until they finish).
pub(crate) fn labels(weir: &Balancer) -> Vec<String> {
    let snapshot = weir.shared().snapshot.load();
    let active = snapshot.pools[0].backends.iter().filter(|b| b.is_active());
    let mut labels: Vec<String> = active.map(|b| b.label.clone()).collect();
    labels.sort();
    labels
}

fn label(backend: &TestBackend) -> String {
    backend.addr().to_string()
}

/// Waits (bounded) until the pool is exactly `want`; how long that took.
async fn follows(weir: &Balancer, want: &[&TestBackend], limit: Duration) -> Option<Duration> {
    let mut want: Vec<String> = want.iter().map(|b| label(b)).collect();
    want.sort();
    weir.wait_for(limit, |weir| labels(weir) == want).await
}

/// `n` requests; the names of the backends that answered, each once, sorted.
pub(crate) async fn answered_by(weir: &Balancer, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    for _ in 0..n {
        let response = get_close(weir.addr(), "/").await;
        assert_eq!(response.status, 200, "{}", response.text());
        names.push(response.header("x-backend").unwrap_or("?").to_string());
    }
    names.sort();
    names.dedup();
    names
}

async fn wait_queries(dns: &TestDns, more: usize) {
    let start = (Instant::now(), dns.udp_queries());
    while dns.udp_queries() < start.1 + more && start.0.elapsed() < FAILING {
        sleep(Duration::from_millis(20)).await;
    }
    assert!(dns.udp_queries() >= start.1 + more, "weir kept looking the name up");
}

#[tokio::test]
async fn pool_follows_a_records_and_the_vanished_address_drains() {
    let (dns, [one, two, three], config) = setup(&[ip(2)]).await;
    let weir = Balancer::start(config);
    assert_eq!(labels(&weir), [label(&two)], "the first snapshot has the first answer");
    // A slow request in flight to the address that is about to vanish.
    let slow = tokio::spawn(get_close(weir.addr(), "/slow?ms=2500"));
    let arrived = weir.wait_for(FAILING, |_| two.requests() == 1).await;
    assert!(arrived.is_some(), "the slow request reached two");

    dns.set(&records(&[ip(1), ip(3)]));
    let took = follows(&weir, &[&one, &three], FOLLOW).await;
    assert!(took.is_some(), "pool is {:?} after {FOLLOW:?}", labels(&weir));
    eprintln!("the pool followed the new A records in {took:?}");
    let before = two.requests();
    assert_eq!(answered_by(&weir, 20).await, ["one", "three"]);
    assert_eq!(two.requests(), before, "no new request reached the vanished address");
    let slow = slow.await.unwrap();
    assert_eq!(
        (slow.status, slow.text().as_str()),
        (200, "slow"),
        "the in-flight request finished"
    );
    assert_eq!(slow.header("x-backend"), Some("two"));
    let left = weir.wait_for(FOLLOW, |w| w.shared().snapshot.load().pools[0].backends.len() == 2);
    assert!(left.await.is_some(), "the drained address left the snapshot");
}

#[tokio::test]
async fn failed_lookups_keep_the_last_known_addresses() {
    let (dns, [one, two, three], config) = setup_fake(&[ip(1), ip(2)]).await;
    let weir = Balancer::start(config);
    assert!(follows(&weir, &[&one, &two], Duration::ZERO).await.is_some());
    // Silence, SERVFAIL, then NXDOMAIN: at least two failed lookups each (four queries a
    // lookup: A and AAAA, two attempts of each when silent; one each otherwise).
    for failure in [DnsMode::Silent, DnsMode::ServFail] {
        dns.set_mode(failure);
        wait_queries(&dns, 8).await;
        assert_eq!(labels(&weir), [label(&one), label(&two)], "{failure:?}");
        assert_eq!(answered_by(&weir, 10).await, ["one", "two"]);
    }
    dns.set_mode(DnsMode::Answer);
    dns.remove(NAME);
    wait_queries(&dns, 4).await;
    assert_eq!(labels(&weir), [label(&one), label(&two)], "NXDOMAIN");
    // And a good answer is followed again.
    dns.set_a(NAME, &[ip(3)]);
    assert!(follows(&weir, &[&three], FOLLOW).await.is_some(), "{:?}", labels(&weir));
    assert_eq!(answered_by(&weir, 5).await, ["three"]);
}

#[tokio::test]
async fn joining_addresses_ramp_and_host_names_the_configured_name() {
    let (dns, [one, two, _three], mut config) = setup(&[ip(1)]).await;
    config.pools[0].slow_start = Some(Duration::from_secs(60));
    let weir = Balancer::start(config);
    // HTTP/1.0 without Host: weir names the backend by its configured name, not its IP.
    let response = support::send(weir.addr(), b"GET /echo-head HTTP/1.0\r\n\r\n").await;
    let host = format!("host: {NAME}:{}", one.addr().port());
    assert!(response.text().to_ascii_lowercase().contains(&host), "{}", response.text());

    dns.set(&records(&[ip(1), ip(2)]));
    assert!(follows(&weir, &[&one, &two], FOLLOW).await.is_some(), "{:?}", labels(&weir));
    let snapshot = weir.shared().snapshot.load();
    let ramp = |who: &TestBackend| {
        let pool = &snapshot.pools[0];
        pool.backends.iter().find(|b| b.label == label(who)).unwrap().ramp_permille()
    };
    assert_eq!(ramp(&one), None, "found at start: full weight at once");
    assert!(ramp(&two).is_some_and(|permille| permille < 1000), "joined: slow start");
}

#[tokio::test]
async fn reload_adds_a_discovered_backend() {
    let (_dns, [one, two, _three], mut config) = setup(&[ip(2)]).await;
    let resolved = config.pools[0].backends.clone();
    let address = BackendAddress::parse(&one.addr().to_string()).unwrap();
    config.pools[0].backends =
        vec![BackendConfig { address, weight: 1, resolve: weir::config::Resolve::Once }];
    let weir = Balancer::start(config.clone());
    assert_eq!(labels(&weir), [label(&one)]);
    config.pools[0].backends.extend(resolved);
    weir.reload(config).expect("reload");
    assert!(follows(&weir, &[&one, &two], FOLLOW).await.is_some(), "{:?}", labels(&weir));
    assert_eq!(answered_by(&weir, 10).await, ["one", "two"]);
}

#[tokio::test]
async fn probes_of_a_discovered_address_name_the_configured_host() {
    let (_dns, [_one, two, _three], mut config) = setup(&[ip(2)]).await;
    let interval = Duration::from_millis(50);
    let health = HealthConfig { path: "/health".into(), interval, ..HealthConfig::default() };
    config.pools[0].health = Some(health);
    let weir = Balancer::start(config);
    let head =
        || String::from_utf8_lossy(&two.last_request_head().unwrap_or_default()).into_owned();
    let probed = |_: &Balancer| head().contains("weir-health-check");
    assert!(weir.wait_for(FAILING, probed).await.is_some(), "two was probed: {}", head());
    let host = format!("Host: {NAME}:{}", two.addr().port());
    assert!(head().contains(&host), "{}", head());
}

/// `GET /` with curl: the name of the backend that answered.
async fn curl(addr: SocketAddr) -> String {
    curl_url(&format!("http://{addr}/")).await
}

/// The body curl gets from `url`.
async fn curl_url(url: &str) -> String {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-S", "--max-time", "10", url])
        .output()
        .await
        .expect("run curl");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_binary_follows_a_name_from_its_config_file_and_logs_failures_once() {
    let (dns, [one, _two, _three], _) = setup_fake(&[ip(2)]).await;
    let path = support::process::temp_path("dns.toml");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [dns]\nservers = [\"{}\"]\ntimeout = \"200ms\"\n\
         [[pool]]\nname = \"web\"\ndns_refresh = \"1s\"\n\
         backends = [{{ address = \"{NAME}:{}\", resolve = true }}]\n",
        dns.addr(),
        one.addr().port()
    );
    support::process::write_config(&path, &text);
    let args = ["-c", path.to_str().unwrap(), "--log-level", "info"];
    let (weir, addr) = WeirProcess::start(&args).await;
    assert_eq!(curl(addr).await, "two");
    dns.set_a(NAME, &[ip(1)]);
    let start = Instant::now();
    while curl(addr).await != "one" {
        assert!(start.elapsed() < FOLLOW, "still not following:\n{}", weir.stderr());
        sleep(Duration::from_millis(20)).await;
    }
    assert!(weir.wait_stderr(|l| l.contains("now resolves to")).await.is_some());
    // Two failed lookups counted; one warning, as the log is rate-limited.
    dns.set_mode(DnsMode::Silent);
    let admin = weir.wait_stderr(|l| l.contains("admin listening on http://")).await.unwrap();
    let admin = support::process::address_after(&admin, "http://");
    let failed = format!("weir_dns_lookups_total{{host=\"{NAME}\",result=\"failed\"}} ");
    let start = Instant::now();
    let metrics = loop {
        let metrics = curl_url(&format!("http://{admin}/metrics")).await;
        let count = metrics.lines().find_map(|l| l.strip_prefix(&failed)?.parse::<u64>().ok());
        if count.is_some_and(|n| n >= 2) {
            break metrics;
        }
        assert!(start.elapsed() < FAILING, "{metrics}");
        sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(curl(addr).await, "one", "the last known address still serves");
    let warned = |l: &&str| l.contains(&format!("looking up {NAME} failed"));
    let stderr = weir.stderr();
    assert_eq!(stderr.lines().filter(warned).count(), 1, "{stderr}");
    assert!(metrics.contains(&format!("weir_dns_addresses{{host=\"{NAME}\"}} 1\n")), "{metrics}");
    let _ = std::fs::remove_file(path);
}

/// A series of weir's `/metrics` (served by the admin listener), if present.
async fn scrape(weir: &Balancer, series: &str) -> Option<u64> {
    let metrics = curl_url(&format!("http://{}/metrics", weir.admin())).await;
    let value = metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' '));
    value?.parse().ok()
}

/// Waits (bounded) until weir has counted `more` failed lookups of `NAME`.
async fn wait_failures(weir: &Balancer, more: u64) {
    let failed = format!("weir_dns_lookups_total{{host=\"{NAME}\",result=\"failed\"}}");
    let before = scrape(weir, &failed).await.unwrap_or(0);
    let start = Instant::now();
    while scrape(weir, &failed).await.unwrap_or(0) < before + more {
        assert!(start.elapsed() < FAILING, "no {more} failed lookups");
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_dead_server_and_an_empty_answer_keep_the_last_addresses() {
    let (mut dns, [one, two, _three], mut config) = setup(&[ip(1), ip(2)]).await;
    config.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    let weir = Balancer::start(config);
    assert!(follows(&weir, &[&one, &two], Duration::ZERO).await.is_some());
    // The name vanishes: NXDOMAIN is an empty answer, a failed lookup that keeps the set.
    dns.set(&[]);
    wait_failures(&weir, 1).await;
    assert_eq!(labels(&weir), [label(&one), label(&two)], "empty answer");
    // The server stops answering at all.
    dns.kill();
    wait_failures(&weir, 2).await;
    assert_eq!(labels(&weir), [label(&one), label(&two)], "dead server");
    assert_eq!(answered_by(&weir, 10).await, ["one", "two"]);
    let addresses = format!("weir_dns_addresses{{host=\"{NAME}\"}}");
    assert_eq!(scrape(&weir, &addresses).await, Some(2));
    // The source's view: the set kept, and each failure counted by its kind.
    let source = format!("source=\"dns:{NAME}\"");
    let errors = |kind: &str| format!("weir_discovery_errors_total{{{source},kind=\"{kind}\"}}");
    assert!(scrape(&weir, &errors("empty")).await >= Some(1), "NXDOMAIN counts as empty");
    let dead = scrape(&weir, &errors("timeout")).await.unwrap_or(0)
        + scrape(&weir, &errors("network")).await.unwrap_or(0);
    assert!(dead >= 1, "a dead server counts as a timeout or a network error");
    let endpoints = format!("weir_discovery_endpoints{{{source}}}");
    assert_eq!(scrape(&weir, &endpoints).await, Some(2), "the last set stays in use");
    assert_eq!(scrape(&weir, &format!("weir_discovery_generation{{{source}}}")).await, Some(1));
}
