//! Request targets and routing (#9, item 2): an absolute-form target is routed on its
//! own authority and reaches the backend in origin form with a matching `Host`; path
//! prefixes match the normalised path, so encoded, dotted or doubled-slash spellings of
//! a routed path reach that route's pool, while the backend sees the path as received;
//! malformed targets get 400 and reach no backend.

use crate::support::{connect, read_response, send, Balancer, Response, TestBackend};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir::config::{HostMatch, RouteConfig, StrategyKind};

/// Three pools: `web` (the default), `admin` for `/admin`, `internal` for the host
/// `internal.example`; each with its own backend, named like the pool.
struct Routed {
    web: TestBackend,
    admin: TestBackend,
    internal: TestBackend,
    weir: Balancer,
}

impl Routed {
    async fn start() -> Routed {
        let web = TestBackend::start("web").await;
        let admin = TestBackend::start("admin").await;
        let internal = TestBackend::start("internal").await;
        let (admin_addr, internal_addr) = (admin.addr(), internal.addr());
        let weir = Balancer::over(&[web.addr()], |config| {
            let pool = |name: &str, addr: std::net::SocketAddr| {
                let mut pool = config.pools[0].clone();
                pool.name = name.into();
                pool.strategy = StrategyKind::RoundRobin;
                pool.backends[0].address =
                    weir::config::BackendAddress::parse(&addr.to_string()).unwrap();
                pool
            };
            let pools = [pool("admin", admin_addr), pool("internal", internal_addr)];
            config.pools.extend(pools);
            config.routes = vec![
                RouteConfig {
                    host: Some(HostMatch::Exact("internal.example".into())),
                    path_prefix: None,
                    pool: "internal".into(),
                    acl: Default::default(),
                    rules: Default::default(),
                    limits: Vec::new(),
                },
                RouteConfig {
                    host: None,
                    path_prefix: Some("/admin".into()),
                    pool: "admin".into(),
                    acl: Default::default(),
                    rules: Default::default(),
                    limits: Vec::new(),
                },
            ];
        });
        Routed { web, admin, internal, weir }
    }

    /// Sends `GET target` with `Host: host` and returns the response.
    async fn get(&self, target: &str, host: &str) -> Response {
        let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        send(self.weir.addr(), req.as_bytes()).await
    }

    /// Requests every backend received.
    fn requests(&self) -> usize {
        self.web.requests() + self.admin.requests() + self.internal.requests()
    }
}

/// The request line and the values of `name` in a request head.
fn line_and_fields(head: &[u8], name: &str) -> (String, Vec<String>) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default().to_string();
    let values = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect();
    (line, values)
}

#[tokio::test]
async fn absolute_form_is_routed_on_its_authority_and_sent_in_origin_form() {
    // Goal: RFC 9112 §3.2.2: the target's authority, not Host, identifies the resource.
    // Method: absolute-form naming internal.example with Host public.example; expect the
    // internal pool, origin form upstream, and Host / X-Forwarded-Host of the authority.
    let routed = Routed::start().await;
    let resp = routed.get("http://internal.example/x?q=1", "public.example").await;
    assert_eq!(resp.header("X-Backend"), Some("internal"), "{}", resp.status);
    let head = routed.internal.last_request_head().expect("the internal backend saw it");
    let (line, hosts) = line_and_fields(&head, "Host");
    assert_eq!(line, "GET /x?q=1 HTTP/1.1");
    assert_eq!(hosts, ["internal.example"], "one Host, the authority");
    let (_, forwarded) = line_and_fields(&head, "X-Forwarded-Host");
    assert_eq!(forwarded, ["internal.example"]);
    // With a port, and in the other direction: the Host names the internal route but the
    // target names another authority, which no host route matches.
    let resp = routed.get("HTTP://Public.Example:8080", "internal.example").await;
    assert_eq!(resp.header("X-Backend"), Some("web"));
    let head = routed.web.last_request_head().unwrap();
    let (line, hosts) = line_and_fields(&head, "Host");
    assert_eq!((line.as_str(), hosts), ("GET / HTTP/1.1", vec!["Public.Example:8080".into()]));
}

