//! Why a handshake or a TLS settings file failed.

use std::fmt;
use std::io;

use rustls::{AlertDescription, CertificateError};

/// Most bytes of a reason taken from a peer or a library message, so a log line or a 502
/// body stays short whatever the peer did.
const MAX_REASON_BYTES: usize = 160;

/// Every failure kind: its counter label and its access-log text, by [`TlsError::index`].
pub const REASONS: [(&str, &str); 12] = [
    ("config", "upstream TLS error: config"),
    ("not_trusted", "upstream TLS error: not_trusted"),
    ("name_mismatch", "upstream TLS error: name_mismatch"),
    ("expired", "upstream TLS error: expired"),
    ("not_yet_valid", "upstream TLS error: not_yet_valid"),
    ("revoked", "upstream TLS error: revoked"),
    ("bad_certificate", "upstream TLS error: bad_certificate"),
    ("peer_alert", "upstream TLS error: peer_alert"),
    ("no_alpn", "upstream TLS error: no_alpn"),
    ("handshake", "upstream TLS error: handshake"),
    ("timeout", "upstream TLS error: timeout"),
    ("io", "upstream TLS error: io"),
];

/// A TLS failure with a short, human reason.
///
/// [`fmt::Display`] gives the reason for `502 upstream TLS error: <reason>` and the log;
/// [`TlsError::label`] gives a fixed, low-cardinality name for counters.
#[derive(Debug)]
pub enum TlsError {
    /// A settings file cannot be read or used; the text names the setting and the file,
    /// such as `cannot read ca_file /etc/ca.pem: No such file or directory (os error 2)`.
    Config(String),
    /// The peer's certificate does not chain to a trusted root.
    NotTrusted,
    /// The peer's certificate is not valid for the expected name.
    NameMismatch,
    /// The peer's certificate has expired.
    Expired,
    /// The peer's certificate is not valid yet.
    NotYetValid,
    /// The peer's certificate is revoked.
    Revoked,
    /// The peer's certificate is unusable for another reason, given.
    BadCertificate(String),
    /// The peer ended the handshake with a fatal alert, named, such as `certificate
    /// required` when it wants a client certificate.
    PeerAlert(String),
    /// Client and server share no ALPN protocol.
    NoAlpn,
    /// The handshake failed for another protocol reason, given.
    Handshake(String),
    /// The handshake did not finish within its timeout.
    Timeout,
    /// The connection failed or closed during the handshake.
    Io(io::Error),
}

impl TlsError {
    /// Classifies an I/O error from a TLS stream. tokio-rustls reports TLS failures as
    /// [`io::ErrorKind::InvalidData`] wrapping a [`rustls::Error`]; those get their TLS
    /// reason, anything else stays [`TlsError::Io`].
    ///
    /// Also useful after the handshake: with TLS 1.3, a server that refuses the client
    /// certificate says so only on the first read.
    pub fn from_io(err: io::Error) -> TlsError {
        let tls = err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
        match tls {
            Some(tls) => TlsError::from_rustls(tls),
            None => TlsError::Io(err),
        }
    }

    /// Classifies a rustls error.
    pub fn from_rustls(err: &rustls::Error) -> TlsError {
        match err {
            rustls::Error::InvalidCertificate(cert) => TlsError::from_certificate(cert, err),
            rustls::Error::AlertReceived(alert) => TlsError::PeerAlert(alert_words(*alert)),
            rustls::Error::NoApplicationProtocol => TlsError::NoAlpn,
            other => TlsError::Handshake(bounded(other.to_string())),
        }
    }

    fn from_certificate(cert: &CertificateError, err: &rustls::Error) -> TlsError {
        match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                TlsError::NotTrusted
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsError::NameMismatch
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                TlsError::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                TlsError::NotYetValid
            }
            CertificateError::Revoked => TlsError::Revoked,
            _ => TlsError::BadCertificate(bounded(err.to_string())),
        }
    }

    /// A fixed name for this kind of failure, for a counter label such as
    /// `weir_backend_tls_failures_total{reason="not_trusted"}`: one of [`REASONS`].
    pub fn label(&self) -> &'static str {
        REASONS[self.index()].0
    }

    /// A fixed text for the access log's error field, such as `upstream TLS error:
    /// expired`; the full reason goes to the warn log and the 502 body.
    pub fn access_log_label(&self) -> &'static str {
        REASONS[self.index()].1
    }

    /// The position of this kind of failure in [`REASONS`], for counter arrays.
    pub fn index(&self) -> usize {
        match self {
            TlsError::Config(_) => 0,
            TlsError::NotTrusted => 1,
            TlsError::NameMismatch => 2,
            TlsError::Expired => 3,
            TlsError::NotYetValid => 4,
            TlsError::Revoked => 5,
            TlsError::BadCertificate(_) => 6,
            TlsError::PeerAlert(_) => 7,
            TlsError::NoAlpn => 8,
            TlsError::Handshake(_) => 9,
            TlsError::Timeout => 10,
            TlsError::Io(_) => 11,
        }
    }

    /// Whether the peer's certificate was refused, as opposed to a network or protocol
    /// failure.
    pub fn is_certificate(&self) -> bool {
        matches!(
            self,
            TlsError::NotTrusted
                | TlsError::NameMismatch
                | TlsError::Expired
                | TlsError::NotYetValid
                | TlsError::Revoked
                | TlsError::BadCertificate(_)
        )
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Config(text) => f.write_str(text),
            TlsError::NotTrusted => f.write_str("certificate not trusted"),
            TlsError::NameMismatch => f.write_str("certificate name mismatch"),
            TlsError::Expired => f.write_str("certificate expired"),
            TlsError::NotYetValid => f.write_str("certificate not yet valid"),
            TlsError::Revoked => f.write_str("certificate revoked"),
            TlsError::BadCertificate(why) => write!(f, "bad certificate: {why}"),
            TlsError::PeerAlert(alert) => write!(f, "handshake refused by peer: {alert}"),
            TlsError::NoAlpn => f.write_str("no common ALPN protocol"),
            TlsError::Handshake(why) => write!(f, "handshake failed: {why}"),
            TlsError::Timeout => f.write_str("handshake timed out"),
            TlsError::Io(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                f.write_str("connection closed during handshake")
            }
            TlsError::Io(err) => write!(f, "connection failed during handshake: {err}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Io(err) => Some(err),
            _ => None,
        }
    }
}

/// `CertificateRequired` becomes `certificate required`.
fn alert_words(alert: AlertDescription) -> String {
    let name = format!("{alert:?}");
    let mut words = String::with_capacity(name.len() + 4);
    for (index, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && index > 0 {
            words.push(' ');
        }
        words.push(c.to_ascii_lowercase());
    }
    bounded(words)
}

/// Cuts `text` to [`MAX_REASON_BYTES`] at a character boundary.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    debug_assert!(text.len() <= MAX_REASON_BYTES);
    text
}
