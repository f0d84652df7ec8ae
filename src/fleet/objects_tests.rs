use super::*;
use crate::config::StrategyKind;
use crate::state::tests::{backend, file_config};

/// Objects as etcd would hold them after writing `values` at revisions from `first`.
fn stored(values: &BTreeMap<String, String>, first: i64) -> Objects {
    let mut revision = first;
    values
        .iter()
        .map(|(key, value)| {
            revision += 1;
            (key.clone(), Entry { value: value.clone(), created: revision, modified: revision })
        })
        .collect()
}

#[test]
fn the_file_alone_has_no_objects() {
    let file = file_config();
    assert!(values(&file, &file).is_empty());
    assert_eq!(combine(&file, &Objects::new()), (file, Vec::new()));
}

#[test]
fn every_kind_of_change_round_trips_through_the_objects() {
    let file = file_config();
    let mut running = file.clone();
    running.pools[0].backends[0].weight = 7;
    running.pools[0].draining.insert("127.0.0.1:9002".into());
    running.pools[0].backends.push(backend("127.0.0.1:9003", 5));
    running.pools.remove(1);
    running.routes.clear();
    let mut added =
        PoolConfig::new("new", StrategyKind::RoundRobin, vec![backend("127.0.0.1:9201", 3)]);
    added.draining.insert("127.0.0.1:9201".into());
    running.pools.push(added);
    let objects = stored(&values(&file, &running), 0);
    let keys: Vec<&str> = objects.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "pools/api",
            "pools/new",
            "pools/new/backends/127.0.0.1:9201",
            "pools/web/backends/127.0.0.1:9001",
            "pools/web/backends/127.0.0.1:9002",
            "pools/web/backends/127.0.0.1:9003",
            "routes"
        ],
        "one key per object that differs from the file"
    );
    let (combined, notes) = combine(&file, &objects);
    assert_eq!(notes, Vec::<String>::new());
    assert_eq!(combined.pools, running.pools);
    assert_eq!(combined.routes, running.routes);
}

#[test]
fn a_removed_file_backend_stays_removed() {
    let file = file_config();
    let mut running = file.clone();
    running.pools[0].backends.remove(1);
    let objects = stored(&values(&file, &running), 0);
    assert_eq!(objects.len(), 1);
    assert_eq!(combine(&file, &objects).0.pools, running.pools);
}

#[test]
fn edits_of_two_backends_from_the_same_base_both_survive() {
    let file = file_config();
    let mut one = file.clone();
    one.pools[0].backends[0].weight = 9;
    let mut two = file.clone();
    two.pools[0].draining.insert("127.0.0.1:9002".into());
    // Each instance writes only the objects its own edit changed.
    let mut objects = stored(&values(&file, &one), 0);
    objects.extend(stored(&values(&file, &two), 10));
    let (combined, _) = combine(&file, &objects);
    assert_eq!(combined.pools[0].backends[0].weight, 9);
    assert!(combined.pools[0].draining.contains("127.0.0.1:9002"));
}

#[test]
fn added_backends_keep_the_order_of_their_creation_on_every_instance() {
    let file = file_config();
    let mut objects = Objects::new();
    for (revision, port) in [(5, 9009), (3, 9008), (9, 9007)] {
        let mut running = file.clone();
        running.pools[0].backends.push(backend(&format!("127.0.0.1:{port}"), 1));
        let (key, value) = values(&file, &running).into_iter().next().unwrap();
        objects.insert(key, Entry { value, created: revision, modified: revision });
    }
    let (combined, _) = combine(&file, &objects);
    let ports: Vec<u16> = combined.pools[0].backends.iter().map(|b| b.address.port).collect();
    assert_eq!(ports, [9001, 9002, 9008, 9009, 9007]);
}

#[test]
fn an_object_based_on_an_older_file_is_dropped_and_the_file_wins() {
    let file = file_config();
    let mut running = file.clone();
    running.pools[0].backends[0].weight = 7;
    let objects = stored(&values(&file, &running), 0);
    let mut edited_file = file.clone();
    edited_file.pools[0].backends[0].weight = 4;
    let (combined, notes) = combine(&edited_file, &objects);
    assert_eq!(combined.pools[0].backends[0].weight, 4);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("the file wins"), "{notes:?}");
}

#[test]
fn objects_that_do_not_parse_are_dropped_with_a_note() {
    let file = file_config();
    let mut objects = Objects::new();
    let bad = Entry { value: "{not json".into(), created: 1, modified: 1 };
    objects.insert("pools/web/backends/127.0.0.1:9001".into(), bad);
    let (combined, notes) = combine(&file, &objects);
    assert_eq!(combined, file);
    assert!(notes[0].contains("not JSON"), "{notes:?}");
}

#[test]
fn a_route_list_that_no_longer_fits_is_dropped_alone() {
    let file = file_config();
    // Instance one adds pool `new` and routes to it; another removes `new` meanwhile
    // (the guards refuse that pair of writes; a file edit can still cause it).
    let mut running = file.clone();
    running.pools.push(PoolConfig::new(
        "new",
        StrategyKind::RoundRobin,
        vec![backend("127.0.0.1:9301", 1)],
    ));
    running.routes[0].pool = "new".into();
    running.pools[0].backends[0].weight = 5;
    let mut objects = stored(&values(&file, &running), 0);
    objects.remove("pools/new");
    let (combined, notes) = combine(&file, &objects);
    assert_eq!(combined.routes, file.routes, "the file's routes apply");
    assert_eq!(combined.pools[0].backends[0].weight, 5, "other objects still apply");
    assert!(notes.iter().any(|n| n.starts_with("routes: no longer fits")), "{notes:?}");
}
