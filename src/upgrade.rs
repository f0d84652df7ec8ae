//! Zero-downtime binary upgrade: on SIGUSR2 (or `weir upgrade`) the running process
//! starts the binary again, hands it every listening socket, waits until it is ready,
//! then drains and exits 0.
//!
//! # Sequence
//! 1. The old process listens on a fresh abstract Unix socket ([`wire`]) and starts the
//!    binary with the same arguments, working directory and environment, plus
//!    [`ENV_SOCKET`] naming that socket.
//! 2. The new process connects; each side checks the other's pid. The old one sends
//!    every client listening socket (one per worker per address) and the admin socket,
//!    one message each, then `end COUNT`.
//! 3. The new process starts on them ([`crate::server::start_with`]): every received
//!    socket is accepted by one of its workers, so no connection waits in a queue nobody
//!    reads. It writes the pid file and answers `ready PID`.
//! 4. The old process stops accepting and drains. The sockets stay open in the new
//!    process, so nothing queued is lost and no connection attempt is refused.
//!
//! If the new process exits, fails, or is not ready within [`READY_TIMEOUT`], the old one
//! stops it, logs why, and keeps serving.
//!
//! # Which binary
//! The one weir was started as, as nginx does: `argv[0]`, a bare name looked up in `PATH`
//! again, a relative path taken against the working directory at start
//! ([`Binary::capture`]). That follows both deploy styles: a file replaced in place and a
//! symlink switched to a new release. `/proc/self/exe` would not: it resolves symlinks to
//! the old release, and after a package upgrade it reads `/usr/bin/weir (deleted)`, the
//! unlinked old file. It is only the fallback when `argv[0]` names no file, with that
//! suffix removed.

pub mod command;
pub mod wire;

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use socket2::{Socket, Type};

use crate::listeners::Inherited;
use crate::server::Shared;
use wire::Channel;

/// Environment variable that tells a new process where to fetch its sockets.
pub const ENV_SOCKET: &str = "WEIR_UPGRADE_SOCKET";

/// How long the old process waits for the new one to be ready: a start resolves backend
/// names and loads certificates, which takes seconds at worst; past this something hangs.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between checks while waiting for the new process to connect.
const CONNECT_POLL: Duration = Duration::from_millis(10);

/// Bound on each message exchange once connected, for the new process.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most sockets one handover carries: every worker's socket for many addresses.
const MAX_SOCKETS: usize = 4096;

/// The binary and arguments to start for an upgrade.
#[derive(Clone, Debug)]
pub struct Binary {
    /// The executable's path.
    pub path: PathBuf,
    /// The arguments, without the program name.
    pub args: Vec<OsString>,
}

impl Binary {
    /// The binary weir was started as and its arguments, taken at start, before
    /// anything could change the working directory (see the module documentation).
    pub fn capture() -> Binary {
        let mut args = std::env::args_os();
        let program = PathBuf::from(args.next().unwrap_or_default());
        let path = started_as(&program).unwrap_or_else(|| match std::env::current_exe() {
            Ok(path) => match path.to_string_lossy().strip_suffix(" (deleted)") {
                Some(stripped) => PathBuf::from(stripped),
                None => path,
            },
            Err(_) => program,
        });
        Binary { path, args: args.collect() }
    }
}

/// `argv[0]` as something to start again: a bare name as is (for a `PATH` lookup), a
/// path made absolute, if it names a file.
fn started_as(program: &std::path::Path) -> Option<PathBuf> {
    if program.as_os_str().is_empty() {
        return None;
    }
    if program.components().count() == 1 && !program.has_root() {
        return Some(program.to_path_buf());
    }
    let absolute = std::env::current_dir().ok()?.join(program);
    absolute.is_file().then_some(absolute)
}

