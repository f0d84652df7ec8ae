//! A steady client load for the tests that change weir, its backends or its process under
//! traffic. Each [`Client`] loop sends its next request when the previous answer arrived
//! (a pause later), on a keep-alive connection or a fresh one each time, and records every
//! answer as a [`Sample`]. Nothing is retried: a failure is recorded, and the loop
//! reconnects for its next request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use super::{connect, roundtrip, Response};

/// Most requests one loop sends, so a test whose stop never comes still ends.
const MAX_REQUESTS: usize = 200_000;
/// Longest wait for one answer; a request still unanswered then is a failure.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two requests of one loop of [`Load::mixed`]: steady, not a flood on 2
/// cores.
const MIXED_PACE: Duration = Duration::from_millis(3);

/// What a client sends.
#[derive(Clone, Debug)]
pub enum Request {
    /// These bytes as they are: a whole request, body included.
    Raw(Arc<[u8]>),
    /// `GET path`.
    Get(String),
    /// `POST /echo-body` with this body, which the answer must carry back.
    Echo(String),
}

impl Request {
    /// The bytes to send; `close` adds `Connection: close` (not to [`Request::Raw`]).
    fn bytes(&self, close: bool) -> Vec<u8> {
        let connection = if close { "Connection: close\r\n" } else { "" };
        match self {
            Request::Raw(bytes) => bytes.to_vec(),
            Request::Get(path) => {
                format!("GET {path} HTTP/1.1\r\nHost: test\r\n{connection}\r\n").into_bytes()
            }
            Request::Echo(body) => format!(
                "POST /echo-body HTTP/1.1\r\nHost: test\r\n{connection}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        }
    }
}

/// One client loop: its name, its requests (the `n`th from `next(n)`), the pause after
/// each answer, and whether each request goes on a fresh connection.
pub struct Client {
    name: &'static str,
    pause: Duration,
    fresh: bool,
    next: Box<dyn Fn(usize) -> Request + Send + Sync>,
}

impl Client {
    /// A keep-alive client, reconnecting only after a failure or a `Connection: close`.
    pub fn new(
        name: &'static str,
        pause: Duration,
        next: impl Fn(usize) -> Request + Send + Sync + 'static,
    ) -> Client {
        Client { name, pause, fresh: false, next: Box::new(next) }
    }

    /// The same client sending each request with `Connection: close` on a new connection.
    pub fn fresh(self) -> Client {
        Client { fresh: true, ..self }
    }
}

/// One answer, or the failure to get one.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The client loop's name.
    pub client: &'static str,
    /// When it arrived.
    pub at: Instant,
    /// Its status, or 0 when the exchange failed at the socket.
    pub status: u16,
    /// Its `X-Backend`, if any.
    pub backend: Option<String>,
    /// Its body, when the status is not 200 or an echo came back wrong.
    pub text: String,
    /// What went wrong: no connection, a broken one, no answer in time, a wrong echo.
    pub error: Option<String>,
    /// Whether the answer said `Connection: close`.
    pub closed: bool,
}

impl Sample {
    /// A 200 with nothing wrong.
    pub fn ok(&self) -> bool {
        self.status == 200 && self.error.is_none()
    }

    fn failed(client: &'static str, error: String) -> Sample {
        let at = Instant::now();
        Sample {
            client,
            at,
            status: 0,
            backend: None,
            text: String::new(),
            error: Some(error),
            closed: false,
        }
    }

