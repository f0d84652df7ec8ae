//! The mutating admin API in-process: the bearer token, validation that changes nothing
//! on a bad request, pools and routes added and removed, and drain: a removed backend
//! finishes its in-flight request and takes no new one, sticky clients included.

use crate::support::admin::{authed, backends, call, pools, pools_until, TOKEN};
use crate::support::{self, get_close, Balancer, TestBackend};

use tokio::time::sleep;

fn with_token(backends: &[std::net::SocketAddr]) -> Balancer {
    Balancer::with_admin(backends, |config| config.admin.token = Some(TOKEN.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_calls_change_nothing() {
    // Goal: every refused mutation (no token, wrong token, malformed JSON, values the
    // config file would refuse, unknown pool, duplicate) answers with a JSON error and
    // leaves the generation and the backends as they were. Reads need no token.
    let a = TestBackend::start("A").await;
    let weir = with_token(&[a.addr()]);
    let before = pools(weir.admin()).await;
    let add = "/api/v1/pools/web/backends";
    let body = Some(r#"{"address": "127.0.0.1:9", "weight": 2}"#);
    let no_token = call(weir.admin(), "POST", add, None, body).await;
    assert_eq!(no_token.status, 401, "{:?}", no_token.json);
    assert!(no_token.json["error"].is_string());
    assert_eq!(no_token.www_authenticate.as_deref(), Some("Bearer realm=\"weir\""));
    let wrong = call(weir.admin(), "POST", add, Some("s3cret-tokeN"), body).await;
    assert_eq!(wrong.status, 401);
    let longer = call(weir.admin(), "POST", add, Some("s3cret-token-and-more"), body).await;
    assert_eq!(longer.status, 401);
    let refusals = [
        ("POST", add, r#"{"address": "127.0.0.1:9""#, 400, "malformed JSON"),
        ("POST", add, r#"["127.0.0.1:9"]"#, 400, "object"),
        ("POST", add, r#"{"address": "127.0.0.1:9", "weight": 10001}"#, 400, "weight"),
        ("POST", add, r#"{"address": "127.0.0.1:0"}"#, 400, "port 0"),
        ("POST", add, r#"{"address": "127.0.0.1:9", "colour": "red"}"#, 400, "colour"),
        ("POST", add, &format!(r#"{{"address": "{}"}}"#, a.addr()), 409, "already"),
        ("POST", "/api/v1/pools/nope/backends", r#"{"address": "127.0.0.1:9"}"#, 404, "nope"),
        ("PATCH", "/api/v1/pools/web/backends/127.0.0.1:9", r#"{"weight": 1}"#, 404, "no backend"),
        ("POST", "/api/v1/pools", r#"{"name": "bad name"}"#, 400, "pool name"),
        ("POST", "/api/v1/routes", r#"{"pool": "nope"}"#, 400, "nope"),
        ("POST", "/api/v1/routes", r#"{"pool": "web", "path_prefix": "x"}"#, 400, "'/'"),
        ("DELETE", "/api/v1/pools/web", "", 400, "at least one pool"),
        ("POST", "/api/v1/reload", "", 400, "no config file"),
    ];
    for (method, path, body, status, needle) in refusals {
        let reply = authed(weir.admin(), method, path, Some(body)).await;
        let error = reply.json["error"].as_str().unwrap_or_default().to_string();
        assert_eq!(reply.status, status, "{method} {path} {body}: {error}");
        assert!(error.contains(needle), "{method} {path} {body}: `{error}` lacks `{needle}`");
    }
    let after = pools(weir.admin()).await;
    assert_eq!(after["generation"], before["generation"]);
    assert_eq!(backends(&after, "web"), backends(&before, "web"));

    let reply = authed(weir.admin(), "POST", add, body).await;
    assert_eq!(reply.status, 201, "{:?}", reply.json);
    assert_eq!(reply.json["generation"], before["generation"].as_u64().unwrap() + 1);
    let added = ("127.0.0.1:9".to_string(), "active".to_string(), 2);
    assert!(backends(&reply.json, "web").contains(&added), "{}", reply.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_and_routes_come_and_go() {
    // Goal: a pool and a route added by the API take traffic at once, and go again.
    let a = TestBackend::start("A").await;
    let b = TestBackend::start("B").await;
    let weir = with_token(&[a.addr()]);
    let pool =
        format!(r#"{{"name": "api", "strategy": "least_requests", "backends": ["{}"]}}"#, b.addr());
    let reply = authed(weir.admin(), "POST", "/api/v1/pools", Some(&pool)).await;
    assert_eq!(reply.status, 201, "{:?}", reply.json);
    assert_eq!(reply.json["pools"][1]["strategy"], "least_requests");
    let route = r#"{"path_prefix": "/api", "pool": "api", "index": 0}"#;
    let reply = authed(weir.admin(), "POST", "/api/v1/routes", Some(route)).await;
    assert_eq!(reply.status, 201, "{:?}", reply.json);
    assert_eq!(reply.json["routes"][0]["pool"], "api");
    assert_eq!(get_close(weir.addr(), "/api/x").await.text(), "B");
    assert_eq!(get_close(weir.addr(), "/other").await.text(), "A");

    let in_use = authed(weir.admin(), "DELETE", "/api/v1/pools/api", None).await;
    assert_eq!(in_use.status, 409, "{:?}", in_use.json);
    assert_eq!(authed(weir.admin(), "DELETE", "/api/v1/routes/7", None).await.status, 404);
    let reply = authed(weir.admin(), "DELETE", "/api/v1/routes/0", None).await;
    assert_eq!((reply.status, reply.json["routes"].as_array().map(Vec::len)), (200, Some(0)));
    assert_eq!(get_close(weir.addr(), "/api/x").await.text(), "A");
    let reply = authed(weir.admin(), "DELETE", "/api/v1/pools/api", None).await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    assert!(backends(&reply.json, "api").is_empty());
    let listed = call(weir.admin(), "GET", "/api/v1/routes", None, None).await;
    assert_eq!(listed.status, 200);
    assert!(listed.json["generation"].as_u64().is_some_and(|g| g >= 5), "{:?}", listed.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_backend_drains_then_leaves() {
    // Goal: DELETE drains: the slow request in flight to B finishes 200 from B, and no
    // request that starts after the DELETE answers reaches B; B leaves the document once
    // idle. Method: drain A so the slow request must go to B, reactivate A, delete B.
    let a = TestBackend::start("A").await;
    let b = TestBackend::start("B").await;
    let weir = with_token(&[a.addr(), b.addr()]);
    let path_a = format!("/api/v1/pools/web/backends/{}", a.addr());
    let path_b = format!("/api/v1/pools/web/backends/{}", b.addr());
    let reply = authed(weir.admin(), "PATCH", &path_a, Some(r#"{"state": "drain"}"#)).await;
    assert_eq!(backends(&reply.json, "web")[0].1, "draining");
    let addr = weir.addr();
    let slow = tokio::spawn(async move { get_close(addr, "/slow?ms=1500").await });
    while b.requests() == 0 {
        sleep(std::time::Duration::from_millis(10)).await;
    }
    authed(weir.admin(), "PATCH", &path_a, Some(r#"{"state": "active"}"#)).await;
    // A keep-alive connection that was idle across the DELETE must not use the snapshot
    // it had before.
    let mut idle = support::connect(weir.addr()).await.expect("connect");
    let get = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    support::roundtrip(&mut idle, get).await.expect("first request");
    let reply = authed(weir.admin(), "DELETE", &path_b, None).await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    let b_label = b.addr().to_string();
    assert!(backends(&reply.json, "web").contains(&(b_label.clone(), "leaving".into(), 1)));
    let reached_b = b.requests();
    for _ in 0..10 {
        assert_eq!(get_close(weir.addr(), "/").await.text(), "A");
        let response = support::roundtrip(&mut idle, get).await.expect("keep-alive request");
        assert_eq!(response.text(), "A", "a request on an idle keep-alive connection");
    }
    let slow = slow.await.expect("slow request task");
    assert_eq!((slow.status, slow.header("x-backend")), (200, Some("B")));
    assert_eq!(b.requests(), reached_b, "a request reached B after the DELETE");
    pools_until(weir.admin(), "B gone", |doc| backends(doc, "web").len() == 1).await;

    let c = TestBackend::start("C").await;
    let add = format!(r#"{{"address": "{}"}}"#, c.addr());
    authed(weir.admin(), "POST", "/api/v1/pools/web/backends", Some(&add)).await;
    let path_c = format!("/api/v1/pools/web/backends/{}?now=true", c.addr());
    let reply = authed(weir.admin(), "DELETE", &path_c, None).await;
    assert_eq!(backends(&reply.json, "web").len(), 1, "?now=true removes at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backend_takes_no_sticky_client() {
    // Goal: a cookie that pins a client to a drained backend no longer sends it there;
    // once active again, the same cookie does.
    let a = TestBackend::start("A").await;
    let b = TestBackend::start("B").await;
    let weir = Balancer::with_admin(&[a.addr(), b.addr()], |config| {
        config.admin.token = Some(TOKEN.to_string());
        config.pools[0].strategy = weir::config::StrategyKind::Sticky;
        config.pools[0].sticky = Some(weir::config::StickyConfig::default());
    });
    let first = get_close(weir.addr(), "/").await;
    let pinned = first.text();
    let cookie = first.header("set-cookie").expect("sticky cookie").split(';').next().unwrap();
    let request =
        format!("GET / HTTP/1.1\r\nHost: t\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n");
    let with_cookie = || support::send(weir.addr(), request.as_bytes());
    assert_eq!(with_cookie().await.text(), pinned);
    let pinned_addr = if pinned == "A" { a.addr() } else { b.addr() };
    let path = format!("/api/v1/pools/web/backends/{pinned_addr}");
    authed(weir.admin(), "PATCH", &path, Some(r#"{"state": "drain"}"#)).await;
    for _ in 0..5 {
        assert_ne!(with_cookie().await.text(), pinned, "a drained backend took a pinned client");
    }
    authed(weir.admin(), "PATCH", &path, Some(r#"{"state": "active", "weight": 2}"#)).await;
    assert_eq!(with_cookie().await.text(), pinned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_cannot_drop_the_token_of_an_open_listener() {
    // Goal: with the admin listener on a non-loopback address, a reload whose config has
    // no token is refused (the API would be open to the network), and the token stays.
    let a = TestBackend::start("A").await;
    let weir = Balancer::with_admin(&[a.addr()], |config| {
        config.admin.listen = Some("0.0.0.0:0".parse().unwrap());
        config.admin.token = Some(TOKEN.to_string());
    });
    let mut config = support::config_for(&[a.addr()]);
    config.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    let error = weir.handle().reload(config).expect_err("reload refused");
    assert!(error.contains("token"), "{error}");
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], weir.admin().port()));
    let reply = call(admin, "POST", "/api/v1/pools/web/backends", None, Some("{}")).await;
    assert_eq!(reply.status, 401);
}
