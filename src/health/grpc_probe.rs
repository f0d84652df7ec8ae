//! gRPC health probes (`[pool.health] type = "grpc"`): one unary call of
//! `grpc.health.v1.Health/Check` over HTTP/2, on a connection of its own.
//!
//! The two messages are tiny, so they are encoded by hand (no protoc, no prost):
//! `HealthCheckRequest { string service = 1; }` and
//! `HealthCheckResponse { ServingStatus status = 1; }`. Only `SERVING` passes;
//! `NOT_SERVING`, `SERVICE_UNKNOWN`, `UNKNOWN`, any `grpc-status` but 0 (a server
//! without the health service answers 12 UNIMPLEMENTED, an unknown service 5
//! NOT_FOUND), an HTTP status but 200, and a response past [`MAX_RESPONSE`] fail. The
//! caller bounds the whole call by the probe's `timeout`.

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, Request};
use tokio::io::{AsyncRead, AsyncWrite};

/// The health service's one unary method.
const PATH: &str = "/grpc.health.v1.Health/Check";
/// Most bytes of a response, head fields and message alike: a `HealthCheckResponse` is
/// two bytes plus gRPC's five of framing, so a server that sends more is not answering
/// a health check, and a probe holds no more than this.
pub const MAX_RESPONSE: usize = 16 * 1024;
/// `ServingStatus.SERVING` in `grpc.health.v1`.
const SERVING: u64 = 1;

