//! `[fleet]` when etcd goes away: serving goes on with the last applied configuration,
//! API changes answer 503, and instances catch up when etcd returns (a real etcd,
//! killed with SIGKILL and started again on the same data).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep, Instant};

use crate::fleet::{applied, fleet, instance, scraped, until_applied};
use crate::support::admin::{backends, call, pools};
use crate::support::balancer::Balancer;
use crate::support::etcd::{Etcd, Relay};
use crate::support::process::{temp_dir, thread_names as threads, WeirProcess};
use crate::support::{send, TestBackend};

/// How long etcd stays down, as the issue fixes it.
const OUTAGE: Duration = Duration::from_secs(60);
/// How soon after etcd returns every instance must have caught up, as the issue fixes it.
const CATCH_UP: Duration = Duration::from_secs(5);

async fn connected(admin: SocketAddr) -> bool {
    pools(admin).await["fleet"]["connected"] == true
}

async fn until_connected(admin: SocketAddr, want: bool, within: Duration) {
    let started = Instant::now();
    while connected(admin).await != want {
        assert!(started.elapsed() < within, "{admin} never became connected={want}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Requests through every front until `stop`; counts answers other than 200.
fn load(
    fronts: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut turn = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let request =
                format!("GET / HTTP/1.1\r\nHost: t\r\nX-Key: k{turn}\r\nConnection: close\r\n\r\n");
            let response = send(fronts[turn % fronts.len()], request.as_bytes()).await;
            sent.fetch_add(1, Ordering::Relaxed);
            if response.status != 200 {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            turn += 1;
            sleep(Duration::from_millis(5)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_under_load_fails_no_request_and_refuses_changes_with_503() {
    let mut etcd = Etcd::start();
    let servers = [TestBackend::start("o1").await, TestBackend::start("o2").await];
    let file: Vec<SocketAddr> = servers.iter().map(TestBackend::addr).collect();
    let weirs: Vec<Balancer> =
        ["a", "b", "c"].iter().map(|n| instance(&file, fleet(&etcd, "/weir/t3/", n))).collect();
    let admins: Vec<SocketAddr> = weirs.iter().map(Balancer::admin).collect();
    let path = format!("/api/v1/pools/web/backends/{}", file[0]);
    let reply = call(admins[0], "PATCH", &path, None, Some(r#"{"weight":4}"#)).await;
    until_applied(&admins, reply.json["fleet"]["written"].as_i64().unwrap()).await;
    let (stop, sent, failed) = (Arc::new(AtomicBool::new(false)), Arc::default(), Arc::default());
    let traffic = load(
        weirs.iter().map(Balancer::addr).collect(),
        Arc::clone(&stop),
        Arc::clone(&sent),
        Arc::clone(&failed),
    );
    etcd.kill();
    let killed = Instant::now();
    for admin in &admins {
        until_connected(*admin, false, Duration::from_secs(10)).await;
    }
    let mut refused = 0;
    while killed.elapsed() < OUTAGE {
        for admin in &admins {
            let reply = call(*admin, "PATCH", &path, None, Some(r#"{"weight":5}"#)).await;
            assert_eq!(reply.status, 503, "{:?}", reply.json);
            assert!(
                reply.json["error"].as_str().unwrap_or_default().contains("unreachable"),
                "{:?}",
                reply.json
            );
            refused += 1;
        }
        sleep(Duration::from_secs(5)).await;
    }
    for admin in &admins {
        assert_eq!(backends(&pools(*admin).await, "web")[0].2, 4, "the applied weight stays");
    }
    etcd.resume();
    let back = Instant::now();
    for admin in &admins {
        until_connected(*admin, true, CATCH_UP).await;
    }
    let reply = call(admins[1], "PATCH", &path, None, Some(r#"{"weight":6}"#)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    until_applied(&admins, reply.json["fleet"]["written"].as_i64().unwrap()).await;
    let caught_up = back.elapsed();
    eprintln!(
        "etcd outage: {refused} changes refused, caught up {caught_up:?} after etcd returned"
    );
    assert!(caught_up <= CATCH_UP, "{caught_up:?}");
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("etcd outage: {sent} requests, {failed} failed");
    assert!(sent > 1000, "{sent} requests");
    assert_eq!(failed, 0);
    for admin in &admins {
        assert!(scraped(*admin, "weir_fleet_write_failures_total").await >= 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_restarted_after_a_compaction_lists_again_and_converges() {
    let etcd = Etcd::start();
    let servers = [TestBackend::start("c1").await, TestBackend::start("c2").await];
    let file: Vec<SocketAddr> = servers.iter().map(TestBackend::addr).collect();
    let a = instance(&file, fleet(&etcd, "/weir/t4/", "a"));
    let b = instance(&file, fleet(&etcd, "/weir/t4/", "b"));
    b.stop().await;
    let last = weights_two_to_seven(a.admin(), file[1]).await;
    let compacted = etcd.compact();
    assert!(compacted >= last);
    let b = instance(&file, fleet(&etcd, "/weir/t4/", "b"));
    until_applied(&[b.admin()], last).await;
    assert_eq!(backends(&pools(b.admin()).await, "web"), backends(&pools(a.admin()).await, "web"));
    // b's start writes its membership key, a revision past `last` that reaches `a` by
    // its watch a moment later (seen 11 against 10 under load): wait for it, then both
    // stand at one revision.
    let revision = applied(b.admin()).await;
    until_applied(&[a.admin()], revision).await;
    assert_eq!(applied(b.admin()).await, applied(a.admin()).await);
    assert_eq!(scraped(b.admin(), "weir_fleet_relists_total").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_while_etcd_is_down_serves_its_cache_and_refuses_changes() {
    let mut etcd = Etcd::start();
    let server = TestBackend::start("k1").await;
    let file = [server.addr()];
    let mut config = fleet(&etcd, "/weir/t5/", "a");
    config.timeout = Duration::from_millis(500);
    let a = instance(&file, config.clone());
    let path = format!("/api/v1/pools/web/backends/{}", file[0]);
    let reply = call(a.admin(), "PATCH", &path, None, Some(r#"{"weight":7}"#)).await;
    until_applied(&[a.admin()], reply.json["fleet"]["written"].as_i64().unwrap()).await;
    a.stop().await;
    etcd.kill();
    let a = instance(&file, config);
    assert_eq!(backends(&pools(a.admin()).await, "web")[0].2, 7, "the cached change is served");
    assert_eq!(scraped(a.admin(), "weir_fleet_from_cache").await, 1);
    let reply = call(a.admin(), "PATCH", &path, None, Some(r#"{"weight":8}"#)).await;
    assert_eq!(reply.status, 503, "{:?}", reply.json);
    let response = send(a.addr(), b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
    assert_eq!(response.status, 200);
    etcd.resume();
    until_connected(a.admin(), true, CATCH_UP).await;
    assert_eq!(scraped(a.admin(), "weir_fleet_from_cache").await, 0);
    let reply = call(a.admin(), "PATCH", &path, None, Some(r#"{"weight":8}"#)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_instance_cut_off_past_a_compaction_lists_again_and_converges() {
    let etcd = Etcd::start();
    let relay = Relay::start(&etcd).await;
    let servers = [TestBackend::start("w1").await, TestBackend::start("w2").await];
    let file: Vec<SocketAddr> = servers.iter().map(TestBackend::addr).collect();
    let a = instance(&file, fleet(&etcd, "/weir/t7/", "a"));
    let mut through_relay = fleet(&etcd, "/weir/t7/", "b");
    through_relay.etcd = vec![relay.endpoint()];
    let b = instance(&file, through_relay);
    until_connected(b.admin(), true, CATCH_UP).await;
    relay.cut();
    until_connected(b.admin(), false, Duration::from_secs(10)).await;
    let last = weights_two_to_seven(a.admin(), file[1]).await;
    assert!(etcd.compact() >= last);
    let relists = scraped(b.admin(), "weir_fleet_relists_total").await;
    relay.restore();
    until_applied(&[b.admin()], last).await;
    assert_eq!(backends(&pools(b.admin()).await, "web")[1].2, 7);
    assert_eq!(
        scraped(b.admin(), "weir_fleet_relists_total").await,
        relists + 1,
        "the watch from b's revision was compacted away: exactly one more list"
    );
}

/// Sets the weight of `backend` to 2, 3, ... 7 through `admin`; the last write's revision.
async fn weights_two_to_seven(admin: SocketAddr, backend: SocketAddr) -> i64 {
    let path = format!("/api/v1/pools/web/backends/{backend}");
    let mut last = 0;
    for weight in 2..8 {
        let body = format!(r#"{{"weight":{weight}}}"#);
        let reply = call(admin, "PATCH", &path, None, Some(&body)).await;
        last = reply.json["fleet"]["written"].as_i64().unwrap_or_else(|| panic!("{reply:?}"));
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fleet_no_etcd_code_runs() {
    let etcd = Etcd::start();
    let server = TestBackend::start("n1").await;
    let dir = temp_dir("fleet-threads");
    let base = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[pool]]\nname = \"web\"\nbackends = [\"{}\"]\n",
        server.addr()
    );
    let plain = dir.join("plain.toml");
    std::fs::write(&plain, &base).unwrap();
    let shared = dir.join("fleet.toml");
    std::fs::write(
        &shared,
        format!("{base}\n[fleet]\netcd = [\"{}\"]\nprefix = \"/weir/t6/\"\n", etcd.endpoint()),
    )
    .unwrap();
    let (without, _) = WeirProcess::start(&["-c", plain.to_str().unwrap()]).await;
    let (with, _) = WeirProcess::start(&["-c", shared.to_str().unwrap()]).await;
    assert!(
        !threads(without.pid()).iter().any(|t| t == "weir-fleet"),
        "{:?}",
        threads(without.pid())
    );
    assert!(threads(with.pid()).iter().any(|t| t == "weir-fleet"), "{:?}", threads(with.pid()));
    assert!(!without.stderr().contains("weir::fleet"), "{}", without.stderr());
}
