//! A group's shared state: the settings in force, the rollout state, the last pass's view, and
//! the signals between a supervisor's handle, its loop, its event follower and the executor.
//!
//! This is the only place the stored record `{"Spec", "Rollout"}` is built and written. Every
//! write of a managed group's record holds the settings in force, under one lock with the changes
//! of those settings (commits, operator commands, rollbacks), so a pass that began before a commit
//! never stores the spec the commit replaced.

use crate::listing::Watch;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use infrakit_spi::group::{Pause, RolloutAction};
use infrakit_spi::{Error, GroupSpec, Result};

use crate::context::Context;
use crate::rollout::{Pending, RolloutState};
use crate::settings::Settings;
use crate::view::{Snapshot, Stored};

/// The record stored for a group with `spec` and `rollout`: the only place it is built.
fn record(spec: &GroupSpec, rollout: &RolloutState) -> Value {
    json!({"Spec": spec, "Rollout": rollout})
}

/// The record stored for a group.
pub fn decode_record(value: &Value) -> Result<(GroupSpec, RolloutState)> {
    let spec = infrakit_spi::error::decode_at("Spec", &value["Spec"])?;
    let rollout = match value.get("Rollout") {
        Some(r) if !r.is_null() => infrakit_spi::error::decode_at("Rollout", r)?,
        _ => RolloutState::default(),
    };
    Ok((spec, rollout))
}

/// Saves the record of a group that is not managed yet (its first commit), if there is a store.
pub(crate) async fn save_new(
    ctx: &Context,
    settings: &Settings,
    rollout: &RolloutState,
) -> Result<()> {
    if let Some(store) = &ctx.store {
        store
            .put(&settings.id, &record(&settings.spec, rollout))
            .await
            .map_err(|e| Error::caused(format!("cannot save group {}", settings.id), e))?;
    }
    Ok(())
}

/// State shared by a supervisor's handle, its loop, its event follower and the executor.
pub(crate) struct GroupState {
    id: String,
    settings: watch::Sender<Arc<Settings>>,
    rollout: Mutex<RolloutState>,
    snapshot: RwLock<Stored>,
    wake: Notify,
    restart_clock: AtomicBool,
    /// Set when the stored record lists provisions that are no longer pending (they completed,
    /// showed up, or expired): saving is retried until it succeeds, or else a controller taking
    /// over would count them as still in flight and not replace those that died meanwhile.
    unsaved: AtomicBool,
    /// Serialises writes of the record with changes of the settings in force, so that every
    /// write holds the settings in force: a pass that started before a commit must not store
    /// the spec the commit replaced (a restart would then bring the old spec back).
    writes: tokio::sync::Mutex<()>,
    /// What the event follower knows of the instance plugin's events.
    pub(crate) watch: Watch,
    /// What the health follower hears of the flavor's health events.
    pub(crate) health: crate::pushed::HealthFeed,
    /// The instances the last pass observed, and when.
    observed: Mutex<Option<Observed>>,
    /// Tokens of the latest provisions the instance plugin said failed (not timeouts), so an
    /// instance that shows up carrying one is known to have been created anyway.
    failed_provisions: Mutex<std::collections::VecDeque<String>>,
}

/// The instances a pass observed, and when.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The group's instances as listed (or reused from the observed cache).
    pub instances: Arc<Vec<infrakit_spi::Description>>,
    /// When.
    pub at: tokio::time::Instant,
}

/// How many failed provisions' tokens a group remembers.
const FAILED_PROVISIONS_KEPT: usize = 1000;

impl GroupState {
    /// The state of a group starting with `settings` and `rollout`, and a receiver that sees
    /// every change of the settings in force.
    pub(crate) fn new(
        settings: Settings,
        rollout: RolloutState,
    ) -> (Arc<GroupState>, watch::Receiver<Arc<Settings>>) {
        let id = settings.id.clone();
        let (tx, rx) = watch::channel(Arc::new(settings));
        let state = GroupState {
            id,
            settings: tx,
            rollout: Mutex::new(rollout),
            snapshot: RwLock::new(Stored::default()),
            wake: Notify::new(),
            restart_clock: AtomicBool::new(false),
            unsaved: AtomicBool::new(false),
            writes: tokio::sync::Mutex::new(()),
            watch: Watch::default(),
            health: Default::default(),
            observed: Mutex::default(),
            failed_provisions: Mutex::default(),
        };
        (Arc::new(state), rx)
    }

