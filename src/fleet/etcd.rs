//! The `weir-fleet` thread: one etcd session at a time (list, then watch, with writes
//! between watch messages), the membership lease, and the applier.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc, Weak};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, Txn, TxnOp,
    TxnOpResponse, WatchOptions, WatchResponse,
};
use tokio::sync::mpsc::Receiver;
use tokio::time::{interval, timeout};

use super::objects::Entry;
use super::{Change, Fleet, Guard, Write, REVISION_KEY};
use crate::control::StoreError;
use crate::json::JsonWriter;

/// First wait before reconnecting to etcd; doubled on each failure up to [`MAX_BACKOFF`].
pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between reconnects: an etcd that returns is noticed within this, which
/// keeps "converges within 5 s after etcd returns" true with room to spare.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often the thread looks for the balancer's shutdown: a flag load.
pub(super) const SHUTDOWN_POLL: Duration = Duration::from_millis(100);
/// HTTP/2 keep-alive PINGs on the etcd connection: a member that died without closing
/// the connection (a host gone) is noticed within this plus the fleet `timeout`.
const KEEPALIVE: Duration = Duration::from_secs(5);
/// Most keys one list reads. Thousands of backends are a few thousand keys; past this
/// the prefix holds something else, and weir refuses rather than hold it all.
const MAX_KEYS: i64 = 100_000;

pub(super) type Result<T> = std::result::Result<T, String>;

/// Starts the thread. `first` gets the revision of the first list, or why it failed.
pub(super) fn spawn(
    fleet: Arc<Fleet>,
    queue: Receiver<Write>,
    first: mpsc::SyncSender<Result<i64>>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("weir-fleet".into()).spawn(move || {
        runtime.block_on(async move {
            tokio::spawn(super::tasks::applier(Arc::clone(&fleet)));
            let member = tokio::spawn(super::tasks::membership(Arc::clone(&fleet)));
            run(Arc::clone(&fleet), queue, first).await;
            // Let the membership task revoke its lease, so this instance leaves the fleet
            // list now rather than when the lease runs out.
            let _ = timeout(fleet.config.timeout, member).await;
        });
    })?;
    Ok(())
}

/// Whether the balancer is stopping (or gone): the thread's loops end.
pub(super) fn shutting_down(fleet: &Fleet) -> bool {
    if fleet.stopped.load(Relaxed) {
        return true;
    }
    match fleet.plane.get() {
        None => false,
        Some(weak) => match Weak::upgrade(weak) {
            Some(plane) => *plane.data().shutdown.borrow(),
            None => true,
        },
    }
}

/// Sessions until shutdown, with a growing wait between failed ones. While etcd is
/// down, queued writes are refused at once.
async fn run(fleet: Arc<Fleet>, mut queue: Receiver<Write>, first: mpsc::SyncSender<Result<i64>>) {
    let mut first = Some(first);
    let mut need_list = true;
    let mut backoff = MIN_BACKOFF;
    while !shutting_down(&fleet) {
        let Err(why) = session(&fleet, &mut queue, &mut need_list, &mut first).await else {
            return;
        };
        let was = std::mem::replace(&mut fleet.lock().connected, false);
        if was {
            tracing::error!("fleet: etcd unreachable ({why}); serving the last applied configuration, refusing API changes");
        }
        if let Some(first) = first.take() {
            let _ = first.send(Err(why));
        }
        // A session that got as far as watching starts the backoff over: only failures in
        // a row make the wait grow.
        backoff = if was { MIN_BACKOFF } else { (backoff * 2).min(MAX_BACKOFF) };
        let until = tokio::time::Instant::now() + backoff;
        while tokio::time::Instant::now() < until && !shutting_down(&fleet) {
            if let Ok(Some(write)) = timeout(SHUTDOWN_POLL, queue.recv()).await {
                let _ = write.reply.try_send(Err(StoreError::Unavailable("not connected".into())));
            }
        }
    }
}