#[tokio::test]
async fn every_spelling_of_a_routed_path_reaches_its_pool_as_received() {
    // Goal: the /admin route cannot be bypassed by spelling the path differently, and
    // the backend gets the path bytes as the client sent them. Method: each bypass shape
    // from the issue; expect the admin backend and the request line as sent.
    let routed = Routed::start().await;
    let shapes = [
        ("/%61dmin", "/%61dmin"),
        ("/x/../admin", "/x/../admin"),
        ("//admin", "//admin"),
        ("/%2e%2E/admin/", "/%2e%2E/admin/"),
        ("/./admin?x=/other", "/./admin?x=/other"),
        ("/../admin", "/../admin"),
        ("http://a/admin", "/admin"),
        ("http://a//x/..//%61dmin/", "//x/..//%61dmin/"),
    ];
    for (target, upstream) in shapes {
        let resp = routed.get(target, "public.example").await;
        assert_eq!(resp.header("X-Backend"), Some("admin"), "{target}: {}", resp.status);
        let head = routed.admin.last_request_head().unwrap();
        let (line, _) = line_and_fields(&head, "Host");
        assert_eq!(line, format!("GET {upstream} HTTP/1.1"), "{target}");
    }
    // Reserved characters stay encoded, so these are other paths.
    for target in ["/%2fadmin", "/%2561dmin", "/%252e%252e/admin", "/x%2F..%2Fadmin"] {
        let resp = routed.get(target, "public.example").await;
        assert_eq!(resp.header("X-Backend"), Some("web"), "{target}");
    }
}

#[tokio::test]
async fn malformed_targets_are_refused_before_any_backend() {
    // Goal: targets weir cannot route safely get 400 and reach no backend. Method: each
    // shape on its own connection; expect 400, a close, and no backend request.
    let routed = Routed::start().await;
    let refused = [
        ("GET", "http://user@internal.example/x"),
        ("GET", "http://:pw@a/x"),
        ("GET", "http:///x"),
        ("GET", "http://a:99999/x"),
        ("GET", "http://a:80x/x"),
        ("GET", "http://a:/x"),
        ("GET", "ftp://a/x"),
        ("GET", "http://a/x#frag"),
        ("GET", "/x#frag"),
        ("GET", "*"),
        ("GET", "admin"),
        ("GET", "/%zzadmin"),
        ("GET", "/admin%4"),
        ("GET", "/x\\..\\admin"),
        // Tomcat and Jetty strip `;params` from segments: `..;` is `..` there.
        ("GET", "/x/..;/admin"),
        ("GET", "/x/%2e%2E;jsessionid=1/admin"),
    ];
    for (method, target) in refused {
        let req = format!("{method} {target} HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut s = connect(routed.weir.addr()).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let resp = read_response(&mut s).await.expect("a response");
        assert_eq!(resp.status, 400, "{target}: {}", resp.text());
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{target}: bytes after the 400");
    }
    assert_eq!(routed.requests(), 0, "a refused target reached a backend");
    let options = "OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let resp = send(routed.weir.addr(), options.as_bytes()).await;
    assert_eq!(resp.header("X-Backend"), Some("web"));
    let (line, _) = line_and_fields(&routed.web.last_request_head().unwrap(), "Host");
    assert_eq!(line, "OPTIONS * HTTP/1.1");
}

#[tokio::test]
async fn host_routes_ignore_case_port_and_a_trailing_dot() {
    // Goal: a fully qualified `Host` (trailing dot) names the same site, so it takes the
    // same route. Method: spellings of internal.example in Host and in the authority.
    let routed = Routed::start().await;
    let hosts = ["internal.example.", "INTERNAL.example:80", "internal.example.:8080"];
    for host in hosts {
        let resp = routed.get("/x", host).await;
        assert_eq!(resp.header("X-Backend"), Some("internal"), "Host: {host}");
        let resp = routed.get(&format!("http://{host}/x"), "public.example").await;
        assert_eq!(resp.header("X-Backend"), Some("internal"), "authority {host}");
    }
}
