//! Zero-downtime binary upgrade of the `weir` binary: SIGUSR2 under steady load hands the
//! listening sockets to a new process with zero failed requests and the old process exits
//! 0 after draining; an upgrade whose new process cannot start leaves the old one serving;
//! `weir upgrade` reports both outcomes.

use crate::support::load::{Load, Sample};
use crate::support::process::{temp_path, write_config, WeirProcess};
use crate::support::{self, get_close, TestBackend};

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// Bound on every wait for a process to react.
const REACT: Duration = Duration::from_secs(20);
/// Poll interval of the bounded waits.
const POLL: Duration = Duration::from_millis(20);
/// How long the load runs against each process, so each serves a good number of requests.
const LOAD_SPELL: Duration = Duration::from_millis(400);

/// A config file: one listener and the admin on port 0, 2 workers, a pid file, a drain
/// long enough for the slow request, and one pool over `backends`.
pub(crate) fn config_text(backends: &[SocketAddr], pid_file: &Path) -> String {
    let list: Vec<String> =
        backends.iter().map(|addr| format!("{{ address = \"{addr}\" }}")).collect();
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\ndrain_timeout = \"10s\"\n\
         pid_file = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[pool]]\nname = \"web\"\nbackends = [{}]\n",
        pid_file.display(),
        list.join(", ")
    )
}

/// The pid in `path`, once it is not `not`; panics after [`REACT`].
pub(crate) async fn wait_pid_file(path: &Path, not: Option<u32>) -> u32 {
    let deadline = Instant::now() + REACT;
    loop {
        if let Ok((pid, _)) = weir::pid_file::read(path) {
            if Some(pid) != not {
                return pid;
            }
        }
        assert!(Instant::now() < deadline, "pid file {} never changed", path.display());
        sleep(POLL).await;
    }
}

/// A process this test did not spawn (the new weir): SIGKILLed when dropped, so a failing
/// test leaves nothing running.
pub(crate) struct Adopted(pub(crate) u32);

impl Adopted {
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.0.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.0);
    }

    /// Whether the process is gone (or a zombie waiting for init).
    pub(crate) fn gone(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.0)) {
            Err(_) => true,
            Ok(stat) => {
                stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'))
            }
        }
    }

    pub(crate) async fn wait_gone(&self) {
        let deadline = Instant::now() + REACT;
        while !self.gone() {
            assert!(Instant::now() < deadline, "process {} still running", self.0);
            sleep(POLL).await;
        }
    }
}

impl Drop for Adopted {
    fn drop(&mut self) {
        if !self.gone() {
            let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
        }
    }
}

