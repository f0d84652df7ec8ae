//! End-to-end balancing through weir: sticky cookies, tampered cookies, consistent
//! hashing on a header, two weir processes agreeing without talking, and a runtime weight
//! change on SIGHUP. Backends are real HTTP/1.1 servers on loopback; each answers with
//! its name in `X-Backend`.

use crate::support::process::{write_config, WeirProcess};
use crate::support::{self, send, Balancer, Response, TestBackend};

use std::collections::HashMap;
use std::net::SocketAddr;

use weir::config::{HashConfig, StickyConfig, StrategyKind};

pub(crate) const COOKIE: &str = "weir_affinity";

async fn backends(names: &[&str]) -> Vec<TestBackend> {
    let mut started = Vec::new();
    for name in names {
        started.push(TestBackend::start(name).await);
    }
    started
}

fn addrs(backends: &[TestBackend]) -> Vec<SocketAddr> {
    backends.iter().map(TestBackend::addr).collect()
}

pub(crate) async fn get_with(addr: SocketAddr, path: &str, extra: &str) -> Response {
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n");
    send(addr, req.as_bytes()).await
}

pub(crate) fn backend_of(response: &Response) -> String {
    response.header("x-backend").expect("X-Backend header").to_string()
}

/// The `weir_affinity` value a response sets, if any.
pub(crate) fn set_cookie_id(response: &Response) -> Option<String> {
    let line = response.header_all("set-cookie").into_iter().find(|c| c.starts_with(COOKIE))?;
    let value = line.split(';').next()?.split_once('=')?.1;
    Some(value.to_string())
}

