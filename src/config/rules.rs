//! A route's traffic rules (header rules, redirects, path rewrites, `max_body`) and
//! `[server] request_id`, as checked values: every template is compiled here, once, at
//! load, so the request path only copies literal bytes and variable values.

use crate::http1::fields::{is_tchar, Name};
use crate::json::JsonWriter;

/// Most rules in one `add`, `set` or `remove` list. A route that needs more is better
/// served by the backend; the bound keeps the per-request work (one pass over the head
/// per list) small and known.
pub const MAX_HEADER_RULES: usize = 32;
/// Longest header rule value or redirect target, in bytes. Well under the smallest
/// `max_header_bytes` (1 KiB is the floor, 64 KiB the default), so one rule cannot push
/// an ordinary head over a backend's limit on its own.
pub const MAX_TEMPLATE_BYTES: usize = 4096;
/// Longest header name a rule may use: names are short in practice, and this is
/// the longest the admin API shows without wrapping.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest incoming request id weir keeps: a UUID is 36 bytes, nginx's `$request_id`
/// 32, an AWS trace id about 60; 128 leaves room for composite ids while bounding what
/// a peer can put in every log line.
pub const MAX_REQUEST_ID_BYTES: usize = 128;
/// The statuses a `redirect` may answer with (RFC 9110 §15.4).
pub const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

/// Names no rule may add, set or remove: the framing and forwarding fields weir reads or
/// writes itself (README "Framing no header can alter"), plus `Trailer`. A rule on one
/// of them could change how a peer frames the message.
pub fn reserved(name: &str) -> bool {
    Name::of(name.as_bytes()) != Name::Other || name.eq_ignore_ascii_case("trailer")
}

/// A route's traffic rules; the default does nothing and costs the request path one
/// check ([`RouteRules::is_empty`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteRules {
    /// `request_headers`: edits to the head the backend gets.
    pub request_headers: HeaderRules,
    /// `response_headers`: edits to the head the client gets.
    pub response_headers: HeaderRules,
    /// `redirect`, or `https_redirect = true`: weir answers, no backend is asked.
    pub redirect: Option<Redirect>,
    /// `https_redirect = true`: only requests that came over plain HTTP are redirected.
    pub https_only: bool,
    /// `strip_prefix` or `replace_prefix`: the path the backend sees.
    pub rewrite: Option<Rewrite>,
    /// `max_body`: the largest request body the route takes, in bytes.
    pub max_body: Option<u64>,
}

impl RouteRules {
    /// Whether the rules change nothing.
    pub fn is_empty(&self) -> bool {
        *self == RouteRules::default()
    }

    /// Whether a header rule or the redirect uses `var`. A redirect always reads the
    /// path and query (the query is kept), and `https_redirect`'s target the host.
    pub fn uses(&self, var: Var) -> bool {
        let redirect = self.redirect.as_ref().is_some_and(|redirect| {
            redirect.to.uses(var) || matches!(var, Var::Path | Var::RequestUri)
        });
        redirect || self.request_headers.uses(var) || self.response_headers.uses(var)
    }

    /// The rules as the admin API shows them: templates as written.
    pub fn write_json(&self, json: &mut JsonWriter) {
        json.begin_object();
        for (key, rules) in [
            ("request_headers", &self.request_headers),
            ("response_headers", &self.response_headers),
        ] {
            json.key(key);
            rules.write_json(json);
        }
        json.key("redirect");
        match &self.redirect {
            None => json.null(),
            Some(redirect) => {
                json.begin_object();
                json.key("to");
                json.string(&redirect.to.source);
                json.key("status");
                json.u64(u64::from(redirect.status));
                json.key("https_only");
                json.bool(self.https_only);
                json.end_object();
            }
        }
        json.key("rewrite");
        match &self.rewrite {
            None => json.null(),
            Some(rewrite) => {
                json.begin_object();
                json.key("from");
                json.string(&rewrite.from);
                json.key("to");
                json.string(&rewrite.to);
                json.end_object();
            }
        }
        json.key("max_body");
        match self.max_body {
            None => json.null(),
            Some(max) => json.u64(max),
        }
        json.end_object();
    }
}

/// `add`, `set` and `remove` on one direction's head. Applied in that order: `remove`
/// and `set` drop every field of the name, then `set` and `add` append theirs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderRules {
    /// Fields appended, keeping any the message has (nginx's `add_header`).
    pub add: Vec<(String, Template)>,
    /// Fields that replace every field of the name (`proxy_set_header`).
    pub set: Vec<(String, Template)>,
    /// Names dropped (`more_clear_headers`, `http-request del-header`).
    pub remove: Vec<String>,
}

impl HeaderRules {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.set.is_empty() && self.remove.is_empty()
    }

    /// `{"add": {name: template}, "set": {...}, "remove": [names]}`.
    fn write_json(&self, json: &mut JsonWriter) {
        json.begin_object();
        for (key, list) in [("add", &self.add), ("set", &self.set)] {
            json.key(key);
            json.begin_object();
            for (name, value) in list {
                json.key(name);
                json.string(&value.source);
            }
            json.end_object();
        }
        json.key("remove");
        json.begin_array();
        for name in &self.remove {
            json.string(name);
        }
        json.end_array();
        json.end_object();
    }

    /// Whether any value uses `var`.
    pub fn uses(&self, var: Var) -> bool {
        self.add.iter().chain(&self.set).any(|(_, value)| value.uses(var))
    }
}

