//! Tags added by `Label`, kept beside the containers.
//!
//! Docker cannot change the labels of an existing container, so `Label` records the extra tags
//! per container ID (not name: a pet's name is reused by its replacement, which must not inherit
//! them) and `DescribeInstances` merges them over the container's labels. With a state directory
//! they live in `<state dir>/labels.json`, rewritten atomically on every change; without one
//! they are kept in memory and lost when the plugin stops.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use infrakit_spi::{Error, Result, Tags};

/// Name of the file holding the extra tags in the state directory.
pub const LABELS_FILE: &str = "labels.json";

/// Extra tags per container ID.
#[derive(Debug)]
pub(crate) struct LabelStore {
    file: Option<PathBuf>,
    map: Mutex<BTreeMap<String, Tags>>,
}

impl LabelStore {
    /// Opens the store in `dir` (created if missing), or an in-memory one without a directory.
    pub(crate) fn open(dir: Option<&Path>) -> Result<Self> {
        let Some(dir) = dir else {
            return Ok(LabelStore {
                file: None,
                map: Mutex::new(BTreeMap::new()),
            });
        };
        fs::create_dir_all(dir).map_err(|e| {
            Error::caused(
                format!("cannot create the state directory {}", dir.display()),
                e,
            )
        })?;
        let file = dir.join(LABELS_FILE);
        let map = match fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::caused(format!("{} is not valid", file.display()), e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(Error::caused(format!("cannot read {}", file.display()), e)),
        };
        Ok(LabelStore {
            file: Some(file),
            map: Mutex::new(map),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Tags>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of every container's extra tags.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, Tags> {
        self.lock().clone()
    }

    /// Merges `tags` into the extra tags of container `id`.
    pub(crate) fn merge(&self, id: &str, tags: &Tags) -> Result<()> {
        let mut map = self.lock();
        let mut next = map.clone();
        next.entry(id.to_string()).or_default().extend(tags);
        self.save(&next)?;
        *map = next;
        Ok(())
    }

    /// Forgets container `id`.
    pub(crate) fn remove(&self, id: &str) {
        let mut map = self.lock();
        if map.contains_key(id) {
            let mut next = map.clone();
            next.remove(id);
            match self.save(&next) {
                Ok(()) => *map = next,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot forget the labels of a removed container")
                }
            }
        }
    }

    /// Forgets every container not in `existing`.
    pub(crate) fn retain(&self, existing: &BTreeSet<String>) {
        let mut map = self.lock();
        if map.keys().any(|k| !existing.contains(k)) {
            let mut next = map.clone();
            next.retain(|k, _| existing.contains(k));
            match self.save(&next) {
                Ok(()) => *map = next,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot forget the labels of removed containers")
                }
            }
        }
    }

    fn save(&self, map: &BTreeMap<String, Tags>) -> Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let tmp = file.with_extension("json.tmp");
        let bytes =
            serde_json::to_vec_pretty(map).map_err(|e| Error::caused("cannot encode labels", e))?;
        fs::write(&tmp, bytes)
            .and_then(|()| fs::rename(&tmp, file))
            .map_err(|e| Error::caused(format!("cannot write {}", file.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_persist_and_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = LabelStore::open(Some(dir.path())).unwrap();
        store.merge("c1", &Tags::from([("a", "1")])).unwrap();
        store.merge("c1", &Tags::from([("b", "2")])).unwrap();
        store.merge("c2", &Tags::from([("a", "3")])).unwrap();
        let again = LabelStore::open(Some(dir.path())).unwrap();
        assert_eq!(again.snapshot()["c1"].len(), 2);
        again.remove("c1");
        again.retain(&BTreeSet::new());
        assert!(LabelStore::open(Some(dir.path()))
            .unwrap()
            .snapshot()
            .is_empty());
    }
}
