//! Running the balancer as a process: start, then react to signals. SIGHUP re-reads the
//! config file (a bad file is refused and logged as `FILE:LINE:COL: message`, the running
//! config stays); SIGUSR1 reopens the access log; SIGTERM and SIGINT drain and exit 0.

use std::process::ExitCode;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::cli::{self, Args};
use crate::server::{self, Handle};

/// Starts the balancer from `args` and runs until SIGTERM or SIGINT.
pub fn run(args: &Args) -> ExitCode {
    let config = match cli::load(args) {
        Ok(config) => config,
        Err(errors) => {
            for error in errors {
                eprintln!("{error}");
            }
            return ExitCode::from(2);
        }
    };
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
    let handle = match server::start(config) {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("weir: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(signals.wait(args, &handle));
    tracing::info!("draining");
    handle.shutdown();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// The signals weir reacts to.
struct Signals {
    hangup: Signal,
    reopen: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            reopen: signal(SignalKind::user_defined1())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Reloads on SIGHUP; returns on SIGTERM or SIGINT.
    async fn wait(mut self, args: &Args, handle: &Handle) {
        loop {
            tokio::select! {
                _ = self.hangup.recv() => reload(args, handle),
                // SIGUSR1 reopens the access log file, for logrotate (as nginx does).
                _ = self.reopen.recv() => handle.shared().access_log.reopen(),
                _ = self.terminate.recv() => return,
                _ = self.interrupt.recv() => return,
            }
        }
    }
}

/// Re-reads the config file and swaps it in, or logs why not.
pub fn reload(args: &Args, handle: &Handle) {
    match cli::load(args) {
        Ok(config) => {
            if let Err(error) = handle.reload(config) {
                tracing::error!("reload refused, running config kept: {error}");
            }
        }
        Err(errors) => {
            for error in errors {
                tracing::error!("reload refused, running config kept: {error}");
            }
        }
    }
}
