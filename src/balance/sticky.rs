//! `sticky`: cookie affinity over a base strategy.
//!
//! Each backend gets an id: SipHash-2-4 of its identity (`HOST:PORT`, lowercased), keyed
//! by `[pool.sticky] secret` (or a fixed default key), as 16 hex digits. It is never an
//! index and never the address, and it depends only on the identity and the secret, so it
//! survives restarts and reordering, and every weir instance with the same secret agrees.
//!
//! A request whose cookie names a healthy backend goes there, even at weight 0, as in
//! HAProxy and nginx; a backend drained or removed through the admin API takes no pinned
//! client either, so its drain ends. A missing, unknown or tampered id, or an unhealthy backend,
//! means a fresh pick by the base strategy; the data path then sets the cookie again from
//! [`Strategy::sticky_id`] and [`write_set_cookie`].

use std::io::Write as _;
use std::time::Duration;

use super::key::xxh64;
use super::{build_kind, PickRequest, Strategy};
use crate::config::{PoolConfig, SameSite, StickyConfig, StrategyKind};
use crate::snapshot::Backend;

/// The key used when `[pool.sticky] secret` is not set. Public by nature: it only makes
/// ids stable; set a secret to keep the mapping from ids to addresses private.
const DEFAULT_SECRET: &str = "weir sticky default key v1";

/// Cookie affinity; see the module documentation.
pub struct Sticky {
    base: Box<dyn Strategy>,
    /// The id of each backend, by index.
    ids: Box<[String]>,
    /// `(id, index)` sorted by id, for the lookup.
    by_id: Box<[(u64, u32)]>,
}

impl Sticky {
    /// Builds the base strategy and the ids for `backends`.
    pub fn new(settings: &PoolConfig, backends: &[Backend]) -> Sticky {
        let sticky = settings.sticky.clone().unwrap_or_default();
        let base = match sticky.base {
            StrategyKind::Sticky => StrategyKind::LeastRequests,
            kind => kind,
        };
        let key = derive_key(sticky.secret.as_deref().unwrap_or(DEFAULT_SECRET));
        let values: Vec<u64> =
            backends.iter().map(|b| sip24(key, b.label.to_ascii_lowercase().as_bytes())).collect();
        let mut by_id: Vec<(u64, u32)> =
            values.iter().enumerate().map(|(i, &id)| (id, i as u32)).collect();
        by_id.sort_unstable();
        Sticky {
            base: build_kind(base, settings, backends),
            ids: values.iter().map(|id| format!("{id:016x}")).collect(),
            by_id: by_id.into_boxed_slice(),
        }
    }

    /// The backend whose id is `raw`, if any.
    fn lookup(&self, raw: &[u8]) -> Option<usize> {
        let id = parse_id(raw)?;
        let at = self.by_id.partition_point(|&(other, _)| other < id);
        self.by_id.get(at).filter(|&&(other, _)| other == id).map(|&(_, index)| index as usize)
    }
}

impl Strategy for Sticky {
    fn pick(&self, backends: &[Backend], request: &PickRequest<'_>) -> Option<usize> {
        let pinned = request.sticky_id.and_then(|raw| self.lookup(raw));
        if let Some(index) = pinned
            .filter(|&i| backends.get(i).is_some_and(|b| b.is_active() && b.live.is_healthy()))
        {
            return Some(index);
        }
        self.base.pick(backends, request)
    }

    fn sticky_id(&self, index: usize) -> Option<&str> {
        self.ids.get(index).map(String::as_str)
    }
}

/// Exactly 16 lowercase or uppercase hex digits.
fn parse_id(raw: &[u8]) -> Option<u64> {
    if raw.len() != 16 {
        return None;
    }
    raw.iter().try_fold(0u64, |id, &b| Some(id << 4 | u64::from(char::from(b).to_digit(16)?)))
}

/// Writes the value of a `Set-Cookie` header pinning a client to the backend with `id`:
/// `NAME=ID; Path=/; Max-Age=N; Secure; HttpOnly; SameSite=Lax`, attributes as configured.
pub fn write_set_cookie(config: &StickyConfig, id: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(config.cookie.as_bytes());
    out.push(b'=');
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"; Path=");
    out.extend_from_slice(config.path.as_bytes());
    if let Some(max_age) = config.max_age {
        let _ = write!(out, "; Max-Age={}", seconds(max_age));
    }
    if config.secure {
        out.extend_from_slice(b"; Secure");
    }
    if config.http_only {
        out.extend_from_slice(b"; HttpOnly");
    }
    if let Some(same_site) = config.same_site {
        out.extend_from_slice(b"; SameSite=");
        out.extend_from_slice(same_site.as_str().as_bytes());
    }
}

/// Whole seconds, rounded up so that a sub-second `max_age` does not delete the cookie.
fn seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

impl SameSite {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// The 128-bit SipHash key for a secret.
fn derive_key(secret: &str) -> (u64, u64) {
    (xxh64(secret.as_bytes(), 1), xxh64(secret.as_bytes(), 2))
}

/// SipHash-2-4 (Aumasson and Bernstein) of `data` with key `(k0, k1)`.
fn sip24((k0, k1): (u64, u64), data: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        compress(&mut v, u64::from_le_bytes(word), 2);
    }
    let mut last = [0; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    last[7] = data.len() as u8;
    compress(&mut v, u64::from_le_bytes(last), 2);
    v[2] ^= 0xff;
    sip_rounds(&mut v, 4);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn compress(v: &mut [u64; 4], word: u64, rounds: usize) {
    v[3] ^= word;
    sip_rounds(v, rounds);
    v[0] ^= word;
}

fn sip_rounds(v: &mut [u64; 4], rounds: usize) {
    for _ in 0..rounds {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
}

#[cfg(test)]
#[path = "sticky_tests.rs"]
mod tests;
