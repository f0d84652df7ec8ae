//! Opening upstream HTTP/2 connections (`src/proxy/upstream_h2.rs`): the streams that
//! wait for a connection another stream is opening fail over at once when it fails,
//! rather than each trying the same backend in turn; a backend is reached only once it
//! sent its SETTINGS; and a connection takes no more streams than the backend's
//! SETTINGS_MAX_CONCURRENT_STREAMS allows. One worker, so one worker's connection
//! table sees the whole burst and the counts are exact.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::support::client::send;
use crate::support::h2_backend::H2Backend;
use crate::support::tls::{trusting, Pki};
use crate::support::tonic_server::tls_config;
use crate::support::{config_for, Balancer};
use weir::config::{BackendAddress, BackendProtocol, Config};

/// Far above anything a loaded machine takes: the tests end the waits themselves.
const LONG: Duration = Duration::from_secs(60);

/// A backend that accepts TCP and says nothing: it holds every connection until
/// [`Silent::release`], which closes them, and later ones at once.
struct Silent {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    release: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Silent {
    async fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let (release, mut released) = watch::channel(false);
        let counted = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            // Bounded by the test: it ends when the backend is dropped.
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { return };
                        counted.fetch_add(1, Ordering::SeqCst);
                        if !*released.borrow() {
                            held.push(tcp);
                        }
                    }
                    _ = released.changed() => held.clear(),
                }
            }
        });
        Silent { addr, accepted, release, task }
    }

    fn release(&self) {
        self.release.send_replace(true);
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One worker, `protocol = "h2"` over TLS trusting `pki`, round robin over `backends`;
/// waits and handshakes bounded by [`LONG`], and a retry budget that lets every
/// request of a burst retry (the tests count connections, not the budget).
fn h2_tls_config(backends: &[SocketAddr], pki: &Pki) -> Config {
    let mut config = config_for(backends);
    config.server.workers = 1;
    let pool = &mut config.pools[0];
    for backend in &mut pool.backends {
        let https = format!("https://{}", backend.address.authority());
        backend.address = BackendAddress::parse(&https).expect("https address");
    }
    pool.protocol = BackendProtocol::H2;
    pool.connect_timeout = LONG;
    pool.tls = Some(weir::tls::ClientSettings { handshake_timeout: LONG, ..trusting(pki) });
    pool.retry.budget_percent = 100;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_waiting_for_a_failed_handshake_fail_over_at_once() {
    // Goal: when the connection a burst of first requests waits for fails its TLS
    // handshake, the waiting requests go to another backend at once instead of each
    // opening its own connection to the failing one. Method: one worker, round robin
    // over a backend that accepts TCP and stays silent, and an HTTP/2 backend over TLS;
    // 16 concurrent first requests. Once the good backend has its 8 (so all 16 were
    // routed and the silent one's 8 are waiting on one handshake), the silent one
    // closes its connection: that handshake fails, and its 7 waiters are retried on
    // the good backend. The silent backend accepted exactly one connection.
    let pki = Pki::new("h2-failover");
    let silent = Silent::start().await;
    let good = H2Backend::start_tls("good", tls_config("s", &pki, &["h2"])).await;
    let weir = Balancer::start(h2_tls_config(&[silent.addr, good.addr()], &pki));
    burst_past_a_silent_backend(&weir, &silent, &good).await;
}

/// 16 concurrent first requests through `weir` (one worker, round robin over `silent`
/// and `good`); once `good` has its 8, `silent` closes its connections. Asserts that
/// all 16 were answered by `good`, and that `silent` accepted one connection.
async fn burst_past_a_silent_backend(weir: &Balancer, silent: &Silent, good: &H2Backend) {
    let (addr, request) = (weir.addr(), b"GET /name HTTP/1.1\r\nHost: a\r\n\r\n");
    let burst = tokio::spawn(join_all((0..16).map(move |_| send(addr, request))));
    let streams = || good.counts.streams.load(Ordering::SeqCst);
    assert!(weir.wait_for(LONG, |_| streams() >= 8).await.is_some(), "good's 8 streams");
    silent.release();
    for response in burst.await.expect("the burst") {
        assert_eq!((response.status, response.text()), (200, "good".to_string()));
    }
    assert_eq!(streams(), 16, "the silent backend's 8 went to the good one");
    assert_eq!(silent.accepted(), 1, "the waiters did not try the silent backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_backend_that_accepts_and_never_speaks_http2_fails_the_connect() {
    // Goal: a cleartext backend that accepts TCP but sends no HTTP/2 SETTINGS (hung, or
    // not HTTP/2 at all) fails the connect, with nothing sent, rather than taking the
    // streams of every request that waited for its connection: they fail over at
    // once. Method: as above over h2c: 16 concurrent first requests, round robin over
    // a silent backend and an h2c one; once the h2c one has its 8, the silent one
    // closes its connection. All 16 are answered by the h2c backend, and the silent
    // one accepted one connection.
    let silent = Silent::start().await;
    let good = H2Backend::start("good", None).await;
    let weir = Balancer::over(&[silent.addr, good.addr()], |config| {
        config.server.workers = 1;
        let pool = &mut config.pools[0];
        (pool.protocol, pool.connect_timeout) = (BackendProtocol::H2c, LONG);
        pool.retry.budget_percent = 100;
    });
    burst_past_a_silent_backend(&weir, &silent, &good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_allowing_two_streams_gets_a_connection_for_every_two() {
    // Goal: a connection takes streams up to the backend's own
    // SETTINGS_MAX_CONCURRENT_STREAMS when it is below `max_streams_per_connection`
    // (100), from the first burst on: the next stream opens another connection
    // instead of queueing behind the limit. Method: one worker, an h2c backend that
    // advertises 2 and answers `/gate?6` only once it has received 6 streams; 6
    // concurrent first requests are all answered, over exactly 3 connections.
    let backend = H2Backend::start_limited("b1", 2).await;
    let weir = Balancer::over(&[backend.addr()], |config| {
        config.server.workers = 1;
        config.pools[0].protocol = BackendProtocol::H2c;
    });
    let (addr, request) = (weir.addr(), b"GET /gate?6 HTTP/1.1\r\nHost: a\r\n\r\n");
    let burst = join_all((0..6).map(|_| send(addr, request)));
    let answered = tokio::time::timeout(LONG, burst).await;
    let responses = answered.expect("all 6 answered, none queued behind the backend's limit");
    for response in responses {
        assert_eq!((response.status, response.text()), (200, "b1".to_string()));
    }
    assert_eq!(backend.accepted(), 3, "one connection for every 2 streams");
    let opened = weir.backend_total(backend.addr(), |stats| stats.connections_opened.get());
    assert_eq!(opened, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_outwait_a_tls_handshake_longer_than_the_connect_timeout() {
    // Goal: the streams waiting for a connection another stream is opening wait as long
    // as that opening may take (TCP connect, TLS handshake, SETTINGS), not only
    // `connect_timeout`: a backend that accepts TCP and stalls its TLS handshake costs
    // one connection, and the waiters fail over when that handshake times out. (They
    // gave up after `connect_timeout` and each opened a connection of its own to the
    // same stalled backend: 8 connections for 8 requests.) Method: one worker, round
    // robin over a silent backend and a good one; `connect_timeout` 1 s, the TLS
    // `handshake_timeout` 4 s; 16 concurrent first requests, all answered by the good
    // backend; the silent one accepted one connection.
    let pki = Pki::new("h2-outwait");
    let silent = Silent::start().await;
    let good = H2Backend::start_tls("good", tls_config("s", &pki, &["h2"])).await;
    let mut config = h2_tls_config(&[silent.addr, good.addr()], &pki);
    let pool = &mut config.pools[0];
    pool.connect_timeout = Duration::from_secs(1);
    let handshake_timeout = Duration::from_secs(4);
    pool.tls = Some(weir::tls::ClientSettings { handshake_timeout, ..trusting(&pki) });
    let weir = Balancer::start(config);
    let (addr, request) = (weir.addr(), b"GET /name HTTP/1.1\r\nHost: a\r\n\r\n");
    for response in join_all((0..16).map(|_| send(addr, request))).await {
        assert_eq!((response.status, response.text()), (200, "good".to_string()));
    }
    assert_eq!(silent.accepted(), 1, "the waiters opened their own connections");
}

/// Far below [`LONG`], the response timeout of the tests that use it: a request queued
/// behind a backend's zero stream limit would wait all of `LONG`.
const PROMPT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_allowing_no_streams_costs_its_requests_nothing() {
    // Goal: a backend whose SETTINGS_MAX_CONCURRENT_STREAMS is 0 (RFC 9113 §5.1.2: no
    // new streams) fails the connect, with nothing sent, so its requests go to another
    // backend at once. (They were queued in the codec behind the limit, and waited for
    // the response timeout.) Method: one worker, round robin over a backend that
    // allows no streams and a good one, response timeout 60 s; 8 concurrent requests
    // and then 8 one at a time are all answered by the good backend well before it.
    let zero = H2Backend::start_limited("zero", 0).await;
    let good = H2Backend::start("good", None).await;
    let weir = Balancer::over(&[zero.addr(), good.addr()], |config| {
        config.server.workers = 1;
        let pool = &mut config.pools[0];
        (pool.protocol, pool.response_timeout) = (BackendProtocol::H2c, LONG);
        pool.retry.budget_percent = 100;
    });
    let (addr, request) = (weir.addr(), b"GET /name HTTP/1.1\r\nHost: a\r\n\r\n");
    let burst = join_all((0..8).map(|_| send(addr, request)));
    let responses = tokio::time::timeout(PROMPT, burst).await.expect("answered, not queued");
    for _ in 0..8 {
        let one = tokio::time::timeout(PROMPT, send(addr, request)).await;
        let one = one.expect("answered, not queued");
        assert_eq!((one.status, one.text()), (200, "good".to_string()));
    }
    for response in responses {
        assert_eq!((response.status, response.text()), (200, "good".to_string()));
    }
    assert_eq!(zero.counts.streams.load(Ordering::SeqCst), 0);
    assert_eq!(good.counts.streams.load(Ordering::SeqCst), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_whose_only_backend_allows_no_streams_answers_502_at_once() {
    // Goal: with nowhere else to go, the request gets a 502 promptly, not a 504 after
    // the response timeout. Method: one h2c backend allowing 0 streams,
    // response timeout 60 s; a request is answered 502 well before it.
    let zero = H2Backend::start_limited("zero", 0).await;
    let weir = Balancer::over(&[zero.addr()], |config| {
        let pool = &mut config.pools[0];
        (pool.protocol, pool.response_timeout) = (BackendProtocol::H2c, LONG);
    });
    let request = b"GET /name HTTP/1.1\r\nHost: a\r\n\r\n";
    let answered = tokio::time::timeout(PROMPT, send(weir.addr(), request)).await;
    let response = answered.expect("answered, not queued");
    assert_eq!(response.status, 502, "{}", response.text());
    assert_eq!(zero.counts.streams.load(Ordering::SeqCst), 0);
}
