//! Control-plane changes against a running balancer.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use crate::config::StrategyKind;
use crate::config::{BackendAddress, BackendConfig, Config, HealthConfig, PoolConfig};
use crate::health::{step, Event, Passive, Rules, Subject};

fn config(ports: &[u16]) -> Config {
    let address = |port: &u16| BackendAddress::parse(&format!("127.0.0.1:{port}")).unwrap();
    let backends =
        ports.iter().map(|p| BackendConfig { address: address(p), weight: 1, resolve: false });
    let mut config = Config::default();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.workers = 1;
    config.admin.listen = None;
    config.pools.push(PoolConfig::new("web", StrategyKind::RoundRobin, backends.collect()));
    config
}

/// Starts weir with `config` and a state file that cannot be written once started
/// (its directory is a regular file), so every API change is refused with 500.
/// Returns the handle and the directory to remove.
fn start_unwritable(mut config: Config, name: &str) -> (crate::server::Handle, PathBuf) {
    let dir = std::env::temp_dir().join(format!("weir-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let parent = dir.join("not-a-dir");
    config.admin.state_file = Some(parent.join("state.json").to_string_lossy().into_owned());
    let handle = crate::server::start(config).unwrap();
    std::fs::write(&parent, "").unwrap();
    (handle, dir)
}

#[test]
fn a_change_the_state_file_refuses_keeps_pool_state() {
    // Goal: a change refused because the state file cannot be written leaves the
    // pool state it shares with the running snapshot as it was: the size, and the
    // ejection slot of an ejected backend the change would have removed.
    let (handle, dir) = start_unwritable(config(&[1, 2]), "control-pool");
    let shared = std::sync::Arc::clone(handle.shared());
    let snapshot = shared.snapshot.load_full();
    let (pool, backend) = (&snapshot.pools[0], &snapshot.pools[0].backends[1]);
    assert!(pool.live.reserve_ejection(100));
    let rules = Rules::of(&pool.settings);
    step(Subject::of("web", backend), rules, Event::Trip { failures: 5, kinds: 0 });
    assert!(matches!(backend.live.health.machine().passive, Passive::Ejected { .. }));
    let refused = shared.edit(|config| {
        config.pools[0].backends.remove(1);
        Ok(None)
    });
    assert_eq!(refused.err().map(|r| r.status), Some(500));
    assert_eq!(pool.live.ejected.load(Ordering::Relaxed), 1, "the slot is still held");
    assert_eq!(pool.live.size.load(Ordering::Relaxed), 2);
    handle.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_refused_change_that_removes_probes_keeps_a_failed_backend_down() {
    // Goal: a change that turns probes off, refused because the state file cannot be
    // written, leaves a backend the probes took out down: building the snapshot that
    // was never swapped in must not have published it as healthy.
    let mut config = config(&[1, 2]);
    // Probes that do not run during the test: the flag is set by hand below.
    let interval = std::time::Duration::from_secs(3600);
    let probes = HealthConfig { interval, unhealthy_threshold: 1, ..HealthConfig::default() };
    config.pools[0].health = Some(probes);
    let (handle, dir) = start_unwritable(config, "control-probes");
    let shared = std::sync::Arc::clone(handle.shared());
    let snapshot = shared.snapshot.load_full();
    let (pool, backend) = (&snapshot.pools[0], &snapshot.pools[0].backends[1]);
    let failed = Event::Probe { ok: false, detail: "test" };
    step(Subject::of("web", backend), Rules::of(&pool.settings), failed);
    assert!(!backend.live.is_healthy(), "the probe took it out");
    let refused = shared.edit(|config| {
        config.pools[0].health = None;
        Ok(None)
    });
    assert_eq!(refused.err().map(|r| r.status), Some(500));
    let running = shared.snapshot.load_full();
    assert!(running.pools[0].settings.health.is_some(), "the change was refused");
    assert!(!running.pools[0].backends[1].live.is_healthy(), "still down after the refusal");
    handle.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn api_changes_do_not_resolve_known_names_again() {
    // Goal: an API change resolves only names the registry has not seen, so a name
    // that stopped resolving (stood in for by one that never did, but is known)
    // does not refuse the change, while a new unresolvable name does.
    let known = "no-such-host.invalid:80";
    let address = |text: &str| BackendAddress::parse(text).unwrap();
    let backend = |text: &str| BackendConfig { address: address(text), weight: 1, resolve: false };
    let mut config = crate::config::Config::default();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.workers = 1;
    config.admin.listen = None;
    config.pools.push(PoolConfig::new(
        "web",
        StrategyKind::RoundRobin,
        vec![backend("127.0.0.1:1")],
    ));
    let handle = crate::server::start(config).unwrap();
    let shared = std::sync::Arc::clone(handle.shared());
    let addr = "127.0.0.1:9".parse().unwrap();
    shared.plane().registry.lock().unwrap().remember_fixed(known, vec![addr]);
    let added = shared.edit(|config| {
        config.pools[0].backends.push(backend(known));
        Ok(None)
    });
    assert_eq!(added.map(|s| s.pools[0].backends[1].resolved.clone()), Ok(vec![addr]));
    let refused = shared.edit(|config| {
        config.pools[0].backends.push(backend("other.invalid:80"));
        Ok(None)
    });
    assert_eq!(refused.err().map(|r| r.status), Some(400));
    handle.shutdown();
}
