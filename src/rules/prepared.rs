//! A route's rules ready for the request path, built once per snapshot from the config
//! ([`crate::config::RouteRules`]), so a request pays only for what depends on it.
//!
//! Everything that does not depend on the request is worked out here: which variables
//! any template reads (a bit set, so the request path copies only those), the names a
//! head loses (`remove` and `set`, once each), and every line whose value has no
//! variable, written out as its final bytes (`Name: value\r\n`). When all of a
//! direction's lines are constant they are one byte string, appended with one copy; a
//! response borrows it and allocates nothing (bench/RESULTS.md, "Route policy cost").

use super::{render, Vars};
use crate::config::rules::{is_value_byte, HeaderRules, Part, RouteRules, Template, Var};
use crate::http1::name_set::NameSet;

/// A set of template variables, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VarSet(u16);

impl VarSet {
    /// The variables `template` reads.
    pub fn of(template: &Template) -> VarSet {
        let bits = template.parts.iter().fold(0, |bits, part| match part {
            Part::Var(var) => bits | bit(*var),
            Part::Literal(_) => bits,
        });
        VarSet(bits)
    }

    /// Whether the set holds `var`.
    pub fn has(self, var: Var) -> bool {
        self.0 & bit(var) != 0
    }

    fn union(self, other: VarSet) -> VarSet {
        VarSet(self.0 | other.0)
    }
}

/// `var`'s bit: `Var` has 8 fieldless variants, so each fits in a `u16`.
fn bit(var: Var) -> u16 {
    1 << (var as u16)
}

/// A route's rules as the request path uses them.
#[derive(Debug)]
pub struct Prepared {
    /// The rules as configured: redirect, rewrite, `max_body`.
    pub config: RouteRules,
    /// Every variable a header rule or the redirect reads ([`RouteRules::uses`]).
    pub uses: VarSet,
    /// The route has a redirect or a `max_body`: it may answer before a backend is
    /// picked, so the request path looks.
    pub answers_early: bool,
    /// `request_headers`, prepared.
    pub request: HeaderLines,
    /// `response_headers`, prepared.
    pub response: HeaderLines,
}

impl Prepared {
    /// Prepares `config`.
    pub fn new(config: RouteRules) -> Prepared {
        let uses = Var::ALL
            .iter()
            .filter(|(_, var)| config.uses(*var))
            .fold(VarSet::default(), |set, (_, var)| set.union(VarSet(bit(*var))));
        let request = HeaderLines::new(&config.request_headers);
        let response = HeaderLines::new(&config.response_headers);
        let answers_early = config.redirect.is_some() || config.max_body.is_some();
        Prepared { config, uses, answers_early, request, response }
    }
}

/// One `set` or `add` line.
#[derive(Debug)]
enum Line {
    /// A value without variables: the whole line, or nothing when the value is empty
    /// (an empty value is left out, as nginx leaves it out).
    Constant(Box<[u8]>),
    /// `Name: `, and the value to render per request.
    Template(Box<[u8]>, Template),
}

/// One direction's header rules: the names dropped, then the lines appended.
#[derive(Debug)]
pub struct HeaderLines {
    /// The names `remove` and `set` drop from the head, each once.
    drop: Vec<Box<[u8]>>,
    /// The same names as a filter, to skip heads that hold none of them.
    drop_set: NameSet,
    /// The `set` lines, then the `add` lines.
    lines: Vec<Line>,
    /// All of `lines` when none has a variable.
    constant: Option<Box<[u8]>>,
    /// The variables the lines read.
    pub uses: VarSet,
}

impl HeaderLines {
    /// Prepares `rules`.
    pub fn new(rules: &HeaderRules) -> HeaderLines {
        let mut drop: Vec<Box<[u8]>> = Vec::new();
        let names = rules.remove.iter().chain(rules.set.iter().map(|(name, _)| name));
        for name in names {
            if !drop.iter().any(|known| known.eq_ignore_ascii_case(name.as_bytes())) {
                drop.push(name.as_bytes().into());
            }
        }
        let mut drop_set = NameSet::default();
        drop.iter().for_each(|name| drop_set.add(name));
        let mut uses = VarSet::default();
        let lines: Vec<Line> = rules
            .set
            .iter()
            .chain(&rules.add)
            .map(|(name, value)| {
                uses = uses.union(VarSet::of(value));
                line(name, value)
            })
            .collect();
        let constant = lines.iter().try_fold(Vec::new(), |mut all, line| match line {
            Line::Constant(bytes) => {
                all.extend_from_slice(bytes);
                Some(all)
            }
            Line::Template(..) => None,
        });
        let constant = constant.map(Vec::into_boxed_slice);
        HeaderLines { drop, drop_set, lines, constant, uses }
    }

    /// Whether the rules change nothing.
    pub fn is_empty(&self) -> bool {
        self.drop.is_empty() && self.lines.is_empty()
    }

    /// Whether the rules drop any name.
    pub fn drops_any(&self) -> bool {
        !self.drop.is_empty()
    }

    /// Whether the rules may drop a field of a head whose names are `names`.
    pub fn may_drop(&self, names: NameSet) -> bool {
        names.meets(self.drop_set)
    }

    /// Whether the field `line` (`Name: value...`, as weir writes it) has a name the
    /// rules drop.
    pub fn drops(&self, line: &[u8]) -> bool {
        self.drop.iter().any(|name| names(line, name))
    }

    /// Whether the rules append any line.
    pub fn appends(&self) -> bool {
        !self.lines.is_empty()
    }

    /// The appended lines when they do not depend on the request.
    pub fn constant(&self) -> Option<&[u8]> {
        self.constant.as_deref()
    }

    /// Appends the `set` and `add` lines (`Name: value\r\n`). A value that renders
    /// empty, or with a byte no field value may hold, is left out.
    pub fn push(&self, vars: &Vars<'_>, out: &mut Vec<u8>) {
        if let Some(constant) = &self.constant {
            out.extend_from_slice(constant);
            return;
        }
        for line in &self.lines {
            match line {
                Line::Constant(bytes) => out.extend_from_slice(bytes),
                Line::Template(prefix, value) => {
                    let start = out.len();
                    out.extend_from_slice(prefix);
                    let at = out.len();
                    if render(value, vars, is_value_byte, out) && out.len() > at {
                        out.extend_from_slice(b"\r\n");
                    } else {
                        out.truncate(start);
                    }
                }
            }
        }
    }
}

/// The prepared form of the line `name: value`.
fn line(name: &str, value: &Template) -> Line {
    let mut prefix = Vec::with_capacity(name.len() + 2 + value.source.len() + 2);
    prefix.extend_from_slice(name.as_bytes());
    prefix.extend_from_slice(b": ");
    if VarSet::of(value) != VarSet::default() {
        return Line::Template(prefix.into(), value.clone());
    }
    let at = prefix.len();
    for literal in value.literals() {
        prefix.extend_from_slice(literal.as_bytes());
    }
    match prefix.len() > at {
        true => {
            prefix.extend_from_slice(b"\r\n");
            Line::Constant(prefix.into())
        }
        false => Line::Constant(Box::default()),
    }
}

/// Whether the field line `line` has the name `name` (any case). Lines weir writes have
/// the colon right after the name, so no search for it is needed.
pub fn names(line: &[u8], name: &[u8]) -> bool {
    line.len() > name.len()
        && line[name.len()] == b':'
        && line[..name.len()].eq_ignore_ascii_case(name)
}
