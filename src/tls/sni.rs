//! Choosing a listener's certificate by SNI.
//!
//! Each certificate is indexed by the DNS names in its subject alternative names, exact
//! names and `*.suffix` wildcards apart. A client's name is looked up exactly first, then
//! as a wildcard over its first label; no match, or no SNI at all, gets the first
//! certificate. When two certificates claim a name, the earlier one wins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{files, TlsError};

/// Most certificates on one listener. Each is a few KiB and a handful of names; the bound
/// keeps a runaway configuration small.
pub(crate) const MAX_CERTS: usize = 256;

/// Most DNS names indexed over all of a listener's certificates.
const MAX_NAMES: usize = 16 * 1024;

/// The certificates of one listener, by name.
#[derive(Debug)]
pub(crate) struct SniResolver {
    /// In configured order; the first is the default.
    keys: Vec<Arc<CertifiedKey>>,
    /// Lowercase DNS name to index in `keys`.
    exact: HashMap<String, usize>,
    /// Lowercase suffix of a `*.suffix` name to index in `keys`.
    wildcard: HashMap<String, usize>,
}

impl SniResolver {
    /// Reads and checks every (certificate, key) pair: each must parse and the key must
    /// match the certificate.
    pub(crate) fn load(
        pairs: &[(PathBuf, PathBuf)],
        provider: &CryptoProvider,
    ) -> Result<SniResolver, TlsError> {
        if pairs.is_empty() {
            return Err(TlsError::Config("a TLS listener needs at least one certificate".into()));
        }
        if pairs.len() > MAX_CERTS {
            return Err(TlsError::Config(format!(
                "{} certificates on one listener, at most {MAX_CERTS} allowed",
                pairs.len()
            )));
        }
        let mut resolver = SniResolver {
            keys: Vec::with_capacity(pairs.len()),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        for (cert, key) in pairs {
            let names = resolver.add(cert, key, provider)?;
            if names == 0 && resolver.keys.len() > 1 {
                let cert = cert.display();
                tracing::warn!(%cert, "certificate has no DNS name, so SNI never picks it");
            }
        }
        debug_assert_eq!(resolver.keys.len(), pairs.len());
        Ok(resolver)
    }

    /// Loads one pair and indexes its names; returns how many names it has.
    fn add(
        &mut self,
        cert: &Path,
        key: &Path,
        provider: &CryptoProvider,
    ) -> Result<usize, TlsError> {
        let chain = files::read_chain(cert, "cert")?;
        let key_der = files::read_key(key, "key")?;
        let parsed = webpki::EndEntityCert::try_from(&chain[0]).map_err(|err| {
            TlsError::Config(format!("cert {}: not a usable certificate: {err}", cert.display()))
        })?;
        let names: Vec<String> = parsed.valid_dns_names().map(str::to_ascii_lowercase).collect();
        let certified = CertifiedKey::from_der(chain, key_der, provider).map_err(|err| {
            TlsError::Config(format!(
                "cert {} with key {}: {}",
                cert.display(),
                key.display(),
                key_problem(&err)
            ))
        })?;
        if self.exact.len() + self.wildcard.len() + names.len() > MAX_NAMES {
            return Err(TlsError::Config(format!(
                "cert {}: more than {MAX_NAMES} names on one listener",
                cert.display()
            )));
        }
        let index = self.keys.len();
        self.keys.push(Arc::new(certified));
        for name in &names {
            let table = match name.strip_prefix("*.") {
                Some(suffix) => self.wildcard.entry(suffix.to_owned()),
                None => self.exact.entry(name.clone()),
            };
            table.or_insert(index);
        }
        Ok(names.len())
    }

    /// The index of the certificate for `name`, if one claims it.
    fn lookup(&self, name: &str) -> Option<usize> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(&index) = self.exact.get(&name) {
            return Some(index);
        }
        // A wildcard covers exactly one label: `*.b.test` covers `x.b.test`, not `b.test`
        // nor `y.x.b.test`.
        let (_, suffix) = name.split_once('.')?;
        self.wildcard.get(suffix).copied()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let index = hello.server_name().and_then(|name| self.lookup(name)).unwrap_or(0);
        debug_assert!(index < self.keys.len());
        self.keys.get(index).cloned()
    }
}

/// Says plainly when the key does not belong to the certificate.
fn key_problem(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InconsistentKeys(_) => "the key does not match the certificate".to_owned(),
        other => format!("unusable key: {other}"),
    }
}
