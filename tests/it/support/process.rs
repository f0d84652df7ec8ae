//! The `weir` binary as a child process, with its output captured, its memory use read
//! from `/proc`, and the config files and scratch paths it runs with. Every wait is
//! bounded by a timeout.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// How long to wait for the binary to log its listening address.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Poll interval of the bounded waits below.
const POLL: Duration = Duration::from_millis(20);

/// A unique path under Cargo's per-test temporary directory. The first call sweeps what
/// earlier runs left there ([`sweep_dead_runs`]).
pub fn temp_path(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    SWEEP.call_once(|| sweep_dead_runs(&dir, "weir-"));
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    dir.join(format!("weir-{}-{n}-{name}", std::process::id()))
}

/// How long a dead run's scratch entry is left alone: longer than any test run.
const SWEEP_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the entries of `dir` named `{prefix}{pid}-...` whose process is gone: what
/// killed runs left, and the files tests name with [`temp_path`] and do not remove.
/// Only Cargo's own scratch directory is swept: a shared `/tmp` may hold another PID
/// namespace's live runs. And only entries untouched for [`SWEEP_AFTER`]: a target
/// directory shared with another PID namespace (a container, a CI cache) may hold a
/// live run whose pid means nothing here.
pub fn sweep_dead_runs(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    // Bounded: one pass over the directory.
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|name| name.strip_prefix(prefix));
        let pid = pid.and_then(|rest| rest.split('-').next()?.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let age = entry.metadata().and_then(|m| m.modified()).ok();
        let age = age.and_then(|modified| modified.elapsed().ok());
        if age.is_none_or(|age| age < SWEEP_AFTER) {
            continue;
        }
        let path = entry.path();
        let _ = match path.is_dir() {
            true => std::fs::remove_dir_all(&path),
            false => std::fs::remove_file(&path),
        };
    }
}

/// A port on 127.0.0.1 held for as long as this lives: for an address that must stay
/// dead, or that a server binds later and binds again after it stopped (a child process
/// given a fixed port, a backend restarted at its address). A port bound and released
/// instead is free only until another test's `bind(127.0.0.1:0)` or outgoing connection
/// takes it.
///
/// The socket is bound with `SO_REUSEADDR` and never listens, so (Linux):
/// - a connection to the port is refused while no server listens on it;
/// - the kernel hands the port to no one else: a `bind` to port 0 (any address) and
///   the source port of a `connect` both pass over a port a non-listening socket holds;
/// - a server that binds the port itself with `SO_REUSEADDR` can, while it is held, and
///   again after it stopped (std's and tokio's listeners, etcd, redis-server, dnsmasq
///   and HAProxy all set it).
#[derive(Debug)]
pub struct HeldPort {
    _socket: socket2::Socket,
    addr: SocketAddr,
}

impl HeldPort {
    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// Holds a port on 127.0.0.1 ([`HeldPort`]).
pub fn hold_port() -> HeldPort {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket.set_reuse_address(true).expect("SO_REUSEADDR");
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind");
    let addr = socket.local_addr().expect("addr").as_socket().expect("an IP address");
    HeldPort { _socket: socket, addr }
}

/// The names of a process's threads (`/proc/PID/task/*/comm`).
pub fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("proc tasks");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

/// A fresh directory for one test's config and state files, removed with what it holds
/// when dropped (at the end of the test, passed or failed).
pub fn temp_dir(name: &str) -> TempDir {
    let dir = temp_path(name);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    TempDir(dir)
}

/// A directory that [`temp_dir`] made; it goes when this is dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file that exists while a test holds it ([`SharedFile::hold`]): written in its own
/// directory for the first holder, removed with the directory when the last lets go. For
/// what one server shared by the whole test binary needs on disk (a `KUBECONFIG`): a
/// static is never dropped, so the server itself could not remove it.
#[derive(Debug)]
pub struct SharedFile {
    path: PathBuf,
    contents: String,
    holders: Mutex<usize>,
}

impl SharedFile {
    /// `name` with `contents`, in a fresh directory named after `name`; not written yet.
    pub fn new(name: &str, contents: String) -> SharedFile {
        let path = temp_path(name).join(name);
        SharedFile { path, contents, holders: Mutex::new(0) }
    }

