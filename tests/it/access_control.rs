//! Client identity and access control: `trusted_proxies` (X-Forwarded-For kept and
//! extended from a trusted peer, replaced from anyone else, and the client address
//! hashing and ACLs see), and `allow`/`deny` on routes and on the admin listener.

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use weir::cidr::Cidr;
use weir::config::{Acl, Config, HashConfig, StrategyKind};

use crate::support::admin::admin_get;
use crate::support::{self, connect, roundtrip, send, Balancer, Recorder, TestBackend};

fn blocks(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|block| Cidr::parse(block).expect("test block")).collect()
}

fn trusting<'a>(list: &'a [&'a str]) -> impl FnOnce(&mut Config) + 'a {
    move |config| config.server.trusted_proxies = Some(blocks(list))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peers_forwarded_for_is_replaced_and_nothing_else_changes() {
    let backend = Recorder::echo_target().await;
    let weir = Balancer::over(&[backend.addr()], trusting(&["10.0.0.0/8"]));
    let head = b"GET /a?b HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\nX-A: 1\r\n\
x-forwarded-for: 7.7.7.7, 8.8.8.8\r\nCookie: c=1\r\n\r\n";
    assert_eq!(send(weir.addr(), head).await.status, 200);
    let seen = String::from_utf8(backend.requests()[0].head.clone()).expect("text");
    // Every other field byte for byte and in order; the forged list gone; the peer alone.
    let expected = "GET /a?b HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nCookie: c=1\r\n\
X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n";
    assert_eq!(seen, expected);
    // An upgrade or a `Connection` naming fields takes the rewriting path: same rule.
    let head = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Hop\r\nX-Hop: 1\r\n\
X-Forwarded-For: 6.6.6.6\r\n\r\n";
    assert_eq!(send(weir.addr(), head).await.status, 200);
    assert_eq!(backend.requests()[1].fields("X-Forwarded-For"), ["127.0.0.1"]);
    assert!(backend.requests()[1].fields("X-Hop").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_peers_forwarded_for_is_extended_and_names_the_client() {
    let backend = Recorder::echo_target().await;
    let log = support::process::temp_path("trusted.json");
    let weir = Balancer::over(&[backend.addr()], |config| {
        trusting(&["127.0.0.1", "10.0.0.0/8"])(config);
        config.log.access = weir::access_log::Target::Path(log.clone());
        config.log.format = weir::access_log::Format::Json;
    });
    // The client forged 1.1.1.1; 203.0.113.7 is what the trusted 10.0.0.2 saw.
    let head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1, 203.0.113.7\r\n\
X-Forwarded-For: 10.0.0.2\r\n\r\n";
    assert_eq!(send(weir.addr(), head).await.status, 200);
    weir.stop().await;
    let fields = backend.requests()[0].fields("X-Forwarded-For");
    assert_eq!(fields, ["1.1.1.1, 203.0.113.7", "10.0.0.2, 127.0.0.1"]);
    let text = std::fs::read_to_string(&log).expect("access log written");
    let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
    assert_eq!(line["client"], "203.0.113.7", "{text}");
}

/// Which backend each of 40 `X-Forwarded-For` addresses reaches (each asked twice, and
/// always the same one).
async fn owners(weir: &Balancer) -> HashMap<String, usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for n in 0..40 {
        let head = format!("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 198.51.100.{n}\r\n\r\n");
        let first = send(weir.addr(), head.as_bytes()).await.text();
        assert_eq!(send(weir.addr(), head.as_bytes()).await.text(), first);
        *seen.entry(first).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_hashing_follows_the_trusted_client_address() {
    let servers = [
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    ];
    let addrs: Vec<SocketAddr> = servers.iter().map(TestBackend::addr).collect();
    let hashed = |trusted: &'static [&'static str]| {
        move |config: &mut Config| {
            config.pools[0].strategy = StrategyKind::ConsistentHash;
            let key = weir::config::HashKey::parse("client_ip").expect("key");
            config.pools[0].hash = Some(HashConfig { key, table_size: 65_537 });
            config.server.trusted_proxies = Some(blocks(trusted));
        }
    };
    let trusted = Balancer::over(&addrs, hashed(&["127.0.0.0/8"]));
    let spread = owners(&trusted).await;
    assert_eq!(spread.len(), 3, "40 client addresses spread over every backend: {spread:?}");
    let untrusted = Balancer::over(&addrs, hashed(&["10.0.0.0/8"]));
    let one = owners(&untrusted).await;
    assert_eq!(one.len(), 1, "an untrusted peer is one client, whatever it claims: {one:?}");
}

fn guarded(backend: SocketAddr, acl: Acl) -> impl FnOnce(&mut Config) {
    move |config| {
        support::balancer::add_routed_pool(config, "private", backend, "/private");
        config.routes.last_mut().expect("the route").acl = acl;
    }
}

fn denied(weir: &Balancer, listener: &str) -> u64 {
    weir.metric(&format!("weir_denied_total{{listener=\"{listener}\"}}")).expect("exposed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routes_allow_and_deny_lists_answer_403_before_any_backend() {
    let backend = Recorder::echo_target().await;
    let allow_others = Acl { allow: blocks(&["10.0.0.0/8"]), deny: Vec::new() };
    let mut config = support::config_for(&[backend.addr()]);
    guarded(backend.addr(), allow_others)(&mut config);
    let weir = Balancer::start(config.clone());
    let private = b"GET /private/x HTTP/1.1\r\nHost: h\r\n\r\n";
    let response = send(weir.addr(), private).await;
    assert_eq!(
        (response.status, response.text().trim()),
        (403, "forbidden by the route's access list")
    );
    // The connection stays usable after a denial without a body.
    let mut stream = connect(weir.addr()).await.expect("connect");
    assert_eq!(roundtrip(&mut stream, private).await.expect("403").status, 403);
    let public = b"GET /public HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_eq!(roundtrip(&mut stream, public).await.expect("200").status, 200);
    assert_eq!(backend.targets(), ["/public"], "a denied request reached the backend");
    assert_eq!(denied(&weir, "proxy"), 2);
    // Deny wins over allow; then a reload that allows loopback serves it.
    config.routes[0].acl = Acl { allow: blocks(&["127.0.0.0/8"]), deny: blocks(&["127.0.0.1"]) };
    weir.reload(config.clone()).expect("reload");
    assert_eq!(send(weir.addr(), private).await.status, 403);
    config.routes[0].acl.deny.clear();
    weir.reload(config).expect("reload");
    assert_eq!(send(weir.addr(), private).await.status, 200);
    assert_eq!(backend.targets(), ["/public", "/private/x"]);
    assert_eq!(denied(&weir, "proxy"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_see_the_proxy_protocol_and_trusted_forwarded_addresses() {
    let backend = Recorder::echo_target().await;
    let acl = Acl { allow: blocks(&["203.0.113.0/24"]), deny: Vec::new() };
    let weir = Balancer::over(&[backend.addr()], |config| {
        guarded(backend.addr(), acl.clone())(config);
        config.server.proxy_protocol = true;
    });
    let private = b"GET /private HTTP/1.1\r\nHost: h\r\n\r\n";
    for (claimed, status) in [("203.0.113.7", 200), ("198.51.100.7", 403)] {
        let mut stream = connect(weir.addr()).await.expect("connect");
        let header = format!("PROXY TCP4 {claimed} 10.0.0.1 40000 80\r\n");
        stream.write_all(header.as_bytes()).await.expect("header");
        assert_eq!(roundtrip(&mut stream, private).await.expect("response").status, status);
    }
    let weir = Balancer::over(&[backend.addr()], |config| {
        guarded(backend.addr(), acl)(config);
        config.server.trusted_proxies = Some(blocks(&["127.0.0.1"]));
    });
    for (claimed, status) in [("203.0.113.9", 200), ("198.51.100.9", 403)] {
        let head =
            format!("GET /private HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: {claimed}\r\n\r\n");
        assert_eq!(send(weir.addr(), head.as_bytes()).await.status, status, "{claimed}");
    }
    assert_eq!(backend.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listeners_lists_answer_403_and_reload() {
    let backend = TestBackend::start("a").await;
    let mut config = support::config_for(&[backend.addr()]);
    config.admin.listen = Some("127.0.0.1:0".parse().expect("literal"));
    config.admin.acl = Acl { allow: blocks(&["10.0.0.0/8"]), deny: Vec::new() };
    let weir = Balancer::start(config.clone());
    let refused = admin_get(weir.admin(), "/healthz").await;
    assert_eq!(
        (refused.status, refused.text().trim()),
        (403, "forbidden by the admin access list")
    );
    assert_eq!(admin_get(weir.admin(), "/metrics").await.status, 403);
    assert_eq!(denied(&weir, "admin"), 2);
    config.admin.acl = Acl { allow: blocks(&["127.0.0.1"]), deny: Vec::new() };
    weir.reload(config).expect("reload");
    let served = admin_get(weir.admin(), "/metrics").await;
    assert_eq!(served.status, 200);
    assert!(served.text().contains("weir_denied_total{listener=\"admin\"} 2"));
}
