//! A fake Kubernetes API server for EndpointSlices that speaks the real protocol, so
//! weir's `kube` client runs against it unchanged:
//!
//! * LIST: `GET /apis/discovery.k8s.io/v1/namespaces/NS/endpointslices?labelSelector=..`
//!   answers an `EndpointSliceList` with `metadata.resourceVersion`.
//! * WATCH (`watch=true` or `watch=1`, `resourceVersion=N`): a chunked stream of JSON
//!   lines `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}` holding
//!   every change after N, then each new one, with a BOOKMARK at the head.
//! * 410 Gone: after [`KubeApi::expire`], open watches of the namespace get an `ERROR`
//!   event with a `Status` of code 410 (as a real API server says "too old resource
//!   version"), and so does any watch from an older resourceVersion.
//! * An outage ([`KubeApi::set_down`]): requests of the namespace are closed unanswered
//!   and open watches are cut.
//!
//! One server serves the whole test binary (`KUBECONFIG` is process-wide): each test uses
//! its own namespace, and holds [`KubeApi::shared`]'s answer while it runs; the
//! kubeconfig file is removed when no test does. Objects are shaped as real EndpointSlices (apiVersion, kind,
//! metadata with labels and resourceVersion, addressType, endpoints with conditions, zone
//! and targetRef, ports).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::process::{Held, SharedFile};
use super::MAX_HEAD;

/// How often an open watch looks for news (a test server: polling keeps it simple).
const WATCH_POLL: Duration = Duration::from_millis(10);
const LABEL: &str = "kubernetes.io/service-name";

#[derive(Default)]
struct State {
    /// The last resourceVersion handed out (one counter for every object, as etcd's).
    rv: u64,
    /// Current objects by (namespace, name).
    objects: BTreeMap<(String, String), Value>,
    /// Every change: resourceVersion, namespace, event type, object.
    history: Vec<(u64, String, &'static str, Value)>,
    /// Per namespace: watches from below this resourceVersion get 410 Gone.
    expired_below: HashMap<String, u64>,
    /// Per namespace: how many times it expired; a watch opened before the last expiry
    /// gets 410 Gone.
    epochs: HashMap<String, u64>,
    /// Namespaces in an outage.
    down: HashSet<String>,
    /// Raw lines for the next poll of a namespace's open watch (hostile tests).
    raw: HashMap<String, Vec<String>>,
    /// LIST and WATCH requests served, per namespace.
    lists: HashMap<String, u64>,
    watches: HashMap<String, u64>,
}

/// The shared fake API server.
pub struct KubeApi {
    state: Arc<Mutex<State>>,
    /// `KUBECONFIG`, on disk only while a test uses the server.
    kubeconfig: SharedFile,
}

/// A test's use of the [`KubeApi`] (it derefs to the server): the kubeconfig file exists
/// while one is held, and goes with the last.
pub struct KubeUse {
    api: &'static KubeApi,
    _file: Held<'static>,
}

impl Deref for KubeUse {
    type Target = KubeApi;

