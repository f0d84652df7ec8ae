//! Signals to the `weir` binary: SIGHUP reloads a changed backend list without dropping an
//! in-flight request, SIGHUP with a broken file keeps serving and logs FILE:LINE:COL, and
//! SIGTERM lets an in-flight request finish before exiting 0.

use crate::support::process::{config_toml, temp_path, write_config, WeirProcess};
use crate::support::{get_close, Response, TestBackend};

use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

/// How long the slow request takes at the backend.
const SLOW_PATH: &str = "/slow?ms=1500";
/// Bound on every wait for the process to react.
const REACT: Duration = Duration::from_secs(10);
/// Poll interval while waiting for a reaction.
const POLL: Duration = Duration::from_millis(25);

/// Starts a slow request on its own connection and waits until `backend` received it.
async fn start_slow_request(addr: SocketAddr, backend: &TestBackend) -> JoinHandle<Response> {
    let before = backend.requests();
    let task = tokio::spawn(async move { get_close(addr, SLOW_PATH).await });
    let deadline = Instant::now() + REACT;
    while backend.requests() == before {
        assert!(Instant::now() < deadline, "the slow request never reached the backend");
        sleep(POLL).await;
    }
    task
}

/// Asserts the slow request completed with 200 from `name`.
async fn assert_slow_ok(task: JoinHandle<Response>, name: &str) {
    let resp = tokio::time::timeout(REACT, task)
        .await
        .expect("slow request finished in time")
        .expect("slow request task");
    assert_eq!(resp.status, 200, "in-flight request: {}", resp.text());
    assert_eq!(resp.text(), "slow");
    assert_eq!(resp.header("X-Backend"), Some(name));
}

/// Sends requests until one is served by `name`; panics after [`REACT`].
pub(crate) async fn wait_for_backend(addr: SocketAddr, name: &str) {
    let deadline = Instant::now() + REACT;
    loop {
        let resp = get_close(addr, "/").await;
        if resp.status == 200 && resp.text() == name {
            return;
        }
        assert!(Instant::now() < deadline, "never served by {name}; last: {}", resp.text());
        sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_switches_backends_and_keeps_in_flight_request() {
    // Goal: SIGHUP applies a changed backend list without dropping an in-flight request.
    // Method: run with a file naming A, start a slow request, rewrite the file to B, send
    // SIGHUP; new requests must reach B and the slow one must finish 200 from A.
    let a = TestBackend::start("A").await;
    let b = TestBackend::start("B").await;
    let path = temp_path("reload.toml");
    write_config(&path, &config_toml(a.addr()));
    let (process, addr) = WeirProcess::start(&["-c", path.to_str().unwrap()]).await;
    assert_eq!(get_close(addr, "/").await.text(), "A");
    let slow = start_slow_request(addr, &a).await;
    write_config(&path, &config_toml(b.addr()));
    process.signal("HUP");
    wait_for_backend(addr, "B").await;
    for _ in 0..5 {
        assert_eq!(get_close(addr, "/").await.text(), "B", "a request after the reload");
    }
    assert_slow_ok(slow, "A").await;
    let stderr = process.stderr();
    assert!(!stderr.contains("panicked"), "weir panicked:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_broken_file_keeps_serving_and_logs_location() {
    // Goal: a broken file on SIGHUP is refused with FILE:LINE:COL and the running config
    // stays. Method: add an unknown key on line 4, send SIGHUP, look for the location in
    // stderr, and check requests still reach the original backend.
    let a = TestBackend::start("A").await;
    let path = temp_path("broken.toml");
    let good = config_toml(a.addr());
    write_config(&path, &good);
    let (process, addr) = WeirProcess::start(&["-c", path.to_str().unwrap()]).await;
    assert_eq!(get_close(addr, "/").await.text(), "A");
    let broken = good.replacen("workers = 2\n", "workers = 2\nno_such_key = true\n", 1);
    write_config(&path, &broken);
    process.signal("HUP");
    let location = format!("{}:4:", path.display());
    let logged = process
        .wait_stderr(|l| l.find(&location).is_some_and(|i| is_col(&l[i + location.len()..])))
        .await;
    assert!(logged.is_some(), "no `{location}COL:` in stderr:\n{}", process.stderr());
    for _ in 0..3 {
        let resp = get_close(addr, "/").await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "A"));
    }
}

/// Whether `rest` starts with a column number followed by a colon.
fn is_col(rest: &str) -> bool {
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && rest[digits..].starts_with(':')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_request_then_exits_zero() {
    // Goal: SIGTERM lets an in-flight request finish, then the process exits 0. Method:
    // start a slow request, send SIGTERM, expect its 200 and a zero exit status.
    let a = TestBackend::start("A").await;
    let backend = a.addr().to_string();
    let args = ["-b", &backend, "-l", "127.0.0.1:0", "--admin", "127.0.0.1:0", "-w", "2"];
    let (mut process, addr) = WeirProcess::start(&args).await;
    assert_eq!(get_close(addr, "/").await.text(), "A");
    let slow = start_slow_request(addr, &a).await;
    process.signal("TERM");
    assert_slow_ok(slow, "A").await;
    let status = process.wait_exit(REACT).await;
    let status = status.unwrap_or_else(|| panic!("weir still running:\n{}", process.stderr()));
    assert_eq!(status.code(), Some(0), "exit status; stderr:\n{}", process.stderr());
}
