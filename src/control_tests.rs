//! Control-plane changes against a plane built as `server::start` builds it, without
//! threads or sockets.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{prepare, EditError, Plane};
use crate::access_log::AccessLog;
use crate::config::StrategyKind;
use crate::config::{BackendAddress, BackendConfig, Config, HealthConfig, PoolConfig};
use crate::context::Context;
use crate::health::{step, Event, Passive, Rules, Subject};
use crate::listeners::Listeners;
use crate::snapshot::{Registry, Snapshot};

/// What a test's change refuses with: no reason of its own.
type Edited = Result<Arc<Snapshot>, EditError<()>>;

fn backend(text: &str) -> BackendConfig {
    BackendConfig {
        address: BackendAddress::parse(text).unwrap(),
        weight: 1,
        resolve: crate::config::Resolve::Once,
    }
}

fn config(ports: &[u16]) -> Config {
    let backends = ports.iter().map(|port| backend(&format!("127.0.0.1:{port}"))).collect();
    let mut config = Config::default();
    config.server.workers = 1;
    config.admin.listen = None;
    config.pools.push(PoolConfig::new("web", StrategyKind::RoundRobin, backends));
    config
}

/// The control plane of a balancer started with `config`.
fn plane(config: Config) -> Arc<Plane> {
    let (control, config) = prepare(config, None).unwrap();
    let mut registry = Registry::new(1);
    let snapshot = registry.build(&Arc::new(config), 1).unwrap().publish();
    let listeners = Listeners::open(&[], 1, Default::default()).unwrap();
    let data = Arc::new(Context::new(snapshot, 1, AccessLog::off(), listeners));
    Arc::new(Plane::new(data, control, registry, Arc::default(), Arc::default()))
}

/// The plane of a balancer started with `config` and a state file that cannot be
/// written once started (its directory is a regular file), so every API change is
/// refused. Returns the plane and the directory to remove.
fn unwritable(mut config: Config, name: &str) -> (Arc<Plane>, PathBuf) {
    let dir = std::env::temp_dir().join(format!("weir-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let parent = dir.join("not-a-dir");
    config.admin.state_file = Some(parent.join("state.json").to_string_lossy().into_owned());
    let plane = plane(config);
    std::fs::write(&parent, "").unwrap();
    (plane, dir)
}

#[test]
fn a_change_the_state_file_refuses_keeps_pool_state() {
    // Goal: a change refused because the state file cannot be written leaves the
    // pool state it shares with the running snapshot as it was: the size, and the
    // ejection slot of an ejected backend the change would have removed.
    let (plane, dir) = unwritable(config(&[1, 2]), "control-pool");
    let snapshot = plane.data().snapshot.load_full();
    let (pool, backend) = (&snapshot.pools[0], &snapshot.pools[0].backends[1]);
    assert!(pool.live.reserve_ejection(100));
    let rules = Rules::of(&pool.settings);
    step(Subject::of("web", backend), rules, Event::Trip { failures: 5, kinds: 0 });
    assert!(matches!(backend.live.health.machine().passive, Passive::Ejected { .. }));
    let refused: Edited = plane.edit(|config| {
        config.pools[0].backends.remove(1);
        Ok(None)
    });
    let refused = refused.err();
    assert!(matches!(refused, Some(EditError::StateFile(_))), "{refused:?}");
    assert_eq!(pool.live.ejected.load(Ordering::Relaxed), 1, "the slot is still held");
    assert_eq!(pool.live.size.load(Ordering::Relaxed), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_refused_change_that_removes_probes_keeps_a_failed_backend_down() {
    // Goal: a change that turns probes off, refused because the state file cannot be
    // written, leaves a backend the probes took out down: building the snapshot that
    // was never swapped in must not have published it as healthy.
    let mut config = config(&[1, 2]);
    let probes = HealthConfig { unhealthy_threshold: 1, ..HealthConfig::default() };
    config.pools[0].health = Some(probes);
    // No health thread runs here: the probe result is fed by hand.
    let (plane, dir) = unwritable(config, "control-probes");
    let snapshot = plane.data().snapshot.load_full();
    let (pool, backend) = (&snapshot.pools[0], &snapshot.pools[0].backends[1]);
    let failed = Event::Probe { ok: false, detail: "test" };
    step(Subject::of("web", backend), Rules::of(&pool.settings), failed);
    assert!(!backend.live.is_healthy(), "the probe took it out");
    let refused: Edited = plane.edit(|config| {
        config.pools[0].health = None;
        Ok(None)
    });
    let refused = refused.err();
    assert!(matches!(refused, Some(EditError::StateFile(_))), "{refused:?}");
    let running = plane.data().snapshot.load_full();
    assert!(running.pools[0].settings.health.is_some(), "the change was refused");
    assert!(!running.pools[0].backends[1].live.is_healthy(), "still down after the refusal");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn api_changes_do_not_resolve_known_names_again() {
    // Goal: an API change resolves only names the registry has not seen, so a name
    // that stopped resolving (stood in for by one that never did, but is known)
    // does not refuse the change, while a new unresolvable name does.
    let known = "no-such-host.invalid:80";
    let plane = plane(config(&[1]));
    let addr = "127.0.0.1:9".parse().unwrap();
    plane.registry.lock().unwrap().remember_fixed(known, vec![addr]);
    let added: Edited = plane.edit(|config| {
        config.pools[0].backends.push(backend(known));
        Ok(None)
    });
    let added = added.map_err(|error| format!("{error:?}")).unwrap();
    assert_eq!(added.pools[0].backends[1].resolved, vec![addr]);
    let refused: Edited = plane.edit(|config| {
        config.pools[0].backends.push(backend("other.invalid:80"));
        Ok(None)
    });
    let refused = refused.err();
    assert!(matches!(refused, Some(EditError::Build(_))), "{refused:?}");
}

#[test]
fn replaced_snapshots_and_removed_backends_are_freed() {
    // Goal: the control plane keeps nothing of what it replaced, so a soak's reload
    // every 10 s and API change every 15 s leave no snapshot behind, and a backend
    // removed without a drain leaves no live state. Method: weak handles to the first
    // snapshot, to every snapshot an API change published, and to the removed backend's
    // live state, checked after rounds of add, remove and reload.
    let plane = plane(config(&[1, 2]));
    let mut replaced = vec![Arc::downgrade(&plane.data().snapshot.load_full())];
    let mut removed_live = vec![];
    for _ in 0..20 {
        let added: Edited = plane.edit(|config| {
            config.pools[0].backends.push(backend("127.0.0.1:3"));
            Ok(None)
        });
        let added = added.map_err(|error| format!("{error:?}")).unwrap();
        removed_live.push(Arc::downgrade(&added.pools[0].backends[2].live));
        replaced.push(Arc::downgrade(&added));
        let removed: Edited = plane.edit(|config| {
            config.pools[0].backends.pop();
            Ok(Some(("web".to_string(), "127.0.0.1:3".to_string())))
        });
        replaced.push(Arc::downgrade(&removed.map_err(|error| format!("{error:?}")).unwrap()));
        plane.reload(config(&[1, 2])).unwrap();
    }
    let kept = replaced.iter().filter(|weak| weak.upgrade().is_some()).count();
    assert_eq!(kept, 0, "of {} replaced snapshots", replaced.len());
    let live = removed_live.iter().filter(|weak| weak.upgrade().is_some()).count();
    assert_eq!(live, 0, "of {} removed backends' live state", removed_live.len());
    assert_eq!(plane.data().snapshot.load().pools[0].backends.len(), 2);
}
