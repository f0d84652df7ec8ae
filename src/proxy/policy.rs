//! A route's rules on the request path ([`crate::rules`]): redirects and `max_body`
//! answered before a backend is picked, then the request head's rewrite, header rules
//! and request id once one is, and the response's header rules and id per attempt.
//!
//! A request whose route has no rules, with request ids off, has no [`Policy`] and pays
//! one check. The values templates may use are copied out of the request head once,
//! before the head leaves the input buffer.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;

use super::io::Writer;
use super::logging::Pending;
use super::pump::write_all;
use super::Client;
use crate::config::rules::{Redirect, Var};
use crate::config::ServerConfig;
use crate::http1::request::RequestInfo;
use crate::http1::BodyKind;
use crate::rules::{self, request_id, Prepared, Strip, Vars};
use crate::snapshot::{Backend, Pool, Route};

/// The id of a request, when `[server] request_id` is on: a valid incoming one from a
/// trusted proxy (`trusted_proxies` names the peer), else a new one.
pub(super) fn request_id(server: &ServerConfig, client: &Client, head: &[u8]) -> Option<String> {
    let config = server.request_id.as_ref()?;
    let trusted = matches!(client.trust(server), crate::http1::forwarded::Trust::Proxy(_));
    let kept = trusted
        .then(|| request_id::incoming(head, &config.header))
        .flatten()
        .filter(|id| request_id::valid(id));
    Some(match kept {
        // `valid` admits ASCII only.
        Some(id) => String::from_utf8_lossy(id).into_owned(),
        None => request_id::generate(),
    })
}

/// The request's id and its access-log entry, started while the head is in the buffer.
pub(super) fn begin(
    server: &ServerConfig,
    client: &Client,
    head: &[u8],
    info: &RequestInfo,
) -> (Option<String>, Pending) {
    let id = request_id(server, client, head);
    let mut logged = Pending::start(client, head, info);
    logged.request_id(id.as_deref());
    (id, logged)
}

/// Before a retry on `backend`: see [`Policy::retried`].
pub(super) fn retried(
    policy: Option<&Policy<'_>>,
    head: &mut Vec<u8>,
    pool: &Pool,
    backend: &Backend,
) {
    if let Some(policy) = policy {
        policy.retried(head, pool, backend);
    }
}

/// What a request's route rules and id need on the request path.
pub(super) struct Policy<'s> {
    rules: Option<&'s Prepared>,
    id_header: Option<&'s str>,
    /// The request's id, when ids are on.
    pub id: Option<String>,
    client_ip: String,
    /// `$host`, without the port.
    host: Bytes,
    request_uri: Bytes,
    scheme: &'static str,
    /// Where the request rules' lines start in the upstream head, to write them again
    /// for another backend on a retry.
    mark: Option<usize>,
}

