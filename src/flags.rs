//! Command-line flags: `weir [OPTIONS]`, `weir check`, `weir demo`, `weir upgrade`.
//!
//! Flags fill the same [`Config`] as the file and override it key by key. `--backend`
//! replaces the file's pools and routes with one pool named `default`, so the seed-style
//! one-liner `weir -b 127.0.0.1:9001 -b 127.0.0.1:9002 -p 8080` needs no file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{
    self, BackendAddress, BackendConfig, Config, PoolConfig, Resolve, StrategyKind,
};

/// Command-line arguments.
#[derive(Clone, Debug, Default, Parser)]
#[command(name = "weir", version, about = "A streaming HTTP/1.1 load balancer")]
pub struct Args {
    /// Subcommand; none runs the balancer.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML config file.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Backend, repeatable: HOST:PORT, http://HOST:PORT or https://HOST:PORT.
    #[arg(short = 'b', long = "backend", value_name = "URL")]
    pub backends: Vec<String>,
    /// Listener address, repeatable (default 127.0.0.1:8080).
    #[arg(short = 'l', long = "listen", value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// Shorthand for --listen 0.0.0.0:PORT.
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Strategy for the pool made from --backend.
    #[arg(short = 's', long, value_name = "NAME")]
    pub strategy: Option<String>,
    /// Worker threads (default: number of CPUs).
    #[arg(short = 'w', long, value_name = "N")]
    pub workers: Option<usize>,
    /// Admin listener (default 127.0.0.1:9901; "off" disables it).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// Do not verify backend TLS certificates (warns loudly).
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// error|warn|info|debug|trace (RUST_LOG also works).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Write the process id to FILE (for `weir upgrade` and scripts).
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
}

/// Subcommands.
#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// Validate a config file: print "ok", or every problem as FILE:LINE:COL: message.
    Check {
        /// The file to check.
        #[arg(short = 'c', long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Start 3 demo backends and a balancer on 127.0.0.1:8080 (admin on 127.0.0.1:9901);
    /// --listen, --admin and --workers given before `demo` apply.
    Demo,
    /// Zero-downtime binary upgrade: signal the running weir (SIGUSR2) to start the binary
    /// again on its listening sockets, then drain and exit. Names the process by --pid,
    /// --pid-file, or the pid_file key (server section) of --config; waits for the
    /// outcome when it has a pid file to watch.
    Upgrade {
        /// Process id of the running weir.
        #[arg(long, value_name = "PID", conflicts_with_all = ["pid_file", "config"])]
        pid: Option<u32>,
        /// Pid file of the running weir.
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
        /// Config file whose pid_file key (server section) names the running weir.
        #[arg(short = 'c', long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// Builds the configuration from the file (if any) and the flags. Every problem is
/// returned, file problems as `FILE:LINE:COL: message`.
pub fn load(args: &Args) -> Result<Config, Vec<String>> {
    let mut config = match &args.config {
        Some(path) => config::parse::load_file(path)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?,
        None => Config::default(),
    };
    apply_flags(args, &mut config).map_err(|e| vec![e])?;
    if config.pools.is_empty() {
        return Err(vec![
            "no backends: pass --backend HOST:PORT or a config file with a [[pool]]".into()
        ]);
    }
    Ok(config)
}

/// Applies command-line overrides to `config`.
pub fn apply_flags(args: &Args, config: &mut Config) -> Result<(), String> {
    if !args.backends.is_empty() {
        let strategy = match &args.strategy {
            Some(name) => parse_strategy(name)?,
            None => StrategyKind::RoundRobin,
        };
        let mut backends = Vec::with_capacity(args.backends.len());
        for text in &args.backends {
            let address = BackendAddress::parse(text).map_err(|e| format!("--backend: {e}"))?;
            backends.push(BackendConfig { address, weight: 1, resolve: Resolve::Once });
        }
        let mut pool = PoolConfig::new("default", strategy, backends);
        if strategy == StrategyKind::Sticky {
            pool.sticky = Some(config::StickyConfig::default());
        }
        config.pools = vec![pool];
        config.routes.clear();
    } else if args.strategy.is_some() {
        return Err("--strategy applies to the pool made from --backend; give --backend too".into());
    }
    if !args.listen.is_empty() || args.port.is_some() {
        config.server.listen = args.listen.clone();
        if let Some(port) = args.port {
            config.server.listen.push(SocketAddr::from(([0, 0, 0, 0], port)));
        }
    }
    if let Some(workers) = args.workers {
        if workers > config::MAX_WORKERS {
            return Err(format!("--workers {workers}: at most {}", config::MAX_WORKERS));
        }
        config.server.workers = workers;
    }
    if let Some(path) = &args.pid_file {
        config.server.pid_file = Some(path.to_string_lossy().into_owned());
    }
    if args.insecure {
        // `-k` turns verification off for every pool's https backends, as curl's does.
        for pool in &mut config.pools {
            pool.tls.get_or_insert_with(Default::default).insecure_skip_verify = true;
        }
    }
    if let Some(admin) = &args.admin {
        config.admin.listen = match admin.as_str() {
            "off" => None,
            text => Some(
                text.parse().map_err(|_| format!("--admin {text}: expected ADDR:PORT or off"))?,
            ),
        };
    }
    Ok(())
}

fn parse_strategy(name: &str) -> Result<StrategyKind, String> {
    let kind = StrategyKind::from_name(name).ok_or_else(|| {
        format!("--strategy {name}: expected one of {}", StrategyKind::NAMES.join(", "))
    })?;
    if kind == StrategyKind::ConsistentHash {
        return Err(format!(
            "--strategy {name}: needs a hash key; use a config file with [pool.hash] key"
        ));
    }
    Ok(kind)
}
