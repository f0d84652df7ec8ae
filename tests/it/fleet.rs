//! `[fleet]`: weir instances sharing the admin API's changes through a real etcd
//! (Debian's `etcd-server`, started by each test on free loopback ports).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::time::{sleep, Instant};

use crate::support::admin::{admin_addr, admin_get, backends, call, pools};
use crate::support::balancer::Balancer;
use crate::support::etcd::Etcd;
use crate::support::process::{temp_dir, temp_path, WeirProcess};
use crate::support::{send, TestBackend};
use weir::config::{FleetConfig, HashConfig, HashKey, StrategyKind};

/// Bound on waits for a change to reach every instance: ten times the issue's p99 target
/// of 1 s (measured p99 under 0.1 s, printed by the test of three processes); reaching it
/// means the change is not coming, not that the machine was slow.
const CONVERGE: Duration = Duration::from_secs(10);

pub fn fleet(etcd: &Etcd, prefix: &str, name: &str) -> FleetConfig {
    FleetConfig {
        etcd: vec![etcd.endpoint()],
        prefix: prefix.into(),
        name: Some(name.into()),
        cache_file: Some(temp_path("fleet-cache.json").display().to_string()),
        ..FleetConfig::default()
    }
}

/// An instance over `backends`, pool `web` hashed on `X-Key`, sharing `prefix`.
pub fn instance(backends: &[SocketAddr], fleet: FleetConfig) -> Balancer {
    Balancer::with_admin(backends, |config| {
        config.server.workers = 2;
        config.pools[0].strategy = StrategyKind::ConsistentHash;
        let key = HashKey::parse("header:x-key").expect("key");
        config.pools[0].hash = Some(HashConfig { key, table_size: 65_537 });
        config.fleet = Some(fleet);
    })
}

/// The fleet revision an instance has applied, from `/api/v1/pools`.
pub async fn applied(admin: SocketAddr) -> i64 {
    pools(admin).await["fleet"]["revision"].as_i64().expect("fleet revision")
}

/// Waits until every instance applied `revision`; the time it took.
pub async fn until_applied(admins: &[SocketAddr], revision: i64) -> Duration {
    let started = Instant::now();
    for admin in admins {
        while applied(*admin).await < revision {
            assert!(started.elapsed() < CONVERGE, "{admin} never applied revision {revision}");
            sleep(Duration::from_millis(2)).await;
        }
    }
    started.elapsed()
}

/// Which backend each of 100 keys reaches through `front`.
async fn key_map(front: SocketAddr) -> Vec<String> {
    let mut picks = Vec::with_capacity(100);
    for key in 0..100 {
        let request =
            format!("GET / HTTP/1.1\r\nHost: t\r\nX-Key: user-{key}\r\nConnection: close\r\n\r\n");
        let response = send(front, request.as_bytes()).await;
        assert_eq!(response.status, 200, "key {key}");
        picks.push(response.text());
    }
    picks
}

