//! Live changes under load, against the `weir` binary: while keep-alive clients send GETs
//! and POSTs through three backends, the test makes 100 API mutations and reloads
//! (backend add, weight change, drain, reactivate, remove, config file edit picked up by
//! the watcher or by SIGHUP, API reload). Not one client request may fail, and no connection
//! may be reset.

use crate::support::admin::{admin_addr, authed, backends, config_with_token, pools_until};
use crate::support::load::{Client, Load, Request};
use crate::support::process::{temp_dir, write_config, WeirProcess};
use crate::support::TestBackend;

use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::sleep;

/// Keep-alive clients running during the changes.
const CLIENTS: usize = 4;
/// Mutations and reloads made, as the issue asks.
const CHANGES: usize = 100;
/// Pause between two changes, so client requests interleave with every one of them.
const BETWEEN: Duration = Duration::from_millis(15);
/// Pause between two requests of a client: steady load, not a benchmark, on a shared
/// two-core CI machine.
const THINK: Duration = Duration::from_millis(1);

/// One keep-alive client: alternately `GET /` and an echoed POST, every answer checked.
fn client(id: usize) -> Client {
    let next = move |n: usize| match n % 2 {
        0 => Request::Get("/".to_string()),
        _ => Request::Echo(format!("client {id} request {n}")),
    };
    Client::new("client", THINK, next)
}

/// The weight of C in the config file written in `cycle`.
fn weight_c(cycle: usize) -> u32 {
    2 + (cycle % 2) as u32
}

/// The config file with C at `weight_c`.
fn config_file(a: SocketAddr, b: SocketAddr, c: SocketAddr, weight_c: u32) -> String {
    let plain = config_with_token(&[a, b]);
    let listed = format!("\"{a}\", \"{b}\"");
    plain.replace(&listed, &format!("{listed}, {{ address = \"{c}\", weight = {weight_c} }}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_changes_under_load_fail_no_request() {
    let (a, b, c) = (
        TestBackend::start("A").await,
        TestBackend::start("B").await,
        TestBackend::start("C").await,
    );
    let d = TestBackend::start("D").await;
    let dir = temp_dir("live");
    let path = dir.join("weir.toml");
    write_config(&path, &config_file(a.addr(), b.addr(), c.addr(), 1));
    let (process, addr) = WeirProcess::start(&["-c", path.to_str().unwrap()]).await;
    let admin = admin_addr(&process).await;
    let load = Load::start(addr, (0..CLIENTS).map(client));

    let web = "/api/v1/pools/web/backends";
    let of = |backend: &TestBackend| format!("{web}/{}", backend.addr());
    let add_d = format!(r#"{{"address": "{}"}}"#, d.addr());
    for change in 0..CHANGES {
        let cycle = change / 10;
        let status = match change % 10 {
            0 => authed(admin, "POST", web, Some(&add_d)).await.status,
            1 => authed(admin, "PATCH", &of(&d), Some(r#"{"weight": 3}"#)).await.status,
            2 => authed(admin, "PATCH", &of(&b), Some(r#"{"state": "drain"}"#)).await.status,
            3 => authed(admin, "PATCH", &of(&b), Some(r#"{"state": "active"}"#)).await.status,
            4 => authed(admin, "DELETE", &of(&d), None).await.status,
            5 => authed(admin, "PATCH", &of(&a), Some(r#"{"weight": 4}"#)).await.status,
            6 => authed(admin, "PATCH", &of(&a), Some(r#"{"weight": 1}"#)).await.status,
            7 => {
                write_config(&path, &config_file(a.addr(), b.addr(), c.addr(), weight_c(cycle)));
                200
            }
            8 => {
                // Odd cycles reload the edit by SIGHUP, even ones leave it to the file
                // watcher. Either way the next API change waits for it, so it is not
                // based on the file version the edit replaces.
                if cycle % 2 == 1 {
                    process.signal("HUP");
                }
                let (label, weight) = (c.addr().to_string(), u64::from(weight_c(cycle)));
                pools_until(admin, "the edited weight", |doc| {
                    backends(doc, "web").iter().any(|b| b.0 == label && b.2 == weight)
                })
                .await;
                200
            }
            _ => authed(admin, "POST", "/api/v1/reload", None).await.status,
        };
        assert!((200..300).contains(&status), "change {change} answered {status}");
        sleep(BETWEEN).await;
    }
    let (sent, samples) = load.finish().await;
    // Failed requests, and connections that broke (reset, early close) under a request.
    let failed: Vec<_> = samples.iter().filter(|s| !s.ok()).collect();
    let closed = samples.iter().filter(|s| s.closed).count();
    let ok = samples.len() - failed.len();
    eprintln!("requests sent {sent}, ok {ok}, failed {}, closed {closed}", failed.len());
    assert!(failed.is_empty(), "failed requests and broken connections: {failed:?}");
    assert!(ok >= CHANGES, "the clients ran through the changes: {ok} requests");
    assert!(d.requests() > 0 && b.requests() > 0, "traffic followed the changes");
    let stderr = process.stderr();
    assert!(!stderr.contains("panicked"), "weir panicked:\n{stderr}");
}