pub(super) async fn connect(fleet: &Fleet) -> Result<Client> {
    let config = &fleet.config;
    let mut options = ConnectOptions::new()
        .with_timeout(config.timeout)
        .with_connect_timeout(config.timeout)
        .with_keep_alive(KEEPALIVE, config.timeout);
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        options = options.with_user(user.clone(), password.clone());
    }
    if let Some(tls) = tls_options(config)? {
        options = options.with_tls(tls);
    }
    let connecting = Client::connect(config.etcd.clone(), Some(options));
    match timeout(config.timeout, connecting).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

fn tls_options(config: &crate::config::FleetConfig) -> Result<Option<etcd_client::TlsOptions>> {
    if config.ca.is_none() && config.cert.is_none() {
        return Ok(None);
    }
    let read = |path: &str| std::fs::read(path).map_err(|e| format!("{path}: {e}"));
    let mut tls = etcd_client::TlsOptions::new();
    if let Some(ca) = &config.ca {
        tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&config.cert, &config.key) {
        tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(Some(tls))
}

/// One session: connect, list when needed, then watch from the revision held, serving
/// writes between watch messages. `Ok` only at shutdown.
async fn session(
    fleet: &Arc<Fleet>,
    queue: &mut Receiver<Write>,
    need_list: &mut bool,
    first: &mut Option<mpsc::SyncSender<Result<i64>>>,
) -> Result<()> {
    let mut client = connect(fleet).await?;
    if *need_list || first.is_some() {
        let revision = list(fleet, &mut client).await?;
        *need_list = false;
        if let Some(first) = first.take() {
            let _ = first.send(Ok(revision));
        }
    }
    let start = fleet.lock().seen + 1;
    let options =
        WatchOptions::new().with_prefix().with_start_revision(start).with_progress_notify();
    let watching = client.watch(fleet.config.prefix.clone(), Some(options));
    let mut stream = match timeout(fleet.config.timeout, watching).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(error.to_string()),
        Err(_) => return Err("watch timed out".into()),
    };
    if !std::mem::replace(&mut fleet.lock().connected, true) {
        tracing::info!(revision = start - 1, "fleet: watching etcd");
    }
    let mut tick = interval(SHUTDOWN_POLL);
    loop {
        tokio::select! {
            message = stream.message() => match message {
                Ok(Some(response)) => {
                    if !absorb(fleet, &response) {
                        *need_list = true;
                        return Err(format!("watch from revision {start} compacted or cancelled"));
                    }
                }
                Ok(None) => return Err("watch ended".into()),
                Err(error) => return Err(error.to_string()),
            },
            write = queue.recv() => match write {
                Some(write) => serve(fleet, &mut client, write).await?,
                None => return Ok(()),
            },
            _ = tick.tick() => if shutting_down(fleet) { return Ok(()) },
        }
    }
}

/// Reads the whole prefix and replaces the mirror with it. Returns its revision.
async fn list(fleet: &Fleet, client: &mut Client) -> Result<i64> {
    let options = GetOptions::new().with_prefix().with_limit(MAX_KEYS);
    let response =
        match timeout(fleet.config.timeout, client.get(fleet.config.prefix.clone(), Some(options)))
            .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => return Err("list timed out".into()),
        };
    if response.more() {
        return Err(format!("the prefix holds more than {MAX_KEYS} keys"));
    }
    let revision = response.header().map_or(0, |h| h.revision());
    let mut mirror = fleet.lock();
    mirror.objects.clear();
    mirror.members.clear();
    for kv in response.kvs() {
        put(fleet, &mut mirror, kv);
    }
    mirror.seen = revision;
    mirror.connected = true;
    mirror.from_cache = false;
    drop(mirror);
    fleet.counters.relists.fetch_add(1, Relaxed);
    fleet.wake.notify_one();
    Ok(revision)
}