/// Ten sticky cookies set by the first front pin the same backend on every other front.
async fn cookies_agree(fronts: &[SocketAddr]) {
    for _ in 0..10 {
        let first =
            send(fronts[0], b"GET /sticky HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
        let line =
            first.header_all("set-cookie").into_iter().find(|c| c.starts_with("weir_affinity="));
        let cookie = line.expect("a sticky cookie").split(';').next().unwrap().to_string();
        for front in &fronts[1..] {
            let request = format!(
                "GET /sticky HTTP/1.1\r\nHost: t\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
            );
            let again = send(*front, request.as_bytes()).await;
            assert_eq!(again.text(), first.text(), "{cookie} on {front}");
            assert!(again.header_all("set-cookie").is_empty(), "{front} accepts the cookie");
        }
    }
}

/// One of the four changes the trials cycle through, on pool `web` or `pinned`, sent to
/// `admin`; its answer.
async fn change(
    admin: SocketAddr,
    trial: usize,
    spare: SocketAddr,
    one: SocketAddr,
    two: SocketAddr,
) -> Value {
    let pool = if trial % 8 < 4 { "web" } else { "pinned" };
    let (method, path, body) = match trial % 4 {
        0 => {
            let state = if trial % 16 < 8 { "drain" } else { "active" };
            (
                "PATCH",
                format!("/api/v1/pools/{pool}/backends/{one}"),
                format!(r#"{{"state":"{state}"}}"#),
            )
        }
        1 => (
            "PATCH",
            format!("/api/v1/pools/{pool}/backends/{two}"),
            format!(r#"{{"weight":{}}}"#, 1 + trial % 7),
        ),
        2 => (
            "POST",
            format!("/api/v1/pools/{pool}/backends"),
            format!(r#"{{"address":"{spare}"}}"#),
        ),
        _ => ("DELETE", format!("/api/v1/pools/{pool}/backends/{spare}"), String::new()),
    };
    let body = (!body.is_empty()).then_some(body.as_str());
    let reply = call(admin, method, &path, None, body).await;
    assert!(matches!(reply.status, 200 | 201), "trial {trial}: {method} {path}: {:?}", reply.json);
    reply.json
}

/// A config file for one of the fleet's processes: pool `web` hashed on `X-Key`, pool
/// `pinned` with sticky cookies under `/sticky`, both over `backends`.
fn process_config(backends: &[SocketAddr], etcd: &Etcd, name: &str) -> String {
    let list: Vec<String> = backends.iter().map(|a| format!("\"{a}\"")).collect();
    let list = list.join(", ");
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [fleet]\netcd = [\"{}\"]\nprefix = \"/weir/t1/\"\nname = \"{name}\"\n\
         [[pool]]\nname = \"web\"\nstrategy = \"consistent_hash\"\nbackends = [{list}]\n\
         [pool.hash]\nkey = \"header:x-key\"\n\
         [[pool]]\nname = \"pinned\"\nstrategy = \"sticky\"\nbackends = [{list}]\n\
         [pool.sticky]\nsecret = \"fleet-secret\"\n\
         [[route]]\npath_prefix = \"/sticky\"\npool = \"pinned\"\n",
        etcd.endpoint()
    )
}

/// Goal: every change made through any of three processes reaches all three through
/// their etcd watches, and after each they agree. The issue's target, p99 within 1 s
/// of the API's answer, is measured and printed (`README.md` quotes it), not asserted:
/// a busy machine can delay any process. Asserted: each change applied everywhere
/// within [`CONVERGE`]; every change carried by the processes' watches (none lists the
/// prefix again, the only other way a change arrives); agreement after each change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_apply_every_change_through_their_watches_and_agree() {
    let etcd = Etcd::start();
    let mut servers = Vec::new();
    for name in ["f1", "f2", "f3", "f4"] {
        servers.push(TestBackend::start(name).await);
    }
    let file: Vec<SocketAddr> = servers[..3].iter().map(TestBackend::addr).collect();
    let spare = servers[3].addr();
    let (mut processes, mut fronts, mut admins) = (Vec::new(), Vec::new(), Vec::new());
    for name in ["a", "b", "c"] {
        let dir = temp_dir("fleet-process");
        let path = dir.join("weir.toml");
        std::fs::write(&path, process_config(&file, &etcd, name)).expect("write config");
        let (process, front) = WeirProcess::start(&["-c", path.to_str().unwrap()]).await;
        admins.push(admin_addr(&process).await);
        fronts.push(front);
        processes.push(process);
    }
    // Each process's first read of etcd (a start that waited too long for it goes on from
    // the cache file and reads etcd later): from then on, only a watch brings changes.
    let mut relists = Vec::new();
    for admin in &admins {
        let started = Instant::now();
        loop {
            let listed = scraped(*admin, "weir_fleet_relists_total").await;
            if listed >= 1 {
                relists.push(listed);
                break;
            }
            assert!(started.elapsed() < CONVERGE, "{admin} never read etcd");
            sleep(Duration::from_millis(20)).await;
        }
    }
    let mut latencies = Vec::with_capacity(100);
    for trial in 0..100 {
        let writer = admins[trial % 3];
        let answer = change(writer, trial, spare, file[0], file[1]).await;
        let written = answer["fleet"]["written"].as_i64().expect("written revision");
        latencies.push(until_applied(&admins, written).await);
        let expected = pools(writer).await;
        for admin in &admins {
            let doc = pools(*admin).await;
            for pool in ["web", "pinned"] {
                assert_eq!(
                    backends(&doc, pool),
                    backends(&expected, pool),
                    "trial {trial}: {admin}"
                );
            }
        }
        // After every change: the same backend for each of 100 keys, and each other's
        // sticky cookies honoured.
        let reference = key_map(fronts[0]).await;
        for front in &fronts[1..] {
            assert_eq!(key_map(*front).await, reference, "trial {trial}: hash keys differ");
        }
        cookies_agree(&fronts).await;
    }
    latencies.sort();
    let (p50, p99, max) = (latencies[49], latencies[98], latencies[99]);
    eprintln!("fleet apply latency over 100 trials: p50 {p50:?} p99 {p99:?} max {max:?}");
    for (admin, relists) in admins.iter().zip(relists) {
        let now = scraped(*admin, "weir_fleet_relists_total").await;
        assert_eq!(now, relists, "{admin} listed the prefix again: a change came by no watch");
    }
    members_agree(&admins).await;
}

/// `GET /api/v1/fleet` on every instance lists all three at one revision, none lagging.
async fn members_agree(admins: &[SocketAddr]) {
    let started = Instant::now();
    loop {
        let mut views = Vec::new();
        for admin in admins {
            let reply = call(*admin, "GET", "/api/v1/fleet", None, None).await;
            assert_eq!(reply.status, 200, "{:?}", reply.json);
            views.push(reply.json);
        }
        let revisions: Vec<i64> =
            views.iter().map(|v| v["revision"].as_i64().unwrap_or(-1)).collect();
        let settled = views.iter().all(|view| {
            let list = view["instances"].as_array().cloned().unwrap_or_default();
            list.len() == admins.len()
                && list
                    .iter()
                    .all(|m| m["lagging"] == false && m["revision"].as_i64() == Some(revisions[0]))
        });
        if settled && revisions.iter().all(|r| *r == revisions[0]) {
            return;
        }
        assert!(started.elapsed() < CONVERGE, "fleet views never agreed: {views:?}");
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_of_two_backends_both_survive_and_edits_of_one_backend_conflict() {
    let etcd = Etcd::start();
    let servers = [TestBackend::start("e1").await, TestBackend::start("e2").await];
    let file: Vec<SocketAddr> = servers.iter().map(TestBackend::addr).collect();
    let a = instance(&file, fleet(&etcd, "/weir/t2/", "a"));
    let b = instance(&file, fleet(&etcd, "/weir/t2/", "b"));
    let (one, two) = (file[0], file[1]);
    // Two operators, two instances, two backends, at the same moment: both survive.
    let weight = format!("/api/v1/pools/web/backends/{one}");
    let drain = format!("/api/v1/pools/web/backends/{two}");
    let (x, y) = tokio::join!(
        call(a.admin(), "PATCH", &weight, None, Some(r#"{"weight":9}"#)),
        call(b.admin(), "PATCH", &drain, None, Some(r#"{"state":"drain"}"#)),
    );
    assert_eq!((x.status, y.status), (200, 200), "{:?} {:?}", x.json, y.json);
    let last =
        x.json["fleet"]["written"].as_i64().max(y.json["fleet"]["written"].as_i64()).unwrap();
    until_applied(&[a.admin(), b.admin()], last).await;
    for admin in [a.admin(), b.admin()] {
        let list = backends(&pools(admin).await, "web");
        assert_eq!(list[0].2, 9, "{admin}: {list:?}");
        assert_eq!(list[1].1, "draining", "{admin}: {list:?}");
    }
    // The same backend from two instances at once: when both were based on the same
    // version, one wins and the other gets 409 with the stored object.
    let mut conflicts = 0;
    for round in 0..20u64 {
        let (wa, wb) = (
            format!(r#"{{"weight":{}}}"#, 100 + round),
            format!(r#"{{"weight":{}}}"#, 200 + round),
        );
        let (x, y) = tokio::join!(
            call(a.admin(), "PATCH", &weight, None, Some(&wa)),
            call(b.admin(), "PATCH", &weight, None, Some(&wb)),
        );
        let revisions = [&x, &y].map(|r| r.json["fleet"]["written"].as_i64().unwrap_or(0));
        until_applied(&[a.admin(), b.admin()], revisions[0].max(revisions[1])).await;
        let stored = backends(&pools(a.admin()).await, "web")[0].2;
        match (x.status, y.status) {
            (200, 409) | (409, 200) => {
                conflicts += 1;
                let (won, lost, value) =
                    if x.status == 200 { (&x, &y, 100 + round) } else { (&y, &x, 200 + round) };
                assert_eq!(stored, value, "the winner's weight is stored: {:?}", won.json);
                let key = format!("pools/web/backends/{one}");
                assert_eq!(
                    lost.json["current"][&key]["weight"], value,
                    "409 carries the stored object: {:?}",
                    lost.json
                );
            }
            // One instance saw the other's change before it wrote: two edits in a row,
            // and the later one is what stays.
            (200, 200) => {
                let later = if revisions[0] > revisions[1] { 100 + round } else { 200 + round };
                assert_eq!(stored, later);
            }
            other => panic!("round {round}: {other:?}: {:?} {:?}", x.json, y.json),
        }
    }
    assert!(conflicts > 0, "20 simultaneous edits of one backend never conflicted");
    let counted = scraped(a.admin(), "weir_fleet_conflicts_total").await
        + scraped(b.admin(), "weir_fleet_conflicts_total").await;
    assert_eq!(counted, conflicts, "every 409 is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_and_a_drain_of_one_backend_at_once_lose_neither() {
    let etcd = Etcd::start();
    let servers = [TestBackend::start("r1").await, TestBackend::start("r2").await];
    let file: Vec<SocketAddr> = servers.iter().map(TestBackend::addr).collect();
    let a = instance(&file, fleet(&etcd, "/weir/t8/", "a"));
    let b = instance(&file, fleet(&etcd, "/weir/t8/", "b"));
    let weight = format!("/api/v1/pools/web/backends/{}", file[0]);
    // A weight on one instance and a drain on another, of the same backend at once: each
    // answered 200 must have its effect in the stored object; none is lost unseen.
    let (mut weight_now, mut draining_now) = (1, false);
    for round in 0..20u64 {
        let body = format!(r#"{{"weight":{}}}"#, 300 + round);
        let state = if round % 2 == 0 { r#"{"state":"drain"}"# } else { r#"{"state":"active"}"# };
        let (x, y) = tokio::join!(
            call(a.admin(), "PATCH", &weight, None, Some(&body)),
            call(b.admin(), "PATCH", &weight, None, Some(state)),
        );
        assert!(
            matches!((x.status, y.status), (200, 200) | (200, 409) | (409, 200)),
            "{x:?} {y:?}"
        );
        let revisions = [&x, &y].map(|r| r.json["fleet"]["written"].as_i64().unwrap_or(0));
        until_applied(&[a.admin(), b.admin()], revisions[0].max(revisions[1])).await;
        if x.status == 200 {
            weight_now = 300 + round;
        }
        if y.status == 200 {
            draining_now = round % 2 == 0;
        }
        for admin in [a.admin(), b.admin()] {
            let stored = backends(&pools(admin).await, "web")[0].clone();
            assert_eq!(stored.2, weight_now, "round {round}: weight lost on {admin}: {x:?} {y:?}");
            assert_eq!(
                stored.1 == "draining",
                draining_now,
                "round {round}: drain lost on {admin}"
            );
        }
    }
}

/// A series' value in the admin listener's `/metrics`.
pub async fn scraped(admin: SocketAddr, series: &str) -> u64 {
    let text = admin_get(admin, "/metrics").await.text();
    let line = text.lines().find(|line| line.starts_with(&format!("{series} ")));
    line.and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or_else(|| panic!("no {series}"))
}
