//! Durable records for controller state: a group's committed spec and its rollout progress.
//!
//! A [`Store`] maps keys (group IDs) to JSON records. [`FileStore`] keeps one file per key and
//! replaces it atomically (write a temporary file, fsync, rename, fsync the directory), so a crash
//! at any point leaves either the old or the new record, never a torn one. [`MemoryStore`] is for
//! tests.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

/// What can go wrong with a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key cannot be stored (empty, or containing `/`).
    #[error("invalid store key '{0}'")]
    InvalidKey(String),
    /// Reading or writing failed.
    #[error("store {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A record is not valid JSON.
    #[error("store record {path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Durable key/value records.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Every record, by key.
    async fn load(&self) -> Result<BTreeMap<String, Value>>;
    /// Creates or replaces a record.
    async fn put(&self, key: &str, value: &Value) -> Result<()>;
    /// Removes a record (absent is fine).
    async fn delete(&self, key: &str) -> Result<()>;
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.contains('/') || key.contains('\0') || key.starts_with('.') {
        return Err(StoreError::InvalidKey(key.to_string()));
    }
    Ok(())
}

/// One JSON file per key in a directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// A store in `dir` (created, mode 0700, on first write).
    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn write_atomic(&self, key: &str, bytes: &[u8]) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(Self::io(&self.dir))?;
        let target = self.path(key);
        let tmp = self.dir.join(format!(".{key}.json.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(Self::io(&tmp))?;
        f.write_all(bytes).map_err(Self::io(&tmp))?;
        f.sync_all().map_err(Self::io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &target).map_err(Self::io(&target))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(Self::io(&self.dir))
    }
}

#[async_trait]
impl Store for FileStore {
    async fn load(&self) -> Result<BTreeMap<String, Value>> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = BTreeMap::new();
            let entries = match std::fs::read_dir(&store.dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(Self::io(&store.dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(Self::io(&store.dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(key) = name.strip_suffix(".json").filter(|k| !k.starts_with('.')) else {
                    continue;
                };
                let path = entry.path();
                let bytes = std::fs::read(&path).map_err(Self::io(&path))?;
                let value =
                    serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                        path: path.clone(),
                        source,
                    })?;
                out.insert(key.to_string(), value);
            }
            Ok(out)
        })
        .await
        .expect("store load does not panic")
    }

    async fn put(&self, key: &str, value: &Value) -> Result<()> {
        check_key(key)?;
        let bytes = serde_json::to_vec_pretty(value).expect("JSON values serialise");
        let store = self.clone();
        let key = key.to_string();
        tokio::task::spawn_blocking(move || store.write_atomic(&key, &bytes))
            .await
            .expect("store write does not panic")
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let path = self.path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::io(&path)(e)),
        }
    }
}

/// Records in memory (tests; nothing survives the process).
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<BTreeMap<String, Value>>,
}

#[async_trait]
impl Store for MemoryStore {
    async fn load(&self) -> Result<BTreeMap<String, Value>> {
        Ok(self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }

    async fn put(&self, key: &str, value: &Value) -> Result<()> {
        check_key(key)?;
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), value.clone());
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn file_store_round_trips_and_replaces_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path().join("groups"));
        assert!(store.load().await.unwrap().is_empty());
        store.put("web", &json!({"v": 1})).await.unwrap();
        store.put("web", &json!({"v": 2})).await.unwrap();
        store.put("db", &json!({"v": 3})).await.unwrap();
        // A temporary file left by a crash mid-write is ignored.
        std::fs::write(store.dir().join(".web.json.tmp"), "{\"v\": 9").unwrap();
        let all = store.load().await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["web"], json!({"v": 2}));
        store.delete("web").await.unwrap();
        store.delete("web").await.unwrap();
        assert_eq!(
            store.load().await.unwrap().keys().collect::<Vec<_>>(),
            vec!["db"]
        );
        assert!(matches!(
            store.put("a/b", &json!(1)).await,
            Err(StoreError::InvalidKey(_))
        ));
    }

    #[tokio::test]
    async fn a_corrupt_record_is_reported_with_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("web.json"), "{nope").unwrap();
        let err = FileStore::new(tmp.path()).load().await.unwrap_err();
        assert!(err.to_string().contains("web.json"), "{err}");
    }
}