    fn answered(client: &'static str, response: &Response, echo: Option<&str>) -> Sample {
        let wrong_echo = echo.is_some_and(|body| response.body != body.as_bytes());
        let error = wrong_echo.then(|| "echo mismatch".to_string());
        let text =
            if response.status != 200 || wrong_echo { response.text() } else { String::new() };
        Sample {
            client,
            at: Instant::now(),
            status: response.status,
            backend: response.header("X-Backend").map(str::to_string),
            text,
            error,
            closed: response.has_connection_close(),
        }
    }
}

/// What the loops share.
#[derive(Default)]
struct State {
    stop: AtomicBool,
    /// Requests written (connected), all loops together.
    sent: AtomicUsize,
    /// Answers that were [`Sample::ok`].
    served: AtomicUsize,
    samples: Mutex<Vec<Sample>>,
}

/// Client loops running against one address until [`Load::finish`]; dropping it stops
/// them too.
pub struct Load {
    state: Arc<State>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` against `addr`.
    pub fn start(addr: SocketAddr, clients: impl IntoIterator<Item = Client>) -> Load {
        let state = Arc::new(State::default());
        let tasks =
            clients.into_iter().map(|c| tokio::spawn(run(addr, c, Arc::clone(&state)))).collect();
        Load { state, tasks }
    }

    /// `clients` keep-alive clients all sending `request`, `pause` after each answer.
    pub fn repeat(addr: SocketAddr, clients: usize, pause: Duration, request: Vec<u8>) -> Load {
        let request: Arc<[u8]> = request.into();
        let client = |_| {
            let request = Arc::clone(&request);
            Client::new("client", pause, move |_| Request::Raw(Arc::clone(&request)))
        };
        Load::start(addr, (0..clients).map(client))
    }

    /// One loop of each kind: fresh and keep-alive connections, GETs and echoed POSTs of
    /// varying length.
    pub fn mixed(addr: SocketAddr) -> Load {
        let get = |n| Request::Get(format!("/?n={n}"));
        let post = |n| Request::Echo(format!("payload number {n} {}", "x".repeat(n % 97)));
        let clients = [
            Client::new("fresh GET", MIXED_PACE, get).fresh(),
            Client::new("fresh POST", MIXED_PACE, post).fresh(),
            Client::new("keep-alive GET", MIXED_PACE, get),
            Client::new("keep-alive POST", MIXED_PACE, post),
        ];
        Load::start(addr, clients)
    }

    /// Every sample so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.state.samples.lock().unwrap().clone()
    }

    /// Answers so far that were [`Sample::ok`], all loops together.
    pub fn served(&self) -> usize {
        self.state.served.load(Ordering::SeqCst)
    }

    /// Stops the loops and waits for the requests in flight; returns the requests sent
    /// and every sample.
    pub async fn finish(mut self) -> (usize, Vec<Sample>) {
        self.state.stop.store(true, Ordering::SeqCst);
        for task in std::mem::take(&mut self.tasks) {
            // A loop ends within one answer timeout and one pause of the stop.
            if let Ok(joined) = timeout(ANSWER_TIMEOUT * 2, task).await {
                joined.expect("client loop");
            }
        }
        (self.state.sent.load(Ordering::SeqCst), self.samples())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

async fn run(addr: SocketAddr, client: Client, state: Arc<State>) {
    let mut kept: Option<TcpStream> = None;
    for n in 0..MAX_REQUESTS {
        if state.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match kept.take() {
            Some(stream) => Ok(stream),
            None => connect(addr).await,
        };
        let sample = match stream {
            Err(error) => Sample::failed(client.name, format!("request {n}: connect: {error}")),
            Ok(mut stream) => {
                let request = (client.next)(n);
                state.sent.fetch_add(1, Ordering::SeqCst);
                let sample = exchange(&mut stream, &client, &request, n).await;
                if sample.ok() && !sample.closed && !client.fresh {
                    kept = Some(stream);
                }
                sample
            }
        };
        if sample.ok() {
            state.served.fetch_add(1, Ordering::SeqCst);
        }
        state.samples.lock().unwrap().push(sample);
        sleep(client.pause).await;
    }
}

async fn exchange(stream: &mut TcpStream, client: &Client, request: &Request, n: usize) -> Sample {
    let bytes = request.bytes(client.fresh);
    let echo = match request {
        Request::Echo(body) => Some(body.as_str()),
        _ => None,
    };
    match timeout(ANSWER_TIMEOUT, roundtrip(stream, &bytes)).await {
        Ok(Ok(response)) => Sample::answered(client.name, &response, echo),
        Ok(Err(error)) => Sample::failed(client.name, format!("request {n}: {error}")),
        Err(_) => Sample::failed(client.name, format!("request {n}: no answer in time")),
    }
}
