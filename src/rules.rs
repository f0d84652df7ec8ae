//! Route rules on heads weir wrote itself: header rules (remove, set, add), the path a
//! backend sees (`strip_prefix`, `replace_prefix`), redirect targets and request ids.
//!
//! Templates were compiled at load ([`crate::config::rules`]); here a value is one copy
//! of each literal piece and variable. The heads edited are weir's own (the upstream
//! request head, the client-bound response head): CRLF lines, one field per line, so a
//! line edit cannot misread framing. Variable values come from the request, so each
//! byte is checked as it is copied: a value that would not be a valid field value (or
//! URI, for a `Location`) is never written.

use crate::config::rules::Var;
use crate::config::rules::{is_uri_byte, Part, Rewrite, Template};
use crate::http1::name_set::NameSet;
use crate::http1::target;

/// The values a template may use, for one request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Vars<'a> {
    /// `$client_ip`.
    pub client_ip: &'a str,
    /// `$host`: the `Host` without its port.
    pub host: &'a [u8],
    /// `$scheme`.
    pub scheme: &'a str,
    /// `$request_id` (empty when request ids are off, which the config refuses).
    pub request_id: &'a str,
    /// `$request_uri`: path and query as received; `$path` is its part before `?`.
    pub request_uri: &'a [u8],
    /// `$pool`.
    pub pool: &'a str,
    /// `$backend`.
    pub backend: &'a str,
}

impl Vars<'_> {
    fn get(&self, var: Var) -> &[u8] {
        match var {
            Var::ClientIp => self.client_ip.as_bytes(),
            Var::Host => self.host,
            Var::Scheme => self.scheme.as_bytes(),
            Var::RequestId => self.request_id.as_bytes(),
            Var::Path => target::path_of(self.request_uri),
            Var::RequestUri => self.request_uri,
            Var::Pool => self.pool.as_bytes(),
            Var::Backend => self.backend.as_bytes(),
        }
    }
}

/// Appends `template` with `vars`; every variable byte must pass `allowed` (literal
/// bytes were checked at load). On a byte that does not, nothing is appended and the
/// answer is `false`.
pub fn render(
    template: &Template,
    vars: &Vars<'_>,
    allowed: fn(u8) -> bool,
    out: &mut Vec<u8>,
) -> bool {
    let start = out.len();
    for part in &template.parts {
        match part {
            Part::Literal(text) => out.extend_from_slice(text.as_bytes()),
            Part::Var(var) => {
                let value = vars.get(*var);
                if !value.iter().all(|&b| allowed(b)) {
                    out.truncate(start);
                    return false;
                }
                out.extend_from_slice(value);
            }
        }
    }
    true
}

/// Removes every field line of `head` (after its start line) that `drop` names; `drop`
/// gets the whole line (`Name: value\r\n`), see [`prepared::names`]. In place, no
/// allocation; a head that loses nothing is only read, one search per line end (weir's
/// own heads end every line in CRLF, so each LF ends a line).
pub fn strip(head: &mut Vec<u8>, drop: impl Fn(&[u8]) -> bool) {
    let mut ends = memchr::memchr_iter(b'\n', head);
    let Some(first) = ends.next() else { return };
    let mut start = first + 1;
    // Most heads lose nothing: find the first line that goes before moving any byte.
    let found = ends.find_map(|end| {
        let line = start..end + 1;
        start = end + 1;
        drop(&head[line.clone()]).then_some(line)
    });
    let Some(gone) = found else { return };
    let (mut read, mut write) = (gone.end, gone.start);
    // Bounded by the head's length: each pass moves past one line.
    while read < head.len() {
        let end = memchr::memchr(b'\n', &head[read..]).map_or(head.len(), |at| read + at + 1);
        if !drop(&head[read..end]) {
            head.copy_within(read..end, write);
            write += end - read;
        }
        read = end;
    }
    head.truncate(write);
}

fn find_crlf(bytes: &[u8], from: usize) -> Option<usize> {
    bytes.get(from..)?.windows(2).position(|pair| pair == b"\r\n").map(|at| from + at)
}

/// Applies `rules` to a finished head whose field names are in `names`: removes, then
/// appends before the empty line. Returns where the appended lines start, so a retry
/// can write them again for another backend ([`rewrite_lines`]).
pub fn apply(head: &mut Vec<u8>, rules: &HeaderLines, names: NameSet, vars: &Vars<'_>) -> usize {
    if rules.may_drop(names) {
        strip(head, |line| rules.drops(line));
    }
    let mark = head.len().saturating_sub(2);
    rewrite_lines(head, mark, rules, vars);
    mark
}

