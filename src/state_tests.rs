use super::file::{decode, encode, load, save};
use super::*;
use crate::config::{BackendAddress, Config};

pub(crate) fn backend(text: &str, weight: u32) -> BackendConfig {
    BackendConfig {
        address: BackendAddress::parse(text).unwrap(),
        weight,
        resolve: crate::config::Resolve::Once,
    }
}

pub(crate) fn file_config() -> Config {
    let mut config = Config::default();
    let web = vec![backend("127.0.0.1:9001", 1), backend("127.0.0.1:9002", 2)];
    config.pools.push(PoolConfig::new("web", StrategyKind::RoundRobin, web));
    let api = vec![backend("127.0.0.1:9101", 1)];
    config.pools.push(PoolConfig::new("api", StrategyKind::LeastRequests, api));
    config.routes.push(RouteConfig {
        host: None,
        path_prefix: Some("/api".into()),
        pool: "api".into(),
        acl: Default::default(),
        rules: Default::default(),
        limits: Vec::new(),
    });
    config
}

/// An SRV backend, whose address has no port.
fn srv_backend() -> BackendConfig {
    let address =
        BackendAddress { port: 0, ..BackendAddress::parse("_http._tcp.api.test:1").unwrap() };
    BackendConfig { address, weight: 1, resolve: crate::config::Resolve::Srv }
}

/// A running config with every kind of override: a backend added, a weight changed, a
/// drain mark, a pool removed, a pool added, and a route added.
fn edited(file: &Config) -> Config {
    let mut running = file.clone();
    running.pools[0].backends.push(backend("127.0.0.1:9003", 5));
    running.pools[0].backends[0].weight = 7;
    running.pools[0].draining.insert("127.0.0.1:9002".into());
    running.routes.clear();
    running.pools.remove(1);
    let spec = PoolSpec {
        strategy: StrategyKind::ConsistentHash,
        hash_key: Some(HashKey::parse("header:x-user").unwrap()),
        backends: vec![backend("127.0.0.1:9201", 1), srv_backend()],
        draining: BTreeSet::new(),
    };
    running.pools.push(new_pool("new", &spec));
    running.routes.push(RouteConfig {
        host: Some(HostMatch::Suffix(".example.com".into())),
        path_prefix: None,
        pool: "new".into(),
        // Kept by the state file: an API route must not lose its access list.
        acl: crate::config::Acl {
            allow: vec![crate::cidr::Cidr::parse("10.0.0.0/8").unwrap()],
            deny: vec![crate::cidr::Cidr::parse("10.9.0.0/16").unwrap()],
        },
        rules: Default::default(),
        limits: Vec::new(),
    });
    running
}

#[test]
fn no_change_means_no_overrides() {
    let file = file_config();
    assert!(diff(&file, &file).is_empty());
}

#[test]
fn overrides_rebuild_the_running_config() {
    let file = file_config();
    let running = edited(&file);
    let overrides = diff(&file, &running);
    assert_eq!(overrides.pools.len(), 3, "{overrides:?}");
    let (applied, notes) = apply(&file, &overrides);
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(applied, running);
}

#[test]
fn the_state_file_round_trips() {
    let file = file_config();
    let overrides = diff(&file, &edited(&file));
    let text = encode(&overrides);
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(decode(&doc).unwrap(), overrides);
}

#[test]
fn a_changed_file_section_wins_and_only_that_one() {
    let file = file_config();
    let overrides = diff(&file, &edited(&file));
    let mut later = file.clone();
    later.pools[0].backends.push(backend("127.0.0.1:9999", 1));
    // A timeout is not part of what a pool override replaces.
    later.pools[0].connect_timeout = std::time::Duration::from_secs(1);
    let (applied, notes) = apply(&later, &overrides);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("pool `web`"), "{notes:?}");
    assert_eq!(applied.pools[0].backends, later.pools[0].backends);
    assert!(applied.pools.iter().any(|p| p.name == "new"));
    assert!(!applied.pools.iter().any(|p| p.name == "api"));

    let mut timeouts_only = file.clone();
    timeouts_only.pools[0].connect_timeout = std::time::Duration::from_secs(1);
    let (applied, notes) = apply(&timeouts_only, &overrides);
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(applied.pools[0].backends.len(), 3);
    assert_eq!(applied.pools[0].connect_timeout, std::time::Duration::from_secs(1));
}