/// Runs `weir upgrade ARGS`; returns its exit code and output.
async fn weir_upgrade(args: &[&str]) -> (Option<i32>, String) {
    let args: Vec<String> = args.iter().map(ToString::to_string).collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("upgrade")
            .args(&args)
            .output()
            .expect("run weir upgrade")
    })
    .await
    .expect("weir upgrade thread");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usr2_under_load_hands_over_with_zero_failed_requests() {
    // Goal: SIGUSR2 hands the sockets to a new process while clients (fresh and keep-alive
    // connections, GETs and POSTs) see no failure, an in-flight request finishes, and the
    // old process exits 0 after draining. Method: run the load, start a slow request,
    // send SIGUSR2, wait for the pid file to name the new process and for the old one to
    // exit, keep the load on the new process a while, then check every tally.
    let a = TestBackend::start("A").await;
    let b = TestBackend::start("B").await;
    let c = TestBackend::start("C").await;
    // The slow request has a backend of its own, so the test knows when it is in flight.
    let slow_backend = TestBackend::start("S").await;
    let pid_path = temp_path("usr2.pid");
    let config = temp_path("usr2.toml");
    let text = config_text(&[a.addr(), b.addr(), c.addr()], &pid_path)
        + &format!(
            "\n[[pool]]\nname = \"slow\"\nbackends = [{{ address = \"{}\" }}]\n\n\
             [[route]]\npath_prefix = \"/slow\"\npool = \"slow\"\n",
            slow_backend.addr()
        );
    write_config(&config, &text);
    let (mut old, addr) = WeirProcess::start(&["-c", config.to_str().unwrap()]).await;
    assert_eq!(wait_pid_file(&pid_path, None).await, old.pid());
    let load = Load::mixed(addr);
    sleep(LOAD_SPELL).await;
    let slow = tokio::spawn(async move { get_close(addr, "/slow?ms=1500").await });
    let deadline = Instant::now() + REACT;
    while slow_backend.requests() == 0 {
        assert!(Instant::now() < deadline, "the slow request never reached its backend");
        sleep(POLL).await;
    }
    old.signal("USR2");
    let new = Adopted(wait_pid_file(&pid_path, Some(old.pid())).await);
    let status = old.wait_exit(REACT).await;
    let status = status.unwrap_or_else(|| panic!("old weir still running:\n{}", old.stderr()));
    assert_eq!(status.code(), Some(0), "old exit status; stderr:\n{}", old.stderr());
    let slow = slow.await.expect("slow request task");
    assert_eq!((slow.status, slow.text().as_str()), (200, "slow"), "the in-flight request");
    let served_by_old = load.served();
    sleep(LOAD_SPELL).await;
    let served_after = load.served() - served_by_old;
    let (sent, samples) = load.finish().await;
    eprintln!("served after the old process exited: {served_after} of {sent} requests sent");
    for name in ["fresh GET", "fresh POST", "keep-alive GET", "keep-alive POST"] {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.client == name).collect();
        let failures: Vec<_> = mine.iter().filter(|s| !s.ok()).collect();
        assert!(failures.is_empty(), "{name}: {failures:?}\n{}", old.stderr());
        assert!(mine.iter().any(|s| s.ok()), "{name} served nothing");
        // Each keep-alive client was on the old process and was told to close, not cut off.
        if name.starts_with("keep-alive") {
            assert!(mine.iter().any(|s| s.closed), "{name} never saw Connection: close");
        }
    }
    assert!(served_after > 0, "nothing served after the old process exited");
    assert!(!new.gone(), "the new process is not running");
    assert_eq!(get_close(addr, "/").await.status, 200);
    let stderr = old.stderr();
    assert!(stderr.contains(&format!("process {} took over", new.0)), "{stderr}");
    assert!(!stderr.contains("panicked"), "weir panicked:\n{stderr}");
    new.signal("TERM");
    new.wait_gone().await;
    assert!(!pid_path.exists(), "the new process removes its pid file on exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_upgrade_keeps_old_serving_then_weir_upgrade_succeeds() {
    // Goal: if the new process cannot start, the old one keeps serving and `weir upgrade`
    // says the upgrade failed; once the cause is fixed the same command upgrades. Method:
    // break the config file, run `weir upgrade --pid-file`, expect exit 1 and an old
    // process that still answers; fix the file, run `weir upgrade --config`, expect exit
    // 0, the old process gone with status 0 and the new one answering.
    let a = TestBackend::start("A").await;
    let pid_path = temp_path("failed.pid");
    let config = temp_path("failed.toml");
    let good = config_text(&[a.addr()], &pid_path);
    write_config(&config, &good);
    let (mut old, addr) = WeirProcess::start(&["-c", config.to_str().unwrap()]).await;
    assert_eq!(wait_pid_file(&pid_path, None).await, old.pid());
    write_config(&config, &good.replacen("workers = 2\n", "workers = 2\nno_such_key = 1\n", 1));
    let (code, output) = weir_upgrade(&["--pid-file", pid_path.to_str().unwrap()]).await;
    assert_eq!(code, Some(1), "weir upgrade: {output}");
    assert!(output.contains("upgrade failed"), "{output}");
    assert!(old.wait_exit(Duration::ZERO).await.is_none(), "old process exited");
    for _ in 0..5 {
        let resp = get_close(addr, "/").await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "A"));
    }
    let logged = old.wait_stderr(|l| l.contains("upgrade failed, this process keeps serving"));
    assert!(logged.await.is_some(), "no failure logged:\n{}", old.stderr());
    assert_eq!(weir::pid_file::read(&pid_path).expect("pid file").0, old.pid());

    write_config(&config, &good);
    let (code, output) = weir_upgrade(&["--config", config.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "weir upgrade: {output}\n{}", old.stderr());
    assert!(output.contains("upgraded"), "{output}");
    let new = Adopted(wait_pid_file(&pid_path, Some(old.pid())).await);
    let status = old.wait_exit(REACT).await.expect("old process exits");
    assert_eq!(status.code(), Some(0), "{}", old.stderr());
    let resp = get_close(addr, "/").await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "A"));
    new.signal("TERM");
    new.wait_gone().await;
}