    /// Remembers the tokens of provisions the plugin said failed.
    pub(crate) fn provisions_failed<'a>(&self, tokens: impl IntoIterator<Item = &'a str>) {
        let mut failed = self
            .failed_provisions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for token in tokens.into_iter().filter(|t| !t.is_empty()) {
            if failed.len() == FAILED_PROVISIONS_KEPT {
                failed.pop_front();
            }
            failed.push_back(token.to_string());
        }
    }

    /// How many of `listed` were created by provisions the plugin said failed.
    pub(crate) fn created_despite_failure(&self, listed: &[infrakit_spi::Description]) -> usize {
        let failed = self
            .failed_provisions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if failed.is_empty() {
            return 0;
        }
        let failed: std::collections::HashSet<&str> = failed.iter().map(String::as_str).collect();
        listed
            .iter()
            .filter_map(|d| d.tags.get(crate::rollout::TOKEN_TAG))
            .filter(|t| failed.contains(t))
            .count()
    }

    /// The rollout state, locked (changes are persisted separately).
    pub(crate) fn rollout(&self) -> MutexGuard<'_, RolloutState> {
        self.rollout.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The settings in force.
    pub(crate) fn settings(&self) -> Arc<Settings> {
        self.settings.borrow().clone()
    }

    /// Whether `settings` are still the ones in force (a pass may outlive them).
    pub(crate) fn is_current(&self, settings: &Arc<Settings>) -> bool {
        Arc::ptr_eq(&self.settings.borrow(), settings)
    }

    /// Persists the settings in force with the current rollout state.
    pub(crate) async fn persist(&self, ctx: &Context) -> Result<()> {
        let _writing = self.writes.lock().await;
        let settings = self.settings();
        self.write(ctx, &settings).await
    }

    /// Writes `settings` with the current rollout state. Callers hold `writes`.
    async fn write(&self, ctx: &Context, settings: &Settings) -> Result<()> {
        let Some(store) = &ctx.store else {
            return Ok(());
        };
        let unsaved = self.unsaved.swap(false, Ordering::SeqCst);
        let record = record(&settings.spec, &self.rollout());
        let saved = store.put(&self.id, &record).await;
        if saved.is_err() && unsaved {
            self.unsaved.store(true, Ordering::SeqCst);
        }
        saved.map_err(|e| Error::caused(format!("cannot save the state of group {}", self.id), e))
    }

    /// Changes the rollout state with `change` and stores it with `next` settings (or the ones in
    /// force), putting `next` in force, as one step no other write can come between; on a failed
    /// write the rollout state is put back and nothing changes.
    pub(crate) async fn change(
        &self,
        ctx: &Context,
        next: Option<Settings>,
        change: impl FnOnce(&mut RolloutState),
    ) -> Result<()> {
        let _writing = self.writes.lock().await;
        let before = self.rollout().clone();
        change(&mut self.rollout());
        let written = match &next {
            Some(settings) => self.write(ctx, settings).await,
            None => {
                let settings = self.settings();
                self.write(ctx, &settings).await
            }
        };
        if let Err(e) = written {
            *self.rollout() = before;
            return Err(e);
        }
        if let Some(settings) = next {
            self.settings.send_replace(Arc::new(settings));
        }
        Ok(())
    }

    /// Applies a pass's rollout transition, decided against `decided` settings, and stores it:
    /// nothing happens if a commit or an operator's command replaced those settings meanwhile
    /// (the next pass judges the new ones). A rollback (`next`, the settings it goes back to)
    /// changes nothing when it cannot be stored, like a commit. A completion or a pause stays in
    /// force here even when it cannot be stored (a failing store must not let a failed rollout
    /// go on); the record catches up with the next write. Returns whether it was applied.
    pub(crate) async fn transition(
        &self,
        ctx: &Context,
        decided: &Arc<Settings>,
        next: Option<Settings>,
        change: impl FnOnce(&mut RolloutState),
    ) -> Result<bool> {
        let _writing = self.writes.lock().await;
        if !self.is_current(decided) {
            return Ok(false);
        }
        let before = self.rollout().clone();
        change(&mut self.rollout());
        let written = self.write(ctx, next.as_ref().unwrap_or(decided)).await;
        match (written, next) {
            (Ok(()), Some(settings)) => {
                self.settings.send_replace(Arc::new(settings));
                Ok(true)
            }
            (Ok(()), None) => Ok(true),
            (Err(e), Some(_)) => {
                *self.rollout() = before;
                Err(e)
            }
            (Err(e), None) => Err(e),
        }
    }

    /// Pauses the rollout because of `pause` (a pass's finding, such as a failed drain); the
    /// pause stays in force even when it cannot be stored.
    pub(crate) async fn pause(&self, ctx: &Context, pause: Pause) -> Result<()> {
        self.rollout().paused = Some(pause);
        self.persist(ctx).await
    }

    /// Notes that the stored record lists provisions that are no longer pending.
    pub(crate) fn mark_unsaved(&self) {
        self.unsaved.store(true, Ordering::SeqCst);
    }

    /// Keeps the pending provisions still worth waiting for at `now_ms` (see
    /// [`RolloutState::retain_pending`]), marking the record unsaved when any was dropped;
    /// returns those left. `seen` (the tokens an observation listed) is gathered only when some
    /// are pending.
    pub(crate) fn retain_pending<S: std::borrow::Borrow<str> + Eq + std::hash::Hash>(
        &self,
        seen: impl FnOnce() -> std::collections::HashSet<S>,
        now_ms: u64,
    ) -> Vec<Pending> {
        let (pending, changed) = {
            let mut r = self.rollout();
            let changed = !r.pending.is_empty() && {
                let seen = seen();
                r.retain_pending(|token| seen.contains(token), now_ms)
            };
            (r.pending.clone(), changed)
        };
        if changed {
            self.mark_unsaved();
        }
        pending
    }

    /// Saves the record if it lists provisions that are no longer pending (a failure is retried
    /// on the next pass).
    pub(crate) async fn flush(&self, ctx: &Context) {
        if self.unsaved.load(Ordering::SeqCst) {
            if let Err(e) = self.persist(ctx).await {
                tracing::debug!(group = %self.id, error = %e, "cannot save the pending provisions; will retry");
            }
        }
    }

    /// Records provisions before they start: if that cannot be saved, they are forgotten again
    /// and the error returned (nothing may be provisioned).
    pub(crate) async fn begin_provisions(
        &self,
        ctx: &Context,
        pending: Vec<Pending>,
    ) -> Result<()> {
        let tokens: Vec<String> = pending.iter().map(|p| p.token.clone()).collect();
        self.rollout().pending.extend(pending);
        if let Err(e) = self.persist(ctx).await {
            let tokens: std::collections::HashSet<String> = tokens.into_iter().collect();
            self.rollout()
                .pending
                .retain(|p| !tokens.contains(&p.token));
            return Err(e);
        }
        Ok(())
    }

    /// Provisions with these tokens settled (they returned, or failed for sure): they are no
    /// longer pending, and with a store the record says so as soon as it can (a controller that
    /// takes over would otherwise count each one that has died since as still in flight, for up
    /// to `PENDING_GRACE`, and not replace it). A failed save is retried by later passes.
    pub(crate) async fn end_provisions(&self, ctx: &Context, settled: &[&str]) {
        let dropped = {
            let settled: std::collections::HashSet<&str> = settled.iter().copied().collect();
            let mut r = self.rollout();
            let before = r.pending.len();
            r.pending.retain(|p| !settled.contains(p.token.as_str()));
            r.pending.len() != before
        };
        if ctx.store.is_some() && dropped {
            self.mark_unsaved();
            if let Err(e) = self.persist(ctx).await {
                tracing::debug!(group = %self.id, error = %e, "cannot save the pending provisions; will retry");
            }
        }
    }

    /// Persists and puts in force new settings, and restarts the rollout's progress clock.
    pub(crate) async fn commit(&self, ctx: &Context, settings: Settings) -> Result<()> {
        let old = self.settings();
        self.change(ctx, Some(settings.clone()), |r| {
            r.on_commit(&old, &settings)
        })
        .await?;
        self.restart_clock.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// An operator's command: pauses, resumes or undoes the rollout.
    pub(crate) async fn operate(&self, ctx: &Context, action: RolloutAction) -> Result<()> {
        let settings = self.settings();
        let next = match action {
            RolloutAction::Undo => {
                let Some(previous) = self.rollout().previous.clone() else {
                    return Err(Error::plugin(format!(
                        "group {} has no previous configuration to go back to",
                        self.id
                    )));
                };
                Some(Settings::parse(&previous)?)
            }
            RolloutAction::Pause | RolloutAction::Resume => None,
        };
        let undo_to = next.clone();
        self.change(ctx, next, |r| match undo_to {
            Some(previous) => {
                r.on_commit(&settings, &previous);
                r.reason = "undone by an operator".into();
            }
            None if action == RolloutAction::Pause => r.paused = Some(Pause::Operator),
            None => {
                r.paused = None;
                r.partition_released = true;
            }
        })
        .await?;
        self.restart_clock.store(true, Ordering::SeqCst);
        if action != RolloutAction::Undo {
            self.wake();
        }
        Ok(())
    }

    /// True once after a commit or an operator's command: the progress clock starts again.
    pub(crate) fn take_restart_clock(&self) -> bool {
        self.restart_clock.swap(false, Ordering::SeqCst)
    }

    /// Asks the loop for a pass now.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves when a pass is asked for.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await
    }

    /// Remembers what a pass observed.
    pub(crate) fn observed(&self, instances: Arc<Vec<infrakit_spi::Description>>) {
        *self.observed.lock().unwrap_or_else(|p| p.into_inner()) = Some(Observed {
            instances,
            at: tokio::time::Instant::now(),
        });
    }

    /// The instances the last pass observed, and when.
    pub(crate) fn last_observed(&self) -> Option<Observed> {
        self.observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The last pass's view, as `DescribeGroup` reports it.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let stored = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        stored.snapshot(&self.settings())
    }

    /// Updates the last pass's view.
    pub(crate) fn record_pass(&self, update: impl FnOnce(&mut Stored)) {
        update(&mut self.snapshot.write().unwrap_or_else(|p| p.into_inner()));
    }
}