impl<'s> Policy<'s> {
    /// The policy of a request routed by `route`; `None` when there is nothing to do.
    pub fn start(
        server: &'s ServerConfig,
        route: Option<&'s Route>,
        client: &Client,
        head: &[u8],
        info: &RequestInfo,
        id: Option<String>,
    ) -> Option<Policy<'s>> {
        let rules = route.and_then(|route| route.rules.as_deref());
        if rules.is_none() && id.is_none() {
            return None;
        }
        // Only the values some template uses are copied: most rules are constants.
        let uses = |var| rules.is_some_and(|rules| rules.uses.has(var));
        let uri = &head[info.origin.clone()];
        let path_or_uri = uses(Var::Path) || uses(Var::RequestUri);
        Some(Policy {
            rules,
            id_header: server.request_id.as_ref().map(|config| config.header.as_str()),
            id,
            client_ip: match (uses(Var::ClientIp), info.forwarded_client) {
                (false, _) => String::new(),
                (true, None) => client.peer_ip.clone(),
                (true, Some(address)) => super::ip_text(address),
            },
            host: match uses(Var::Host) {
                true => {
                    let host = info.host.clone().map_or(&[][..], |range| &head[range]);
                    Bytes::copy_from_slice(crate::route::strip_port(host))
                }
                false => Bytes::new(),
            },
            request_uri: match path_or_uri {
                true => Bytes::copy_from_slice(uri),
                false => Bytes::new(),
            },
            scheme: if client.tls { "https" } else { "http" },
            mark: None,
        })
    }

    fn vars<'v>(&'v self, pool: &'v str, backend: &'v str) -> Vars<'v> {
        Vars {
            client_ip: &self.client_ip,
            host: &self.host,
            scheme: self.scheme,
            request_id: self.id.as_deref().unwrap_or_default(),
            request_uri: &self.request_uri,
            pool,
            backend,
        }
    }

    /// The redirect that answers this request, if its route has one that applies
    /// (`https_redirect` only to plain HTTP): `Err` when the request's values cannot
    /// make a safe `Location` (a garbage `Host`), which is a 400.
    pub fn redirect(&self, pool: &Pool) -> Option<Result<(u16, Vec<u8>), &'static str>> {
        let rules = self.rules?;
        let Redirect { to, status } = rules.config.redirect.as_ref()?;
        if rules.config.https_only && self.scheme == "https" {
            return None;
        }
        let location = rules::location(to, &self.vars(&pool.name, ""));
        Some(location.map(|location| (*status, location)).ok_or("no valid Location for it"))
    }

    /// Whether the route may answer before a backend is picked (a redirect, or
    /// `max_body`); most do not, and skip both checks.
    pub fn answers_early(&self) -> bool {
        self.rules.is_some_and(|rules| rules.answers_early)
    }

    /// Whether the body's declared length is over the route's `max_body`.
    pub fn too_large(&self, info: &RequestInfo) -> bool {
        let max = self.rules.and_then(|rules| rules.config.max_body);
        matches!((info.body, max), (BodyKind::Length(n), Some(max)) if n > max)
    }

    /// The route's `max_body`, for the body pump.
    pub fn max_body(&self) -> Option<u64> {
        self.rules.and_then(|rules| rules.config.max_body)
    }

    /// Edits the upstream head for the picked backend: path rewrite, request rules,
    /// then the id (so a rule cannot replace it).
    ///
    /// The client's id field goes before the rules are applied: `mark`, where their
    /// lines start, must stay true for [`Policy::retried`]. Stripped after, the
    /// client's line (before `mark`) shortened the head under it, and a retry cut the
    /// head mid-line (found by a second read).
    pub fn request(
        &mut self,
        head: &mut Vec<u8>,
        info: &RequestInfo,
        pool: &Pool,
        backend: &Backend,
    ) {
        let id_name = self.id.as_ref().and(self.id_header).map(str::as_bytes);
        if let Some(name) = id_name.filter(|name| info.names.may_hold(name)) {
            rules::strip(head, |line| rules::prepared::names(line, name));
        }
        if let Some(rules) = self.rules {
            if let Some(rewrite) = &rules.config.rewrite {
                rules::rewrite_target(head, rewrite);
            }
            if !rules.request.is_empty() {
                let vars = self.vars(&pool.name, &backend.label);
                self.mark = Some(rules::apply(head, &rules.request, info.names, &vars));
            }
        }
        self.end_with_id(head);
    }

    /// Ends a head whose rule lines are written with the id: a rule's line of the id's
    /// name goes (weir's id wins), then the id's line goes before the empty line.
    fn end_with_id(&self, head: &mut Vec<u8>) {
        let (Some(name), Some(id)) = (self.id_header, &self.id) else { return };
        if self.rules.is_some_and(|rules| rules.request.appends()) {
            // Only lines from `mark` on can match: the client's went before the rules.
            rules::strip(head, |line| rules::prepared::names(line, name.as_bytes()));
        }
        // Before the empty line, which every finished head ends with.
        let end = head.len().saturating_sub(2);
        head.truncate(end);
        crate::http1::lines::push_field(head, name.as_bytes(), id.as_bytes());
        head.extend_from_slice(b"\r\n");
    }

    /// Before a retry on `backend`: request rules that name `$backend` are written
    /// again, when the head is still whole (a request without a body; one with a body
    /// is replayed from its copy, as the first backend got it).
    pub fn retried(&self, head: &mut Vec<u8>, pool: &Pool, backend: &Backend) {
        let (Some(rules), Some(mark)) = (self.rules, self.mark) else { return };
        let request = &rules.request;
        if !request.uses.has(Var::Backend) || head.len() < mark + 2 {
            return;
        }
        // From `mark`: the rule lines, the id line, the empty line; all written again,
        // as `request` wrote them.
        let vars = self.vars(&pool.name, &backend.label);
        head.truncate(mark);
        request.push(&vars, head);
        head.extend_from_slice(b"\r\n");
        self.end_with_id(head);
    }

    /// The id's field line, or nothing when ids are off.
    pub fn id_line(&self) -> Vec<u8> {
        let mut line = Vec::new();
        if let (Some(name), Some(id)) = (self.id_header, &self.id) {
            crate::http1::lines::push_field(&mut line, name.as_bytes(), id.as_bytes());
        }
        line
    }

    /// The lines added to the response from `backend`: `set_cookie` (the sticky
    /// cookie, or empty), the route's response rules, and the id. Borrowed from the
    /// prepared rules when nothing in them depends on the request, as in most configs.
    pub fn response_lines(
        &self,
        set_cookie: &[u8],
        pool: &Pool,
        backend: &Backend,
    ) -> Cow<'s, [u8]> {
        let response = self.rules.map(|rules| &rules.response);
        let id = self.id.as_ref().and(self.id_header);
        if set_cookie.is_empty() && id.is_none() {
            match response.filter(|response| response.appends()) {
                None => return Cow::Borrowed(&[]),
                Some(response) => {
                    if let Some(constant) = response.constant() {
                        return Cow::Borrowed(constant);
                    }
                }
            }
        }
        let mut lines = Vec::with_capacity(set_cookie.len() + 256);
        lines.extend_from_slice(set_cookie);
        if let Some(response) = response.filter(|response| response.appends()) {
            response.push(&self.vars(&pool.name, &backend.label), &mut lines);
        }
        lines.extend_from_slice(&self.id_line());
        Cow::Owned(lines)
    }

    /// What the response loses before those lines are added.
    pub fn strip(&self) -> Strip<'s> {
        Strip {
            rules: self.rules.map(|rules| &rules.response),
            id_header: self.id.as_ref().and(self.id_header),
        }
    }
}

