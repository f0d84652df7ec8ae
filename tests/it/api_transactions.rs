//! Admin API changes are all or nothing: a change refused by the build or by the state
//! file leaves the registry (live state, `?now=true` marks, discovered addresses) exactly
//! as the running snapshot has it, pools the API can leave empty answer 503, and no
//! change is accepted while a binary upgrade hands over (it would be lost).

use crate::support::admin::{call, TOKEN};
use crate::support::{self, Balancer};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use weir::admin::Refusal;
use weir::config::{BackendAddress, BackendConfig, Config, StrategyKind};
use weir::snapshot::{BackendState, Snapshot};

/// Longest wait for the DNS thread to bring addresses back.
const DNS_WAIT: Duration = Duration::from_secs(10);

fn backend(text: &str) -> BackendConfig {
    BackendConfig {
        address: BackendAddress::parse(text).unwrap(),
        weight: 1,
        resolve: weir::config::Resolve::Once,
    }
}

fn two_backends() -> Config {
    support::config_for(&["127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap()])
}

fn labels(snapshot: &Snapshot) -> Vec<String> {
    snapshot.pools[0].backends.iter().map(|b| b.label.clone()).collect()
}

fn refused_status(result: Result<Arc<Snapshot>, Refusal>) -> Option<u16> {
    result.err().map(|refusal| refusal.status)
}

#[test]
fn failed_state_write_keeps_live_state_of_removed_backend() {
    // Goal: an edit refused because the state file cannot be written (its path is a
    // non-empty directory, so the rename fails even as root) changes nothing: the idle
    // backend it removed keeps its live state (same id, no slow start) afterwards.
    let dir = support::process::temp_path("state-fail");
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.json");
    let mut config = two_backends();
    config.admin.state_file = Some(state.to_string_lossy().into_owned());
    let weir = Balancer::start(config);
    let shared = Arc::clone(weir.shared());
    let live_before = Arc::clone(&shared.snapshot.load().pools[0].backends[1].live);
    std::fs::create_dir_all(state.join("x")).unwrap();
    let refused = shared.edit(|config| {
        config.pools[0].backends.remove(1);
        Ok(None)
    });
    assert_eq!(refused_status(refused), Some(500));
    assert_eq!(shared.snapshot.load().pools[0].live.size.load(Ordering::Relaxed), 2);
    std::fs::remove_dir_all(&state).unwrap();
    let after = shared
        .edit(|config| {
            config.pools[0].backends[0].weight = 2;
            Ok(None)
        })
        .map_err(|r| r.message)
        .unwrap();
    let kept = &after.pools[0].backends[1];
    assert!(Arc::ptr_eq(&live_before, &kept.live), "backend 2 lost its live state");
    assert_eq!(kept.ramp_permille(), None, "no slow start for a backend that never left");
}

#[test]
fn failed_build_forgets_its_remove_now_mark() {
    // Goal: a `?now=true` removal refused by the build (an unresolvable backend in the
    // same change) leaves no mark: a later plain removal of the busy backend drains it.
    let weir = Balancer::start(two_backends());
    let shared = Arc::clone(weir.shared());
    let busy = Arc::clone(&shared.snapshot.load().pools[0].backends[1].live);
    let refused = shared.edit(|config| {
        config.pools[0].backends.remove(1);
        config.pools[0].backends.push(backend("no-such-host.invalid:80"));
        Ok(Some(("web".to_string(), "127.0.0.1:2".to_string())))
    });
    assert_eq!(refused_status(refused), Some(400));
    busy.in_flight.store(1, Ordering::Relaxed);
    let after = shared
        .edit(|config| {
            config.pools[0].backends.remove(1);
            Ok(None)
        })
        .map_err(|r| r.message)
        .unwrap();
    let states: Vec<_> = after.pools[0].backends.iter().map(|b| b.state).collect();
    assert_eq!(states, [BackendState::Active, BackendState::Leaving], "busy backend drains");
    busy.in_flight.store(0, Ordering::Relaxed);
}

#[test]
fn re_added_resolve_backend_gets_its_addresses_back() {
    // Goal: a `resolve = true` backend removed and added back before the DNS thread
    // notices has its discovered addresses again, though the DNS answer never changes.
    let dns = support::dns::TestDns::start();
    dns.set_a("api.weir.test", &["127.0.0.5".parse().unwrap()]);
    let mut config = support::config_for(&["127.0.0.1:1".parse().unwrap()]);
    config.dns.servers = vec![dns.addr()];
    config.dns.timeout = Some(Duration::from_millis(200));
    let named =
        BackendConfig { resolve: weir::config::Resolve::Addresses, ..backend("api.weir.test:80") };
    config.pools[0].backends.push(named.clone());
    config.pools[0].dns_refresh = Duration::from_secs(1);
    let weir = Balancer::start(config);
    let shared = Arc::clone(weir.shared());
    assert_eq!(labels(&shared.snapshot.load()), ["127.0.0.1:1", "127.0.0.5:80"]);
    let removed = shared.edit(|c| {
        c.pools[0].backends.pop();
        Ok(None)
    });
    assert_eq!(labels(&removed.map_err(|r| r.message).unwrap()), ["127.0.0.1:1"]);
    shared
        .edit(move |c| {
            c.pools[0].backends.push(named);
            Ok(None)
        })
        .map_err(|r| r.message)
        .unwrap();
    let deadline = std::time::Instant::now() + DNS_WAIT;
    while labels(&shared.snapshot.load()).len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(labels(&shared.snapshot.load()), ["127.0.0.1:1", "127.0.0.5:80"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategy_answers_503_for_an_empty_pool() {
    // Goal: a pool the API leaves empty (added without backends) answers 503 with every
    // strategy, in debug builds too (no debug assertion fires on the request path).
    let kinds = [
        StrategyKind::RoundRobin,
        StrategyKind::WeightedRoundRobin,
        StrategyKind::Random,
        StrategyKind::LeastRequests,
        StrategyKind::ConsistentHash,
        StrategyKind::Sticky,
        StrategyKind::PeakEwma,
    ];
    for kind in kinds {
        let weir = Balancer::over(&["127.0.0.1:1".parse().unwrap()], |_| {});
        let shared = Arc::clone(weir.shared());
        let key = (kind == StrategyKind::ConsistentHash)
            .then(|| weir::config::HashKey::parse("path").unwrap());
        let spec = weir::state::PoolSpec {
            strategy: kind,
            hash_key: key,
            backends: vec![],
            draining: Default::default(),
        };
        let added = shared.edit(move |c| {
            c.pools.insert(0, weir::state::new_pool("empty", &spec));
            Ok(None)
        });
        added.map_err(|r| r.message).unwrap();
        let response = support::get_close(weir.addr(), "/x").await;
        assert_eq!(response.status, 503, "{kind:?}");
        weir.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_changes_are_refused_while_an_upgrade_hands_over() {
    // Goal: from the start of a binary upgrade's handover the old process answers API
    // changes 503 with a JSON error (the new process reads the state file as it starts,
    // so a change here would be lost); once the upgrade failed, changes work again.
    let backends = ["127.0.0.1:1".parse().unwrap()];
    let weir = Balancer::with_admin(&backends, |c| c.admin.token = Some(TOKEN.to_string()));
    let shared = Arc::clone(weir.handle().shared());
    // A "new binary" that never connects and exits after a second: the handover fails.
    let args = vec!["-c".into(), "sleep 1".into()];
    let binary = weir::upgrade::Binary { path: "/bin/sh".into(), args };
    let upgrade = std::thread::spawn(move || weir::upgrade::hand_over(&shared, &binary));
    let patch = "/api/v1/pools/web/backends/127.0.0.1:1";
    let body = Some(r#"{"weight": 2}"#);
    let mut refused = None;
    // Bounded by the child's exit, which ends the handover.
    while refused.is_none() && !upgrade.is_finished() {
        let reply = call(weir.admin(), "PATCH", patch, Some(TOKEN), body).await;
        refused = (reply.status == 503).then_some(reply);
    }
    let refused = refused.expect("a change during the handover is refused");
    let error = refused.json["error"].as_str().unwrap_or_default();
    assert!(error.contains("upgrade in progress"), "{:?}", refused.json);
    let outcome = tokio::task::spawn_blocking(move || upgrade.join().unwrap()).await.unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    let after = call(weir.admin(), "PATCH", patch, Some(TOKEN), body).await;
    assert_eq!(after.status, 200, "{:?}", after.json);
}
