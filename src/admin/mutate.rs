//! The mutating admin API: backends, pools, routes and reload.
//!
//! ```text
//! POST   /api/v1/pools                               {"name", "strategy"?, "hash_key"?, "backends"?}
//! DELETE /api/v1/pools/{pool}
//! POST   /api/v1/pools/{pool}/backends               {"address", "weight"?, "resolve"?, "state"?}
//! PATCH  /api/v1/pools/{pool}/backends/{address}     {"weight"?, "state"?: "drain" | "active"}
//! DELETE /api/v1/pools/{pool}/backends/{address}[?now=true]
//! GET    /api/v1/routes
//! POST   /api/v1/routes                              {"host"?, "path_prefix"?, "pool", "index"?,
//!                                                      "allow"?, "deny"?, "limits"?}
//! DELETE /api/v1/routes/{index}
//! POST   /api/v1/reload
//! ```
//!
//! Each change is checked by the config file's rules, then applied as one snapshot
//! ([`Plane::edit`]). The answer is the new document (`/api/v1/pools`, or
//! `/api/v1/routes` for route changes) with its `generation`; a refusal is
//! `{"error": ...}` and changes nothing.

use serde_json::Value;

use super::body::{self, Fields};
use super::http::{Request, Response};
use super::routes::json_error;
use super::Refusal;
use super::{api, auth};
use crate::config::{Config, PoolConfig};
use crate::control::Plane;
use crate::state::{self, PoolSpec};

/// One API call, by path.
enum Call {
    Pools,
    Pool(String),
    Backends(String),
    Backend(String, String),
    Routes,
    Route(String),
    Reload,
    Fleet,
}

impl Call {
    /// The call at `path` (segments percent-decoded), if it is one of the API's.
    fn parse(path: &str) -> Option<Call> {
        let rest = path.strip_prefix("/api/v1/")?;
        let parts: Vec<String> =
            rest.split('/').map(body::percent_decode).collect::<Option<_>>()?;
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        Some(match parts[..] {
            ["pools"] => Call::Pools,
            ["pools", pool] => Call::Pool(pool.into()),
            ["pools", pool, "backends"] => Call::Backends(pool.into()),
            ["pools", pool, "backends", address] => Call::Backend(pool.into(), address.into()),
            ["routes"] => Call::Routes,
            ["routes", index] => Call::Route(index.into()),
            ["reload"] => Call::Reload,
            ["fleet"] => Call::Fleet,
            _ => return None,
        })
    }

    fn methods(&self) -> &'static [&'static str] {
        match self {
            Call::Pools => &["GET", "HEAD", "POST"],
            Call::Pool(_) => &["DELETE"],
            Call::Backends(_) => &["POST"],
            Call::Backend(..) => &["PATCH", "DELETE"],
            Call::Routes => &["GET", "HEAD", "POST"],
            Call::Route(_) => &["DELETE"],
            Call::Reload => &["POST"],
            Call::Fleet => &["GET", "HEAD"],
        }
    }
}

/// Answers `request` if its path is one of the API's; `None` otherwise.
pub fn handle(request: &Request, plane: &Plane) -> Option<Response> {
    let call = Call::parse(&request.path)?;
    let methods = call.methods();
    let method = request.method.as_str();
    if !methods.contains(&method) {
        let allow = methods.join(", ");
        return Some(json_error(405, "method not allowed").with_header("Allow", allow));
    }
    let snapshot = plane.data().snapshot.load_full();
    if method == "GET" || method == "HEAD" {
        let document = match call {
            Call::Routes => api::routes(&snapshot),
            Call::Fleet => match plane.store_members() {
                Some(members) => members,
                None => return Some(json_error(404, "no [fleet] configured")),
            },
            _ => with_fleet(plane, api::pools(&snapshot, &plane.data().frontend, plane.dns())),
        };
        return Some(Response::json(200, document).with_header("Cache-Control", "no-store"));
    }
    if let Err(refusal) = auth::authorize(request, snapshot.config.admin.token.as_deref()) {
        return Some(refusal);
    }
    drop(snapshot);
    Some(mutate(call, request, plane).unwrap_or_else(|r| match &r.current {
        Some(current) => conflict(r.status, &r.message, current),
        None => json_error(r.status, &r.message),
    }))
}

