//! Route rules end to end (issue #20): header rules, request ids, redirects, path
//! rewrites and `max_body`, each checked on the exact bytes the backend and the client
//! see. The rules are written as TOML and read by the config parser, so each test also
//! covers the file syntax an operator writes.

use std::net::SocketAddr;
use std::sync::Arc;

use weir::config::{Config, RouteConfig, RouteRules};

use crate::support::process::hold_port;
use crate::support::{self, connect, curl, roundtrip, send, Balancer, Recorder};

/// The rules of a `[[route]]` written as `lines` (with `[server]` lines `server`).
pub fn rules_of(server: &str, lines: &str) -> RouteRules {
    let text = format!(
        "[server]\n{server}\n[[pool]]\nname = \"web\"\n[[route]]\npool = \"web\"\n{lines}\n"
    );
    let config = weir::config::parse::parse_str("rules.toml", &text).expect("rules parse");
    config.routes[0].rules.clone()
}

/// One catch-all route over `backend` with `rules`; `tweak` adjusts the rest.
pub fn routed(backend: SocketAddr, rules: RouteRules, tweak: impl FnOnce(&mut Config)) -> Config {
    let mut config = support::config_for(&[backend]);
    config.routes.push(RouteConfig {
        host: None,
        path_prefix: None,
        pool: "web".into(),
        acl: Default::default(),
        rules,
        limits: Vec::new(),
    });
    tweak(&mut config);
    config
}

/// A recorder that answers with a `Server` and an `X-Powered-By` field.
async fn chatty_backend() -> Recorder {
    Recorder::start(Arc::new(|_, _: &support::recorder::Recorded| {
        b"HTTP/1.1 200 OK\r\nServer: backend/1.0\r\nX-Powered-By: php\r\nContent-Length: 2\r\n\r\nok"
            .to_vec()
    }))
    .await
}

