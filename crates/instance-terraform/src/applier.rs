//! The apply loop: one `terraform apply` at a time, each taking every change waiting for it.
//!
//! A change is submitted together with its file operation, both under the queue's lock, so the
//! loop never sees a file without its change (and never takes a new instance's file for an
//! orphan). The loop waits for work, lets a short window pass so that changes requested together
//! share an apply, takes the whole queue as its batch, removes orphaned files, applies, reads the
//! state, and judges each change ([`crate::batch::verdict`]). Failed changes are undone (a new
//! instance's file is removed, a label's previous file restored) and get Terraform's message;
//! changes that were not to blame go into the next apply. After a failed apply that nothing was
//! blamed for, the next one waits an exponential back-off. While an apply runs, `describe` reads
//! the state as it was before it (the state file is being rewritten); right after, the new state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use infrakit_spi::event::Event;
use infrakit_spi::{Error, Result, Tags};
use serde_json::Value;
use tokio::sync::{broadcast, oneshot, Notify, RwLock};
use tokio::time::Instant;

use crate::batch::{self, Backoff, Change, Outcome, Verdict};
use crate::files::Files;
use crate::options::TerraformOptions;
use crate::render;
use crate::state::State;
use crate::terraform::{fingerprint, ApplyRun, Fingerprint, Terraform};

/// Capacity of the event channel; slow subscribers lose the oldest events beyond this.
pub const EVENT_CAPACITY: usize = 1024;

/// Counters of the apply loop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// `terraform apply` runs so far.
    pub applies: u64,
    /// Of which failed.
    pub failed: u64,
    /// Changes in the last run.
    pub last_batch: usize,
    /// Errors of the last run, if it failed.
    pub last_error: Option<String>,
}

/// How to undo a change's file operation when the change fails.
#[derive(Debug, Clone)]
pub(crate) enum Undo {
    /// Remove the instance's file (a new instance).
    Remove,
    /// Put the previous content back (a label).
    Restore(Value),
    /// Nothing to undo (a destroy: the file stays removed and the next apply tries again).
    Nothing,
}

/// A change waiting for an apply.
#[derive(Debug)]
pub(crate) struct Request {
    id: String,
    change: Change,
    undo: Undo,
    attempts: u32,
    reply: oneshot::Sender<Result<()>>,
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    pending: Vec<Request>,
    /// Instances whose changes failed and whose leftovers are being destroyed: not reported.
    pub(crate) hidden: BTreeSet<String>,
    /// Instances whose files are tombstones (being destroyed): never orphans.
    pub(crate) tombstones: BTreeSet<String>,
    /// An apply is needed although no change waits (to destroy what failed changes left).
    cleanup: bool,
    /// No apply before this (back-off after failures).
    retry_at: Option<Instant>,
}

#[derive(Debug)]
struct Cached {
    fingerprint: Option<Fingerprint>,
    state: Arc<State>,
}