#[test]
fn overrides_that_no_longer_fit_are_all_dropped() {
    let file = file_config();
    let overrides = diff(&file, &edited(&file));
    // The file now defines pool `new` itself, so the added pool is dropped; the API's
    // routes still fit (they name `new`), so the result is valid.
    let mut later = file.clone();
    later.pools.push(PoolConfig::new("new", StrategyKind::RoundRobin, vec![]));
    let (applied, notes) = apply(&later, &overrides);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(applied.pools.iter().find(|p| p.name == "new").unwrap().backends, vec![]);
    // A file whose routes changed keeps its routes; the API's pool `new` stays.
    let mut later = file.clone();
    later.routes[0].path_prefix = Some("/v2".into());
    let (applied, notes) = apply(&later, &overrides);
    assert!(notes.iter().any(|n| n.contains("routes")), "{notes:?}");
    // The file's route names pool `api`, which the API removed: nothing fits any more.
    assert!(notes.iter().any(|n| n.contains("dropping them all")), "{notes:?}");
    assert_eq!(applied, later);
}

#[test]
fn save_is_atomic_and_load_reads_it_back() {
    let dir = std::env::temp_dir().join(format!("weir-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("weir.state.json");
    assert!(load(&path).unwrap().is_empty(), "a missing file is no overrides");
    let file = file_config();
    let overrides = diff(&file, &edited(&file));
    save(&path, &overrides).unwrap();
    assert_eq!(load(&path).unwrap(), overrides);
    let temp = super::file::temp_name("weir.state.json");
    assert!(!dir.join(temp).exists(), "the temporary file is renamed");
    std::fs::write(&path, "{\"version\": 1,\n \"pools\": [}").unwrap();
    let error = load(&path).unwrap_err();
    assert!(error.starts_with(&format!("{}:2:", path.display())), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn state_path_follows_the_config_file() {
    let mut config = Config::default();
    assert_eq!(path_for(&config), None);
    config.source = Some("/etc/weir/weir.toml".into());
    assert_eq!(path_for(&config), Some("/etc/weir/weir.state.json".into()));
    config.admin.state_file = Some("state/api.json".into());
    assert_eq!(path_for(&config), Some("/etc/weir/state/api.json".into()));
    config.admin.state_file = Some("/var/lib/weir/s.json".into());
    assert_eq!(path_for(&config), Some("/var/lib/weir/s.json".into()));
    config.admin.state_file = Some("off".into());
    assert_eq!(path_for(&config), None);
}

#[test]
fn a_file_route_kept_by_the_state_file_keeps_its_rules() {
    let mut file = file_config();
    file.routes[0].rules.max_body = Some(1024);
    let mut running = file.clone();
    running.routes.push(RouteConfig {
        host: None,
        path_prefix: Some("/new".into()),
        pool: "web".into(),
        acl: Default::default(),
        rules: Default::default(),
        limits: Vec::new(),
    });
    // The state file keeps routes without their rules.
    let text = encode(&diff(&file, &running));
    let overrides = decode(&serde_json::from_str(&text).unwrap()).unwrap();
    let (applied, notes) = apply(&file, &overrides);
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(applied.routes, running.routes, "the file's route has its max_body again");
    // A file whose rules changed since wins, as for any other route change.
    file.routes[0].rules.max_body = Some(2048);
    let (applied, notes) = apply(&file, &overrides);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(applied.routes, file.routes);
}