const HEADER_RULES: &str = r#"request_headers = { set = { "X-Env" = "prod", "X-Real-IP" = "$client_ip" }, add = { "X-Via" = "$scheme://$host$path $pool $backend" }, remove = ["X-Debug"] }
response_headers = { set = { "Server" = "weir" }, add = { "Strict-Transport-Security" = "max-age=63072000" }, remove = ["X-Powered-By"] }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rules_edit_the_exact_bytes_backend_and_client_see() {
    let backend = chatty_backend().await;
    let weir = Balancer::start(routed(backend.addr(), rules_of("", HEADER_RULES), |_| {}));
    let head = b"GET /a/b?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nX-Debug: 1\r\nX-Env: dev\r\n\
x-debug: 2\r\nAccept: */*\r\n\r\n";
    let response = send(weir.addr(), head).await;
    let seen = String::from_utf8(backend.requests()[0].head.clone()).expect("text");
    let expected = format!(
        "GET /a/b?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n\
X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: example.com:8080\r\n\
X-Env: prod\r\nX-Real-IP: 127.0.0.1\r\nX-Via: http://example.com/a/b web {}\r\n\r\n",
        backend.addr()
    );
    assert_eq!(seen, expected);
    let client = String::from_utf8(response.raw_head.clone()).expect("text");
    let expected = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: weir\r\n\
Strict-Transport-Security: max-age=63072000\r\n\r\n";
    assert_eq!(client, expected);
    assert_eq!(response.body, b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rules_and_request_ids_apply_to_http2_streams_too() {
    let backend = chatty_backend().await;
    let ids = |config: &mut Config| config.server.request_id = Some(Default::default());
    let weir = Balancer::start(routed(backend.addr(), rules_of("", HEADER_RULES), ids));
    let url = format!("http://{}/h2/x?y=1", weir.addr());
    let out =
        curl(&["--http2-prior-knowledge", "-D", "-", "-H", "X-Debug: 1", "-H", "X-Env: dev", &url])
            .await;
    let lines: Vec<&str> = out.split("\r\n").collect();
    assert_eq!(lines[0], "HTTP/2 200 ", "{out}");
    assert!(lines.contains(&"server: weir"), "{out}");
    assert!(lines.contains(&"strict-transport-security: max-age=63072000"), "{out}");
    assert!(!out.contains("x-powered-by") && !out.contains("backend/1.0"), "{out}");
    let seen = &backend.requests()[0];
    assert!(seen.fields("X-Debug").is_empty(), "{}", seen.head.escape_ascii());
    assert_eq!(seen.fields("X-Env"), ["prod"]);
    assert_eq!(seen.fields("X-Real-IP"), ["127.0.0.1"]);
    let via = format!("http://{}/h2/x web {}", "127.0.0.1", backend.addr());
    assert_eq!(seen.fields("X-Via"), [via]);
    let id = seen.fields("X-Request-Id");
    assert_eq!(id.len(), 1, "{}", seen.head.escape_ascii());
    assert!(lines.contains(&format!("x-request-id: {}", id[0]).as_str()), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_on_the_id_header_never_replaces_the_id() {
    let backend = Recorder::echo_target().await;
    let rules = r#"request_headers = { set = { "X-Request-Id" = "from-set" }, add = { "x-request-id" = "from-add" } }"#;
    let ids_on = |config: &mut Config| config.server.request_id = Some(Default::default());
    let weir =
        Balancer::start(routed(backend.addr(), rules_of("request_id = true", rules), ids_on));
    // No id from the client, so only the rules' lines could name the header.
    let (up, back) = ids(&weir, &backend, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!(up, back);
    assert!(up.len() == 32 && up.bytes().all(|b| b.is_ascii_hexdigit()), "{up}");
}

/// The `X-Request-Id` the backend got (exactly one) and the one the client got back.
async fn ids(weir: &Balancer, backend: &Recorder, head: &[u8]) -> (String, String) {
    let response = send(weir.addr(), head).await;
    let request = backend.requests().pop().expect("recorded");
    let upstream = request.fields("X-Request-Id");
    assert_eq!(upstream.len(), 1, "{}", request.head.escape_ascii());
    let returned = response.header_all("X-Request-Id");
    assert_eq!(returned.len(), 1, "{:?}", response.headers);
    (upstream[0].clone(), returned[0].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_generated_kept_from_trusted_peers_and_logged() {
    let backend = Recorder::start(Arc::new(|_, _: &support::recorder::Recorded| {
        // A backend's own id is replaced by the request's.
        b"HTTP/1.1 200 OK\r\nX-Request-Id: backend-made\r\nContent-Length: 0\r\n\r\n".to_vec()
    }))
    .await;
    let log = support::process::temp_path("request-id.json");
    let with = |trusted: &'static str| {
        let log = log.clone();
        move |config: &mut Config| {
            config.server.request_id = Some(Default::default());
            config.server.trusted_proxies = Some(vec![weir::cidr::Cidr::parse(trusted).unwrap()]);
            config.log.access = weir::access_log::Target::Path(log);
            config.log.format = weir::access_log::Format::Json;
        }
    };
    // Untrusted peer: whatever it sends is replaced by a fresh 32-hex-digit id.
    let untrusted = Balancer::over(&[backend.addr()], with("10.0.0.0/8"));
    let (up, back) =
        ids(&untrusted, &backend, b"GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: mine\r\n\r\n").await;
    assert_eq!(up, back);
    assert!(up.len() == 32 && up.bytes().all(|b| b.is_ascii_hexdigit()), "{up}");
    let (other, _) = ids(&untrusted, &backend, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_ne!(other, up, "each request has its own id");
    untrusted.stop().await;
    let logged = std::fs::read_to_string(&log).expect("access log");
    let mut logged_ids: Vec<String> = logged
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON line"))
        .map(|line| line["request_id"].as_str().expect("an id").to_string())
        .collect();
    logged_ids.sort();
    let mut sent = vec![up.clone(), other];
    sent.sort();
    assert_eq!(logged_ids, sent, "{logged}");
    // Trusted peer: a valid id is kept; CR/LF cannot arrive (the head parser refuses
    // them), but an oversize, two ids, or a quote or space in one are replaced.
    let trusted = Balancer::over(&[backend.addr()], with("127.0.0.1"));
    let kept = b"GET / HTTP/1.1\r\nHost: h\r\nx-request-id: 4bf92f35-77b3:4da6/a3ce=\r\n\r\n";
    let (up, back) = ids(&trusted, &backend, kept).await;
    assert_eq!(
        (up.as_str(), back.as_str()),
        ("4bf92f35-77b3:4da6/a3ce=", "4bf92f35-77b3:4da6/a3ce=")
    );
    let long = format!("GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: {}\r\n\r\n", "a".repeat(129));
    let twice = b"GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: a\r\nX-Request-Id: b\r\n\r\n";
    let quoted = b"GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: a\"b c\r\n\r\n";
    for head in [long.as_bytes(), &twice[..], &quoted[..]] {
        let (up, back) = ids(&trusted, &backend, head).await;
        assert!(up == back && up.len() == 32, "{up} for {}", head.escape_ascii());
    }
    let bare = b"GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: a\rb\r\n\r\n";
    let answer = support::raw_request(trusted.addr(), bare).await;
    assert!(answer.starts_with(b"HTTP/1.1 400"), "{}", answer.escape_ascii());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_answer_without_a_backend_and_keep_the_query() {
    let backend = Recorder::echo_target().await;
    let https = rules_of("request_id = true", "https_redirect = true");
    let mut config = routed(backend.addr(), https, |_| {});
    config.routes[0].path_prefix = Some("/secure".into());
    let moved = rules_of("", r#"redirect = { to = "https://example.org/new$path", status = 308 }"#);
    config
        .routes
        .push(RouteConfig { path_prefix: Some("/old".into()), ..config.routes[0].clone() });
    config.routes[1].rules = moved;
    config.server.request_id = Some(Default::default());
    let weir = Balancer::start(config);
    let mut stream = connect(weir.addr()).await.expect("connect");
    let head = b"GET /secure/a?x=1&y=%20 HTTP/1.1\r\nHost: shop.example.com:8080\r\n\r\n";
    let response = roundtrip(&mut stream, head).await.expect("redirect");
    let id = response.header("X-Request-Id").expect("an id").to_string();
    let expected = format!(
        "HTTP/1.1 301 Moved Permanently\r\nLocation: https://shop.example.com/secure/a?x=1&y=%20\r\n\
Content-Length: 0\r\nX-Request-Id: {id}\r\n\r\n"
    );
    assert_eq!(String::from_utf8_lossy(&response.raw_head), expected);
    // The connection goes on: a redirect without a body keeps it.
    let head = b"POST /old/b?k=v HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
    let response = roundtrip(&mut stream, head).await.expect("redirect");
    assert_eq!(response.status, 308);
    assert_eq!(response.header("Location"), Some("https://example.org/new/old/b?k=v"));
    // A Host that would aim the redirect elsewhere or break the field: 400.
    for host in ["evil.com/@x", "a@b", "a\"b", "a b"] {
        let head = format!("GET /secure/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let answer = support::raw_request(weir.addr(), head.as_bytes()).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400"), "{host}: {text}");
        assert!(!text.contains("\r\nLocation:"), "{host}: {text}");
    }
    assert!(backend.requests().is_empty(), "no backend was asked");
    assert_eq!(backend.accepted(), 0);
    assert_eq!(weir.metric("weir_redirects_total"), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_redirect_leaves_tls_clients_alone() {
    let backend = Recorder::echo_target().await;
    let pki = support::tls::Pki::new("https-redirect");
    let issued = pki.server(&["localhost"], "localhost");
    let config = routed(backend.addr(), rules_of("", "https_redirect = true"), |config| {
        config.server.tls = vec![weir::config::TlsListenerConfig {
            // Another loopback address: port 0 on the plain listener's would clash.
            listen: "127.0.0.2:0".parse().unwrap(),
            settings: weir::tls::ListenerSettings {
                certs: vec![(issued.cert.clone(), issued.key.clone())],
                ..Default::default()
            },
        }];
    });
    let weir = Balancer::start(config);
    let plain = send(weir.addr(), b"GET /p HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(plain.status, 301);
    let url = format!("https://localhost:{}/p?q", weir.tls_addr().port());
    let resolve = format!("localhost:{}:127.0.0.2", weir.tls_addr().port());
    let ca = pki.ca_file();
    let body = curl(&["--cacert", ca.to_str().unwrap(), "--resolve", &resolve, &url]).await;
    assert_eq!(body, "/p?q");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_rewrites_change_only_what_the_backend_sees() {
    let api = Recorder::echo_target().await;
    let fallback = Recorder::echo_target().await;
    let log = support::process::temp_path("rewrite.json");
    let mut config = support::config_for(&[fallback.addr()]);
    support::balancer::add_routed_pool(&mut config, "api", api.addr(), "/api");
    config.routes[0].rules = rules_of("", r#"strip_prefix = "/api""#);
    support::balancer::add_routed_pool(&mut config, "v1", api.addr(), "/v1");
    config.routes[1].rules = rules_of("", r#"replace_prefix = { from = "/v1", to = "/v2" }"#);
    config.log.access = weir::access_log::Target::Path(log.clone());
    config.log.format = weir::access_log::Format::Json;
    let weir = Balancer::start(config);
    let cases = [
        ("/api/users?x=/api/y", "/users?x=/api/y"),
        ("/api", "/"),
        ("/api?q", "/?q"),
        ("/%61pi/x/../y", "/y"),
        ("/api/..%2F..%2Fetc", "/..%2F..%2Fetc"),
        ("/api//a/./b", "/a/b"),
        ("/v1/items/7", "/v2/items/7"),
        ("/v1", "/v2"),
    ];
    for (target, seen) in cases {
        let head = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        let response = send(weir.addr(), head.as_bytes()).await;
        assert_eq!((target, response.text().as_str()), (target, seen));
    }
    // `/apix` takes the route (prefixes match as strings) but is not rewritten (the
    // prefix is not a whole segment); `..` out of the prefix routes where the
    // normalised path goes, here the default pool, unrewritten.
    for target in ["/apix", "/api/../other"] {
        let head = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        let response = send(weir.addr(), head.as_bytes()).await;
        let expected = if target == "/apix" { "/apix" } else { "/api/../other" };
        assert_eq!(response.text(), expected, "{target}");
    }
    assert_eq!(fallback.targets().len(), 1, "only /api/../other fell through");
    weir.stop().await;
    let logged = std::fs::read_to_string(&log).expect("access log");
    let paths: Vec<String> = logged
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON line"))
        .map(|line| line["path"].as_str().expect("a path").to_string())
        .collect();
    assert!(paths.iter().any(|p| p == "/api/users?x=/api/y"), "the log keeps the original target");
    assert!(!paths.iter().any(|p| p == "/users?x=/api/y"), "{paths:?}");
}

#[path = "rules_body.rs"]
mod body;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_rewrites_backend_rules_whole_when_the_client_sent_an_id() {
    // Goal: a request retried on another backend gets its `$backend` rule line written
    // again for that backend, in a well-formed head, even when the client sent its own
    // id (replaced: the client is no trusted peer). Method: a pool of a refusing
    // address and a recorder; requests with a client id until one was retried (the
    // refused backend's connect failures count it); every head the recorder got has
    // exactly one rule line naming it, one id, and CRLF line ends only.
    let backend = Recorder::echo_target().await;
    // Held for the whole test, so no other test's listener can take the port.
    let held = hold_port();
    let dead = held.addr();
    let rules = r#"request_headers = { add = { "X-Up" = "$backend" } }"#;
    let tweak = |config: &mut Config| {
        config.server.request_id = Some(Default::default());
        config.pools[0].backends =
            support::config_for(&[dead, backend.addr()]).pools[0].backends.clone();
    };
    let weir = Balancer::start(routed(backend.addr(), rules_of("request_id = true", rules), tweak));
    let request =
        b"GET /r HTTP/1.1\r\nHost: h\r\nX-Request-Id: client-chosen-id-of-some-length\r\n\r\n";
    for _ in 0..10 {
        assert_eq!(send(weir.addr(), request).await.status, 200);
    }
    let retried = weir.backend_total(dead, |stats| stats.connect_failures.get());
    assert!(retried > 0, "no request met the refusing backend first");
    for seen in backend.requests() {
        let head = seen.head.escape_ascii().to_string();
        assert_eq!(seen.fields("X-Up"), [backend.addr().to_string()], "{head}");
        let ids = seen.fields("X-Request-Id");
        assert!(ids.len() == 1 && ids[0].len() == 32, "{head}");
        let text = std::str::from_utf8(&seen.head).expect("text");
        assert!(
            text.split("\r\n").all(|line| !line.contains('\r') && !line.contains('\n')),
            "{head}"
        );
    }
}
