//! The fleet thread's background tasks: the applier, which hands changes to the control
//! plane, and the membership lease.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use etcd_client::{Client, PutOptions};
use tokio::time::{interval, sleep, timeout};

use super::etcd::{connect, shutting_down, Result, MAX_BACKOFF, MIN_BACKOFF, SHUTDOWN_POLL};
use super::{cache, Fleet, MIN_APPLY_GAP};
use crate::json::JsonWriter;

/// Applies the mirror through the control plane whenever it changed, at most once per
/// [`MIN_APPLY_GAP`]; then records the applied revision, saves the cache file and tells
/// the membership task.
pub(super) async fn applier(fleet: Arc<Fleet>) {
    loop {
        fleet.wake.notified().await;
        let Some(weak) = fleet.plane.get() else { continue };
        let Some(plane) = weak.upgrade() else { return };
        let target = fleet.lock().config_revision();
        // On a blocking thread: the control lock may be held by an admin API change that
        // waits for this very thread to send its write, so waiting for the lock here
        // would stall both until the write's timeout.
        let applied = match tokio::task::spawn_blocking(move || plane.store_changed()).await {
            Ok(Ok(Some(_))) => {
                fleet.counters.applies.fetch_add(1, Relaxed);
                true
            }
            Ok(Ok(None)) => true,
            Ok(Err(error)) => {
                tracing::error!("fleet: changes not applied: {error}");
                false
            }
            Err(error) => {
                tracing::error!("fleet: applying changes panicked: {error}");
                false
            }
        };
        // A failed apply leaves the applied revision (and the cache) where they were, so
        // the fleet list shows this instance lagging.
        if applied {
            // The cache first: whoever reads the applied revision may stop this instance
            // and start it from the cache, which must then hold that revision.
            let objects = {
                let mirror = fleet.lock();
                (!mirror.from_cache).then(|| mirror.objects.clone())
            };
            if let (Some(path), Some(objects)) = (fleet.cache.clone(), objects) {
                let _ = tokio::task::spawn_blocking(move || cache::save(&path, &objects)).await;
            }
            let mut mirror = fleet.lock();
            mirror.applied = mirror.applied.max(target);
            drop(mirror);
            fleet.applied.notify_one();
        }
        sleep(MIN_APPLY_GAP).await;
    }
}

/// Keeps this instance listed under `{prefix}instances/` with a lease, and its applied
/// revision current there. A lost lease or connection starts over with a new lease.
pub(super) async fn membership(fleet: Arc<Fleet>) {
    let mut backoff = MIN_BACKOFF;
    while !shutting_down(&fleet) {
        match member_session(&fleet).await {
            Ok(()) => return,
            Err(why) => tracing::debug!("fleet: membership lease lost ({why})"),
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn member_session(fleet: &Fleet) -> Result<()> {
    let mut client = connect(fleet).await?;
    let ttl = i64::try_from(fleet.config.lease.as_secs()).unwrap_or(10);
    let lease = within(fleet, client.lease_grant(ttl, None)).await?.id();
    put_member(fleet, &mut client, lease).await?;
    let (mut keeper, mut answers) = within(fleet, client.lease_keep_alive(lease)).await?;
    let mut renew = interval(fleet.config.lease / 3);
    let mut tick = interval(SHUTDOWN_POLL);
    loop {
        tokio::select! {
            _ = renew.tick() => {
                within(fleet, keeper.keep_alive()).await?;
                let answer = within(fleet, answers.message()).await?;
                if answer.is_none_or(|a| a.ttl() <= 0) {
                    return Err("lease expired".into());
                }
            }
            () = fleet.applied.notified() => put_member(fleet, &mut client, lease).await?,
            _ = tick.tick() => if shutting_down(fleet) {
                let _ = timeout(fleet.config.timeout, client.lease_revoke(lease)).await;
                return Ok(());
            },
        }
    }
}

/// Runs one etcd call within the fleet `timeout`.
async fn within<T>(
    fleet: &Fleet,
    call: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    match timeout(fleet.config.timeout, call).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

async fn put_member(fleet: &Fleet, client: &mut Client, lease: i64) -> Result<()> {
    let revision = fleet.lock().applied;
    let mut json = JsonWriter::with_capacity(160);
    json.begin_object();
    json.key("name");
    json.string(&fleet.name);
    json.key("version");
    json.string(env!("CARGO_PKG_VERSION"));
    json.key("admin");
    json.opt_string(fleet.admin.map(|a| a.to_string()).as_deref());
    json.key("revision");
    json.u64(u64::try_from(revision).unwrap_or(0));
    json.end_object();
    let options = PutOptions::new().with_lease(lease);
    within(fleet, client.put(fleet.member_key(), json.finish(), Some(options))).await.map(drop)
}
