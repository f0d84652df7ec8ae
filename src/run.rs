//! Running the balancer as a process: start, then react to signals. SIGHUP, or a change
//! of the config file (polled every second), re-reads the config file (a bad file is
//! refused and logged as `FILE:LINE:COL: message`, the running config stays); SIGUSR1
//! reopens the access log; SIGUSR2 upgrades the binary ([`crate::upgrade`]); SIGTERM and
//! SIGINT drain and exit 0.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;

use crate::flags::{self, Args};
use crate::listeners::Inherited;
use crate::pid_file;
use crate::server::{self, Handle};
use crate::upgrade::{self, Binary, Handover};

/// Starts the balancer from `args` and runs until SIGTERM or SIGINT, or until a binary
/// upgrade hands its sockets to a new process.
pub fn run(args: &Args) -> ExitCode {
    // Taken first: the binary's path is only reliable as it was at start.
    let binary = Binary::capture();
    // Before the file is read: an edit made while weir starts is then seen as a change
    // by the watcher, not taken as the version loaded.
    let loaded = args.config.as_deref().and_then(stamp);
    let config = match flags::load(args) {
        Ok(config) => config,
        Err(errors) => {
            for error in errors {
                eprintln!("{error}");
            }
            return ExitCode::from(2);
        }
    };
    if let Err(error) = crate::config::validate::exposure(&config) {
        eprintln!("weir: {error}");
        return ExitCode::from(2);
    }
    if args.insecure {
        tracing::warn!("--insecure: backend TLS certificates will NOT be verified");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("weir: cannot start signal runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Handlers go in before the listeners open: a supervisor may send SIGHUP as soon as
    // weir says it listens, and the default action of SIGHUP is to terminate.
    let signals = match runtime.block_on(async { Signals::install() }) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("weir: cannot install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let pid_path = config.server.pid_file.as_ref().map(PathBuf::from);
    let handle = match start(config, pid_path.as_deref()) {
        Ok(handle) => handle,
        Err(code) => return code,
    };
    let reload_args = args.clone();
    handle.shared().set_loader(Box::new(move || flags::load(&reload_args)));
    let process = Process { args, handle: &handle, binary, pid_path: pid_path.as_deref(), loaded };
    runtime.block_on(signals.wait(&process));
    tracing::info!("draining");
    handle.shutdown();
    if let Some(path) = &pid_path {
        pid_file::remove_if_ours(path);
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Starts the balancer, on the sockets of an old process after an upgrade, writes the
/// pid file and reports ready to that old process. The exit code after logging a
/// failure.
fn start(config: crate::config::Config, pid_path: Option<&Path>) -> Result<Handle, ExitCode> {
    let (inherited, handover): (Inherited, Option<Handover>) = match upgrade::inherit() {
        Ok(Some((inherited, handover))) => (inherited, Some(handover)),
        Ok(None) => (Inherited::default(), None),
        Err(error) => {
            eprintln!("weir: {error}");
            return Err(ExitCode::FAILURE);
        }
    };
    let handle = match server::start_with(config, inherited) {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("weir: {error}");
            // A bad state file is a configuration problem, as a bad config file is.
            return Err(if error.is_config_problem() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            });
        }
    };
    if let Some(path) = pid_path {
        if let Err(error) = pid_file::write(path) {
            tracing::error!("{error}");
        }
    }
    if let Some(handover) = handover {
        if let Err(error) = handover.ready() {
            // The old process keeps serving when it hears no `ready`; two would be one
            // too many, so this one goes.
            tracing::error!("{error}; exiting");
            handle.shutdown();
            return Err(ExitCode::FAILURE);
        }
    }
    Ok(handle)
}

/// What the signal loop acts on.
struct Process<'a> {
    args: &'a Args,
    handle: &'a Handle,
    binary: Binary,
    pid_path: Option<&'a Path>,
    /// The config file's version as it was just before weir read it.
    loaded: Option<Stamp>,
}

/// The signals weir reacts to.
struct Signals {
    hangup: Signal,
    reopen: Signal,
    upgrade: Signal,
    terminate: Signal,
    interrupt: Signal,
}

/// The outcome of a binary upgrade: the new process's pid, or why it failed.
type Outcome = Result<u32, String>;

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            reopen: signal(SignalKind::user_defined1())?,
            upgrade: signal(SignalKind::user_defined2())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Reloads on SIGHUP and when the config file changes, and upgrades on SIGUSR2;
    /// returns on SIGTERM or SIGINT, or once an upgrade succeeded.
    async fn wait(mut self, process: &Process<'_>) {
        let mut upgrading: Option<oneshot::Receiver<Outcome>> = None;
        let mut watch = Watch { file: process.args.config.as_deref(), stamp: process.loaded };
        let mut poll = tokio::time::interval(WATCH_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.hangup.recv() => {
                    watch.seen();
                    reload(process.handle);
                }
                _ = poll.tick(), if watch.file.is_some() => {
                    if watch.changed() {
                        tracing::info!("config file changed; reloading");
                        reload(process.handle);
                    }
                }
                // SIGUSR1 reopens the access log file, for logrotate (as nginx does).
                _ = self.reopen.recv() => process.handle.shared().access_log.reopen(),
                _ = self.upgrade.recv() => match upgrading {
                    Some(_) => tracing::warn!("upgrade: one is already in progress"),
                    None => upgrading = Some(begin_upgrade(process)),
                },
                outcome = outcome(&mut upgrading) => {
                    upgrading = None;
                    if upgrade_done(process, outcome) {
                        return;
                    }
                }
                _ = self.terminate.recv() => return,
                _ = self.interrupt.recv() => return,
            }
        }
    }
}