/// Starts the new process and hands it the sockets. Returns its pid once it is ready;
/// on error it has been stopped, and the caller keeps serving. Admin API changes are
/// refused (503) from the start: the new process reads the state file as it starts, so
/// a change made here after that would be lost. They are accepted again on error.
pub fn hand_over(shared: &Shared, binary: &Binary) -> Result<u32, String> {
    shared.set_upgrading(true);
    let handed = start_and_hand_over(shared, binary);
    if handed.is_err() {
        shared.set_upgrading(false);
    }
    handed
}

fn start_and_hand_over(shared: &Shared, binary: &Binary) -> Result<u32, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let name = format!("weir-upgrade-{}-{nanos}", std::process::id());
    let listener = wire::listen(&name).map_err(|e| format!("handover socket: {e}"))?;
    let mut child = Command::new(&binary.path)
        .args(&binary.args)
        .env(ENV_SOCKET, &name)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.path.display()))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    match exchange(shared, &listener, &mut child, deadline) {
        Ok(pid) => Ok(pid),
        Err(error) => Err(format!("{error}; {}", stop(&mut child))),
    }
}

/// The old side of the conversation, up to `ready`.
fn exchange(
    shared: &Shared,
    listener: &OwnedFd,
    child: &mut Child,
    deadline: Instant,
) -> Result<u32, String> {
    let channel = wait_for_child(listener, child, deadline)?;
    let sockets = shared.listeners.handover().map_err(|e| format!("duplicate sockets: {e}"))?;
    let remaining = deadline.saturating_duration_since(Instant::now());
    channel.set_timeout(remaining).map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| format!("handover: {e}");
    for (admin, configured, socket) in &sockets {
        let kind = if *admin { "admin" } else { "listen" };
        channel.send(&format!("{kind} {configured}"), Some(socket.as_fd())).map_err(io)?;
    }
    channel.send(&format!("end {}", sockets.len()), None).map_err(io)?;
    drop(sockets);
    match channel.recv() {
        Ok(Some((text, None))) if text.starts_with("ready ") => Ok(child.id()),
        Ok(Some((text, _))) => Err(format!("unexpected message `{text}`")),
        Ok(None) => Err("the new process closed the handover before it was ready".into()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            Err(format!("the new process was not ready within {READY_TIMEOUT:?}"))
        }
        Err(e) => Err(io(e)),
    }
}

/// Waits until the child connects, or exits, or the deadline passes.
fn wait_for_child(
    listener: &OwnedFd,
    child: &mut Child,
    deadline: Instant,
) -> Result<Channel, String> {
    // Bounded by the deadline.
    loop {
        if let Some(channel) = wire::accept(listener).map_err(|e| format!("accept: {e}"))? {
            match channel.peer_pid() {
                Ok(pid) if pid == child.id() => return Ok(channel),
                // Another local process found the name; it gets nothing.
                other => tracing::warn!("upgrade: ignored a handover connection from {other:?}"),
            }
        }
        if let Ok(Some(_)) = child.try_wait() {
            return Err("the new process exited before it connected".into());
        }
        if Instant::now() >= deadline {
            return Err(format!("the new process did not connect within {READY_TIMEOUT:?}"));
        }
        std::thread::sleep(CONNECT_POLL);
    }
}

/// Stops a failed new process and says how it ended.
fn stop(child: &mut Child) -> String {
    // A process that failed to start exits by itself within moments; give it that long
    // before killing it, so its own exit status (2 for a bad config) is what gets logged.
    let grace = Instant::now() + Duration::from_secs(1);
    while Instant::now() < grace {
        if let Ok(Some(status)) = child.try_wait() {
            return format!("the new process exited ({status})");
        }
        std::thread::sleep(CONNECT_POLL);
    }
    let _ = child.kill();
    match child.wait() {
        Ok(status) => format!("the new process was stopped ({status})"),
        Err(error) => format!("the new process could not be reaped: {error}"),
    }
}

/// The new side's connection to the old process, kept to report readiness.
#[derive(Debug)]
pub struct Handover {
    channel: Channel,
}