fn mutate(call: Call, request: &Request, plane: &Plane) -> Result<Response, Refusal> {
    // A POST creates something (201), except a reload.
    let status = if request.method == "POST" { 201 } else { 200 };
    let snapshot = match call {
        Call::Reload => return reload(plane),
        Call::Fleet => return Err(Refusal::new(405, "method not allowed")),
        Call::Pools => plane.edit(add_pool(body::object(request)?)?)?,
        Call::Pool(pool) => plane.edit(move |config| remove_pool(config, &pool))?,
        Call::Backends(pool) => {
            let fields = body::object(request)?;
            plane.edit(move |config| add_backend(config, &pool, fields))?
        }
        Call::Backend(pool, address) if request.method == "PATCH" => {
            let fields = body::object(request)?;
            plane.edit(move |config| patch_backend(config, &pool, &address, fields))?
        }
        Call::Backend(pool, address) => {
            let now = body::query_flag(&request.query, "now");
            plane.edit(move |config| remove_backend(config, &pool, &address, now))?
        }
        Call::Routes => {
            let fields = body::object(request)?;
            let snapshot = plane.edit(move |config| add_route(config, fields))?;
            return Ok(Response::json(status, api::routes(&snapshot)));
        }
        Call::Route(index) => {
            let snapshot = plane.edit(move |config| remove_route(config, &index))?;
            return Ok(Response::json(status, api::routes(&snapshot)));
        }
    };
    Ok(Response::json(
        status,
        with_fleet(plane, api::pools(&snapshot, &plane.data().frontend, plane.dns())),
    ))
}

/// The pools document with, under `[fleet]`, the fleet revision this instance applied,
/// the last one it wrote, and whether etcd answers.
fn with_fleet(plane: &Plane, document: String) -> String {
    let Some(status) = plane.store_status() else { return document };
    let Some(rest) = document.strip_prefix('{') else { return document };
    format!(
        "{{\"fleet\":{{\"revision\":{},\"written\":{},\"connected\":{},\"from_cache\":{}}},{rest}",
        status.revision, status.written, status.connected, status.from_cache
    )
}

/// `{"error": ..., "current": {...}}`: a refused change, with the objects as the fleet
/// store holds them now, so the caller can decide again.
fn conflict(status: u16, message: &str, current: &str) -> Response {
    let mut json = crate::json::JsonWriter::with_capacity(64 + message.len() + current.len());
    json.begin_object();
    json.key("error");
    json.string(message);
    json.end_object();
    let mut text = json.finish();
    text.pop();
    text.push_str(",\"current\":");
    text.push_str(current);
    text.push('}');
    Response::json(status, text)
}

type Removed = Result<Option<(String, String)>, Refusal>;

fn reload(plane: &Plane) -> Result<Response, Refusal> {
    match plane.reload_from_source() {
        Ok(_) => Ok(Response::json(
            200,
            api::pools(&plane.data().snapshot.load(), &plane.data().frontend, plane.dns()),
        )),
        Err(error) => Ok(body::errors_response(400, &error.messages())),
    }
}

fn pool_mut<'c>(config: &'c mut Config, name: &str) -> Result<&'c mut PoolConfig, Refusal> {
    let found = config.pools.iter_mut().find(|pool| pool.name == name);
    found.ok_or_else(|| Refusal::new(404, format!("no pool named `{name}`")))
}

/// The index of the backend of `pool` whose identity is `address` (case-insensitive).
fn backend_index(pool: &PoolConfig, address: &str) -> Result<usize, Refusal> {
    let wanted = body::identity(address)?;
    let found =
        pool.backends.iter().position(|b| b.address.authority().eq_ignore_ascii_case(&wanted));
    found.ok_or_else(|| {
        Refusal::new(404, format!("pool `{}` has no backend `{address}`", pool.name))
    })
}

