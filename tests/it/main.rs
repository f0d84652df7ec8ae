//! weir's integration tests, in one binary so the crate is linked once: one module per
//! area, and the shared helpers (test backends, clients, weir in-process and as a child
//! process, load generators) in [`support`].

mod support;

mod access_control;
mod access_log;
mod admin_api;
mod admin_limits;
mod api;
mod api_process;
mod api_transactions;
mod balancing;
mod bodies;
mod cli;
mod dead_backend;
pub mod discovery_coalesce;
mod discovery_fleet;
mod discovery_k8s;
mod discovery_readiness;
pub mod dns;
mod dns_resolver;
pub mod dns_srv;
mod errors;
mod fleet;
mod fleet_outage;
mod framing;
mod framing_fields;
mod grpc;
mod h2;
mod h2up;
mod headers;
mod health_failover;
mod health_passive;
mod health_probes;
mod listeners;
mod live_reload;
mod local_faults;
mod metrics;
mod partial_responses;
mod pool;
mod proxy_protocol;
mod proxy_protocol_send;
mod replays;
mod retry_storm;
mod robustness;
mod routing;
mod semantics;
mod signals;
mod slow_peers;
mod status_browser;
mod timeouts;
mod tls_blocks;
mod tls_downstream;
mod tls_upstream;
mod upgrade;
mod upgrade_drain;