/// Fetches the sockets from the old process when this one was started by an upgrade;
/// `Ok(None)` on an ordinary start.
pub fn inherit() -> Result<Option<(Inherited, Handover)>, String> {
    let Some(name) = std::env::var_os(ENV_SOCKET) else { return Ok(None) };
    let name = name.to_string_lossy().into_owned();
    let channel = wire::connect(&name).map_err(|e| format!("upgrade socket {name}: {e}"))?;
    let parent = rustix::process::getppid().map_or(0, |pid| pid.as_raw_pid().unsigned_abs());
    match channel.peer_pid() {
        Ok(pid) if pid == parent => {}
        other => return Err(format!("upgrade socket {name}: peer {other:?} is not the parent")),
    }
    channel.set_timeout(EXCHANGE_TIMEOUT).map_err(|e| e.to_string())?;
    let mut inherited = Inherited::default();
    for _ in 0..=MAX_SOCKETS {
        let message = channel.recv().map_err(|e| format!("upgrade: {e}"))?;
        let Some((text, fd)) = message else {
            return Err("upgrade: the old process closed the handover".into());
        };
        let (kind, rest) = text.split_once(' ').unwrap_or((&text, ""));
        match (kind, fd) {
            ("end", None) => return finish(inherited, rest, channel),
            ("listen", Some(fd)) => inherited.listeners.push(adopt(rest, fd)?),
            ("admin", Some(fd)) => inherited.admin = Some(adopt(rest, fd)?),
            _ => return Err(format!("upgrade: unexpected message `{text}`")),
        }
    }
    Err(format!("upgrade: more than {MAX_SOCKETS} sockets"))
}

fn finish(
    inherited: Inherited,
    count: &str,
    channel: Channel,
) -> Result<Option<(Inherited, Handover)>, String> {
    let received = inherited.listeners.len() + usize::from(inherited.admin.is_some());
    if count.parse::<usize>().ok() != Some(received) {
        return Err(format!("upgrade: got {received} sockets, the old process sent {count}"));
    }
    let pid = std::process::id();
    tracing::info!(sockets = received, pid, "upgrade: took over the listening sockets");
    Ok(Some((inherited, Handover { channel })))
}

/// Checks that `fd` is a listening TCP socket and makes it a listener.
fn adopt(configured: &str, fd: OwnedFd) -> Result<(SocketAddr, TcpListener), String> {
    let configured: SocketAddr =
        configured.parse().map_err(|_| format!("upgrade: bad address `{configured}`"))?;
    let socket = Socket::from(fd);
    let listening = socket.is_listener().unwrap_or(false);
    if !listening || socket.r#type().ok() != Some(Type::STREAM) {
        return Err(format!("upgrade: socket for {configured} is not a TCP listener"));
    }
    Ok((configured, socket.into()))
}

impl Handover {
    /// Tells the old process that this one serves; it then stops accepting and drains.
    pub fn ready(self) -> Result<(), String> {
        let text = format!("ready {}", std::process::id());
        self.channel.send(&text, None).map_err(|e| format!("upgrade: ready: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::started_as;
    use std::path::{Path, PathBuf};

    #[test]
    fn argv0_is_started_again_as_given() {
        // A bare name is kept for a PATH lookup at upgrade time.
        assert_eq!(started_as(Path::new("weir")), Some(PathBuf::from("weir")));
        // An absolute path that names a file is kept as is, symlinks unresolved.
        let this = std::env::current_exe().expect("test binary path");
        assert_eq!(started_as(&this), Some(this.clone()));
        // A relative path is taken against the working directory, now.
        let cwd = std::env::current_dir().expect("working directory");
        let relative = this.strip_prefix(&cwd).ok().map(Path::to_path_buf);
        if let Some(relative) = relative {
            assert_eq!(started_as(&relative), Some(cwd.join(&relative)));
        }
        // Nothing usable: the caller falls back to the running executable.
        assert_eq!(started_as(Path::new("")), None);
        assert_eq!(started_as(Path::new("/no/such/weir")), None);
        assert_eq!(started_as(Path::new("./no-such-weir")), None);
    }
}