/// What the plugin's handles and its apply loop share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) options: TerraformOptions,
    pub(crate) tf: Terraform,
    pub(crate) files: Files,
    pub(crate) queue: Mutex<Queue>,
    wake: Notify,
    /// Held for writing by an apply, for reading by `show`.
    tf_lock: RwLock<()>,
    cache: Mutex<Option<Cached>>,
    stats: Mutex<ApplyStats>,
    pub(crate) events: broadcast::Sender<Event>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new(options: TerraformOptions, tf: Terraform, files: Files) -> Self {
        Shared {
            options,
            tf,
            files,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            tf_lock: RwLock::new(()),
            cache: Mutex::new(None),
            stats: Mutex::new(ApplyStats::default()),
            events: broadcast::channel(EVENT_CAPACITY).0,
        }
    }

    /// Picks up the tombstones of destroys that a previous run of the plugin did not finish,
    /// so that the next apply (right away) finishes them.
    pub(crate) fn resume_tombstones(&self) -> Result<()> {
        let mut q = lock(&self.queue);
        for id in self.files.list()? {
            if let Some(f) = self.files.read(&id)? {
                if f.get("resource").is_none() {
                    tracing::info!(instance = %id, "finishing an earlier destroy");
                    q.tombstones.insert(id);
                    q.cleanup = true;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn stats(&self) -> ApplyStats {
        lock(&self.stats).clone()
    }

    /// Runs `write` (a file operation) and queues its change, atomically with respect to the
    /// apply loop and to other changes; then waits for the change's apply. `write` returns the
    /// instance ID and how to undo the operation if the change fails.
    pub(crate) async fn submit(
        &self,
        change: Change,
        write: impl FnOnce(&mut Queue) -> Result<(String, Undo)>,
    ) -> Result<String> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut q = lock(&self.queue);
            let (id, undo) = write(&mut q)?;
            q.hidden.remove(&id);
            q.pending.push(Request {
                id: id.clone(),
                change,
                undo,
                attempts: 0,
                reply: tx,
            });
            id
        };
        self.wake.notify_one();
        match rx.await {
            Ok(Ok(())) => Ok(id),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::plugin(format!(
                "the terraform plugin stopped before instance {id} was applied"
            ))),
        }
    }

    /// The current state, for reading: from the cache while the state file is unchanged or
    /// while an apply runs, else from `terraform show`.
    pub(crate) async fn state(&self) -> Result<Arc<State>> {
        if let Ok(_read) = self.tf_lock.try_read() {
            return self.show_cached().await;
        }
        // An apply runs: the state file may be half-written; the last state is the truth until
        // it ends.
        if let Some(c) = lock(&self.cache).as_ref() {
            return Ok(c.state.clone());
        }
        let _read = self.tf_lock.read().await;
        self.show_cached().await
    }

    /// `terraform show`, unless the state file is unchanged since the cached one. The caller
    /// holds `tf_lock`.
    async fn show_cached(&self) -> Result<Arc<State>> {
        let fp = fingerprint(&self.tf.state_file());
        if let Some(c) = lock(&self.cache).as_ref() {
            if fp.is_some() && c.fingerprint == fp {
                return Ok(c.state.clone());
            }
        }
        let state = Arc::new(self.tf.show().await?);
        self.publish(fp, state.clone());
        Ok(state)
    }

    fn invalidate(&self) {
        *lock(&self.cache) = None;
    }

    /// Makes `state`, read when the state file had fingerprint `fp`, the current one.
    fn publish(&self, fp: Option<Fingerprint>, state: Arc<State>) {
        *lock(&self.cache) = Some(Cached {
            fingerprint: fp,
            state,
        });
    }
}

/// The apply loop. Runs until aborted.
pub(crate) async fn run(shared: Arc<Shared>) {
    let opts = shared.options.clone();
    let mut failures = Failures {
        backoff: Backoff::new(opts.retry_backoff, opts.max_backoff),
        in_a_row: 0,
    };
    loop {
        wait_for_work(&shared).await;
        // Let changes requested together arrive.
        tokio::time::sleep(opts.batch_window).await;

        let guard = shared.tf_lock.write().await;
        let (batch, files, tombstones) = take_batch(&shared);
        let in_batch: BTreeSet<String> = batch.iter().map(|r| r.id.clone()).collect();
        remove_orphans(&shared, &files, &tombstones, &in_batch).await;
        let applied = apply(&shared, batch.len()).await;
        let ids: Vec<&str> = in_batch
            .iter()
            .chain(files.iter())
            .map(String::as_str)
            .collect();
        let blamed = batch::blame(&applied.run.diagnostics, &ids);
        let errors = applied.errors();
        record(&shared, &applied, batch.len(), &errors);

        let empty = BTreeMap::new();
        let unknown = State::default();
        // Without the state nothing can be judged: every change waits for the next apply.
        let judged = applied.after.as_deref().ok();
        let outcome = Outcome {
            applied: applied.run.success && judged.is_some(),
            state: judged.unwrap_or(&unknown),
            blamed: if judged.is_some() { &blamed } else { &empty },
            errors: &errors,
            max_attempts: opts.max_attempts,
        };
        let (undid, replies) = settle(&shared, batch, &outcome, judged.is_none());
        let ok = applied.run.success && judged.is_some();
        {
            let mut q = lock(&shared.queue);
            if let Some(after) = judged {
                forget_gone(&shared, &mut q, after);
            }
            let back_off = blamed.is_empty() || judged.is_none();
            failures.schedule(&mut q, &opts, ok, back_off, undid, &errors);
        }
        // The new state becomes visible (with failed instances hidden) before anyone hears
        // back, so a caller never describes a state older than its change.
        match applied.after {
            Ok(state) => shared.publish(applied.fp, state),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the state after applying");
                shared.invalidate();
            }
        }
        drop(guard);
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
    }
}