/// The request body: a gRPC message (a flag byte, a 4-byte length) holding a
/// `HealthCheckRequest` for `service` (field 1 left out when empty, as proto3 does).
pub fn request_body(service: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(service.len() + 3);
    if !service.is_empty() {
        message.push(0x0A); // field 1, length-delimited
        varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut body = Vec::with_capacity(message.len() + 5);
    body.push(0); // not compressed
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    body
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    // Bounded: 7 bits a pass, at most 10 passes.
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Calls `Check` with `body` over `stream` (TCP, or TLS that negotiated `h2`), for the
/// `:authority` `authority` and the `:scheme` `scheme`. `Ok` when the server is serving.
pub async fn check<S>(stream: S, scheme: &str, authority: &str, body: &[u8]) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let body = Bytes::copy_from_slice(body);
    super::h2_probe::exchange(stream, MAX_RESPONSE, |send| call(send, scheme, authority, body))
        .await
}

async fn call(
    send: SendRequest<Bytes>,
    scheme: &str,
    authority: &str,
    body: Bytes,
) -> Result<(), String> {
    let failed = super::h2_probe::failed;
    let mut send = send.ready().await.map_err(failed)?;
    let request = Request::post(format!("{scheme}://{authority}{PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "weir-health-check")
        .body(())
        .map_err(|error| format!("bad probe request: {error}"))?;
    let (response, mut upload) = send.send_request(request, false).map_err(failed)?;
    upload.send_data(body, true).map_err(failed)?;
    let (head, mut recv) = response.await.map_err(failed)?.into_parts();
    if head.status != http::StatusCode::OK {
        return Err(format!("HTTP status {}", head.status.as_u16()));
    }
    if recv.is_end_stream() {
        // A trailers-only answer: its status is in the head, and it has no message.
        grpc_status(&head.headers)?;
        return Err("no response message".to_string());
    }
    let mut message = Vec::new();
    // Bounded: the message may grow to MAX_RESPONSE, and the window holds the rest back.
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(failed)?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        if message.len() + chunk.len() > MAX_RESPONSE {
            return Err(format!("response larger than {MAX_RESPONSE} bytes"));
        }
        message.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await.map_err(failed)?;
    grpc_status(&trailers.unwrap_or_default())?;
    serving(&message)
}

/// `Ok` when `fields` carry `grpc-status: 0`; else the status and message as an error.
fn grpc_status(fields: &HeaderMap) -> Result<(), String> {
    let Some(status) = fields.get("grpc-status") else {
        return Err("no grpc-status".to_string());
    };
    if status == "0" {
        return Ok(());
    }
    let message = fields.get("grpc-message").map(|m| String::from_utf8_lossy(m.as_bytes()));
    let status = String::from_utf8_lossy(status.as_bytes());
    Err(format!("grpc-status {status}: {}", message.unwrap_or_default()))
}

/// `Ok` when `body` is one uncompressed gRPC message holding a `HealthCheckResponse`
/// whose status is `SERVING`.
pub fn serving(body: &[u8]) -> Result<(), String> {
    let Some((&[flag, a, b, c, d], message)) = body.split_first_chunk::<5>() else {
        return Err("no response message".to_string());
    };
    if flag != 0 {
        return Err("compressed response message (none was accepted)".to_string());
    }
    if u32::from_be_bytes([a, b, c, d]) as usize != message.len() {
        return Err("response message framed wrongly".to_string());
    }
    match status(message)? {
        SERVING => Ok(()),
        0 => Err("status UNKNOWN".to_string()),
        2 => Err("status NOT_SERVING".to_string()),
        3 => Err("status SERVICE_UNKNOWN".to_string()),
        other => Err(format!("status {other}")),
    }
}

/// Field 1 of a `HealthCheckResponse` (0, UNKNOWN, when absent); other fields skipped.
fn status(mut message: &[u8]) -> Result<u64, String> {
    let malformed = || "malformed HealthCheckResponse".to_string();
    let mut status = 0;
    // Bounded: each pass consumes at least one byte of a message of at most MAX_RESPONSE.
    while !message.is_empty() {
        let tag = read_varint(&mut message).ok_or_else(malformed)?;
        let skip = match tag & 7 {
            0 => {
                let value = read_varint(&mut message).ok_or_else(malformed)?;
                if tag >> 3 == 1 {
                    status = value;
                }
                0
            }
            1 => 8,
            2 => usize::try_from(read_varint(&mut message).ok_or_else(malformed)?)
                .map_err(|_| malformed())?,
            5 => 4,
            _ => return Err(malformed()),
        };
        message = message.get(skip..).ok_or_else(malformed)?;
    }
    Ok(status)
}

fn read_varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    // Bounded: at most 10 bytes make a 64-bit varint.
    for (i, &byte) in input.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            *input = &input[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut body = vec![0];
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(message);
        body
    }

    #[test]
    fn the_request_names_the_service_or_none() {
        assert_eq!(request_body(""), [0, 0, 0, 0, 0]);
        assert_eq!(request_body("a.B"), [0, 0, 0, 0, 5, 0x0A, 3, b'a', b'.', b'B']);
        let long = "s".repeat(200);
        assert_eq!(&request_body(&long)[4..8], &[203, 0x0A, 0xC8, 0x01]);
    }

    #[test]
    fn only_serving_passes() {
        assert_eq!(serving(&framed(&[0x08, 1])), Ok(()));
        assert_eq!(serving(&framed(&[0x08, 2])), Err("status NOT_SERVING".into()));
        assert_eq!(serving(&framed(&[0x08, 3])), Err("status SERVICE_UNKNOWN".into()));
        assert_eq!(serving(&framed(&[])), Err("status UNKNOWN".into()), "absent is UNKNOWN");
        // Unknown fields of every wire type are skipped; the last status wins.
        let mixed = [0x12, 2, b'h', b'i', 0x19, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 1, 0x25, 1, 2, 3, 4];
        assert_eq!(serving(&framed(&mixed)), Ok(()));
    }

    #[test]
    fn hostile_answers_fail_without_panic() {
        assert!(serving(b"").is_err());
        assert!(serving(&[0, 0, 0]).is_err());
        let mut compressed = framed(&[0x08, 1]);
        compressed[0] = 1;
        assert!(serving(&compressed).unwrap_err().contains("compressed"));
        let mut long = framed(&[0x08, 1]);
        long[4] = 9;
        assert!(serving(&long).unwrap_err().contains("framed wrongly"));
        for bad in [&[0x08][..], &[0x08, 0x80], &[0x12, 5, 1], &[0x0B], &[0xFF; 12]] {
            assert_eq!(serving(&framed(bad)), Err("malformed HealthCheckResponse".into()));
        }
        let mut fields = HeaderMap::new();
        assert_eq!(grpc_status(&fields), Err("no grpc-status".into()));
        fields.insert("grpc-status", "5".parse().unwrap());
        fields.insert("grpc-message", "unknown service".parse().unwrap());
        assert_eq!(grpc_status(&fields), Err("grpc-status 5: unknown service".into()));
    }

    /// A server that answers the probe with a 200 head and `body`, never ending.
    async fn answering(body: Vec<u8>) -> Result<(), String> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let serve = async move {
            let mut conn = h2::server::handshake(server).await.unwrap();
            let (_request, mut respond) = conn.accept().await.unwrap().unwrap();
            let head = http::Response::builder().status(200).body(()).unwrap();
            let mut send = respond.send_response(head, false).unwrap();
            let mut body = Bytes::from(body);
            // The connection is driven below while this sends.
            tokio::spawn(async move {
                // Bounded by the body: each pass sends what the window allows.
                while !body.is_empty() {
                    send.reserve_capacity(body.len());
                    let capacity = std::future::poll_fn(|cx| send.poll_capacity(cx)).await;
                    let Some(Ok(n)) = capacity else { break };
                    let _ = send.send_data(body.split_to(n.min(body.len())), false);
                }
            });
            let _ = std::future::poll_fn(|cx| conn.poll_closed(cx)).await;
        };
        let request = request_body("");
        tokio::select! {
            result = check(client, "http", "a:1", &request) => result,
            () = serve => Err("the server ended first".to_string()),
        }
    }

    #[tokio::test]
    async fn an_oversize_answer_fails_at_the_bound() {
        let result = answering(vec![0; 4 * MAX_RESPONSE]).await;
        assert_eq!(result, Err(format!("response larger than {MAX_RESPONSE} bytes")));
    }
}