    fn deref(&self) -> &KubeApi {
        self.api
    }
}

impl KubeApi {
    /// The one server of this test binary, started on first use with `KUBECONFIG`
    /// pointing at it (plain HTTP, no credentials); hold the answer for the whole test.
    pub fn shared() -> KubeUse {
        static API: OnceLock<KubeApi> = OnceLock::new();
        let api = API.get_or_init(|| {
            let state = Arc::new(Mutex::new(State::default()));
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let served = Arc::clone(&state);
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                runtime.unwrap().block_on(async move {
                    serve(TcpListener::from_std(listener).unwrap(), served).await
                });
            });
            let kubeconfig = SharedFile::new("kubeconfig", kubeconfig(addr));
            std::env::set_var("KUBECONFIG", kubeconfig.path());
            KubeApi { state, kubeconfig }
        });
        KubeUse { api, _file: api.kubeconfig.hold() }
    }

    /// Creates or replaces slice `name` of `namespace` (an ADDED or MODIFIED event).
    pub fn put(&self, namespace: &str, name: &str, mut slice: Value) {
        let mut state = self.state.lock().unwrap();
        state.rv += 1;
        let rv = state.rv;
        slice["metadata"]["name"] = json!(name);
        slice["metadata"]["namespace"] = json!(namespace);
        slice["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = (namespace.to_string(), name.to_string());
        let kind = if state.objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
        state.objects.insert(key, slice.clone());
        state.history.push((rv, namespace.to_string(), kind, slice));
    }

    /// Deletes slice `name` of `namespace` (a DELETED event).
    pub fn delete(&self, namespace: &str, name: &str) {
        let mut state = self.state.lock().unwrap();
        let key = (namespace.to_string(), name.to_string());
        let Some(mut slice) = state.objects.remove(&key) else { return };
        state.rv += 1;
        let rv = state.rv;
        slice["metadata"]["resourceVersion"] = json!(rv.to_string());
        state.history.push((rv, namespace.to_string(), "DELETED", slice));
    }

    /// Compacts the namespace's history: open watches and watches from any earlier
    /// resourceVersion get 410 Gone.
    pub fn expire(&self, namespace: &str) {
        let mut state = self.state.lock().unwrap();
        let floor = state.rv;
        state.expired_below.insert(namespace.to_string(), floor);
        *state.epochs.entry(namespace.to_string()).or_default() += 1;
    }

    /// Starts or ends an outage of `namespace`.
    pub fn set_down(&self, namespace: &str, down: bool) {
        let mut state = self.state.lock().unwrap();
        if down {
            state.down.insert(namespace.to_string());
        } else {
            state.down.remove(namespace);
        }
    }

    /// Sends `line` as it is (malformed, say) as one event of `namespace`'s open watch.
    pub fn inject(&self, namespace: &str, line: &str) {
        let mut state = self.state.lock().unwrap();
        state.raw.entry(namespace.to_string()).or_default().push(line.to_string());
    }

    /// LIST requests served for `namespace`.
    pub fn lists(&self, namespace: &str) -> u64 {
        self.state.lock().unwrap().lists.get(namespace).copied().unwrap_or(0)
    }

    /// WATCH requests served for `namespace`.
    pub fn watches(&self, namespace: &str) -> u64 {
        self.state.lock().unwrap().watches.get(namespace).copied().unwrap_or(0)
    }
}

/// An EndpointSlice of Service `service` with one port (`http`, `port`) and the
/// endpoints `(ip, ready, serving, terminating)`, shaped as the API server writes them.
pub fn slice(service: &str, port: u16, endpoints: &[(&str, bool, bool, bool)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .enumerate()
        .map(|(i, (ip, ready, serving, terminating))| {
            json!({
                "addresses": [ip],
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
                "nodeName": "node-1",
                "zone": "zone-a",
                "targetRef": {"kind": "Pod", "namespace": "ns", "name": format!("{service}-{i}"),
                              "uid": format!("00000000-0000-0000-0000-{i:012}")},
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "",
            "generateName": format!("{service}-"),
            "labels": {LABEL: service, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": service,
                                 "uid": "11111111-1111-1111-1111-111111111111"}],
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    })
}

fn kubeconfig(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
         current-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
    )
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::spawn(connection(stream, Arc::clone(&state)));
    }
}

/// A request: namespace, whether it watches, its resourceVersion and the Service its
/// label selector names.
struct Request {
    namespace: String,
    watch: bool,
    rv: u64,
    service: Option<String>,
}

