//! A route's traffic rules (`request_headers`, `response_headers`, `redirect`,
//! `https_redirect`, `strip_prefix`, `replace_prefix`, `max_body`) and
//! `[server] request_id`. Each problem is reported at the key or value it is about.

use toml::de::DeValue;

use super::{boolean, integer, size, string, wrong, Key, Value, Walker};
use crate::config::rules::{
    self, HeaderRules, Redirect, RequestIdConfig, Rewrite, RouteRules, Template, Var,
    MAX_HEADER_RULES, MAX_TEMPLATE_BYTES, REDIRECT_STATUSES,
};

/// Largest `max_body`: 1 TiB is past any upload a proxy should stream, and catches a
/// few extra zeros.
const MAX_BODY: usize = 1 << 40;
const HEADERS_HINT: &str =
    r#"a table such as { set = { "X-Env" = "prod" }, remove = ["X-Debug"] }"#;

/// The keys of a `[[route]]` this module reads.
pub(super) const ROUTE_KEYS: [&str; 7] = [
    "request_headers",
    "response_headers",
    "redirect",
    "https_redirect",
    "strip_prefix",
    "replace_prefix",
    "max_body",
];

impl Walker {
    /// One rule key of a `[[route]]` into `out`; `ids` says request ids are on, so
    /// `$request_id` has a value.
    pub(super) fn route_rule(
        &mut self,
        key: &Key<'_>,
        value: &Value<'_>,
        out: &mut RouteRules,
        ids: bool,
    ) {
        let name = key.get_ref().as_ref();
        match name {
            "request_headers" => out.request_headers = self.header_rules(name, value, ids),
            "response_headers" => out.response_headers = self.header_rules(name, value, ids),
            "redirect" => {
                if out.redirect.is_some() {
                    self.error(
                        key.span(),
                        "`redirect` and `https_redirect` exclude each other".into(),
                    );
                }
                out.redirect = self.redirect(value, ids);
            }
            "https_redirect" => {
                let on = self.check(value, boolean(name, value.get_ref())).unwrap_or(false);
                if on && out.redirect.is_some() {
                    self.error(
                        key.span(),
                        "`redirect` and `https_redirect` exclude each other".into(),
                    );
                }
                if on {
                    let to = Template::parse("https://$host$request_uri").expect("constant");
                    out.redirect = Some(Redirect { to, status: 301 });
                    out.https_only = true;
                }
            }
            "strip_prefix" | "replace_prefix" => {
                if out.rewrite.is_some() {
                    let message = "`strip_prefix` and `replace_prefix` exclude each other";
                    self.error(key.span(), message.into());
                }
                out.rewrite = self.rewrite(name, value);
            }
            _ => {
                let max = size(name, value.get_ref(), 1..=MAX_BODY);
                out.max_body = self.check(value, max).map(|n| n as u64);
            }
        }
    }

    /// `request_headers` or `response_headers`.
    fn header_rules(&mut self, name: &str, value: &Value<'_>, ids: bool) -> HeaderRules {
        let mut out = HeaderRules::default();
        let Some(table) = value.get_ref().as_table() else {
            let message = wrong(name, value.get_ref(), HEADERS_HINT);
            self.error(value.span(), message);
            return out;
        };
        for (key, value) in table {
            match key.get_ref().as_ref() {
                "add" => out.add = self.header_values(value, ids),
                "set" => out.set = self.header_values(value, ids),
                "remove" => out.remove = self.header_names(value),
                other => self.error(key.span(), format!("unknown key `{other}` in `{name}`")),
            }
        }
        out
    }

    /// `{ "Name" = "value template", ... }`.
    fn header_values(&mut self, value: &Value<'_>, ids: bool) -> Vec<(String, Template)> {
        let hint = r#"a table of header names and values, { "X-Env" = "prod" }"#;
        let Some(table) = value.get_ref().as_table() else {
            let message = wrong("add/set", value.get_ref(), hint);
            self.error(value.span(), message);
            return Vec::new();
        };
        if table.len() > MAX_HEADER_RULES {
            self.error(value.span(), format!("at most {MAX_HEADER_RULES} headers per list"));
            return Vec::new();
        }
        let mut out = Vec::with_capacity(table.len());
        for (key, item) in table {
            let name = key.get_ref().as_ref();
            let name_ok = self.check_key(key, rules::header_name(name));
            let template = string(name, item.get_ref())
                .and_then(rules::value_template)
                .and_then(|template| request_id_known(template, ids));
            if let (Some(()), Some(template)) = (name_ok, self.check(item, template)) {
                out.push((name.to_string(), template));
            }
        }
        out
    }

