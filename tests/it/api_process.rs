//! The admin API against the `weir` binary: an open admin listener without a token
//! refuses to start; API changes survive `kill -9`; a crash while the state file is
//! written leaves the previous state; reloads by API, file watch and SIGHUP are counted,
//! a later edit of the config file wins over the API for what it changes, and an edit
//! made during start is reloaded; refused calls are logged, at most ten a second.

use crate::support::admin::{
    admin_addr, authed, backends, call, config_with_token, pools, pools_until, REACT,
};
use crate::support::dns::{DnsMode, TestDns};
use crate::support::process::{temp_dir, write_config, WeirProcess};
use crate::support::scrape::{metric, scrape};
use crate::support::{get_close, raw_request, TestBackend};

use std::net::SocketAddr;
use std::path::Path;
use tokio::time::{sleep, Instant};

/// Starts the binary on the config at `path`, with `env`; returns it, its client and its
/// admin address.
async fn start(path: &Path, env: &[(&str, &str)]) -> (WeirProcess, SocketAddr, SocketAddr) {
    let (process, addr) = WeirProcess::start_env(&["-c", path.to_str().unwrap()], env).await;
    let admin = admin_addr(&process).await;
    (process, addr, admin)
}

/// `kill -9`, and waits for the process to be gone.
async fn kill_9(mut process: WeirProcess) {
    process.signal("KILL");
    assert!(process.wait_exit(REACT).await.is_some(), "weir survived kill -9");
}