/// Writes the appended lines of [`apply`] again from `mark`, with new `vars`.
pub fn rewrite_lines(head: &mut Vec<u8>, mark: usize, rules: &HeaderLines, vars: &Vars<'_>) {
    debug_assert!(head.ends_with(b"\r\n\r\n"));
    head.truncate(mark);
    rules.push(vars, head);
    head.extend_from_slice(b"\r\n");
}

/// What a response head loses before weir's own lines are appended: the names a
/// route's `response_headers` remove or set, and the request id's header (weir's id
/// replaces a backend's). The default strips nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Strip<'a> {
    /// The route's response rules.
    pub rules: Option<&'a HeaderLines>,
    /// The request id's header, when ids are on.
    pub id_header: Option<&'a str>,
}

impl Strip<'_> {
    /// Removes the fields from a client-bound head.
    pub fn apply(&self, head: &mut Vec<u8>) {
        let rules = self.rules.filter(|rules| rules.drops_any());
        if rules.is_none() && self.id_header.is_none() {
            return;
        }
        strip(head, |line| {
            rules.is_some_and(|rules| rules.drops(line))
                || self.id_header.is_some_and(|id| prepared::names(line, id.as_bytes()))
        });
    }
}

/// The path `rewrite` makes of `path` (as received): the normalised path with the
/// prefix replaced, when the prefix ends at a segment boundary; `None` when it does not
/// apply. Normalising first means no spelling (`/%61pi`, `/x/../api`) reaches the
/// backend with its prefix kept, and `..` cannot climb out of what replaced it.
pub fn rewritten(path: &[u8], rewrite: &Rewrite) -> Option<Vec<u8>> {
    let normal = target::normalise_path(path);
    let rest = normal.strip_prefix(rewrite.from.as_bytes())?;
    let boundary = rest.is_empty() || rest[0] == b'/' || rewrite.from.ends_with('/');
    if !boundary {
        return None;
    }
    let mut out = Vec::with_capacity(rewrite.to.len() + rest.len() + 1);
    let to = rewrite.to.trim_end_matches('/');
    out.extend_from_slice(to.as_bytes());
    // One slash between the two, and never an empty path.
    let slash = match rest {
        [] => to.is_empty() || rewrite.to.ends_with('/'),
        _ => rest[0] != b'/',
    };
    if slash {
        out.push(b'/');
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// Rewrites the target of a head's request line (`METHOD SP target SP HTTP/1.1`),
/// keeping the query as received. Returns whether it changed.
pub fn rewrite_target(head: &mut Vec<u8>, rewrite: &Rewrite) -> bool {
    let Some(line_end) = find_crlf(head, 0) else { return false };
    let line = &head[..line_end];
    let (Some(start), Some(end)) =
        (line.iter().position(|&b| b == b' '), line.iter().rposition(|&b| b == b' '))
    else {
        return false;
    };
    let target = &line[start + 1..end];
    if !target.starts_with(b"/") {
        return false;
    }
    let path = target::path_of(target);
    let Some(mut new) = rewritten(path, rewrite) else { return false };
    new.extend_from_slice(&target[path.len()..]);
    head.splice(start + 1..end, new);
    true
}

/// A `Location` for `to`. The query string is kept as nginx's `rewrite` keeps it:
/// appended when `to` does not use `$request_uri` and has no `?` of its own. `None`
/// when a value would not be a plain URI part: a `$host` must be a host name or
/// address (no `@`, `/` or white space), so a forged `Host` cannot aim the redirect
/// elsewhere or break the field.
pub fn location(to: &Template, vars: &Vars<'_>) -> Option<Vec<u8>> {
    if to.uses(Var::Host) && (vars.host.is_empty() || !vars.host.iter().all(|&b| is_host_byte(b))) {
        return None;
    }
    let mut out = Vec::with_capacity(to.source.len() + vars.request_uri.len() + 16);
    if !render(to, vars, is_uri_byte, &mut out) {
        return None;
    }
    let query = vars.request_uri.get(target::path_of(vars.request_uri).len()..)?;
    if !to.uses(Var::RequestUri) && !out.contains(&b'?') && query.len() > 1 {
        if !query.iter().all(|&b| is_uri_byte(b)) {
            return None;
        }
        out.extend_from_slice(query);
    }
    Some(out)
}

/// A byte of a host name, IPv4 address or bracketed IPv6 address.
fn is_host_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'[' | b']' | b':')
}

#[cfg(test)]
#[path = "rules/tests.rs"]
mod tests;

pub mod prepared;
pub mod request_id;

pub use prepared::{HeaderLines, Prepared, VarSet};
