//! A held exchange, for retries on status: the response head is read in full before any
//! of it goes to the client, so a retriable status can still be retried.
//!
//! Only requests without a body use it (see [`super::Plan::holds_status`]), so the
//! request is one write of the head, and it stays in `Io::head` for the next attempt.
//! The head is read by the same reader as [`exchange::run`]'s, which relays interim 1xx
//! responses as they come; they are not the response itself.
//!
//! [`exchange::run`]: crate::proxy::exchange::run

use std::pin::pin;

use bytes::Buf;
use tokio::io::AsyncRead;
use tokio::time::Instant;

use crate::config::StatusSet;
use crate::http1::response::Exchange;
use crate::http1::BodyKind;
use crate::proxy::exchange::{self, Failure, HeadReader, Io, Limits, Outcome};
use crate::proxy::io::Writer;
use crate::proxy::pump::write_all;

/// How a held exchange ended without failing.
#[derive(Debug)]
pub enum Held {
    /// The response was relayed.
    Relayed(Outcome),
    /// The status is retriable and a retry was arranged; nothing was relayed but interim
    /// responses. The upstream connection must be closed.
    Retry(u16),
}

/// Runs one held exchange. On entry `io.head` holds the upstream request head, and the
/// request has no body. `may_retry` is asked once, for a status in `retry_on`.
pub async fn run<C, U>(
    client: &mut C,
    upstream: &mut U,
    io: Io<'_>,
    exchange: Exchange,
    limits: Limits,
    retry_on: &StatusSet,
    may_retry: impl FnOnce(u16) -> bool,
) -> Result<Held, Failure>
where
    C: Writer,
    U: AsyncRead + Writer,
{
    let Io { head, reply, upstream: buf, extra_header, strip, alarm, .. } = io;
    buf.clear();
    let started = Instant::now();
    let head_len = head.len() as u64;
    // A backend that takes no byte of the head for read_timeout is given up on, as in
    // the body pump.
    if write_all(upstream, head, limits.read_timeout).await.is_err() {
        return Err(Failure::UpstreamClosed { silent: true, request_sent: false });
    }
    // The request is sent: the response timeout runs from now.
    alarm.set(Instant::now() + limits.response_timeout);
    let mut uploaded = Some(Ok(head_len));
    let info = HeadReader {
        upstream: &mut *upstream,
        buf: &mut *buf,
        reply: &mut *reply,
        client: &mut *client,
        exchange: &exchange,
        limits: &limits,
        alarm,
        sent_at: None,
        received: false,
        // The request went whole with its head: nothing is left to copy.
        copying: false,
        interims: 0,
    }
    .read(pin!(std::future::pending()), &mut uploaded)
    .await?;
    let header_latency = started.elapsed();
    if retry_on.contains(info.status) && may_retry(info.status) {
        return Ok(Held::Retry(info.status));
    }
    buf.advance(info.head_len);
    strip.apply(reply);
    crate::http1::lines::append_lines(reply, extra_header);
    let mut pump = exchange::download(&info, &limits, reply);
    let reply_head = pump.staged.len() as u64;
    let body = pump.run(buf, upstream, client).await;
    let sent = exchange::Sent { status: info.status, head: reply_head, written: pump.written };
    let body = body.map_err(|error| sent.failure(error))?;
    Ok(Held::Relayed(Outcome {
        status: info.status,
        upstream_reusable: info.upstream_reusable
            && buf.is_empty()
            && info.body != BodyKind::UntilClose,
        keep_client: !info.close_client,
        upgraded: false,
        header_latency,
        bytes_sent: head_len,
        bytes_received: info.head_len as u64 + body,
        body_bytes_written: pump.written - reply_head,
        // A held exchange carries no request body.
        body_bytes_sent: 0,
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::BytesMut;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::proxy::exchange::tests::{limits, plain_get};
    use crate::proxy::timer::Alarm;

    /// A held GET to a backend that reads it, then keeps the connection open without a
    /// word (`keep`) or closes it; returns the result and how long it took.
    async fn held_get(keep: bool) -> (Result<Held, Failure>, Duration) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut upstream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut backend, _) = listener.accept().await.expect("accept");
        let (near, _far) = tokio::io::duplex(1024);
        let (_, mut client) = tokio::io::split(near);
        let (mut input, mut upstream_buf) = (BytesMut::new(), BytesMut::new());
        let (mut head, mut reply) = (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), Vec::new());
        let mut alarm = Alarm::default();
        let started = Instant::now();
        let io = Io {
            input: &mut input,
            head: &mut head,
            reply: &mut reply,
            upstream: &mut upstream_buf,
            extra_header: b"",
            strip: Default::default(),
            alarm: &mut alarm,
            started,
        };
        let (exchange, limits) = (plain_get(), limits());
        let backend = tokio::spawn(async move {
            let mut request = [0u8; 64];
            let _ = backend.read(&mut request).await;
            if keep {
                std::future::pending::<()>().await;
            }
        });
        let statuses = StatusSet::empty();
        let run = run(&mut client, &mut upstream, io, exchange, limits, &statuses, |_| false);
        let result = run.await;
        backend.abort();
        (result, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_exchange_gives_up_at_the_response_timeout() {
        let (result, took) = held_get(true).await;
        assert!(matches!(result, Err(Failure::Timeout)), "{result:?}");
        assert_eq!(took, limits().response_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_that_closes_without_a_byte_is_a_silent_close_of_a_sent_request() {
        let (result, _) = held_get(false).await;
        let silent = Failure::UpstreamClosed { silent: true, request_sent: true };
        assert_eq!(format!("{result:?}"), format!("{:?}", Err::<Held, _>(silent)));
    }
}
