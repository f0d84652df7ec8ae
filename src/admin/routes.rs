//! Admin endpoints: which path answers which methods, and what each returns.
//!
//! A known path with a wrong method gets 405 with `Allow`; anything else 404. Errors
//! under `/api/` are JSON (`{"error": "..."}`) so API clients can parse every answer.

use super::http::{Request, Response};
use super::{mutate, STATUS_PAGE};
use crate::control::Plane;
use crate::json::JsonWriter;

/// A 403 when `[admin] allow`/`deny` refuse the peer (read per request, so a reload
/// applies to the next one), counted in `weir_denied_total{listener="admin"}`.
fn denied(request: &Request, plane: &Plane) -> Option<Response> {
    let data = plane.data();
    // No address (only requests built without a connection): permitted only when the
    // lists are empty, so a missing address never slips past an access list.
    let acl = &data.snapshot.load().config.admin.acl;
    let permitted = match request.peer {
        Some(peer) => acl.permits(peer.ip()),
        None => acl.is_open(),
    };
    if permitted {
        return None;
    }
    data.frontend.local().denied[1].inc();
    Some(Response::text(403, "forbidden by the admin access list\n"))
}

/// Methods allowed on read-only endpoints.
const READ_ONLY: &[&str] = &["GET", "HEAD"];

/// Endpoints and the methods they answer.
const ENDPOINTS: &[(&str, &[&str])] = &[
    ("/", READ_ONLY),
    ("/healthz", READ_ONLY),
    ("/metrics", READ_ONLY),
    ("/status", READ_ONLY),
    ("/api/v1/limits", READ_ONLY),
];

/// Answers one admin request.
pub fn handle(request: &Request, plane: &Plane) -> Response {
    if let Some(denied) = denied(request, plane) {
        return denied;
    }
    if let Some(response) = mutate::handle(request, plane) {
        return response;
    }
    let path = request.path.as_str();
    let Some(&(_, methods)) = ENDPOINTS.iter().find(|(p, _)| *p == path) else {
        return not_found(path);
    };
    if !metrics_enabled(plane) && path == "/metrics" {
        return not_found(path);
    }
    if !methods.contains(&request.method.as_str()) {
        return method_not_allowed(path, methods);
    }
    match path {
        "/" => Response::text(302, "see /status\n").with_header("Location", "/status"),
        "/healthz" => Response::text(200, "ok\n"),
        "/metrics" => {
            let data = plane.data();
            let snapshot = data.snapshot.load();
            let mut body = crate::exposition::render(&data.frontend, &snapshot);
            let per_client = data.per_client.get().map(|table| &**table);
            crate::limit::report::render(&mut body, &snapshot.limits, per_client);
            crate::exposition::render_access_log(&mut body, data.access_log.dropped());
            plane.dns().render(&mut body);
            crate::discovery::coalesce::render(plane.sink(), &mut body);
            let reloads = plane.reloads();
            crate::exposition::render_reloads(
                &mut body,
                reloads.success.get(),
                reloads.failure.get(),
            );
            if let Some(status) = plane.store_status() {
                render_fleet(&mut body, &status);
            }
            Response::new(200, "text/plain; version=0.0.4; charset=utf-8", body.into_bytes())
        }
        "/api/v1/limits" => {
            let data = plane.data();
            let snapshot = data.snapshot.load();
            let most = snapshot.config.server.max_connections_per_client;
            let per_client = data.per_client.get().map(|table| &**table);
            let body = crate::limit::report::json(&snapshot.limits, most, per_client);
            Response::json(200, body)
        }
        "/status" => Response::new(200, "text/html; charset=utf-8", STATUS_PAGE.into())
            .with_header("Cache-Control", "no-store")
            .with_header("Content-Security-Policy", CSP),
        _ => not_found(path),
    }
}

/// `weir_fleet_*`, under `[fleet]` only.
fn render_fleet(out: &mut String, status: &crate::control::StoreStatus) {
    use std::fmt::Write as _;
    let gauges = [
        (
            "weir_fleet_revision",
            "The fleet (etcd) configuration revision this instance applied.",
            status.revision,
        ),
        (
            "weir_fleet_connected",
            "1 while etcd answers, 0 while it is unreachable.",
            i64::from(status.connected),
        ),
        (
            "weir_fleet_from_cache",
            "1 while serving the cache file's state because etcd was down at start.",
            i64::from(status.from_cache),
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    }
    let counters = [
        ("weir_fleet_applies_total", "Snapshots rebuilt from fleet changes.", status.applies),
        (
            "weir_fleet_conflicts_total",
            "API changes refused with 409: another instance changed the object first.",
            status.conflicts,
        ),
        (
            "weir_fleet_write_failures_total",
            "API changes refused with 503: etcd did not answer.",
            status.write_failures,
        ),
        (
            "weir_fleet_relists_total",
            "Full reads of the fleet prefix (start, compaction, outage).",
            status.relists,
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    }
}

/// The status page loads nothing from elsewhere and talks only to this listener.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:";

fn metrics_enabled(plane: &Plane) -> bool {
    plane.data().snapshot.load().config.admin.metrics
}

/// A JSON error body: `{"error": message}`.
pub fn json_error(status: u16, message: &str) -> Response {
    let mut json = JsonWriter::with_capacity(32 + message.len());
    json.begin_object();
    json.key("error");
    json.string(message);
    json.end_object();
    Response::json(status, json.finish())
}

fn not_found(path: &str) -> Response {
    if path.starts_with("/api/") {
        json_error(404, "not found")
    } else {
        Response::text(404, "not found\n")
    }
}

fn method_not_allowed(path: &str, methods: &[&str]) -> Response {
    let allow = methods.join(", ");
    let response = if path.starts_with("/api/") {
        json_error(405, "method not allowed")
    } else {
        Response::text(405, "method not allowed\n")
    };
    response.with_header("Allow", allow)
}