    /// `["Name", ...]`.
    fn header_names(&mut self, value: &Value<'_>) -> Vec<String> {
        let Some(items) = value.get_ref().as_array() else {
            let message = wrong("remove", value.get_ref(), r#"an array of names, ["X-Debug"]"#);
            self.error(value.span(), message);
            return Vec::new();
        };
        if items.len() > MAX_HEADER_RULES {
            self.error(value.span(), format!("at most {MAX_HEADER_RULES} headers per list"));
            return Vec::new();
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let name = string("remove", item.get_ref())
                .and_then(|name| rules::header_name(name).map(|()| name.to_string()));
            out.extend(self.check(item, name));
        }
        out
    }

    /// `{ to = "https://$host$request_uri", status = 301 }`.
    fn redirect(&mut self, value: &Value<'_>, ids: bool) -> Option<Redirect> {
        let table = self.table("redirect", value)?;
        let (mut to, mut status) = (None, 301);
        for (key, item) in table {
            match key.get_ref().as_ref() {
                "to" => to = self.check(item, location(item.get_ref(), ids)),
                "status" => {
                    let code = integer("status", item.get_ref(), 300, 399).and_then(|code| {
                        let code = code as u16;
                        let known = REDIRECT_STATUSES.contains(&code);
                        known.then_some(code).ok_or_else(|| {
                            format!("`status` must be one of {REDIRECT_STATUSES:?}, found {code}")
                        })
                    });
                    status = self.check(item, code).unwrap_or(status);
                }
                other => self.error(key.span(), format!("unknown key `{other}` in `redirect`")),
            }
        }
        if !table.contains_key("to") {
            self.error(value.span(), "`redirect` needs a target: `to = \"https://...\"`".into());
        }
        Some(Redirect { to: to?, status })
    }

    /// `strip_prefix = "/api"` or `replace_prefix = { from = "/v1", to = "/v2" }`.
    fn rewrite(&mut self, name: &str, value: &Value<'_>) -> Option<Rewrite> {
        if name == "strip_prefix" {
            let from = self.check(value, rewrite_path(name, value.get_ref()))?;
            return Some(Rewrite { from, to: String::new() });
        }
        let table = self.table(name, value)?;
        let (mut from, mut to) = (None, None);
        for (key, item) in table {
            match key.get_ref().as_ref() {
                "from" => from = self.check(item, rewrite_path("from", item.get_ref())),
                "to" => to = self.check(item, rewrite_path("to", item.get_ref())),
                other => self.error(key.span(), format!("unknown key `{other}` in `{name}`")),
            }
        }
        if !(table.contains_key("from") && table.contains_key("to")) {
            self.error(value.span(), format!("`{name}` needs both `from` and `to`"));
        }
        Some(Rewrite { from: from?, to: to? })
    }

    /// `[server] request_id`: `true`, `false`, or `{ header = "X-Request-Id" }`.
    pub(super) fn request_id(&mut self, value: &Value<'_>) -> Option<RequestIdConfig> {
        if let DeValue::Boolean(on) = value.get_ref() {
            return on.then(RequestIdConfig::default);
        }
        let table = self.table("request_id", value)?;
        let mut out = RequestIdConfig::default();
        for (key, item) in table {
            match key.get_ref().as_ref() {
                "header" => {
                    let header = string("header", item.get_ref())
                        .and_then(|name| rules::header_name(name).map(|()| name.to_string()));
                    out.header = self.check(item, header).unwrap_or(out.header);
                }
                other => self.error(key.span(), format!("unknown key `{other}` in `request_id`")),
            }
        }
        Some(out)
    }

    /// `result`'s error, if any, at `key`.
    fn check_key(&mut self, key: &Key<'_>, result: Result<(), String>) -> Option<()> {
        result.map_err(|message| self.error(key.span(), message)).ok()
    }
}

/// `$request_id` has a value only when request ids are on.
fn request_id_known(template: Template, ids: bool) -> Result<Template, String> {
    if template.uses(Var::RequestId) && !ids {
        return Err("`$request_id` needs `[server] request_id = true`".into());
    }
    Ok(template)
}

/// A redirect target: an absolute `http(s)://` URL (its scheme may be `$scheme`) or a
/// path starting with one `/`, whose literal bytes are URI characters.
fn location(v: &DeValue<'_>, ids: bool) -> Result<Template, String> {
    let text = string("to", v)?;
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(format!("`to` holds at most {MAX_TEMPLATE_BYTES} bytes"));
    }
    let template = request_id_known(Template::parse(text)?, ids)?;
    if let Some(bad) = template.literals().flat_map(str::bytes).find(|&b| !rules::is_uri_byte(b)) {
        return Err(format!("`to` holds '{}', which a URI may not hold", bad.escape_ascii()));
    }
    let absolute = ["http://", "https://", "$scheme://", "${scheme}://"];
    let lower = text.to_ascii_lowercase();
    let path = text.starts_with('/') && !text.starts_with("//");
    if !(path || absolute.iter().any(|start| lower.starts_with(start))) {
        return Err(format!(
            "`to` must be an http:// or https:// URL or a path starting with '/', not \"{text}\""
        ));
    }
    Ok(template)
}

/// A rewrite's path: normalised, as routing compares (see `path_prefix`).
fn rewrite_path(name: &str, v: &DeValue<'_>) -> Result<String, String> {
    let text = super::path_prefix(v).map_err(|message| message.replace("path_prefix", name))?;
    if !text.bytes().all(rules::is_uri_byte) || text.contains(['?', '#']) {
        return Err(format!("`{name}` must be a plain path, without '?' or '#': \"{text}\""));
    }
    Ok(text)
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