/// Sends requests until one is served by `name`.
async fn reaches(addr: SocketAddr, name: &str) {
    let deadline = Instant::now() + REACT;
    while get_close(addr, "/").await.text() != name {
        assert!(Instant::now() < deadline, "no request reached {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_admin_listener_without_token_refuses_to_start() {
    // Goal: a non-loopback admin listener without a token is refused at start with a
    // clear message and exit code 2, as a config error is.
    let args = ["-b", "127.0.0.1:9", "-l", "127.0.0.1:0", "--admin", "0.0.0.0:0"];
    let mut process = WeirProcess::spawn(&args);
    let status = process.wait_exit(REACT).await.expect("weir exits");
    assert_eq!(status.code(), Some(2), "{}", process.stderr());
    let logged =
        process.wait_stderr(|l| l.contains("not on loopback") && l.contains("token")).await;
    assert!(logged.is_some(), "{}", process.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_changes_survive_kill_9() {
    // Goal: a backend added and a weight changed by the API are there after kill -9 and
    // a restart on the same config file.
    let a = TestBackend::start("A").await;
    let b = TestBackend::start("B").await;
    let dir = temp_dir("durable");
    let path = dir.join("weir.toml");
    write_config(&path, &config_with_token(&[a.addr()]));
    let (process, _, admin) = start(&path, &[]).await;
    let add = format!(r#"{{"address": "{}", "weight": 3}}"#, b.addr());
    assert_eq!(authed(admin, "POST", "/api/v1/pools/web/backends", Some(&add)).await.status, 201);
    let patch = format!("/api/v1/pools/web/backends/{}", a.addr());
    assert_eq!(authed(admin, "PATCH", &patch, Some(r#"{"weight": 5}"#)).await.status, 200);
    assert!(dir.join("weir.state.json").exists(), "state file beside the config");
    kill_9(process).await;

    let (_process, addr, admin) = start(&path, &[]).await;
    let want =
        [(a.addr().to_string(), "active".into(), 5), (b.addr().to_string(), "active".into(), 3)];
    assert_eq!(backends(&pools(admin).await, "web"), want);
    reaches(addr, "B").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_writing_the_state_keeps_the_previous_state() {
    // Goal: a crash between writing the temporary file and renaming it leaves the state
    // file as it was. Method: the test hook aborts weir right there during an API call;
    // the state file must be byte for byte the previous one, and a restart has the
    // earlier change and not the interrupted one.
    let a = TestBackend::start("A").await;
    let b = TestBackend::start("B").await;
    let dir = temp_dir("crash");
    let path = dir.join("weir.toml");
    write_config(&path, &config_with_token(&[a.addr()]));
    let (process, _, admin) = start(&path, &[]).await;
    let add = format!(r#"{{"address": "{}"}}"#, b.addr());
    assert_eq!(authed(admin, "POST", "/api/v1/pools/web/backends", Some(&add)).await.status, 201);
    let state = dir.join("weir.state.json");
    let before = std::fs::read(&state).expect("state file written");
    kill_9(process).await;

    let hook = [("WEIR_TEST_CRASH_BEFORE_RENAME", "1")];
    let (mut process, _, admin) = start(&path, &hook).await;
    let body = r#"{"address": "127.0.0.1:9"}"#;
    let request = format!(
        "POST /api/v1/pools/web/backends HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        crate::support::admin::TOKEN,
        body.len()
    );
    let temp = format!(".weir.state.json.{}.tmp", process.pid());
    let answer = raw_request(admin, request.as_bytes()).await;
    assert!(answer.is_empty(), "weir answered: {}", String::from_utf8_lossy(&answer));
    let status = process.wait_exit(REACT).await.expect("weir aborted");
    assert!(!status.success(), "{status}");
    assert_eq!(std::fs::read(&state).expect("state file"), before, "state file changed");
    assert!(dir.join(temp).exists(), "the hook fired after the temp file");

    let (_process, _, admin) = start(&path, &[]).await;
    let listed: Vec<String> =
        backends(&pools(admin).await, "web").into_iter().map(|b| b.0).collect();
    assert_eq!(listed, [a.addr().to_string(), b.addr().to_string()]);
}

/// `weir_config_reloads_total{result}` now.
async fn reloads(admin: SocketAddr, result: &str) -> f64 {
    metric(&scrape(admin).await, "weir_config_reloads_total", &[("result", result)]).unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_are_counted_and_the_file_wins_where_it_changed() {
    // Goal: POST /api/v1/reload refuses a broken file with FILE:LINE:COL and counts a
    // failure; a file edit is picked up by the watcher; SIGHUP reloads; and an edit of
    // the pool the API changed wins over the API's change, with a log line.
    let a = TestBackend::start("A").await;
    let b = TestBackend::start("B").await;
    let c = TestBackend::start("C").await;
    let dir = temp_dir("reloads");
    let path = dir.join("weir.toml");
    let good = config_with_token(&[a.addr()]);
    write_config(&path, &good);
    let (process, addr, admin) = start(&path, &[]).await;
    write_config(&path, &good.replace("workers = 2\n", "workers = 2\nbogus = 1\n"));
    let reply = authed(admin, "POST", "/api/v1/reload", None).await;
    assert_eq!(reply.status, 400);
    let location = format!("{}:4:1:", path.display());
    assert!(reply.json["error"].as_str().unwrap().contains(&location), "{:?}", reply.json);
    assert!(reloads(admin, "failure").await >= 1.0);
    assert_eq!(backends(&pools(admin).await, "web").len(), 1, "the old config stays");

    let add = format!(r#"{{"address": "{}"}}"#, c.addr());
    assert_eq!(authed(admin, "POST", "/api/v1/pools/web/backends", Some(&add)).await.status, 201);
    // The file now names A and B: the watcher reloads it, and the file's change to pool
    // `web` drops the API's (C).
    write_config(&path, &config_with_token(&[a.addr(), b.addr()]));
    let want = [a.addr().to_string(), b.addr().to_string()];
    pools_until(admin, "the file's backends", |doc| {
        backends(doc, "web").iter().map(|b| b.0.clone()).collect::<Vec<_>>() == want
    })
    .await;
    reaches(addr, "B").await;
    let logged =
        process.wait_stderr(|l| l.contains("pool `web`") && l.contains("the file wins")).await;
    assert!(logged.is_some(), "{}", process.stderr());

    let before = reloads(admin, "success").await;
    process.signal("HUP");
    let deadline = Instant::now() + REACT;
    while reloads(admin, "success").await <= before {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        sleep(std::time::Duration::from_millis(20)).await;
    }
    let reply = authed(admin, "POST", "/api/v1/reload", None).await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_state_file_stops_the_start() {
    // Goal: weir does not start without the API's changes when the state file cannot be
    // read: it exits 2 and names the file, line and column.
    let dir = temp_dir("bad-state");
    let path = dir.join("weir.toml");
    write_config(&path, &config_with_token(&["127.0.0.1:9".parse().unwrap()]));
    std::fs::write(dir.join("weir.state.json"), "{\"version\": 1,\n \"pools\": [}\n").unwrap();
    let mut process = WeirProcess::spawn(&["-c", path.to_str().unwrap()]);
    let status = process.wait_exit(REACT).await.expect("weir exits");
    assert_eq!(status.code(), Some(2), "{}", process.stderr());
    let location = format!("{}:2:", dir.join("weir.state.json").display());
    // The reader thread may lag the exit; wait for the line.
    let logged = process.wait_stderr(|l| l.contains(&location)).await;
    assert!(logged.is_some(), "{}", process.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_edit_made_during_start_is_reloaded() {
    // Goal: the watcher's first stamp of the config file is taken before weir reads it,
    // so an edit made while weir starts (here: while it waits on a DNS server that never
    // answers) is reloaded once it runs, not missed until the next edit.
    let a = TestBackend::start("A").await;
    let b = TestBackend::start("B").await;
    let dns = TestDns::start();
    dns.set_mode(DnsMode::Silent);
    let dir = temp_dir("start-edit");
    let path = dir.join("weir.toml");
    let slow = format!("[dns]\nservers = [\"{}\"]\ntimeout = \"1s\"\n\n", dns.addr());
    let named = r#"{ address = "api.weir.test:80", resolve = true }"#;
    let with = |list: &[SocketAddr]| {
        let text = config_with_token(list);
        format!("{slow}{}", text.replacen("backends = [", &format!("backends = [{named}, "), 1))
    };
    write_config(&path, &with(&[a.addr()]));
    let process = WeirProcess::spawn(&["-c", path.to_str().unwrap()]);
    let deadline = Instant::now() + REACT;
    // The first query shows the file was read and the start is under way.
    while dns.udp_queries() == 0 {
        assert!(Instant::now() < deadline, "weir sent no DNS query: {}", process.stderr());
        sleep(std::time::Duration::from_millis(10)).await;
    }
    write_config(&path, &with(&[a.addr(), b.addr()]));
    let admin = admin_addr(&process).await;
    let want = [a.addr().to_string(), b.addr().to_string()];
    pools_until(admin, "the file as edited during start", |doc| {
        backends(doc, "web").iter().map(|b| b.0.clone()).collect::<Vec<_>>() == want
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_calls_are_logged_ten_a_second_and_the_rest_counted() {
    // Goal: a wrong token is logged with the peer, but a client guessing tokens cannot
    // fill the log. Method: 30 refused calls in a row, then one more a second later. When
    // the 30 took under a second (one log window), exactly 10 are logged and the late one
    // says 20 were left out; on a slower machine, fewer than 30 lines and a count.
    let a = TestBackend::start("A").await;
    let dir = temp_dir("refusals");
    let path = dir.join("weir.toml");
    write_config(&path, &config_with_token(&[a.addr()]));
    let (process, _, admin) = start(&path, &[]).await;
    let started = Instant::now();
    for _ in 0..30 {
        let reply = call(admin, "DELETE", "/api/v1/pools/web", Some("guess"), None).await;
        assert_eq!(reply.status, 401);
    }
    let one_window = started.elapsed() < std::time::Duration::from_millis(900);
    sleep(std::time::Duration::from_millis(1100)).await;
    let reply = call(admin, "DELETE", "/api/v1/pools/web", Some("guess"), None).await;
    assert_eq!(reply.status, 401);
    let late = process.wait_stderr(|l| l.contains("earlier refusals not logged")).await;
    let late = late.unwrap_or_else(|| panic!("no count of left-out lines: {}", process.stderr()));
    let stderr = process.stderr();
    let logged = stderr.lines().filter(|l| l.contains("admin API: refused, wrong token")).count();
    assert!(stderr.contains("peer") && stderr.contains("127.0.0.1"), "{stderr}");
    if one_window {
        assert_eq!(logged, 11, "{stderr}");
        assert!(late.contains("(20 earlier refusals not logged)"), "{late}");
    } else {
        assert!(logged < 31, "{stderr}");
    }
}