/// What one attempt on `backend` adds to and strips from its response, and the body
/// limit: nothing without a policy (`set_cookie` is then used as it is).
pub(super) fn for_attempt<'p>(
    policy: Option<&Policy<'p>>,
    set_cookie: &[u8],
    pool: &Pool,
    backend: &Backend,
) -> (Option<Cow<'p, [u8]>>, Strip<'p>, Option<u64>) {
    match policy {
        None => (None, Strip::default(), None),
        Some(policy) => {
            let lines = policy.response_lines(set_cookie, pool, backend);
            (Some(lines), policy.strip(), policy.max_body())
        }
    }
}

/// Answers a redirect: `Location`, an empty body, and `extra` lines (the request id).
/// Counted in `weir_redirects_total` and with the client responses by status.
pub(super) async fn send_redirect<S: Writer>(
    stream: &mut S,
    client: &Client,
    out: &mut Vec<u8>,
    (status, location): (u16, &[u8]),
    extra: &[u8],
    close: bool,
    send_timeout: Duration,
) {
    let frontend = client.shared.frontend.local();
    frontend.redirects.inc();
    frontend.record(client.http2, status);
    out.clear();
    let reason = match status {
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        _ => "Permanent Redirect",
    };
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    crate::http1::lines::push_field(out, b"Location", location);
    out.extend_from_slice(b"Content-Length: 0\r\n");
    out.extend_from_slice(extra);
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let _ = write_all(stream, out, send_timeout).await;
}
