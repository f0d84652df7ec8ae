//! Local resource exhaustion is not a backend failure: the `weir` binary, its open-file
//! limit lowered to what it holds plus a few, while clients hold connections. Upstream
//! connects and probes then fail with EMFILE; the healthy backend must not be ejected or
//! marked unhealthy, the requests get a short local 503 and the local-error metric counts
//! them. Accept errors are logged at most ten a second.

use crate::support::process::{address_after, temp_path, write_config, WeirProcess};
use crate::support::{self, connect, roundtrip, TestBackend};

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};

/// Files weir may open past what it holds once serving one client: a few accepted
/// connections, then EMFILE.
const HEADROOM: usize = 4;
/// Idle client connections held: more than the headroom, so accepts fail too.
const HELD: usize = 16;
/// Requests sent while out of files: more than `consecutive_failures` (5), which used to
/// eject the backend.
const STARVED_REQUESTS: usize = 8;
/// Bound on each wait.
const WAIT: Duration = Duration::from_secs(10);

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc fds").count()
}

/// Sets the soft open-file limit of `pid`; the hard limit stays, so it can be raised back.
fn set_file_limit(pid: u32, limit: usize) {
    let status = Command::new("prlimit")
        .args([format!("--pid={pid}"), format!("--nofile={limit}:")])
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit failed");
}

/// The value of the first `/metrics` line that holds every one of `parts`.
async fn metric(admin: SocketAddr, parts: &[&str]) -> Option<f64> {
    let text = support::get_close(admin, "/metrics").await.text();
    let line = text.lines().find(|line| parts.iter().all(|part| line.contains(part)))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// weir with one worker, no upstream pooling (every request connects), TCP probes that
/// mark the backend unhealthy on one failure, and an admin listener, in front of
/// `backend`. Returns the process, client and admin addresses.
async fn start_weir(backend: SocketAddr) -> (WeirProcess, SocketAddr, SocketAddr) {
    let path = temp_path("local-faults.toml");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[pool]]\nname = \"web\"\nmax_idle = 0\nbackends = [{{ address = \"{backend}\" }}]\n\n\
         [pool.health]\ntype = \"tcp\"\ninterval = \"50ms\"\nunhealthy_threshold = 1\n"
    );
    write_config(&path, &text);
    let (process, addr) = WeirProcess::start(&["-c", path.to_str().expect("utf-8 path")]).await;
    let admin = process.wait_stderr(|l| l.contains("admin") && l.contains("http://")).await;
    let admin = address_after(&admin.expect("admin listening"), "http://");
    (process, addr, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_files_ejects_no_backend_and_is_counted_as_local() {
    let backend = TestBackend::start("b").await;
    let (process, addr, admin) = start_weir(backend.addr()).await;
    let get = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    let mut client = connect(addr).await.expect("connect");
    assert_eq!(roundtrip(&mut client, get).await.expect("answer").status, 200);
    let limit = open_files(process.pid()) + HEADROOM;
    set_file_limit(process.pid(), limit);
    let started = Instant::now();
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..HELD {
        held.push(connect(addr).await.expect("the kernel completes the handshake"));
    }
    // weir holds every file it may: the rest of the held connections wait in the backlog.
    let deadline = Instant::now() + WAIT;
    while open_files(process.pid()) < limit {
        assert!(Instant::now() < deadline, "weir never reached its file limit");
        sleep(Duration::from_millis(10)).await;
    }
    for number in 0..STARVED_REQUESTS {
        let response = timeout(WAIT, roundtrip(&mut client, get)).await.expect("in time");
        let response = response.expect("an answer");
        assert_eq!(response.status, 503, "request {number}: {}", response.text());
        assert!(response.text().contains("local"), "a local cause: {}", response.text());
    }
    // A probe ran while out of files too.
    let skipped = process.wait_stderr(|line| line.contains("health probe not run")).await;
    assert!(skipped.is_some(), "no probe was skipped:\n{}", process.stderr());
    let starved_for = started.elapsed();
    drop(held);
    set_file_limit(process.pid(), 4096);
    let healthy = metric(admin, &["weir_backend_healthy{"]).await;
    assert_eq!(healthy, Some(1.0), "the backend stayed healthy");
    assert_eq!(metric(admin, &["weir_backend_ejections_total{"]).await, Some(0.0));
    let connect = ["weir_backend_failures_total{", "kind=\"connect\""];
    assert_eq!(metric(admin, &connect).await, Some(0.0), "no backend connect failure");
    let local = ["weir_local_errors_total{op=\"connect\",kind=\"emfile\"}"];
    assert_eq!(metric(admin, &local).await, Some(STARVED_REQUESTS as f64));
    for op in ["accept", "probe"] {
        let local = format!("weir_local_errors_total{{op=\"{op}\",kind=\"emfile\"}}");
        assert!(metric(admin, &[&local]).await.unwrap_or(0.0) >= 1.0, "{op} errors counted");
    }
    assert_eq!(roundtrip(&mut client, get).await.expect("answer").status, 200);
    // Ten lines a second at most, and the window may straddle one more second.
    let logged = process.stderr().matches("accept failed").count();
    let allowed = 10 * (starved_for.as_secs() as usize + 2);
    assert!(logged <= allowed, "{logged} accept errors logged in {starved_for:?}");
}
