//! Watching the instance directory (inotify, through `notify`): every file created, rewritten,
//! renamed or deleted there, by the plugin or by anyone else, is read again (or found gone) at
//! once, and what changed is published as an instance event.
//!
//! The watcher's thread holds the plugin only weakly: it stops when the plugin's last clone is
//! dropped (dropping the watcher ends its thread).

use std::path::Path;
use std::sync::Weak;

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::Inner;

/// Starts watching `dir` for `inner`; `None` (logged) when the system will not, e.g. when the
/// user's inotify instances are used up. The plugin then works without events.
pub(crate) fn start(dir: &Path, inner: Weak<Inner>) -> Option<RecommendedWatcher> {
    let handler = move |res: notify::Result<notify::Event>| {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match res {
            Ok(event) if event.need_rescan() => {
                tracing::info!(dir = %inner.dir.display(), "missed file events; reading every instance file again");
                inner.resync(true);
            }
            Ok(event) if relevant(&event.kind) => {
                for path in &event.paths {
                    if let Some(name) = inner.name_in_dir(path) {
                        inner.look(name, true);
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(dir = %inner.dir.display(), error = %e, "file watcher error; reading every instance file again");
                inner.resync(true);
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the instance files: no instance events");
            return None;
        }
    };
    if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the instance files: no instance events");
        return None;
    }
    Some(watcher)
}

/// True for what can change an instance file: a file appearing (`creat`, a rename into the
/// directory), a writer closing it, a rename away, a deletion. Writes themselves are left for
/// their close, so a file being written is not read half-way; opens and attribute changes
/// change nothing.
fn relevant(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(
                RenameMode::From | RenameMode::To | RenameMode::Any
            ))
    )
}
