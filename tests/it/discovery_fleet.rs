//! Two weir processes on the same SRV source (dnsmasq), configured from files: both report
//! the same endpoint-set hash in `/api/v1/pools` and `/metrics`, map 100
//! consistent-hash keys to the same backends, and accept each other's sticky cookies.

use std::collections::HashSet;
use std::net::SocketAddr;

use serde_json::Value;

use crate::balancing::{backend_of, cookies_cross, get_with};
use crate::dns_srv::{srv_setup, SERVICE};
use crate::support::admin::{admin_addr, pools_until};
use crate::support::process::{temp_path, write_config, WeirProcess};
use crate::support::scrape::scrape;

fn config(dns: SocketAddr) -> String {
    let srv = format!("{{ address = \"{SERVICE}\", resolve = \"srv\" }}");
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [dns]\nservers = [\"{dns}\"]\ntimeout = \"500ms\"\n\
         [[pool]]\nname = \"hashed\"\nstrategy = \"consistent_hash\"\ndns_refresh = \"1s\"\n\
         backends = [{srv}]\n[pool.hash]\nkey = \"header:x-user-id\"\n\
         [[pool]]\nname = \"pinned\"\nstrategy = \"sticky\"\ndns_refresh = \"1s\"\n\
         backends = [{srv}]\n[pool.sticky]\nsecret = \"fleet-secret\"\n\
         [[route]]\npath_prefix = \"/sticky\"\npool = \"pinned\"\n"
    )
}

/// The `hashed` pool's source, once its set has three endpoints.
async fn source(admin: SocketAddr) -> Value {
    let ready = |doc: &Value| doc["pools"][0]["sources"][0]["endpoints"] == 3;
    let doc = pools_until(admin, "the SRV set", ready).await;
    doc["pools"][0]["sources"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_srv_source_agree_on_the_set_keys_and_cookies() {
    let (_dns, _backends) = srv_setup(&[(0, 10, 10), (1, 10, 20), (2, 10, 30)]).await;
    let path = temp_path("fleet.toml");
    write_config(&path, &config(_dns.addr()));
    let args = ["-c", path.to_str().unwrap()];
    let (first, first_addr) = WeirProcess::start(&args).await;
    let (second, second_addr) = WeirProcess::start(&args).await;
    let (first_admin, second_admin) = (admin_addr(&first).await, admin_addr(&second).await);

    let (a, b) = (source(first_admin).await, source(second_admin).await);
    assert_eq!(a["source"], format!("srv:{SERVICE}"));
    assert_eq!(a["hash"], b["hash"], "the same set hashes the same: {a} {b}");
    assert!(a["last_change_ms"].as_u64() > Some(0) && a["generation"].as_u64() >= Some(1), "{a}");
    let hash = a["hash"].as_str().unwrap().to_string();
    for admin in [first_admin, second_admin] {
        let series =
            format!("weir_discovery_set_info{{source=\"srv:{SERVICE}\",hash=\"{hash}\"}} 1");
        let metrics = scrape(admin).await;
        assert!(metrics.contains(&series), "{series} in:\n{metrics}");
    }

    let mut owners = HashSet::new();
    for user in 0..100 {
        let header = format!("X-User-Id: user-{user}\r\n");
        let a = get_with(first_addr, "/", &header).await;
        assert_eq!(a.status, 200, "{}", a.text());
        let a = backend_of(&a);
        let b = backend_of(&get_with(second_addr, "/", &header).await);
        assert_eq!(a, b, "key {user}");
        owners.insert(a);
    }
    assert_eq!(owners.len(), 3, "100 keys use every discovered backend: {owners:?}");
    let pinned = cookies_cross(first_addr, second_addr, 20).await;
    assert!(pinned.len() > 1, "cookies for more than one backend were compared: {pinned:?}");
    let _ = std::fs::remove_file(path);
}
