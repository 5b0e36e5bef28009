//! Watching the instance directory (inotify, through `notify`): every file created, rewritten,
//! renamed or deleted there, by the plugin or by anyone else, is read again (or found gone) at
//! once, and what changed is published as an instance event.
//!
//! The plugin's handler holds the plugin only weakly: the watcher stops when the plugin's last
//! clone is dropped (dropping the watcher ends its thread).

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// What the watcher saw.
#[derive(Debug)]
pub(crate) enum Change {
    /// This path was created, rewritten, renamed or deleted.
    Path(PathBuf),
    /// Events were missed (or the watcher failed): everything must be read again.
    Rescan,
}

/// Starts watching `dir`, calling `on_change` for every change; `None` (logged) when the system
/// will not, e.g. when the user's inotify instances are used up. The plugin then works without
/// events.
pub(crate) fn start(
    dir: &Path,
    on_change: impl Fn(Change) + Send + 'static,
) -> Option<RecommendedWatcher> {
    let shown = dir.display().to_string();
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(event) if event.need_rescan() => {
            tracing::info!(dir = %shown, "missed file events; reading every instance file again");
            on_change(Change::Rescan);
        }
        Ok(event) if relevant(&event.kind) => {
            for path in event.paths {
                on_change(Change::Path(path));
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(dir = %shown, error = %e, "file watcher error; reading every instance file again");
            on_change(Change::Rescan);
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