fn add_pool(mut fields: Fields) -> Result<impl FnOnce(&mut Config) -> Removed, Refusal> {
    let name = fields.pool_name("name")?;
    let strategy = fields.strategy("strategy")?;
    let hash_key = fields.hash_key("hash_key")?;
    let backends = fields.backends("backends")?;
    fields.finish()?;
    let spec = PoolSpec { strategy, hash_key, backends, draining: Default::default() };
    Ok(move |config: &mut Config| {
        if config.pools.iter().any(|pool| pool.name == name) {
            return Err(Refusal::new(409, format!("pool `{name}` exists already")));
        }
        config.pools.push(state::new_pool(&name, &spec));
        Ok(None)
    })
}

fn remove_pool(config: &mut Config, name: &str) -> Removed {
    let index = config.pools.iter().position(|pool| pool.name == name);
    let index = index.ok_or_else(|| Refusal::new(404, format!("no pool named `{name}`")))?;
    if let Some(route) = config.routes.iter().position(|route| route.pool == name) {
        let message = format!("route {route} sends requests to pool `{name}`; remove it first");
        return Err(Refusal::new(409, message));
    }
    config.pools.remove(index);
    Ok(None)
}

fn add_backend(config: &mut Config, pool: &str, mut fields: Fields) -> Removed {
    let backend = fields.backend()?;
    let drain = fields.drain("state")?;
    fields.finish()?;
    let pool = pool_mut(config, pool)?;
    let label = backend.address.authority();
    if backend_index(pool, &label).is_ok() {
        let message = format!("pool `{}` has backend `{label}` already", pool.name);
        return Err(Refusal::new(409, message));
    }
    pool.backends.push(backend);
    if drain == Some(true) {
        pool.draining.insert(label);
    }
    Ok(None)
}

fn patch_backend(config: &mut Config, pool: &str, address: &str, mut fields: Fields) -> Removed {
    let weight = fields.weight("weight")?;
    let drain = fields.drain("state")?;
    fields.finish()?;
    if weight.is_none() && drain.is_none() {
        return Err(Refusal::new(400, "give `weight`, `state` or both"));
    }
    let pool = pool_mut(config, pool)?;
    let index = backend_index(pool, address)?;
    let label = pool.backends[index].address.authority();
    if let Some(weight) = weight {
        pool.backends[index].weight = weight;
    }
    match drain {
        Some(true) => drop(pool.draining.insert(label)),
        Some(false) => pool.draining.retain(|d| !d.eq_ignore_ascii_case(&label)),
        None => {}
    }
    Ok(None)
}

fn remove_backend(config: &mut Config, pool: &str, address: &str, now: bool) -> Removed {
    let pool = pool_mut(config, pool)?;
    let index = backend_index(pool, address)?;
    let label = pool.backends.remove(index).address.authority();
    pool.draining.retain(|d| !d.eq_ignore_ascii_case(&label));
    Ok(now.then(|| (pool.name.clone(), label)))
}

fn add_route(config: &mut Config, mut fields: Fields) -> Removed {
    let index = fields.index("index")?;
    let route = state::file::decode_route(&Value::Object(fields.rest()))
        .map_err(|message| Refusal::new(400, message))?;
    let index = index.unwrap_or(config.routes.len());
    if index > config.routes.len() {
        let message = format!("`index` must be at most {}", config.routes.len());
        return Err(Refusal::new(400, message));
    }
    config.routes.insert(index, route);
    Ok(None)
}

fn remove_route(config: &mut Config, index: &str) -> Removed {
    let found = index.parse::<usize>().ok().filter(|&i| i < config.routes.len());
    let index = found.ok_or_else(|| Refusal::new(404, format!("no route {index}")))?;
    config.routes.remove(index);
    Ok(None)
}
