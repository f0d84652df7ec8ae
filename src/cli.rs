//! The `weir` binary's entry point: parses [`Args`] and runs the balancer, `weir check`,
//! `weir demo` or `weir upgrade`. The flags themselves, and how they override the file,
//! are in [`crate::flags`].

use std::process::ExitCode;

use clap::Parser;

use crate::config;
use crate::flags::{Args, Command};

/// Entry point of the `weir` binary.
pub fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_level.as_deref());
    match &args.command {
        Some(Command::Check { config }) => check(config),
        Some(Command::Demo) => crate::demo::run(&args),
        Some(Command::Upgrade { pid, pid_file, config }) => {
            let target = crate::upgrade::command::Target {
                pid: *pid,
                pid_file: pid_file.clone().or_else(|| args.pid_file.clone()),
                config: config.clone().or_else(|| args.config.clone()),
            };
            crate::upgrade::command::run(&target)
        }
        None => crate::run::run(&args),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::parse::load_file(path) {
        Ok(_) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in errors {
                eprintln!("{error}");
            }
            ExitCode::from(2)
        }
    }
}

fn init_logging(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
