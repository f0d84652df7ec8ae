//! Running the balancer as a process: start, then react to signals. SIGHUP re-reads the
//! config file (a bad file is refused and logged as `FILE:LINE:COL: message`, the running
//! config stays); SIGTERM and SIGINT drain and exit 0.

use std::process::ExitCode;

use tokio::signal::unix::{signal, SignalKind};

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
    let handle = match server::start(config) {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("weir: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("weir: cannot start signal runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = runtime.block_on(wait_for_signals(args, &handle)) {
        eprintln!("weir: cannot install signal handlers: {error}");
    }
    tracing::info!("draining");
    handle.shutdown();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

async fn wait_for_signals(args: &Args, handle: &Handle) -> std::io::Result<()> {
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hangup.recv() => reload(args, handle),
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
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