/// Where a redirect sends the client, and with which status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// The `Location` template.
    pub to: Template,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

/// A path rewrite: the normalised path's `from` prefix becomes `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// The prefix replaced (a normalised path).
    pub from: String,
    /// What replaces it: `""` for `strip_prefix`.
    pub to: String,
}

/// `[server] request_id`: each request carries an id, sent upstream, returned to the
/// client and logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestIdConfig {
    /// The header that carries it.
    pub header: String,
}

impl Default for RequestIdConfig {
    fn default() -> Self {
        // The de facto name (Heroku, Rails, many tracing setups).
        RequestIdConfig { header: "X-Request-Id".into() }
    }
}

/// A value a template may use; README "Header rules" documents each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    /// The client address (`trusted_proxies` applied).
    ClientIp,
    /// The `Host` (or absolute-form authority) without its port.
    Host,
    /// `http` or `https`: how the client reached weir.
    Scheme,
    /// The request's id (`[server] request_id`).
    RequestId,
    /// The path as received, without the query.
    Path,
    /// The path and query as received (nginx's `$request_uri`).
    RequestUri,
    /// The route's pool name.
    Pool,
    /// The backend's label (`HOST:PORT`); known only once a backend is picked.
    Backend,
}

impl Var {
    /// Every variable with its name, for parsing and error messages.
    pub const ALL: [(&'static str, Var); 8] = [
        ("client_ip", Var::ClientIp),
        ("host", Var::Host),
        ("scheme", Var::Scheme),
        ("request_id", Var::RequestId),
        ("path", Var::Path),
        ("request_uri", Var::RequestUri),
        ("pool", Var::Pool),
        ("backend", Var::Backend),
    ];
}

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Bytes copied as they are.
    Literal(String),
    /// A variable's value.
    Var(Var),
}

/// A compiled value template such as `"https://$host$request_uri"`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    /// The pieces, in order.
    pub parts: Vec<Part>,
    /// The text as written, for the admin API.
    pub source: String,
}

impl Template {
    /// Compiles `text`: `$name` or `${name}` is a variable, `$$` a `$`. Unknown names
    /// are errors; the caller checks the literal bytes.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('$') {
                literal.push('$');
                rest = after;
                continue;
            }
            let (name, after) = match rest.strip_prefix('{') {
                Some(braced) => {
                    let end = braced.find('}').ok_or("`${` without its closing `}`")?;
                    (&braced[..end], &braced[end + 1..])
                }
                None => {
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    (&rest[..end], &rest[end..])
                }
            };
            let var = Var::ALL.iter().find(|(known, _)| *known == name).map(|(_, var)| *var);
            let Some(var) = var else {
                let known: Vec<String> = Var::ALL.iter().map(|(n, _)| format!("${n}")).collect();
                return Err(format!("unknown variable `${name}`; known: {}", known.join(" ")));
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var(var));
            rest = after;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts, source: text.to_string() })
    }

    /// Whether the template uses `var`.
    pub fn uses(&self, var: Var) -> bool {
        self.parts.contains(&Part::Var(var))
    }

    /// The literal pieces' text, for checks.
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Literal(text) => Some(text.as_str()),
            Part::Var(_) => None,
        })
    }
}

/// A field name a rule may use: a token, not reserved, not a reserved name spelled with
/// `_` (which some backends read as `-`).
pub fn header_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || !name.bytes().all(is_tchar) {
        return Err(format!(
            "header name \"{}\" is not an HTTP token of 1 to {MAX_NAME_BYTES} bytes",
            name.escape_debug()
        ));
    }
    if reserved(name) || crate::http1::fields::is_underscore_spelling(name.as_bytes()) {
        return Err(format!(
            "`{name}` is a framing or forwarding field weir writes itself; no rule may change it"
        ));
    }
    Ok(())
}

/// A field value's byte (RFC 9110 §5.5): visible ASCII, space, tab, or obs-text.
pub fn is_value_byte(byte: u8) -> bool {
    byte == b'\t' || byte == b' ' || (0x21..=0x7e).contains(&byte) || byte >= 0x80
}

/// A template for a field value: its literal bytes must be field-value bytes, and the
/// whole must not start or end with white space (which a peer would trim).
pub fn value_template(text: &str) -> Result<Template, String> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(format!("a header value holds at most {MAX_TEMPLATE_BYTES} bytes"));
    }
    if let Some(bad) = text.bytes().find(|&b| !is_value_byte(b)) {
        return Err(format!(
            "header value \"{}\" holds byte 0x{bad:02x}, which is not allowed in a field value",
            text.escape_debug()
        ));
    }
    if text.starts_with([' ', '\t']) || text.ends_with([' ', '\t']) {
        return Err("a header value must not start or end with white space".into());
    }
    Template::parse(text)
}

/// Whether `byte` may appear in a `Location` weir writes: RFC 3986 characters only,
/// so no variable's value can end the field or smuggle white space into it.
pub fn is_uri_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&byte)
}

/// An HTTP token: a header name, or a request id's header.
pub fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_tchar)
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
