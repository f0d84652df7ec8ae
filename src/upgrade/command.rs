//! `weir upgrade`: finds the running process, sends it SIGUSR2 and, when there is a pid
//! file to watch, waits for the outcome.
//!
//! The process is named by `--pid`, or read from `--pid-file`, or from the
//! `[server] pid_file` of `--config`. The new process rewrites the pid file with its own
//! id just before it reports ready; an old process whose upgrade failed rewrites it with
//! its own id again (a new file with the same content).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::pid_file;

/// How long `weir upgrade` waits for an outcome: the old process's own bound plus time
/// for it to notice and report.
const OUTCOME_TIMEOUT: Duration = Duration::from_secs(super::READY_TIMEOUT.as_secs() + 5);

/// Pause between looks at the pid file.
const POLL: Duration = Duration::from_millis(50);

/// Where `weir upgrade` finds the running process.
#[derive(Debug, Default)]
pub struct Target {
    /// An explicit process id.
    pub pid: Option<u32>,
    /// A pid file to read.
    pub pid_file: Option<PathBuf>,
    /// A config file whose `[server] pid_file` to read.
    pub config: Option<PathBuf>,
}

/// Runs `weir upgrade`: exit 0 once a new process serves, 1 if the upgrade failed or the
/// outcome is unknown, 2 for a usage problem.
pub fn run(target: &Target) -> ExitCode {
    if let Some(pid) = target.pid {
        return match signal(pid) {
            Ok(()) => {
                println!("sent SIGUSR2 to {pid}; its log tells the outcome");
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error),
        };
    }
    let path = match pid_file_path(target) {
        Ok(path) => path,
        Err(error) => {
            eprintln!("weir upgrade: {error}");
            return ExitCode::from(2);
        }
    };
    match upgrade_by_file(&path) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

fn fail(error: &str) -> ExitCode {
    eprintln!("weir upgrade: {error}");
    ExitCode::FAILURE
}

fn pid_file_path(target: &Target) -> Result<PathBuf, String> {
    if let Some(path) = &target.pid_file {
        return Ok(path.clone());
    }
    let Some(config) = &target.config else {
        return Err("name the process: --pid PID, --pid-file FILE or --config FILE".into());
    };
    let config = crate::config::parse::load_file(config)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
    config.server.pid_file.map(PathBuf::from).ok_or_else(|| {
        "the config file sets no [server] pid_file; use --pid or --pid-file".to_string()
    })
}

fn signal(pid: u32) -> Result<(), String> {
    let target = i32::try_from(pid).ok().and_then(Pid::from_raw);
    let target = target.ok_or_else(|| format!("{pid} is not a process id"))?;
    rustix::process::kill_process(target, Signal::USR2)
        .map_err(|e| format!("cannot signal process {pid}: {e}"))
}

fn alive(pid: u32) -> bool {
    let target = i32::try_from(pid).ok().and_then(Pid::from_raw);
    target.is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}

fn upgrade_by_file(path: &Path) -> Result<String, String> {
    let read = |path: &Path| pid_file::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let (old, identity) = read(path)?;
    signal(old)?;
    let deadline = Instant::now() + OUTCOME_TIMEOUT;
    // Bounded by the deadline.
    while Instant::now() < deadline {
        std::thread::sleep(POLL);
        // A missing or half-replaced file is read again on the next pass.
        if let Ok((pid, now)) = read(path) {
            if pid != old {
                return Ok(format!("upgraded: process {pid} serves; {old} drains and exits"));
            }
            if now != identity {
                return Err(format!("the upgrade failed; {old} keeps serving (see its log)"));
            }
        }
        if !alive(old) {
            return Err(format!("process {old} exited and no new process took over"));
        }
    }
    Err(format!("no outcome within {OUTCOME_TIMEOUT:?}; see the log of process {old}"))
}
