//! The `weir` command line: `weir check` accepts a good file with `ok` and reports a bad
//! key as FILE:LINE:COL with exit status 2; `weir demo` serves three distinct backends
//! round robin and stops on SIGTERM.

use crate::support::get_close;
use crate::support::process::{address_after, config_toml, temp_path, write_config, WeirProcess};

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

/// Requests sent to the demo: two full rounds over its three backends.
const DEMO_REQUESTS: usize = 6;

/// Runs `weir check --config PATH` to completion.
fn check(path: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .expect("run weir check")
}

#[test]
fn check_accepts_a_good_file() {
    // Goal: `weir check` accepts a valid file. Method: check the file the other binary
    // tests run with; expect `ok` on stdout and exit status 0.
    let path = temp_path("good.toml");
    write_config(&path, &config_toml("127.0.0.1:9".parse().unwrap()));
    let out = check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
fn check_reports_bad_key_with_location() {
    // Goal: `weir check` reports an unknown key as FILE:LINE:COL and exits 2. Method: an
    // unknown key on line 4 of an otherwise valid file.
    let path = temp_path("badkey.toml");
    let text = config_toml("127.0.0.1:9".parse().unwrap());
    let text = text.replacen("workers = 2\n", "workers = 2\nno_such_key = true\n", 1);
    write_config(&path, &text);
    let out = check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let prefix = format!("{}:4:", path.display());
    let line = stderr.lines().find(|l| l.starts_with(&prefix));
    let line = line.unwrap_or_else(|| panic!("no line starting `{prefix}` in:\n{stderr}"));
    let rest = &line[prefix.len()..];
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    assert!(digits > 0 && rest[digits..].starts_with(": "), "not FILE:LINE:COL: {line}");
    assert!(line.contains("no_such_key"), "the message does not name the key: {line}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ok"), "stdout says ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_three_backends_round_robin() {
    // Goal: `weir demo` balances over three distinct backends. Method: parse the address
    // from the printed curl loop, send six requests on new connections, and expect three
    // names repeating in a fixed rotation; then SIGTERM must stop it with status 0.
    let args = ["-l", "127.0.0.1:0", "--admin", "127.0.0.1:0", "demo"];
    let mut process = WeirProcess::spawn(&args);
    let line = process.wait_stdout(|l| l.contains("for i in")).await;
    let line = line.unwrap_or_else(|| panic!("no curl loop printed:\n{}", process.stderr()));
    let addr: SocketAddr = address_after(&line, "http://");
    let mut names = Vec::with_capacity(DEMO_REQUESTS);
    for _ in 0..DEMO_REQUESTS {
        let resp = get_close(addr, "/").await;
        assert_eq!(resp.status, 200);
        let text = resp.text();
        let name = text.trim().strip_prefix("hello from ").map(str::to_string);
        names.push(name.unwrap_or_else(|| panic!("unexpected demo body {text:?}")));
    }
    let distinct: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = ["alpha", "beta", "gamma"].into();
    assert_eq!(distinct, want, "names served: {names:?}");
    assert_eq!(names[..3], names[3..], "not a round-robin rotation: {names:?}");
    process.signal("TERM");
    let status = process.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "demo did not exit 0 on SIGTERM");
}
