//! Reading certificates, keys and CA bundles from PEM files, with bounded sizes.
//!
//! These run when a connector or acceptor is built (start and reload), on the thread that
//! builds it, never on the request path, so they use blocking `std::fs`.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

use super::TlsError;

/// Largest PEM file read. A CA bundle with every public root is about 250 KiB; anything
/// far bigger is not a certificate file.
const MAX_PEM_FILE_BYTES: u64 = 4 << 20;

/// Most certificates in one chain (leaf plus intermediates). Real chains have 2 to 4.
const MAX_CHAIN_CERTS: usize = 16;

/// Most certificates in one CA file. Public root programs hold about 150.
const MAX_CA_CERTS: usize = 4096;

/// Reads a whole file of at most [`MAX_PEM_FILE_BYTES`]; `what` names the setting.
fn read_bounded(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    let cannot = |err: std::io::Error| {
        TlsError::Config(format!("cannot read {what} {}: {err}", path.display()))
    };
    let file = File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    // Reading one byte past the limit tells an oversized file from one exactly at it.
    file.take(MAX_PEM_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(TlsError::Config(format!(
            "{what} {}: larger than {MAX_PEM_FILE_BYTES} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Reads every certificate of a PEM file, at most `max`, refusing a file with none.
fn read_certs(
    path: &Path,
    what: &str,
    max: usize,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_bounded(path, what)?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|err| {
            TlsError::Config(format!("{what} {}: bad PEM: {err}", path.display()))
        })?;
        if certs.len() == max {
            return Err(TlsError::Config(format!(
                "{what} {}: more than {max} certificates",
                path.display()
            )));
        }
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(TlsError::Config(format!(
            "{what} {}: no PEM certificate found",
            path.display()
        )));
    }
    debug_assert!(certs.len() <= max);
    Ok(certs)
}

/// Reads a certificate chain, leaf first.
pub(crate) fn read_chain(
    path: &Path,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    read_certs(path, what, MAX_CHAIN_CERTS)
}

/// Reads the first private key of a PEM file: PKCS#8 (`PRIVATE KEY`), RSA/PKCS#1
/// (`RSA PRIVATE KEY`) or EC/SEC1 (`EC PRIVATE KEY`).
pub(crate) fn read_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_bounded(path, what)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| {
        TlsError::Config(format!(
            "{what} {}: no usable private key (PKCS#8, RSA or EC PEM): {err}",
            path.display()
        ))
    })
}

/// Reads a CA bundle into a root store, refusing a file with no usable CA certificate.
pub(crate) fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let certs = read_certs(path, "ca_file", MAX_CA_CERTS)?;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::Config(format!(
            "ca_file {}: none of its {ignored} certificates is usable as a CA",
            path.display()
        )));
    }
    if ignored > 0 {
        tracing::warn!(ca_file = %path.display(), ignored, "ignored unparsable CA certificates");
    }
    debug_assert_eq!(roots.len(), added);
    Ok(roots)
}
