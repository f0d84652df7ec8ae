//! A backend that dies costs clients nothing: with the default retry settings and no
//! health checks, killing 1 of 3 backends (its listener closed, so connects are refused,
//! and its connections shut) fails no idempotent request at 5, 50 or 500 requests a
//! second, round robin or sticky. A connect failure sent nothing, so its retry must not
//! wait on the retry budget, which is there against load amplification.

use crate::support::{self, config_for, connect, roundtrip, Balancer, TestBackend};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{interval, sleep, timeout, MissedTickBehavior};
use weir::config::{StickyConfig, StrategyKind};

/// Load before the kill: enough for pooled connections to every backend.
const BEFORE_KILL: Duration = Duration::from_millis(500);
/// Load after the kill: long enough for the low rates to spend the old budget floor
/// (3 retries a second) several times over.
const AFTER_KILL: Duration = Duration::from_secs(2);
/// Requests a second one client connection sends at most; higher rates use more clients.
const PER_CLIENT: u32 = 50;
/// Bound on one request: a hang is a failure, not a stuck test.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// What went wrong, one line per failed request.
type Failures = Arc<Mutex<Vec<String>>>;

/// The sticky cookie (`name=value`) of a session pinned to the backend named `name`.
async fn cookie_for(weir: &Balancer, name: &str) -> String {
    // Bounded: the base strategy is round robin over 3 backends (see `kill_under_load`).
    for _ in 0..6 {
        let response = support::get_close(weir.addr(), "/").await;
        if response.text() == name {
            let set_cookie = response.header("set-cookie").expect("a sticky cookie");
            return set_cookie.split(';').next().expect("name=value").to_string();
        }
    }
    panic!("no request reached backend {name}");
}

/// One client connection sending `GET /` `rate` times a second until `stop`, recording
/// every answer that is not a 2xx, and every failed exchange. Returns the requests sent.
async fn client(
    weir: SocketAddr,
    rate: u32,
    request: String,
    failures: Failures,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let mut ticks = interval(Duration::from_secs(1) / rate);
    // Pacing, not catching up: a slow answer delays the next request.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stream: Option<TcpStream> = None;
    let mut sent = 0;
    // Bounded by `stop`, sent after [`AFTER_KILL`].
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return sent,
        }
        let mut conn = match stream.take() {
            Some(conn) => conn,
            None => connect(weir).await.expect("connect to weir"),
        };
        sent += 1;
        let failure = match timeout(REQUEST_LIMIT, roundtrip(&mut conn, request.as_bytes())).await {
            Ok(Ok(response)) if (200..300).contains(&response.status) => {
                stream = Some(conn);
                continue;
            }
            Ok(Ok(response)) => format!("{} {}", response.status, response.text()),
            Ok(Err(error)) => format!("exchange: {error}"),
            Err(_) => "no answer".into(),
        };
        failures.lock().unwrap().push(failure);
    }
}

/// Runs the load at `rate` on a fresh weir, killing backend `a` after [`BEFORE_KILL`].
/// Returns the requests sent and the failures.
async fn kill_under_load(rate: u32, sticky: bool) -> (u64, Vec<String>) {
    let backends = [
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    ];
    let addrs: Vec<_> = backends.iter().map(TestBackend::addr).collect();
    let mut config = config_for(&addrs);
    if sticky {
        config.pools[0].strategy = StrategyKind::Sticky;
        // Round robin for new sessions, so `cookie_for` reaches backend a within its
        // bound; the default base, least_requests, picks at random among idle backends.
        let base = StrategyKind::RoundRobin;
        config.pools[0].sticky = Some(StickyConfig { base, ..StickyConfig::default() });
    }
    assert!(config.pools[0].health.is_none(), "no health checks");
    let weir = Balancer::start(config);
    let cookie = match sticky {
        true => format!("Cookie: {}\r\n", cookie_for(&weir, "a").await),
        false => String::new(),
    };
    let request = format!("GET / HTTP/1.1\r\nHost: test\r\n{cookie}\r\n");
    let failures = Failures::default();
    let clients = rate.div_ceil(PER_CLIENT);
    let (stop, _) = watch::channel(false);
    let mut load = JoinSet::new();
    for _ in 0..clients {
        let failures = Arc::clone(&failures);
        let each = client(weir.addr(), rate / clients, request.clone(), failures, stop.subscribe());
        load.spawn(each);
    }
    sleep(BEFORE_KILL).await;
    backends[0].stop();
    sleep(AFTER_KILL).await;
    stop.send_replace(true);
    let sent: u64 = load.join_all().await.into_iter().sum();
    let refused = weir.backend_total(addrs[0], |s| s.connect_failures.get());
    assert!(refused > 0, "the dead backend was tried ({rate}/s, sticky {sticky})");
    let failures = failures.lock().unwrap().clone();
    (sent, failures)
}

/// Kills a backend under load at each rate and expects no failed request.
async fn no_failures_at_any_rate(sticky: bool) {
    for rate in [5, 50, 500] {
        let (sent, failures) = kill_under_load(rate, sticky).await;
        assert!(
            failures.is_empty(),
            "{rate}/s, sticky {sticky}: {} of {sent} requests failed: {failures:?}",
            failures.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_backend_fails_no_request_round_robin() {
    no_failures_at_any_rate(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_pinned_backend_fails_no_sticky_request() {
    no_failures_at_any_rate(true).await;
}

/// A backend that drops connection attempts: a listener with the shortest backlog, never
/// accepting, whose queue the test fills, so later SYNs go unanswered (the kernel drops
/// them when the accept queue is full) and connects time out.
struct Blackhole {
    addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _queued: Vec<TcpStream>,
}

impl Blackhole {
    async fn start() -> Blackhole {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.1:0".parse().expect("literal address")).expect("bind");
        let listener = socket.listen(0).expect("listen");
        let addr = listener.local_addr().expect("address");
        let mut queued = Vec::new();
        // Bounded: a few attempts; one that times out means the queue is full.
        for _ in 0..4 {
            match timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => queued.push(stream),
                _ => return Blackhole { addr, _listener: listener, _queued: queued },
            }
        }
        panic!("the accept queue never filled");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_backend_costs_waits_not_errors() {
    let hole = Blackhole::start().await;
    let backends = [TestBackend::start("b").await, TestBackend::start("c").await];
    let addrs = [hole.addr, backends[0].addr(), backends[1].addr()];
    let mut config = config_for(&addrs);
    // Short, so the test is quick; the behaviour is the same at the 5 s default.
    config.pools[0].connect_timeout = Duration::from_millis(200);
    let weir = Balancer::start(config);
    // Round robin puts every third request on the blackholed backend until passive health
    // ejects it (5 timeouts in a row): more retries a second than the old budget floor.
    for number in 0..20 {
        let response = support::get_close(weir.addr(), "/").await;
        assert_eq!(response.status, 200, "request {number}: {}", response.text());
    }
    let timeouts = weir.backend_total(hole.addr, |s| s.connect_failures.get());
    assert!(timeouts > 0, "the blackholed backend was tried");
}