fn sticky_weir(backends: &[SocketAddr]) -> Balancer {
    Balancer::over(backends, |config| {
        config.pools[0].strategy = StrategyKind::Sticky;
        config.pools[0].sticky = Some(StickyConfig::default());
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookie_pins_the_client_and_is_not_forwarded() {
    // Goal: the first response sets a cookie; every request carrying it reaches the same
    // backend, gets no new cookie, and the backend never sees the cookie.
    let servers = backends(&["a", "b", "c"]).await;
    let weir = sticky_weir(&addrs(&servers));
    let first = get_with(weir.addr(), "/", "").await;
    assert_eq!(first.status, 200);
    let id = set_cookie_id(&first).expect("first response sets the sticky cookie");
    let set_cookie = first.header_all("set-cookie").join(" | ");
    assert!(set_cookie.contains("Path=/") && set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert_eq!(id.len(), 16, "id is 16 hex chars, never an address: {id}");
    let pinned = backend_of(&first);
    for _ in 0..20 {
        let cookie = format!("Cookie: theme=dark; {COOKIE}={id}\r\n");
        let response = get_with(weir.addr(), "/echo-head", &cookie).await;
        assert_eq!(backend_of(&response), pinned);
        assert_eq!(set_cookie_id(&response), None, "a pinned client gets no new cookie");
        let head = response.text();
        assert!(head.contains("theme=dark"), "the application's cookie stays: {head}");
        assert!(!head.contains(COOKIE), "the sticky cookie is stripped: {head}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_cookie_is_treated_as_absent() {
    // Goal: a cookie that names no backend leads to a fresh pick and a new, valid cookie.
    let servers = backends(&["a", "b"]).await;
    let weir = sticky_weir(&addrs(&servers));
    let first = get_with(weir.addr(), "/", "").await;
    let id = set_cookie_id(&first).expect("sticky cookie");
    for bad in ["0000000000000000", "zz", "", &id[..15], &format!("{id}0")] {
        let response = get_with(weir.addr(), "/", &format!("Cookie: {COOKIE}={bad}\r\n")).await;
        assert_eq!(response.status, 200);
        let fresh = set_cookie_id(&response).expect("a tampered cookie gets replaced");
        assert_ne!(fresh, bad);
        let again = get_with(weir.addr(), "/", &format!("Cookie: {COOKIE}={fresh}\r\n")).await;
        assert_eq!(backend_of(&again), backend_of(&response), "the new cookie pins");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_sends_a_key_to_one_backend() {
    // Goal: the same X-User-Id always reaches the same backend; many keys use them all.
    let servers = backends(&["a", "b", "c"]).await;
    let weir = Balancer::over(&addrs(&servers), |config| {
        config.pools[0].strategy = StrategyKind::ConsistentHash;
        let key = weir::config::HashKey::parse("header:x-user-id").unwrap();
        config.pools[0].hash = Some(HashConfig { key, table_size: 65_537 });
    });
    let mut seen: HashMap<String, usize> = HashMap::new();
    for user in 0..60 {
        let header = format!("X-User-Id: user-{user}\r\n");
        let owner = backend_of(&get_with(weir.addr(), "/", &header).await);
        for _ in 0..3 {
            assert_eq!(backend_of(&get_with(weir.addr(), "/", &header).await), owner);
        }
        *seen.entry(owner).or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "60 keys spread over every backend: {seen:?}");
}

fn hash_and_sticky_config(backends: &[SocketAddr]) -> String {
    let list: Vec<String> = backends.iter().map(|a| format!("\"{a}\"")).collect();
    let list = list.join(", ");
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\n[admin]\nlisten = \"off\"\n\
         [[pool]]\nname = \"hashed\"\nstrategy = \"consistent_hash\"\nbackends = [{list}]\n\
         [pool.hash]\nkey = \"header:x-user-id\"\n\
         [[pool]]\nname = \"pinned\"\nstrategy = \"sticky\"\nbackends = [{list}]\n\
         [pool.sticky]\nsecret = \"fleet-secret\"\n\
         [[route]]\npath_prefix = \"/sticky\"\npool = \"pinned\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_agree_on_keys_and_cookies() {
    // Goal: two weir processes with the same config, whose backends are listed in a
    // different order, map keys and sticky cookies to the same backends.
    let servers = backends(&["a", "b", "c", "d"]).await;
    let mut forward = addrs(&servers);
    let one = support::process::temp_path("one.toml");
    let two = support::process::temp_path("two.toml");
    write_config(&one, &hash_and_sticky_config(&forward));
    forward.reverse();
    write_config(&two, &hash_and_sticky_config(&forward));
    let (_first, first_addr) = WeirProcess::start(&["-c", one.to_str().unwrap()]).await;
    let (_second, second_addr) = WeirProcess::start(&["-c", two.to_str().unwrap()]).await;
    for user in 0..40 {
        let header = format!("X-User-Id: {user}\r\n");
        let a = backend_of(&get_with(first_addr, "/", &header).await);
        let b = backend_of(&get_with(second_addr, "/", &header).await);
        assert_eq!(a, b, "key {user}");
    }
    cookies_cross(first_addr, second_addr, 10).await;
}

/// `n` times: a sticky cookie `/sticky` gets from `first` pins the client at `second` to
/// the same backend, and `second` accepts it (sets none). Returns the backends pinned.
pub(crate) async fn cookies_cross(
    first: SocketAddr,
    second: SocketAddr,
    n: usize,
) -> std::collections::HashSet<String> {
    let mut pinned = std::collections::HashSet::new();
    for _ in 0..n {
        let one = get_with(first, "/sticky", "").await;
        let id = set_cookie_id(&one).expect("sticky cookie from the first process");
        let cookie = format!("Cookie: {COOKIE}={id}\r\n");
        let two = get_with(second, "/sticky", &cookie).await;
        assert_eq!(backend_of(&two), backend_of(&one));
        assert_eq!(set_cookie_id(&two), None, "the other process accepts the cookie");
        pinned.insert(backend_of(&one));
    }
    pinned
}

fn weighted_config(a: SocketAddr, b: SocketAddr, weight_a: u32) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n[admin]\nlisten = \"off\"\n\
         [[pool]]\nname = \"web\"\nstrategy = \"weighted_round_robin\"\n\
         backends = [{{ address = \"{a}\", weight = {weight_a} }}, {{ address = \"{b}\" }}]\n"
    )
}

async fn shares(addr: SocketAddr, picks: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..picks {
        *counts.entry(backend_of(&get_with(addr, "/", "").await)).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_weight_change_applies_to_the_next_picks() {
    // Goal: WRR shares follow the file; after SIGHUP changes a weight, the next picks follow
    // the new weights. One worker, so the smooth sequence is exact.
    let servers = backends(&["a", "b"]).await;
    let (a, b) = (servers[0].addr(), servers[1].addr());
    let path = support::process::temp_path("weights.toml");
    write_config(&path, &weighted_config(a, b, 1));
    let (process, addr) = WeirProcess::start(&["-c", path.to_str().unwrap()]).await;
    let before = shares(addr, 20).await;
    assert_eq!((before["a"], before["b"]), (10, 10), "1:1 before the reload");
    write_config(&path, &weighted_config(a, b, 3));
    process.signal("HUP");
    let reloaded = process.wait_stderr(|l| l.contains("configuration reloaded")).await;
    assert!(reloaded.is_some(), "reload logged:\n{}", process.stderr());
    let after = shares(addr, 40).await;
    // The smooth algorithm carries each backend's current weight across the change, which
    // can shift one pick at most; the shares are otherwise exact.
    assert!((29..=31).contains(&after["a"]), "3:1 after the reload: {after:?}");
    assert_eq!(after["a"] + after["b"], 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_sticky_backend_re_pins_the_client_without_errors() {
    // Goal: when the pinned backend dies, the client's next request succeeds elsewhere and
    // carries a new cookie, which then pins it to the new backend.
    let servers = backends(&["a", "b", "c"]).await;
    let weir = sticky_weir(&addrs(&servers));
    let first = get_with(weir.addr(), "/", "").await;
    let id = set_cookie_id(&first).expect("sticky cookie");
    let pinned = backend_of(&first);
    servers.iter().find(|s| s.name() == pinned).expect("pinned backend").stop();
    let cookie = format!("Cookie: {COOKIE}={id}\r\n");
    let moved = get_with(weir.addr(), "/", &cookie).await;
    assert_eq!(moved.status, 200, "no error after the pinned backend stopped");
    let new_backend = backend_of(&moved);
    assert_ne!(new_backend, pinned);
    let new_id = set_cookie_id(&moved).expect("re-pinned with a new cookie");
    assert_ne!(new_id, id);
    for _ in 0..10 {
        let response = get_with(weir.addr(), "/", &format!("Cookie: {COOKIE}={new_id}\r\n")).await;
        assert_eq!(response.status, 200);
        assert_eq!(backend_of(&response), new_backend);
    }
}