/// Starts the handover on its own thread: it blocks on the new process for seconds, and
/// this loop must keep answering signals meanwhile.
fn begin_upgrade(process: &Process<'_>) -> oneshot::Receiver<Outcome> {
    tracing::info!("upgrade: starting {}", process.binary.path.display());
    let (sender, receiver) = oneshot::channel();
    let shared = Arc::clone(process.handle.shared());
    let binary = process.binary.clone();
    let spawned = std::thread::Builder::new().name("weir-upgrade".into()).spawn(move || {
        let _ = sender.send(upgrade::hand_over(&shared, &binary));
    });
    if let Err(error) = spawned {
        let (sender, receiver) = oneshot::channel();
        let _ = sender.send(Err(format!("cannot start the upgrade thread: {error}")));
        return receiver;
    }
    receiver
}

/// The outcome of the upgrade in progress; never resolves when there is none.
async fn outcome(upgrading: &mut Option<oneshot::Receiver<Outcome>>) -> Outcome {
    match upgrading {
        Some(receiver) => receiver.await.unwrap_or_else(|_| Err("the upgrade thread died".into())),
        None => std::future::pending().await,
    }
}

/// Logs an upgrade's outcome; true when this process should now drain and exit.
fn upgrade_done(process: &Process<'_>, outcome: Outcome) -> bool {
    match outcome {
        Ok(pid) => {
            tracing::info!("upgrade: process {pid} took over the listeners");
            true
        }
        Err(error) => {
            tracing::error!("upgrade failed, this process keeps serving: {error}");
            // A fresh pid file with this pid tells `weir upgrade` it failed.
            if let Some(path) = process.pid_path {
                if let Err(error) = pid_file::write(path) {
                    tracing::error!("{error}");
                }
            }
            false
        }
    }
}

/// How often the config file is checked for changes. A second is quick for a human
/// editing a file and costs one `stat` call.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies a version of the config file: modification time, length and inode.
/// Editors that save by writing a new file and renaming it change the inode, and a
/// Kubernetes ConfigMap update swaps a symlink, which `metadata` follows.
type Stamp = (Option<SystemTime>, u64, u64);

/// The config file, and the version of it last loaded.
struct Watch<'a> {
    file: Option<&'a Path>,
    stamp: Option<Stamp>,
}

impl Watch<'_> {
    /// Records the file's version as loaded (before a SIGHUP reload).
    fn seen(&mut self) {
        self.stamp = self.file.and_then(stamp);
    }

    /// Whether the file changed since it was last seen (and still exists).
    fn changed(&mut self) -> bool {
        let now = self.file.and_then(stamp);
        let changed = now != self.stamp && now.is_some();
        self.stamp = now;
        changed
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok(), meta.len(), meta.ino()))
}

/// Re-reads the config file (with the flags) and swaps it in, or logs why not.
pub fn reload(handle: &Handle) {
    if let Err(errors) = handle.shared().reload_from_source() {
        for error in errors.messages() {
            tracing::error!("reload refused, running config kept: {error}");
        }
    }
}