/// Waits until there is work (changes, or an apply to clean up after failed ones) and the
/// back-off after failed applies, if any, has passed.
async fn wait_for_work(shared: &Shared) {
    loop {
        let notified = shared.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (work, at) = {
            let q = lock(&shared.queue);
            (!q.pending.is_empty() || q.cleanup, q.retry_at)
        };
        if work {
            if let Some(at) = at {
                tokio::time::sleep_until(at).await;
            }
            return;
        }
        notified.await;
    }
}

/// Takes every waiting change as the batch, with the instance files and the tombstones as they
/// are at that moment.
fn take_batch(shared: &Shared) -> (Vec<Request>, BTreeSet<String>, BTreeSet<String>) {
    let (batch, files, tombstones) = {
        let mut q = lock(&shared.queue);
        q.retry_at = None;
        q.cleanup = false;
        let files = shared.files.list();
        (std::mem::take(&mut q.pending), files, q.tombstones.clone())
    };
    let files = files.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot list instance files");
        BTreeSet::new()
    });
    (batch, files, tombstones)
}

/// Removes the files of instances that are not in the state, not in the batch and not being
/// destroyed ([`batch::orphans`]): the apply would bring them back.
async fn remove_orphans(
    shared: &Shared,
    files: &BTreeSet<String>,
    tombstones: &BTreeSet<String>,
    in_batch: &BTreeSet<String>,
) {
    match shared.show_cached().await {
        Ok(before) => {
            let candidates: BTreeSet<String> = files.difference(tombstones).cloned().collect();
            for id in batch::orphans(&candidates, in_batch, &before) {
                tracing::info!(plugin = %shared.options.name, instance = %id, "removing the file of an instance that is not in Terraform's state");
                if let Err(e) = shared.files.remove(&id) {
                    tracing::warn!(instance = %id, error = %e, "cannot remove an orphaned file");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the state before applying"),
    }
}

/// One `terraform apply` and the state after it.
struct Applied {
    run: ApplyRun,
    /// The state file's fingerprint after the apply.
    fp: Option<Fingerprint>,
    after: Result<Arc<State>>,
    started: std::time::Instant,
}

impl Applied {
    /// What went wrong: Terraform's errors, and a failure to read the state after it.
    fn errors(&self) -> String {
        let errors = batch::summary(&self.run.diagnostics, &self.run.tail);
        match &self.after {
            Err(e) => format!("{errors}; then: {e}"),
            Ok(_) => errors,
        }
    }
}

/// Runs `terraform apply` for a batch of `changes` changes (a failure to run it is a failed
/// apply), then reads the state.
async fn apply(shared: &Shared, changes: usize) -> Applied {
    tracing::info!(plugin = %shared.options.name, changes, "terraform apply");
    let started = std::time::Instant::now();
    let run = shared
        .tf
        .apply(shared.options.apply_timeout)
        .await
        .unwrap_or_else(|e| ApplyRun {
            success: false,
            diagnostics: Vec::new(),
            tail: e.to_string(),
        });
    let fp = fingerprint(&shared.tf.state_file());
    let after = shared.tf.show().await.map(Arc::new);
    Applied {
        run,
        fp,
        after,
        started,
    }
}

/// Counts the apply of `changes` changes in the stats and logs how it went.
fn record(shared: &Shared, applied: &Applied, changes: usize, errors: &str) {
    let success = applied.run.success;
    {
        let mut s = lock(&shared.stats);
        s.applies += 1;
        s.last_batch = changes;
        if success {
            s.last_error = None;
        } else {
            s.failed += 1;
            s.last_error = Some(errors.to_string());
        }
    }
    let name = &shared.options.name;
    if success {
        tracing::info!(plugin = %name, changes, took = ?applied.started.elapsed(), "terraform apply succeeded");
    } else {
        tracing::warn!(plugin = %name, changes, error = %errors, "terraform apply failed");
    }
}

/// Forgets, now that they are out of the state `after`, the failed instances hidden until their
/// leftovers were destroyed, and the tombstones of destroyed instances (removing their files).
fn forget_gone(shared: &Shared, q: &mut Queue, after: &State) {
    q.hidden.retain(|id| after.holds_anything_of(id));
    let gone: Vec<String> = q
        .tombstones
        .iter()
        .filter(|id| !after.holds_anything_of(id))
        .cloned()
        .collect();
    for id in gone {
        // Destroyed: the tombstone has done its job.
        if let Err(e) = shared.files.remove(&id) {
            tracing::warn!(instance = %id, error = %e, "cannot remove a tombstone");
        }
        q.tombstones.remove(&id);
    }
}

/// The apply loop's memory of failed applies.
struct Failures {
    backoff: Backoff,
    /// Failed applies since the last that succeeded.
    in_a_row: u32,
}

impl Failures {
    /// Decides, after an apply, whether another follows and when. After a success: one to clean
    /// up if failed changes were undone (`undid`). After a failure: one after the back-off (when
    /// `back_off`: nothing was to blame, or the state is unknown), unless applies have failed
    /// `max_attempts` times in a row and no change waits.
    fn schedule(
        &mut self,
        q: &mut Queue,
        opts: &TerraformOptions,
        ok: bool,
        back_off: bool,
        undid: bool,
        errors: &str,
    ) {
        if ok {
            self.backoff.reset();
            self.in_a_row = 0;
            q.cleanup |= undid;
            return;
        }
        self.in_a_row += 1;
        if back_off {
            q.retry_at = Some(Instant::now() + self.backoff.next_delay());
        }
        if self.in_a_row < opts.max_attempts || !q.pending.is_empty() {
            q.cleanup = true;
        } else {
            tracing::error!(plugin = %opts.name, failures = self.in_a_row, error = %errors,
                "terraform apply keeps failing; not applying again until the next change");
            q.cleanup = false;
        }
    }
}

/// An answer to send to a change's caller.
type Reply = (oneshot::Sender<Result<()>>, Result<()>);

/// Judges every change of a batch, undoes what failed and requeues what is retried. With
/// `skip_state` (the state could not be read) nothing is judged: everything is retried, or fails
/// when out of attempts. Returns whether a failed change was undone (an apply must follow) and
/// the answers for the callers of the changes that are over.
fn settle(
    shared: &Shared,
    batch: Vec<Request>,
    outcome: &Outcome<'_>,
    skip_state: bool,
) -> (bool, Vec<Reply>) {
    let mut undid = false;
    let mut replies = Vec::new();
    let mut retry = Vec::new();
    for mut req in batch {
        req.attempts += 1;
        let verdict = if skip_state {
            if req.attempts >= outcome.max_attempts {
                Verdict::Failed(format!(
                    "terraform apply failed {} time(s): {}",
                    req.attempts, outcome.errors
                ))
            } else {
                Verdict::Retry
            }
        } else {
            batch::verdict(&req.change, &req.id, req.attempts, outcome)
        };
        match verdict {
            Verdict::Done => {
                if req.change == Change::Adopt {
                    // The import or move is done: the blocks are no longer needed.
                    match shared.files.read(&req.id) {
                        Ok(Some(f)) => {
                            if let Err(e) =
                                shared.files.write(&req.id, &render::without_adoption(&f))
                            {
                                tracing::warn!(instance = %req.id, error = %e, "cannot rewrite the file of an imported instance");
                            }
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(instance = %req.id, error = %e, "cannot read"),
                    }
                }
                replies.push((req.reply, Ok(())));
            }
            Verdict::Failed(message) => {
                tracing::warn!(instance = %req.id, change = req.change.verb(), error = %message, "change failed");
                match &req.undo {
                    Undo::Remove => {
                        let _q = lock(&shared.queue);
                        if let Err(e) = shared.files.remove(&req.id) {
                            tracing::warn!(instance = %req.id, error = %e, "cannot remove the file of a failed instance");
                        }
                        undid = true;
                    }
                    Undo::Restore(previous) => {
                        let _q = lock(&shared.queue);
                        // Unless the instance is being destroyed meanwhile (a tombstone).
                        let live = matches!(shared.files.read(&req.id), Ok(Some(f)) if f.get("resource").is_some());
                        if live {
                            if let Err(e) = shared.files.write(&req.id, previous) {
                                tracing::warn!(instance = %req.id, error = %e, "cannot restore the file of an instance");
                            }
                            undid = true;
                        }
                    }
                    Undo::Nothing => {}
                }
                if matches!(req.undo, Undo::Remove) && outcome.state.holds_anything_of(&req.id) {
                    lock(&shared.queue).hidden.insert(req.id.clone());
                }
                let error = Error::plugin(format!(
                    "terraform could not {} instance {}: {message}",
                    req.change.verb(),
                    req.id
                ));
                replies.push((req.reply, Err(error)));
            }
            Verdict::Retry => retry.push(req),
        }
    }
    if !retry.is_empty() {
        let mut q = lock(&shared.queue);
        // The retried go first, in their order.
        retry.append(&mut q.pending);
        q.pending = retry;
    }
    (undid, replies)
}

/// The reported instances of `state` (failed ones hidden) with their tags.
fn reported(shared: &Shared, state: &State) -> BTreeMap<String, Tags> {
    let hidden = lock(&shared.queue).hidden.clone();
    state
        .instances()
        .into_iter()
        .filter(|f| !hidden.contains(&f.record.id))
        .map(|f| (f.record.id, f.record.tags))
        .collect()
}

/// Events for what changed between two views: `destroyed` for instances that left the state,
/// `created` for those that appeared. Pure.
pub(crate) fn changes(
    before: &BTreeMap<String, Tags>,
    after: &BTreeMap<String, Tags>,
) -> Vec<Event> {
    let event = |kind: &str, id: &str, tags: &Tags, message: &str| {
        Event::instance(kind, id, message, serde_json::json!({ "Tags": tags }))
    };
    let mut out: Vec<Event> = before
        .iter()
        .filter(|(id, _)| !after.contains_key(*id))
        .map(|(id, tags)| event("destroyed", id, tags, "no longer in Terraform's state"))
        .collect();
    out.extend(
        after
            .iter()
            .filter(|(id, _)| !before.contains_key(*id))
            .map(|(id, tags)| event("created", id, tags, "now in Terraform's state")),
    );
    out
}

/// Watches the state (a `stat` of the state file each `interval`, `terraform show` when it
/// changed) and publishes what appears in it and what leaves it, also through changes made
/// outside the plugin (`terraform state rm`, `terraform destroy -target`). Runs until aborted.
pub(crate) async fn watch(shared: Arc<Shared>, interval: Duration) {
    let mut known: Option<BTreeMap<String, Tags>> = None;
    loop {
        match shared.state().await {
            Ok(state) => {
                let now = reported(&shared, &state);
                if let Some(before) = &known {
                    for e in changes(before, &now) {
                        tracing::debug!(instance = %e.id, kind = %e.kind, "instance event");
                        // No subscriber is not an error.
                        let _ = shared.events.send(e);
                    }
                }
                known = Some(now);
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the state to watch it"),
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_destroyed_and_created_events_with_tags() {
        let tags: Tags = [("infrakit.group".to_string(), "web".to_string())].into();
        let before: BTreeMap<String, Tags> = [
            ("a".to_string(), tags.clone()),
            ("b".to_string(), tags.clone()),
        ]
        .into();
        let after: BTreeMap<String, Tags> = [
            ("b".to_string(), tags.clone()),
            ("c".to_string(), tags.clone()),
        ]
        .into();
        let events = changes(&before, &after);
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[0].topic.as_str(), events[0].id.as_str()),
            ("/instance/destroyed", "a")
        );
        assert_eq!(events[0].data["Tags"]["infrakit.group"], "web");
        assert_eq!(
            (events[1].topic.as_str(), events[1].id.as_str()),
            ("/instance/created", "c")
        );
        assert!(changes(&after, &after).is_empty());
    }
}
