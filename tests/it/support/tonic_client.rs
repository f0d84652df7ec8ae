//! A tonic gRPC client (tonic's `Channel`: hyper's HTTP/2 client, h2c with prior
//! knowledge) calling `test.Echo` on the grpcio peer (`grpc_peer.py`) or a
//! [`super::tonic_server::TonicServer`] through weir, and [`Raw`], the codec both tonic
//! sides use: messages are raw bytes, as grpcio's generic handlers pass them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use serde_json::{json, Value};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Request, Status};

/// Messages as raw bytes: what goes in is what goes on the wire, framed by gRPC.
#[derive(Clone, Copy, Default)]
pub struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Longest wait for a whole call, as grpc_peer.py's client allows (10 s).
const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// A tonic client of one connection.
pub type Client = tonic::client::Grpc<Channel>;

/// A client over one HTTP/2 connection to `addr`.
pub async fn connect(addr: SocketAddr) -> Client {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("an endpoint")
        .timeout(CALL_DEADLINE);
    tonic::client::Grpc::new(endpoint.connect().await.expect("connect to weir"))
}

fn path(method: &str) -> http::uri::PathAndQuery {
    format!("/test.Echo/{method}").parse().expect("a path")
}

fn text(message: Bytes) -> Value {
    Value::from(String::from_utf8(message.to_vec()).expect("UTF-8"))
}

/// `{"ok": answer}`, or the error's gRPC code (named as grpcio names it:
/// `NOT_FOUND`) and message: grpc_peer.py's shape, so results compare across stacks.
fn outcome(result: Result<Value, Status>) -> Value {
    match result {
        Ok(answer) => json!({ "ok": answer }),
        Err(status) => json!({ "code": code_name(status.code()), "message": status.message() }),
    }
}

/// `NotFound` as `NOT_FOUND`.
fn code_name(code: tonic::Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// A unary call of `method` with `message`.
pub async fn unary(client: &mut Client, method: &str, message: &str) -> Result<Bytes, Status> {
    client.ready().await.map_err(|error| Status::unavailable(error.to_string()))?;
    let call = Request::new(Bytes::from(message.to_string()));
    Ok(client.unary(call, path(method), Raw).await?.into_inner())
}

async fn server_stream(client: &mut Client) -> Result<Value, Status> {
    client.ready().await.map_err(|error| Status::unavailable(error.to_string()))?;
    let call = Request::new(Bytes::from_static(b"x"));
    let mut answers = client.server_streaming(call, path("ServerStream"), Raw).await?.into_inner();
    let mut got = Vec::new();
    while let Some(answer) = answers.message().await? {
        got.push(text(answer));
    }
    Ok(Value::from(got))
}

async fn client_stream(client: &mut Client) -> Result<Value, Status> {
    client.ready().await.map_err(|error| Status::unavailable(error.to_string()))?;
    let messages = ["a", "b", "c"].map(|m| Bytes::from_static(m.as_bytes()));
    let call = Request::new(futures_util::stream::iter(messages));
    Ok(text(client.client_streaming(call, path("ClientStream"), Raw).await?.into_inner()))
}

/// A bidirectional call that sends each message only after the answer to the previous
/// one came back: the stream is truly bidirectional through weir, not buffered to its
/// end.
pub async fn bidi_ping_pong(client: &mut Client) -> Result<Value, Status> {
    client.ready().await.map_err(|error| Status::unavailable(error.to_string()))?;
    let (send, receive) = tokio::sync::mpsc::channel::<Bytes>(1);
    send.send(Bytes::from_static(b"m0")).await.expect("room for the first message");
    let outgoing = futures_util::stream::unfold(receive, |mut receive| async move {
        receive.recv().await.map(|message| (message, receive))
    });
    let mut answers =
        client.streaming(Request::new(outgoing), path("Bidi"), Raw).await?.into_inner();
    let mut got = Vec::new();
    let mut send = Some(send);
    while let Some(answer) = answers.message().await? {
        got.push(text(answer));
        match got.len() {
            5 => send = None,
            n => {
                let next = Bytes::from(format!("m{n}"));
                send.as_ref().expect("open").send(next).await.expect("the call is open");
            }
        }
    }
    drop(send);
    Ok(Value::from(got))
}

/// Runs every call of grpc_peer.py's client through `addr` with tonic; the same JSON
/// document.
pub async fn tonic_client(addr: SocketAddr) -> Value {
    let mut client = connect(addr).await;
    let client = &mut client;
    let unary_call = unary(client, "Unary", "hello").await.map(text);
    let server = server_stream(client).await;
    let uploaded = client_stream(client).await;
    let bidi = bidi_ping_pong(client).await;
    let missing = unary(client, "Missing", "x").await.map(text);
    json!({
        "unary": outcome(unary_call),
        "server_stream": outcome(server),
        "client_stream": outcome(uploaded),
        "bidi": outcome(bidi),
        "missing": outcome(missing),
    })
}

/// Opens a `Hold` call through `addr`, waits for its first answer, then drops it (tonic
/// resets the stream with CANCEL); returns when it dropped it, and the client, whose
/// connection stays open (so only the reset can end the call at the server).
pub async fn hold_and_cancel(addr: SocketAddr) -> (Instant, Client) {
    let mut client = connect(addr).await;
    client.ready().await.expect("ready");
    let call = Request::new(Bytes::from_static(b"h"));
    let mut answers =
        client.server_streaming(call, path("Hold"), Raw).await.expect("a head").into_inner();
    let first = answers.message().await.expect("an answer").expect("a message");
    assert_eq!(first, Bytes::from_static(b"held:h"));
    drop(answers);
    (Instant::now(), client)
}