/// Serves requests on one connection until a watch or an error ends it.
async fn connection(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    loop {
        let Some(head) = read_head(&mut stream).await else { return };
        let Some(request) = parse(&head) else {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await;
            continue;
        };
        if state.lock().unwrap().down.contains(&request.namespace) {
            return; // An outage: closed unanswered.
        }
        if !request.watch {
            let body = list(&state, &request);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            if stream.write_all(head.as_bytes()).await.is_err()
                || stream.write_all(body.as_bytes()).await.is_err()
            {
                return;
            }
            continue;
        }
        return watch(stream, &state, request).await;
    }
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_HEAD || stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

fn parse(head: &str) -> Option<Request> {
    let target = head.lines().next()?.strip_prefix("GET ")?.split(' ').next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let rest = path.strip_prefix("/apis/discovery.k8s.io/v1/namespaces/")?;
    let namespace = rest.strip_suffix("/endpointslices")?.to_string();
    let mut request = Request { namespace, watch: false, rv: 0, service: None };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value);
        match key {
            "watch" => request.watch = value == "true" || value == "1",
            "resourceVersion" => request.rv = value.parse().unwrap_or(0),
            "labelSelector" => {
                request.service = value.strip_prefix(&format!("{LABEL}=")).map(str::to_string)
            }
            _ => {}
        }
    }
    Some(request)
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn selected(object: &Value, service: &Option<String>) -> bool {
    let label = object["metadata"]["labels"][LABEL].as_str();
    service.as_deref().is_none_or(|service| label == Some(service))
}

fn list(state: &Mutex<State>, request: &Request) -> String {
    let mut state = state.lock().unwrap();
    *state.lists.entry(request.namespace.clone()).or_default() += 1;
    let items: Vec<&Value> = state
        .objects
        .iter()
        .filter(|((namespace, _), object)| {
            *namespace == request.namespace && selected(object, &request.service)
        })
        .map(|(_, object)| object)
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSliceList",
        "metadata": {"resourceVersion": state.rv.to_string()},
        "items": items,
    })
    .to_string()
}

/// A chunk of the watch stream: one JSON line.
async fn send(stream: &mut TcpStream, event: Value) -> bool {
    send_line(stream, &event.to_string()).await
}

/// A chunk of the watch stream holding `line` as it is.
async fn send_line(stream: &mut TcpStream, line: &str) -> bool {
    let line = format!("{line}\n");
    let chunk = format!("{:x}\r\n{line}\r\n", line.len());
    stream.write_all(chunk.as_bytes()).await.is_ok()
}

fn gone(rv: u64) -> Value {
    json!({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: {rv}"), "reason": "Expired", "code": 410,
    }})
}

async fn watch(mut stream: TcpStream, state: &Mutex<State>, request: Request) {
    let namespace = request.namespace.clone();
    let epoch = {
        let mut state = state.lock().unwrap();
        *state.watches.entry(namespace.clone()).or_default() += 1;
        let floor = state.expired_below.get(&namespace).copied().unwrap_or(0);
        let epoch = state.epochs.get(&namespace).copied().unwrap_or(0);
        // A watch from before the last compaction is gone at once.
        if request.rv < floor {
            epoch.wrapping_sub(1)
        } else {
            epoch
        }
    };
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut seen = request.rv;
    let bookmark = |rv: u64| {
        json!({"type": "BOOKMARK", "object": {"kind": "EndpointSlice",
            "apiVersion": "discovery.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()}}})
    };
    let mut first = true;
    loop {
        let (events, now, expired, down, raw) = {
            let mut state = state.lock().unwrap();
            let raw = state.raw.remove(&namespace).unwrap_or_default();
            let expired = state.epochs.get(&namespace).copied().unwrap_or(0) != epoch;
            let events: Vec<(u64, Value)> = state
                .history
                .iter()
                .filter(|(rv, ns, _, object)| {
                    *rv > seen && *ns == namespace && selected(object, &request.service)
                })
                .map(|(rv, _, kind, object)| (*rv, json!({"type": kind, "object": object})))
                .collect();
            (events, state.rv, expired, state.down.contains(&namespace), raw)
        };
        for line in raw {
            if !send_line(&mut stream, &line).await {
                return;
            }
        }
        if down {
            return;
        }
        if expired {
            let _ = send(&mut stream, gone(seen)).await;
            let _ = stream.write_all(b"0\r\n\r\n").await;
            return;
        }
        for (rv, event) in events {
            if !send(&mut stream, event).await {
                return;
            }
            seen = rv;
        }
        if first {
            first = false;
            if !send(&mut stream, bookmark(now)).await {
                return;
            }
            seen = seen.max(now);
        }
        tokio::time::sleep(WATCH_POLL).await;
    }
}
