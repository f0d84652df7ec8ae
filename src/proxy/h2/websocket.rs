//! WebSocket over HTTP/2 (RFC 8441), as Envoy, HAProxy and Caddy carry it: weir
//! advertises `SETTINGS_ENABLE_CONNECT_PROTOCOL` (`[server.http2] websocket`), and a
//! stream with `:method CONNECT` and `:protocol websocket` becomes an HTTP/1.1
//! `GET` upgrade to the backend, with a `Sec-WebSocket-Key` weir makes (the HTTP/2
//! client sends none, §5). From there it is an HTTP/1 WebSocket request: the same
//! routing, picking, retries, logging and tunnel ([`crate::proxy::tunnel`]).
//!
//! The backend's `101` must carry the `Sec-WebSocket-Accept` for weir's key; it goes to
//! the client as `:status 200` ([`super::respond`]), and any other answer is relayed
//! as it is, except a 2xx, which the client would take as the tunnel open: that is a
//! 502, as a mismatched accept is ([`crate::http1::response::Exchange`]). Then the
//! stream's DATA frames and the backend connection carry the bytes both ways, under
//! flow control: the client's END_STREAM half-closes the backend connection, the
//! backend's end ends the stream, and a reset on either side closes the other.
//!
//! Other CONNECTs (plain, or another `:protocol`) go on as written and get the 405 an
//! HTTP/1 CONNECT gets: weir is no forward proxy.

use bytes::BytesMut;
use http::request::Parts;

use super::translate::{self, Form, Malformed};
use crate::http1::websocket::{self as handshake, Accept};

/// A stream's head translated to HTTP/1.1.
pub struct Translated {
    /// The head says the body is chunked.
    pub chunked: bool,
    /// A WebSocket: the `Sec-WebSocket-Accept` the backend's 101 must carry.
    pub accept: Option<Accept>,
}

/// Whether `parts` is a WebSocket extended CONNECT: `:protocol websocket`, which the
/// codec lets through only on CONNECT, when weir advertised the setting.
fn is_websocket(parts: &Parts) -> bool {
    let protocol = parts.extensions.get::<h2::ext::Protocol>();
    protocol.is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"))
}

/// Writes the HTTP/1.1 head of `parts` to `out`: a WebSocket upgrade with a fresh key
/// for a WebSocket CONNECT, else the request as it came (`body` when DATA follows).
pub fn translate(parts: &Parts, body: bool, out: &mut BytesMut) -> Result<Translated, Malformed> {
    if !is_websocket(parts) {
        let chunked = translate::write_head(parts, Form::Request { body }, out)?;
        return Ok(Translated { chunked, accept: None });
    }
    let key = handshake::new_key();
    translate::write_head(parts, Form::WebSocket { key: &key }, out)?;
    Ok(Translated { chunked: false, accept: Some(handshake::accept(&key)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(protocol: Option<&str>) -> http::request::Builder {
        let mut builder = http::Request::builder().method("CONNECT");
        if let Some(protocol) = protocol {
            builder = builder.extension(h2::ext::Protocol::from(protocol));
            builder = builder.uri("https://chat.example/socket?room=1");
        } else {
            builder = builder.uri("chat.example:443");
        }
        builder
    }

    fn translated(request: http::request::Builder) -> Result<(String, Translated), Malformed> {
        let (parts, ()) = request.body(()).unwrap().into_parts();
        let mut out = BytesMut::new();
        let translated = translate(&parts, true, &mut out)?;
        Ok((String::from_utf8(out.to_vec()).unwrap(), translated))
    }

    fn websocket() -> http::request::Builder {
        connect(Some("websocket"))
            .header("sec-websocket-version", "13")
            .header("sec-websocket-protocol", "chat")
            .header("sec-websocket-key", "the client's, dropped")
    }

    #[test]
    fn a_websocket_connect_becomes_an_upgrade_with_weirs_key() {
        let (head, translated) = translated(websocket()).unwrap();
        let key = head.split("sec-websocket-key: ").nth(1).unwrap().split("\r\n").next().unwrap();
        assert_eq!(
            head,
            format!(
                "GET /socket?room=1 HTTP/1.1\r\nhost: chat.example\r\n\
                 sec-websocket-version: 13\r\nsec-websocket-protocol: chat\r\n\
                 connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-key: {key}\r\n\r\n"
            )
        );
        assert_eq!(translated.accept, Some(handshake::accept(key.as_bytes())));
        assert!(!translated.chunked, "the DATA frames are the tunnel, not a body");
        let (again, _) = self::translated(websocket()).unwrap();
        assert_ne!(again, head, "each stream gets its own key");
    }

    #[test]
    fn other_connects_go_as_written_and_a_length_on_a_websocket_is_malformed() {
        let (plain, translated) = translated(connect(None)).unwrap();
        assert!(plain.starts_with("CONNECT / HTTP/1.1\r\nhost: chat.example:443\r\n"), "{plain}");
        assert!(translated.accept.is_none());
        let (other, translated) = self::translated(connect(Some("connect-udp"))).unwrap();
        assert!(other.starts_with("CONNECT /socket?room=1 HTTP/1.1\r\n"), "{other}");
        assert!(translated.accept.is_none());
        let sized = connect(Some("websocket")).header("content-length", "5");
        assert!(self::translated(sized).is_err());
    }
}