/// Records one key as etcd holds it, unless the mirror has a newer version.
fn put(fleet: &Fleet, mirror: &mut super::Mirror, kv: &KeyValue) {
    let Ok(key) = kv.key_str() else { return };
    let Some(key) = key.strip_prefix(fleet.config.prefix.as_str()) else { return };
    let value = String::from_utf8_lossy(kv.value()).into_owned();
    if let Some(name) = key.strip_prefix("instances/") {
        mirror.members.insert(name.to_string(), value);
    } else if let Some(key) = key.strip_prefix("config/") {
        let entry = Entry { value, created: kv.create_revision(), modified: kv.mod_revision() };
        if mirror.objects.get(key).is_none_or(|old| old.modified < entry.modified) {
            mirror.objects.insert(key.to_string(), entry);
        }
    }
}

/// Applies one watch response to the mirror. `false` when the watch was compacted away or
/// cancelled: the prefix must be listed again.
fn absorb(fleet: &Fleet, response: &WatchResponse) -> bool {
    if response.compact_revision() > 0 || response.canceled() {
        return false;
    }
    let mut mirror = fleet.lock();
    let mut config_changed = false;
    for event in response.events() {
        let Some(kv) = event.kv() else { continue };
        mirror.seen = mirror.seen.max(kv.mod_revision());
        let Ok(key) = kv.key_str() else { continue };
        let Some(key) = key.strip_prefix(fleet.config.prefix.as_str()) else { continue };
        config_changed |= key.starts_with("config/");
        match event.event_type() {
            EventType::Put => put(fleet, &mut mirror, kv),
            EventType::Delete => remove(&mut mirror, key, kv.mod_revision()),
        }
    }
    if response.events().is_empty() && !response.created() {
        // A progress notification: every event up to its revision was delivered.
        mirror.seen = mirror.seen.max(response.header().map_or(0, |h| h.revision()));
    }
    drop(mirror);
    if config_changed {
        fleet.wake.notify_one();
    }
    true
}

fn remove(mirror: &mut super::Mirror, key: &str, revision: i64) {
    if let Some(name) = key.strip_prefix("instances/") {
        mirror.members.remove(name);
    } else if let Some(key) = key.strip_prefix("config/") {
        if mirror.objects.get(key).is_some_and(|old| old.modified < revision) {
            mirror.objects.remove(key);
        }
    }
}

/// Sends one write as a transaction: every changed object must still have the revision
/// this instance saw (0: absent), and then all changes and the revision key are written
/// at once; otherwise the objects are read back for the 409. A transport failure ends the
/// session (`Err`), after the caller is told.
async fn serve(fleet: &Fleet, client: &mut Client, write: Write) -> Result<()> {
    // A write that cannot get its full `timeout` before the caller gives up is not sent:
    // sent late, it could apply after the caller was told it did not.
    if Instant::now() + fleet.config.timeout > write.deadline {
        let _ = write.reply.try_send(Err(StoreError::Unavailable("queued too long".into())));
        return Ok(());
    }
    let txn = transaction(fleet, &write);
    let mut sent = timeout(fleet.config.timeout, client.txn(txn.clone())).await;
    if matches!(&sent, Ok(Err(error)) if auth_expired(error)) {
        // etcd-client does not renew its auth token by itself; an idle spell longer than
        // the token's TTL makes the next write fail this way, before anything applied.
        if client.refresh_token().await.is_ok() {
            sent = timeout(fleet.config.timeout, client.txn(txn)).await;
        }
    }
    let response = match sent {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            let _ = write.reply.try_send(Err(StoreError::Unknown(error.to_string())));
            return Err(error.to_string());
        }
        Err(_) => {
            let _ = write.reply.try_send(Err(StoreError::Unknown("write timed out".into())));
            return Err("write timed out".into());
        }
    };
    let revision = response.header().map_or(0, |h| h.revision());
    let answer = if response.succeeded() {
        record_write(fleet, &write.changes, revision);
        Ok(revision)
    } else {
        Err(conflict(fleet, &write.changes, &response.op_responses()))
    };
    let _ = write.reply.try_send(answer);
    Ok(())
}