    /// Where the file is while held.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Holds the file, writing it if no one held it.
    pub fn hold(&self) -> Held<'_> {
        let mut holders = self.holders.lock().unwrap();
        if *holders == 0 {
            let dir = self.path.parent().expect("a directory");
            std::fs::create_dir_all(dir).expect("create the file's directory");
            std::fs::write(&self.path, &self.contents).expect("write the shared file");
        }
        *holders += 1;
        Held(self)
    }
}

/// One hold on a [`SharedFile`].
#[derive(Debug)]
pub struct Held<'a>(&'a SharedFile);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut holders = self.0.holders.lock().unwrap_or_else(|poison| poison.into_inner());
        *holders -= 1;
        if *holders == 0 {
            let _ = std::fs::remove_dir_all(self.0.path.parent().expect("a directory"));
        }
    }
}

/// Lines read from one pipe of a child, by a background thread.
type Lines = Arc<Mutex<Vec<String>>>;

fn collect_lines<R: std::io::Read + Send + 'static>(pipe: R) -> Lines {
    let lines: Lines = Arc::default();
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        // Bounded by the pipe: it ends when the child exits.
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// The `weir` binary running as a child process; killed when dropped.
pub struct WeirProcess {
    child: Child,
    stdout: Lines,
    stderr: Lines,
}

impl WeirProcess {
    /// Spawns `weir ARGS` with stdout and stderr captured.
    pub fn spawn(args: &[&str]) -> WeirProcess {
        WeirProcess::spawn_env(args, &[])
    }

    /// [`WeirProcess::spawn`] with extra environment variables.
    pub fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> WeirProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let stdout = collect_lines(child.stdout.take().expect("piped stdout"));
        let stderr = collect_lines(child.stderr.take().expect("piped stderr"));
        WeirProcess { child, stdout, stderr }
    }

    /// Spawns `weir ARGS` and waits for its client listener address.
    /// Fails at once, with its stderr, if the process exits first.
    pub async fn start(args: &[&str]) -> (WeirProcess, SocketAddr) {
        WeirProcess::start_env(args, &[]).await
    }

    /// [`WeirProcess::start`] with extra environment variables.
    pub async fn start_env(args: &[&str], env: &[(&str, &str)]) -> (WeirProcess, SocketAddr) {
        let mut process = WeirProcess::spawn_env(args, env);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let is_listening = |l: &String| l.contains("listening on http://") && !l.contains("admin");
        loop {
            let line = process.stderr.lock().unwrap().iter().find(|l| is_listening(l)).cloned();
            if let Some(line) = line {
                return (process, address_after(&line, "http://"));
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                sleep(POLL).await;
                panic!("weir {args:?} exited ({status}) before listening:\n{}", process.stderr());
            }
            assert!(Instant::now() < deadline, "weir never listened:\n{}", process.stderr());
            sleep(POLL).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`HUP`, `TERM`, ...) with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The first stderr line matching `pred`, waiting up to [`STARTUP_TIMEOUT`].
    pub async fn wait_stderr(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        wait_line(&self.stderr, pred).await
    }

    /// The first stdout line matching `pred`, waiting up to [`STARTUP_TIMEOUT`].
    pub async fn wait_stdout(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        wait_line(&self.stdout, pred).await
    }

    /// Waits up to `limit` for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            sleep(POLL).await;
        }
    }

    /// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let text = std::fs::read_to_string(&path).expect("read /proc status");
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{field} missing in {path}"))
    }
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_line(lines: &Lines, pred: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while Instant::now() < deadline {
        let found = lines.lock().unwrap().iter().find(|l| pred(l)).cloned();
        if found.is_some() {
            return found;
        }
        sleep(POLL).await;
    }
    None
}

/// Parses the `HOST:PORT` that follows `marker` in `line`.
pub fn address_after(line: &str, marker: &str) -> SocketAddr {
    let start = line.find(marker).expect("marker in line") + marker.len();
    let text: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    text.parse().unwrap_or_else(|_| panic!("no address in `{line}`"))
}

/// A config file for the binary: listener and admin on port 0, two workers, and one
/// round-robin pool `web` over `backend`.
pub fn config_toml(backend: SocketAddr) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[pool]]\nname = \"web\"\nstrategy = \"round_robin\"\n\
         backends = [{{ address = \"{backend}\" }}]\n"
    )
}

/// Replaces the file at `path` with `text` atomically (write aside, then rename), so a
/// reload never reads half a file.
pub fn write_config(path: &std::path::Path, text: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text).expect("write config");
    std::fs::rename(&aside, path).expect("rename config");
}
