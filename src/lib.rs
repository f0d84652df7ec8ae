//! weir: a streaming HTTP/1.1 load balancer.
//!
//! The crate is a library so that integration tests can start a balancer in-process on
//! port 0; `src/main.rs` only calls [`cli::main`].
//!
//! # Layers
//!
//! Modules are layered, and imports point only down (or to a module of the same layer).
//! `.ci/layers.py` reads the table below and fails CI on an upward import, or on an
//! import cycle inside a layer that the list after the table does not name.
//!
//! ```text
//!   process        5 │ cli · flags · run · demo · server · upgrade
//!                    │        starts the pieces, owns threads and signals
//!   control plane  4 │ control · state · fleet · admin
//!                    │        control::Plane: the one writer of snapshots
//!   data plane     3 │ context · proxy · worker · drain · listeners
//!                    │        sees only context::Context: snapshot, counters, log, permits
//!   state          2 │ metrics · exposition · local_fault · balance · health · discovery · snapshot · retry_budget · route · rules · pool · access_log · limit
//!                    │        decisions on immutable snapshots; live state by identity
//!   codecs         1 │ http1 · http2 · tls · config · proxy_protocol · cidr
//!                    │        bytes ⇄ typed values, no I/O policy
//!   base           0 │ json · shard · rng · log_budget · pid_file
//!                    ▼ imports point down
//! ```
//!
//! Cycles inside a layer, each with its reason (the check accepts only these):
//! - `balance` ↔ `snapshot`: a snapshot's pool owns its strategy and each backend's live
//!   state carries its strategy's cell (WRR cursor, EWMA), while strategies pick among
//!   the snapshot's backends.
//! - `health` ↔ `snapshot`: each backend's live state holds its health machine, while
//!   the prober and `health::select` walk the snapshot's pools.
//!
//! # Modules, by layer
//!
//! **Process.**
//! - [`cli`]: the binary's entry point: `weir`, `weir check`, `weir demo`, `weir upgrade`.
//! - [`flags`]: command-line flags, and how they override the file.
//! - [`run`]: the process around a balancer: signals, reload on SIGHUP, drain on SIGTERM,
//!   binary upgrade on SIGUSR2.
//! - [`demo`]: `weir demo`, three backends and a balancer on loopback.
//! - [`server`]: start, reload and stop a balancer in-process ([`server::Handle`]); it
//!   builds the data path's [`context::Context`] and the [`control::Plane`].
//! - [`upgrade`]: zero-downtime binary upgrade (SIGUSR2, `weir upgrade`): start the
//!   binary again, hand it every listening socket, drain.
//!
//! **Control plane.**
//! - [`control`]: [`control::Plane`], the one owner of live configuration changes (API
//!   edits, reloads, re-resolved names, settled drains): each is built into one snapshot
//!   whose effects on live state apply only when it is published.
//! - [`state`]: the state file that keeps API changes across restarts and reloads.
//! - [`fleet`]: `[fleet]`: the admin API's changes shared by several instances through
//!   etcd (list, watch, compare-and-swap writes, a membership lease), in the state file's
//!   place.
//! - [`admin`]: the admin listener (`/healthz`, `/metrics`, `/status`, `/api/v1/...`),
//!   the mutating API and its bearer token; it maps control-plane errors to statuses.
//!
//! **Data plane.**
//! - [`context`]: what the data path shares across workers, and nothing more.
//! - [`proxy`]: one task per client connection: head, route, pick, exchange, retry,
//!   keep-alive; every failed attempt is classified once (`proxy::class`). HTTP/2
//!   clients (`proxy::h2`) run each stream through the same request path.
//! - [`worker`]: thread-per-core workers, each with a current-thread runtime and its own
//!   `SO_REUSEPORT` listeners.
//! - [`drain`]: a worker's drain signal; idle connections watch it at no cost per
//!   request.
//! - [`listeners`]: the table of client listening sockets that workers follow; reloads
//!   add and remove addresses, upgrades hand the sockets over.
//!
//! **State and decisions.**
//! - [`snapshot`]: the immutable snapshot swapped on reload, and the live per-backend state
//!   that survives swaps.
//! - [`balance`]: backend selection strategies behind one small trait.
//! - [`health`]: one health state machine per backend, fed by active probes (on the
//!   `weir-health` thread) and by the outcomes of real requests.
//! - [`discovery`]: discovery of `resolve = true` (A/AAAA) and `resolve = "srv"`
//!   backends on the `weir-dns` thread through `hickory-resolver`, and of Kubernetes
//!   Services' EndpointSlices on the `weir-k8s` thread through `kube`: each source gives a
//!   complete endpoint set, applied through a throttle (at most 10 rebuilds a second).
//! - [`route`]: host and path-prefix routing to pools.
//! - [`rules`]: a route's header rules, path rewrites, redirect targets and request ids,
//!   applied to heads weir wrote.
//! - [`pool`]: upstream connections, and per-worker idle pools keyed by backend identity.
//! - [`retry_budget`]: the per-pool retry budget, a sliding one-second window.
//! - [`metrics`]: the counters weir exposes, and Prometheus text helpers.
//! - [`exposition`]: the `/metrics` text of a snapshot and the frontend counters.
//! - [`local_fault`]: weir's own resource faults (fds, memory, ports), counted by kind.
//! - [`access_log`]: one line per request through a bounded channel to a writer thread.
//! - [`limit`]: rate limits (`[[limit]]`): GCRA on a fixed-size lock-free table shared by
//!   the workers, or on Redis for a fleet; and the per-client connection count
//!   (`max_connections_per_client`).
//!
//! **Codecs.**
//! - [`http1`]: HTTP/1.1 heads and body framing, forwarded byte for byte.
//! - [`http2`]: HTTP/2 frame headers read as the bytes pass to the `h2` codec, for the
//!   bounds weir keeps beyond the codec's own.
//! - [`tls`]: rustls client connectors (pooled, resumed sessions shared by all
//!   workers) and SNI-aware acceptors with certificate reload.
//! - [`proxy_protocol`]: PROXY protocol v1 and v2 headers, read from L4 balancers in
//!   front and written to backends that ask for them.
//! - [`cidr`]: address blocks (`10.0.0.0/8`) for `trusted_proxies` and `allow`/`deny`.
//! - [`config`]: the one configuration struct with defaults; [`config::parse`] reads TOML
//!   and reports every problem as `FILE:LINE:COL: message`.
//!
//! **Base.**
//! - [`json`]: the small JSON writer of the admin API, state file and access log.
//! - [`shard`]: per-worker padded slots, so hot-path counters never share a cache line.
//! - [`rng`]: the per-thread generator of the random strategies and of query ids.
//! - [`log_budget`]: a shared limiter for log lines about repeated faults.
//! - [`pid_file`]: the pid file that `weir upgrade` and scripts read.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Module docs link crate-private modules: they are written for maintainers, who read them
// with `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub mod access_log;
pub mod admin;
pub mod balance;
pub mod cidr;
pub mod cli;
pub mod config;
pub mod context;
pub mod control;
pub mod demo;
pub mod discovery;
pub mod drain;
pub mod exposition;
pub mod flags;
pub mod fleet;
pub mod health;
pub mod http1;
pub mod http2;
pub mod json;
pub mod limit;
pub mod listeners;
pub mod local_fault;
pub mod log_budget;
pub mod metrics;
pub mod pid_file;
pub mod pool;
pub mod proxy;
pub mod proxy_protocol;
pub mod retry_budget;
pub mod rng;
pub mod route;
pub mod rules;
pub mod run;
pub mod server;
pub mod shard;
pub mod snapshot;
pub mod state;
pub mod tls;
pub mod upgrade;
pub mod worker;