/// The transaction of one write: every changed object and guard as the edit saw it,
/// then all changes and the revision key at once; otherwise read the changed objects back.
fn transaction(fleet: &Fleet, write: &Write) -> Txn {
    let key = |change: &Change| fleet.config_key(&change.key);
    let mut compares: Vec<Compare> = write
        .changes
        .iter()
        .map(|c| Compare::mod_revision(key(c), CompareOp::Equal, c.expected))
        .collect();
    for guard in &write.guards {
        compares.push(match guard {
            Guard::Key(name, version) => {
                Compare::mod_revision(fleet.config_key(name), CompareOp::Equal, *version)
            }
            Guard::Prefix(prefix, revision) => {
                Compare::mod_revision(fleet.config_key(prefix), CompareOp::Less, revision + 1)
                    .with_prefix()
            }
        });
    }
    let mut ops: Vec<TxnOp> = write
        .changes
        .iter()
        .map(|c| match &c.value {
            Some(value) => TxnOp::put(key(c), value.clone(), None),
            None => TxnOp::delete(key(c), None),
        })
        .collect();
    ops.push(TxnOp::put(fleet.config_key(REVISION_KEY), revision_value(&fleet.name), None));
    let reads: Vec<TxnOp> = write.changes.iter().map(|c| TxnOp::get(key(c), None)).collect();
    Txn::new().when(compares).and_then(ops).or_else(reads)
}

/// Whether etcd refused a request for an expired or unknown auth token.
fn auth_expired(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status) if status.message().contains("auth token"))
}

fn revision_value(name: &str) -> String {
    let mut json = JsonWriter::with_capacity(48);
    json.begin_object();
    json.key("by");
    json.string(name);
    json.end_object();
    json.finish()
}

/// Puts an accepted write in the mirror at once, so this instance's running
/// configuration has it when the API answers (the watch brings it again, and is skipped).
///
/// The revision key is left to the watch: the mirror's revision (`Mirror::config_revision`)
/// is what the applier records as applied, and it must mean every change up to it is in.
/// Another instance's write a revision below this one may still be on its way in the
/// watch; set here, the revision claimed it applied (the fleet list, the member key, the
/// cache file) while that write was missing, until the watch brought it.
fn record_write(fleet: &Fleet, changes: &[Change], revision: i64) {
    let mut mirror = fleet.lock();
    mirror.written = revision;
    for change in changes {
        match &change.value {
            Some(value) => {
                let created = mirror.objects.get(&change.key).map_or(revision, |e| e.created);
                let entry = Entry { value: value.clone(), created, modified: revision };
                mirror.objects.insert(change.key.clone(), entry);
            }
            None => drop(mirror.objects.remove(&change.key)),
        }
    }
}

/// The 409 for a write whose objects changed: their current values, also taken into
/// the mirror so that the next try compares with them.
fn conflict(fleet: &Fleet, changes: &[Change], reads: &[TxnOpResponse]) -> StoreError {
    let mut current = serde_json::Map::new();
    let mut mirror = fleet.lock();
    for (change, read) in changes.iter().zip(reads) {
        let TxnOpResponse::Get(read) = read else { continue };
        match read.kvs().first() {
            Some(kv) => {
                let value = String::from_utf8_lossy(kv.value()).into_owned();
                let parsed = serde_json::from_str(&value).unwrap_or(serde_json::Value::Null);
                current.insert(change.key.clone(), parsed);
                put(fleet, &mut mirror, kv);
            }
            None => {
                current.insert(change.key.clone(), serde_json::Value::Null);
                mirror.objects.remove(&change.key);
            }
        }
    }
    let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
    StoreError::Conflict {
        message: format!(
            "conflict: another change to {} was accepted first; nothing changed here, see `current`",
            keys.join(", ")
        ),
        current: serde_json::Value::Object(current).to_string(),
    }
}
