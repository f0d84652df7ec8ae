//! Unit tests of one exchange: the one-write path, and bounded writes.

use super::*;
pub(in crate::proxy) use crate::http1::response::tests::exchange as plain_get;

fn info(body: BodyKind, dechunk: bool) -> ResponseInfo {
    ResponseInfo {
        head_len: 0,
        status: 200,
        body,
        upstream_reusable: true,
        close_client: false,
        dechunk,
    }
}

#[test]
fn only_a_body_already_buffered_after_a_sent_request_takes_the_one_write_path() {
    let sent = Some(Ok(0));
    let buf = BytesMut::from(&b"hello, next"[..]);
    // Complete: the length, and the bytes after it stay for the pipeline check.
    assert_eq!(whole_body(&info(BodyKind::Length(5), false), &buf, &sent), Some(5));
    assert_eq!(whole_body(&info(BodyKind::Empty, false), &buf, &sent), Some(0));
    // Not all here yet, still uploading, or framing that needs the pump: stream it.
    assert_eq!(whole_body(&info(BodyKind::Length(50), false), &buf, &sent), None);
    assert_eq!(whole_body(&info(BodyKind::Length(5), false), &buf, &None), None);
    assert_eq!(whole_body(&info(BodyKind::Chunked, false), &buf, &sent), None);
    assert_eq!(whole_body(&info(BodyKind::Chunked, true), &buf, &sent), None);
    assert_eq!(whole_body(&info(BodyKind::UntilClose, false), &buf, &sent), None);
}

/// Limits with short backend and client write bounds.
pub(in crate::proxy) fn limits() -> Limits {
    Limits {
        grpc_retry: crate::config::GrpcCodes::default(),
        max_body: None,
        body_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(1),
        send_timeout: Duration::from_secs(2),
        max_header_bytes: 64 * 1024,
    }
}

/// A peer that reads nothing: a pipe with a few bytes of room whose far end is kept
/// open and never read. Returns the write half, and the far end to hold.
fn unread_peer() -> (tokio::io::WriteHalf<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
    let (near, far) = tokio::io::duplex(8);
    let (_, write) = tokio::io::split(near);
    (write, far)
}

/// Far longer than any bound under test: reaching it means the write had no bound. With
/// the clock paused, it costs no wall time.
const HANG: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn a_replay_to_a_backend_that_takes_no_byte_fails_after_read_timeout() {
    let (mut upstream, _far) = unread_peer();
    let copy = vec![b'r'; 4096];
    let (mut head, mut input, mut client) = (Vec::new(), BytesMut::new(), tokio::io::empty());
    let upload = Upload::Replay(&copy);
    let kept = std::cell::Cell::new(false);
    let sent = send_request(
        upload,
        BodyKind::Length(4096),
        &mut head,
        &mut input,
        &mut client,
        &mut upstream,
        limits(),
        &kept,
    );
    let started = Instant::now();
    let result = tokio::time::timeout(HANG, sent).await.expect("a bounded write");
    assert!(matches!(result, Err(PumpError::Write(_))), "{result:?}");
    assert_eq!(started.elapsed(), limits().read_timeout);
    assert!(!kept.get(), "a request not sent whole is not retried on its gRPC status");
}

#[tokio::test(start_paused = true)]
async fn a_request_head_a_backend_takes_no_byte_of_fails_after_read_timeout() {
    let (mut upstream, _far) = unread_peer();
    let mut head = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n".to_vec();
    let (mut input, mut client) = (BytesMut::new(), tokio::io::empty());
    let kept = std::cell::Cell::new(false);
    let sent = send_request(
        Upload::FromClient(None),
        BodyKind::Empty,
        &mut head,
        &mut input,
        &mut client,
        &mut upstream,
        limits(),
        &kept,
    );
    let result = tokio::time::timeout(HANG, sent).await.expect("a bounded write");
    assert!(matches!(result, Err(PumpError::Write(_))), "{result:?}");
}

#[tokio::test(start_paused = true)]
async fn an_interim_head_a_client_takes_no_byte_of_fails_after_send_timeout() {
    let (mut client, _far) = unread_peer();
    let exchange = plain_get();
    let mut buf = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]);
    let (mut reply, mut alarm) = (Vec::new(), Alarm::default());
    let mut reader = HeadReader {
        upstream: &mut tokio::io::empty(),
        buf: &mut buf,
        reply: &mut reply,
        client: &mut client,
        exchange: &exchange,
        limits: &limits(),
        alarm: &mut alarm,
        sent_at: None,
        received: true,
        copying: false,
        interims: 0,
    };
    let started = Instant::now();
    let result = tokio::time::timeout(HANG, reader.parse()).await.expect("a bounded write");
    assert!(matches!(result, Err(Failure::ClientGone)), "{result:?}");
    assert_eq!(started.elapsed(), limits().send_timeout);
}