/// The address logged as `listening on http://IP:PORT` for `ip`, waiting for the line.
async fn logged_listener(process: &WeirProcess, ip: &str) -> SocketAddr {
    let marker = format!("listening on http://{ip}:");
    let line = process.wait_stderr(|l| l.contains(&marker)).await;
    let line = line.unwrap_or_else(|| panic!("no `{marker}`:\n{}", process.stderr()));
    support::process::address_after(&line, "http://")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_applies_worker_and_listener_changes() {
    // Goal: the new process accepts on every socket it received even with fewer workers,
    // binds addresses new to the config, and closes inherited ones no longer configured.
    // Method: run 2 workers on 127.0.0.1:0 and 127.0.0.3:0; rewrite the file to 1 worker
    // on 127.0.0.1:0 and 127.0.0.2:0; upgrade; once the old process exited, 40 fresh
    // connections to the kept address all get 200 (a socket nobody accepts would leave
    // some hanging), the new address serves and the dropped one refuses.
    let a = TestBackend::start("A").await;
    let pid_path = temp_path("changes.pid");
    let config = temp_path("changes.toml");
    let text = config_text(&[a.addr()], &pid_path).replacen(
        "\"127.0.0.1:0\"]",
        "\"127.0.0.1:0\", \"127.0.0.3:0\"]",
        1,
    );
    write_config(&config, &text);
    let (mut old, kept) = WeirProcess::start(&["-c", config.to_str().unwrap()]).await;
    let dropped = logged_listener(&old, "127.0.0.3").await;
    assert_eq!(wait_pid_file(&pid_path, None).await, old.pid());
    let changed = text.replacen("workers = 2", "workers = 1", 1).replacen(
        "\"127.0.0.3:0\"]",
        "\"127.0.0.2:0\"]",
        1,
    );
    write_config(&config, &changed);
    old.signal("USR2");
    let new = Adopted(wait_pid_file(&pid_path, Some(old.pid())).await);
    let status = old.wait_exit(REACT).await.expect("old process exits");
    assert_eq!(status.code(), Some(0), "{}", old.stderr());
    for _ in 0..40 {
        let resp = tokio::time::timeout(REACT, get_close(kept, "/")).await.expect("answered");
        assert_eq!((resp.status, resp.text().as_str()), (200, "A"));
    }
    let added = logged_listener(&old, "127.0.0.2").await;
    assert_eq!(get_close(added, "/").await.text(), "A");
    let refused = tokio::net::TcpStream::connect(dropped).await;
    assert!(refused.is_err(), "{dropped} still accepts after the upgrade");
    new.signal("TERM");
    new.wait_gone().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_upgrade_needs_a_process_to_name() {
    // Goal: `weir upgrade` with nothing to find the process by is a usage error, and a
    // missing pid file is reported. Method: run it bare, then with a path that does not
    // exist; expect exit 2 naming the options, then exit 1 naming the file.
    let (code, output) = weir_upgrade(&[]).await;
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("--pid PID, --pid-file FILE or --config FILE"), "{output}");
    let missing = temp_path("missing.pid");
    let (code, output) = weir_upgrade(&["--pid-file", missing.to_str().unwrap()]).await;
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains(&missing.display().to_string()), "{output}");
}
