//! Changes through a fleet store ([`super::Store`]): an admin API edit is written to the
//! store before it is applied here, and changes other instances wrote are applied as they
//! arrive.

use std::sync::{Arc, MutexGuard};

use super::{Control, EditError, Plane, ReloadError, Store};
use crate::config::{validate, Config};
use crate::snapshot::Snapshot;

impl Plane {
    /// [`Plane::edit`] under a fleet store: the edited configuration is checked and built
    /// (then thrown away) so a change that cannot run here is refused before any instance
    /// sees it; then written to the store, which compares each object it changes with the
    /// version this instance saw; then the running configuration is derived again from
    /// the file and the store (other instances' changes included) and swapped in.
    pub(super) fn edit_shared<E>(
        &self,
        control: &MutexGuard<'_, Control>,
        store: &dyn Store,
        change: impl FnOnce(&mut Config) -> Result<Option<(String, String)>, E>,
    ) -> Result<Arc<Snapshot>, EditError<E>> {
        // The edit starts from the store's objects as one view, with their versions, not
        // from the running snapshot: a change another instance made that this one has seen
        // but not applied yet is then part of what the edit is based on, or the write
        // conflicts; it is never overwritten unseen.
        let view = store.view(&control.file).map_err(EditError::Store)?;
        let (config, remove_now) = super::plane::edited(&view.config, change)?;
        {
            let mut registry = self.registry.lock().map_err(|_| EditError::Poisoned)?;
            let saved = registry.clone();
            let trial = self.build(&mut registry, &config, false).map_err(EditError::Build);
            *registry = saved;
            drop(trial?);
        }
        // Not under the registry lock: the write waits on etcd, and the drain and DNS
        // threads need the registry meanwhile. The control lock keeps API changes and
        // fleet applies in order.
        store.write(&control.file, &view, &config).map_err(EditError::Store)?;
        let mut registry = self.registry.lock().map_err(|_| EditError::Poisoned)?;
        let saved = registry.clone();
        if let Some((pool, label)) = remove_now {
            registry.remove_now(&pool, &label);
        }
        let (running, notes) = store.apply(&control.file);
        for note in &notes {
            tracing::warn!("fleet: {note}");
        }
        match self.build(&mut registry, &Arc::new(running), false) {
            Ok(built) => Ok(self.swap(built, "configuration changed by the admin API (fleet)")),
            Err(error) => {
                *registry = saved;
                tracing::error!("fleet: the change was stored but cannot be built here: {error}");
                Err(EditError::Build(error))
            }
        }
    }

    /// Applies what the fleet store holds now: the running configuration is derived
    /// again from the file and the store, and swapped in if it differs. Returns the new
    /// generation, or `None` when nothing changed.
    pub fn store_changed(&self) -> Result<Option<u64>, ReloadError> {
        let control = self.control.lock().map_err(|_| ReloadError::Poisoned("control"))?;
        let Some(store) = control.store.clone() else { return Ok(None) };
        let (running, notes) = store.apply(&control.file);
        for note in &notes {
            tracing::warn!("fleet: {note}");
        }
        let mut registry = self.registry.lock().map_err(|_| ReloadError::Poisoned("registry"))?;
        // Loaded under the registry lock, so no other change slips in between.
        let current = self.data.snapshot.load_full();
        if *current.config == running {
            return Ok(None);
        }
        if let Err(error) = validate::check(&running) {
            return Err(ReloadError::Load(vec![error]));
        }
        let built = self.build(&mut registry, &Arc::new(running), false);
        let built = built.map_err(ReloadError::Build)?;
        Ok(Some(self.swap(built, "configuration changed by the fleet").generation))
    }

    /// The fleet store's state, when there is one. Without the control lock: an edit
    /// holds it while it waits on the store, and `/metrics` must not wait for that.
    pub fn store_status(&self) -> Option<super::StoreStatus> {
        self.store.as_ref().map(|store| store.status())
    }

    /// `GET /api/v1/fleet`, when there is a fleet store.
    pub fn store_members(&self) -> Option<String> {
        self.store.as_ref().map(|store| store.members_json())
    }
}
