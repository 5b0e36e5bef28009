//! InfraKit's testing instance plugin: every instance is one JSON file in a directory.
//!
//! Provisioning writes `instance-<n>` (a random 63-bit number) holding the instance's
//! description plus the full spec it was created from:
//!
//! ```json
//! {"ID": "instance-42", "LogicalID": null, "Tags": {"infrakit.group": "cattle"}, "Spec": {...}}
//! ```
//!
//! The file name is the instance ID. Deleting a file by hand is how a test kills an instance;
//! editing its tags by hand changes what the group controller sees. Files are written atomically
//! (a temporary file in the same directory, then a rename), so a reader never sees half a file.
//!
//! # Events
//!
//! The plugin watches its directory (inotify) and publishes an instance event ([`Publisher`],
//! topic `/instance/<kind>`, data `{"Tags": {...}}`) for every instance file that appears
//! ([`CREATED`]), changes ([`CHANGED`]) or goes away ([`DESTROYED`], with the tags the file last
//! had), whoever did it: `Provision`, `Label` and `Destroy` as much as a person running
//! `rm instance-123`. So a group controller replaces a deleted instance at once instead of on its
//! next poll. The temporary files of atomic writes are not instances and make no events: a
//! provision is one `created`. A file written in place is read when its writer closes it. If the
//! system cannot watch the directory (inotify limits), [`FilePlugin::watching`] is false and only
//! describes notice changes (and publish them): serve such a plugin without an event stream, as
//! `infrakit plugin start` does, since a group controller trusts a live, quiet stream to mean
//! that nothing changed.
//!
//! # Memory
//!
//! The plugin keeps what each file holds (tags, logical ID, and the spec as compact JSON text,
//! a few hundred bytes an instance) keyed by the file's inode, size and times. A describe lists
//! the directory and `stat`s each file, and reads only the files that changed since; so a group
//! polling `DescribeInstances` every 100 ms costs a directory listing, not a parse of every file.
//! File work runs on [`IO_THREADS`] threads of the plugin's own, not on tokio's blocking pool,
//! which a burst of parallel provisions grows to dozens of threads that a describe every 100 ms
//! then keeps alive, each holding memory of its own in the allocator. The watcher is one more
//! thread. They all stop when the plugin's last clone is dropped. (`infrakit plugin run
//! instance-file` also runs a single async worker: see the CLI's `Kind::async_workers`.)

mod cache;
mod pool;
mod record;
mod watch;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use async_trait::async_trait;
use infrakit_spi::event::{Event, Publisher};
use infrakit_spi::instance::tags_match;
use infrakit_spi::{Description, DestroyContext, Error, Instance, Result, Spec, Tags};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::cache::{load, Cache, Stamp};
use crate::pool::Pool;

/// Prefix of every instance file name (and so of every instance ID).
pub const ID_PREFIX: &str = "instance-";
/// Capacity of the event channel; slow subscribers lose the oldest events beyond this.
pub const EVENT_CAPACITY: usize = 1024;
/// The threads a plugin reads and writes its files on.
pub const IO_THREADS: usize = 2;
use record::InstanceFile;
pub use record::{CHANGED, CREATED, DESTROYED};

/// The file instance plugin. Cheap to clone; clones share the directory, what is known of its
/// files, the events and the watcher, which stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct FilePlugin {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// Serialises read-modify-write cycles (Label) against each other and against Destroy.
    lock: Mutex<()>,
    /// What each file held when last read.
    cache: Mutex<Cache>,
    events: broadcast::Sender<Event>,
    /// The threads doing the file work; they end when the plugin is dropped.
    io: Pool,
    /// Watches `dir`; `None` when the system would not. Dropped with the plugin, which ends
    /// its thread.
    watcher: Option<notify::RecommendedWatcher>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("dir", &self.dir)
            .field("watching", &self.watcher.is_some())
            .finish_non_exhaustive()
    }
}

impl FilePlugin {
    /// A plugin keeping its instances in `dir`, which is created if it does not exist. Reads the
    /// files there and starts watching the directory (no tokio runtime needed).
    pub fn new(dir: PathBuf) -> Result<Self> {
        Self::open(dir, true)
    }

    fn open(dir: PathBuf, watch: bool) -> Result<Self> {
        fs::create_dir_all(&dir)
            .map_err(|e| Error::caused(format!("cannot create {}", dir.display()), e))?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let io = Pool::start(IO_THREADS).map_err(|e| Error::caused("cannot start threads", e))?;
        // Watch first, then read what is there, so no change falls between the two.
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| Inner {
            watcher: if watch {
                watch::start(&dir, {
                    let inner = weak.clone();
                    move |change| {
                        if let Some(inner) = inner.upgrade() {
                            inner.changed(change);
                        }
                    }
                })
            } else {
                None
            },
            dir,
            lock: Mutex::new(()),
            cache: Mutex::new(Cache::default()),
            events,
            io,
        });
        inner
            .refresh(false)
            .map_err(|e| io_error("list", &inner.dir, e))?;
        Ok(FilePlugin { inner })
    }

    /// The directory holding the instance files.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// True when the plugin watches its directory and so publishes events.
    pub fn watching(&self) -> bool {
        self.inner.watcher.is_some()
    }

    /// The path of the file of instance `id`, or `None` when `id` cannot be a file name here.
    fn path_of(&self, id: &str) -> Option<PathBuf> {
        valid_id(id).then(|| self.inner.dir.join(id))
    }

    /// Runs blocking file-system work on the plugin's threads.
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        self.inner.io.run(move || f(&inner)).await
    }
}

impl Inner {
    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows a change the watcher saw.
    fn changed(&self, change: watch::Change) {
        match change {
            watch::Change::Rescan => self.resync(true),
            watch::Change::Path(path) => {
                if let Some(name) = self.name_in_dir(&path) {
                    self.look(name, true);
                }
            }
        }
    }

    /// Reads file `name` (or finds it gone) and records it, publishing the event it amounts to
    /// when `publish`. The file is read under the cache's lock, so of two looks at a file (the
    /// watcher's and a describe's) the one recorded last also read last: an older content never
    /// overwrites a newer one, and events come in the order of the changes.
    fn look(&self, name: &str, publish: bool) {
        let mut cache = self.cache();
        let seen = load(&self.dir.join(name));
        if let Some(event) = cache.record(name, seen).filter(|_| publish) {
            tracing::debug!(id = %event.id, kind = %event.kind, "{}", event.message);
            // No subscriber is not an error.
            let _ = self.events.send(event);
        }
    }

    /// The name of `path` when it is a possible instance file of this directory.
    fn name_in_dir<'p>(&self, path: &'p Path) -> Option<&'p str> {
        let name = path.file_name()?.to_str()?;
        (valid_id(name) && path.parent() == Some(self.dir.as_path())).then_some(name)
    }

    /// The regular files of the directory that could be instances, with their stamps, by name.
    fn list(&self) -> io::Result<Vec<(String, Stamp)>> {
        // Sized for what was there last time: no reallocations as it grows.
        let mut out = Vec::with_capacity(self.cache().len() + 16);
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !valid_id(&name) || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            match entry.metadata() {
                Ok(m) => out.push((name, Stamp::of(&m))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::debug!(file = %name, error = %e, "cannot stat instance file"),
            }
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Lists the directory and reads the files whose stamps moved since they were last read.
    fn read_changed(&self, publish: bool) -> io::Result<Vec<(String, Stamp)>> {
        let listing = self.list()?;
        let stale: Vec<&str> = {
            let cache = self.cache();
            listing
                .iter()
                .filter(|(name, stamp)| cache.stamp(name) != Some(*stamp))
                .map(|(name, _)| name.as_str())
                .collect()
        };
        for name in stale {
            self.look(name, publish);
        }
        Ok(listing)
    }

    /// Forgets the files known but not in `listing` that are indeed gone.
    fn forget_missing(&self, listing: &[(String, Stamp)], publish: bool) {
        let missing: Vec<String> = {
            let cache = self.cache();
            cache
                .names()
                .filter(|n| {
                    listing
                        .binary_search_by(|(l, _)| l.as_str().cmp(n))
                        .is_err()
                })
                .map(str::to_string)
                .collect()
        };
        for name in missing {
            self.look(&name, publish);
        }
    }

    /// Reads every changed file and forgets the vanished ones: at start (silently), and when
    /// the watcher may have missed changes.
    fn resync(&self, publish: bool) {
        if let Err(e) = self.refresh(publish) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot list instance files");
        }
    }

    fn refresh(&self, publish: bool) -> io::Result<()> {
        let listing = self.read_changed(publish)?;
        self.forget_missing(&listing, publish);
        Ok(())
    }

    /// The instance files now, by name, having read those that changed.
    fn current(&self) -> Result<Vec<(String, Stamp)>> {
        let listing = self
            .read_changed(true)
            .map_err(|e| io_error("list", &self.dir, e))?;
        // Deletions are the watcher's to notice (and to tell, with the tags the file had); a
        // file missing from the listing is simply not described. Without a watcher, forget
        // them here.
        if self.watcher.is_none() {
            self.forget_missing(&listing, true);
        }
        Ok(listing)
    }

    /// The descriptions of the instances of `listing` that carry `want`.
    fn describe(
        &self,
        listing: Vec<(String, Stamp)>,
        want: &Tags,
        properties: bool,
    ) -> Vec<Description> {
        let cache = self.cache();
        let mut out = Vec::with_capacity(listing.len());
        out.extend(listing.into_iter().filter_map(|(name, _)| {
            let known = cache.get(&name)?;
            tags_match(&known.tags, want).then(|| Description {
                id: name,
                logical_id: known.logical_id.clone(),
                tags: known.tags.clone(),
                properties: properties.then(|| known.properties.clone()),
                created: None,
            })
        }));
        out
    }
}

/// True when `id` is a plain file name that a provisioned instance could have.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && !id.starts_with('.') && !id.contains(['/', '\\', '\0'])
}

/// Writes `value` as JSON to `path` atomically: a temporary file beside it, then a rename.
fn write_atomic(path: &Path, value: &InstanceFile) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, value)?;
    tmp.write_all(b"\n")?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn read_instance(path: &Path) -> io::Result<InstanceFile> {
    let buf = fs::read(path)?;
    serde_json::from_slice(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn io_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::caused(format!("cannot {what} {}", path.display()), e)
}

fn check_properties(properties: &Value) -> Result<()> {
    match properties {
        Value::Null | Value::Object(_) => Ok(()),
        other => Err(Error::invalid(
            "Properties",
            format!("must be a JSON object or null, got {}", json_kind(other)),
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Publisher for FilePlugin {
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }
}

#[async_trait]
impl Instance for FilePlugin {
    async fn validate(&self, properties: &Value) -> Result<()> {
        check_properties(properties)
    }

    async fn provision(&self, spec: Spec) -> Result<String> {
        check_properties(&spec.properties)?;
        self.blocking(move |inner| {
            loop {
                let id = format!("{ID_PREFIX}{}", rand::random::<u64>() >> 1);
                let path = inner.dir.join(&id);
                if path.exists() {
                    continue; // astronomically unlikely; pick another number
                }
                let file = InstanceFile {
                    id: id.clone(),
                    logical_id: spec.logical_id.clone(),
                    tags: spec.tags.clone(),
                    spec,
                };
                write_atomic(&path, &file).map_err(|e| io_error("write", &path, e))?;
                tracing::debug!(%id, "provisioned file instance");
                return Ok(id);
            }
        })
        .await
    }

    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        let Some(path) = self.path_of(id) else {
            return Err(Error::instance_not_found(id));
        };
        let (id, labels) = (id.to_string(), labels.clone());
        self.blocking(move |inner| {
            let _guard = inner.lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut file = match read_instance(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::instance_not_found(id))
                }
                Err(e) => return Err(io_error("read", &path, e)),
            };
            file.id = id;
            file.tags.extend(labels);
            write_atomic(&path, &file).map_err(|e| io_error("write", &path, e))
        })
        .await
    }

    async fn destroy(&self, id: &str, _context: &DestroyContext) -> Result<()> {
        let Some(path) = self.path_of(id) else {
            return Ok(()); // no such file can exist, so the instance is already gone
        };
        self.blocking(move |inner| {
            let _guard = inner.lock.lock().unwrap_or_else(|e| e.into_inner());
            match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error("remove", &path, e)),
            }
        })
        .await
    }

    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        let listing = self.blocking(|inner| inner.current()).await?;
        // Built here rather than on the file-system thread: the descriptions are written out
        // and freed on this thread, and memory allocated and freed on the same thread is
        // reused at once by the allocator.
        Ok(self.inner.describe(listing, tags, properties))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn spec(group: &str) -> Spec {
        Spec {
            properties: json!({"Note": "v1"}),
            tags: tags(&[("infrakit.group", group), ("tier", "web")]),
            init: "echo hello".into(),
            ..Spec::default()
        }
    }

    fn plugin() -> (tempfile::TempDir, FilePlugin) {
        let tmp = tempfile::tempdir().unwrap();
        let p = FilePlugin::new(tmp.path().join("instances")).unwrap();
        (tmp, p)
    }

    #[tokio::test]
    async fn provision_writes_one_json_file_named_by_the_id() {
        let (_tmp, p) = plugin();
        let mut s = spec("cattle");
        s.logical_id = Some("db1".into());
        let id = p.provision(s.clone()).await.unwrap();
        assert!(id.starts_with(ID_PREFIX));
        let n: u64 = id[ID_PREFIX.len()..].parse().unwrap();
        assert!(n < 1 << 63);

        let names: Vec<_> = fs::read_dir(p.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            names,
            vec![id.clone()],
            "no temporary files are left behind"
        );

        let content: Value = serde_json::from_slice(&fs::read(p.dir().join(&id)).unwrap()).unwrap();
        assert_eq!(content["ID"], json!(id));
        assert_eq!(content["LogicalID"], json!("db1"));
        assert_eq!(content["Tags"]["tier"], json!("web"));
        assert_eq!(content["Spec"], serde_json::to_value(&s).unwrap());
    }

    #[tokio::test]
    async fn describe_and_matches_tags_and_returns_the_spec_as_properties() {
        let (_tmp, p) = plugin();
        let a = p.provision(spec("a")).await.unwrap();
        let b = p.provision(spec("b")).await.unwrap();

        let all = p.describe_instances(&Tags::new(), false).await.unwrap();
        let mut ids: Vec<_> = all.iter().map(|d| d.id.clone()).collect();
        ids.sort();
        let mut expected = vec![a.clone(), b.clone()];
        expected.sort();
        assert_eq!(ids, expected);
        assert!(all.iter().all(|d| d.properties.is_none()));

        let only_a = p
            .describe_instances(&tags(&[("infrakit.group", "a"), ("tier", "web")]), true)
            .await
            .unwrap();
        assert_eq!(only_a.len(), 1);
        assert_eq!(only_a[0].id, a);
        let props = only_a[0].properties.clone().unwrap().to_value();
        assert_eq!(props, serde_json::to_value(spec("a")).unwrap());

        let none = p
            .describe_instances(&tags(&[("infrakit.group", "a"), ("tier", "db")]), false)
            .await
            .unwrap();
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn describe_skips_garbage_directories_and_temporary_files() {
        let (_tmp, p) = plugin();
        let id = p.provision(spec("a")).await.unwrap();
        fs::write(p.dir().join("notes.txt"), "not json").unwrap();
        fs::create_dir(p.dir().join("subdir")).unwrap();
        fs::copy(p.dir().join(&id), p.dir().join(".tmp-half")).unwrap();
        let all = p.describe_instances(&Tags::new(), false).await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].id, id);
    }

    #[tokio::test]
    async fn id_is_the_file_name_even_for_copied_files() {
        let (_tmp, p) = plugin();
        let id = p.provision(spec("a")).await.unwrap();
        fs::copy(p.dir().join(&id), p.dir().join("instance-7")).unwrap();
        let all = p.describe_instances(&Tags::new(), false).await.unwrap();
        assert!(all.iter().any(|d| d.id == "instance-7"));
        p.destroy("instance-7", &DestroyContext::default())
            .await
            .unwrap();
        assert!(!p.dir().join("instance-7").exists());
    }

    #[tokio::test]
    async fn label_merges_tags_and_fails_for_missing_instances() {
        let (_tmp, p) = plugin();
        let id = p.provision(spec("a")).await.unwrap();
        p.label(&id, &tags(&[("tier", "db"), ("new", "1")]))
            .await
            .unwrap();
        let d = p.describe_instances(&Tags::new(), true).await.unwrap();
        assert_eq!(
            d[0].tags,
            tags(&[("infrakit.group", "a"), ("tier", "db"), ("new", "1")])
        );
        let spec_tags = &d[0].properties.as_ref().unwrap().to_value()["Tags"];
        assert_eq!(
            spec_tags["tier"],
            json!("web"),
            "the spec keeps what was asked for"
        );

        let err = p.label("instance-1", &Tags::new()).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        let err = p.label("../escape", &Tags::new()).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
    }

    #[tokio::test]
    async fn destroy_removes_the_file_and_is_idempotent() {
        let (_tmp, p) = plugin();
        let id = p.provision(spec("a")).await.unwrap();
        let ctx = DestroyContext::reason("terminate");
        p.destroy(&id, &ctx).await.unwrap();
        assert!(!p.dir().join(&id).exists());
        p.destroy(&id, &ctx).await.unwrap();
        p.destroy("../../etc/passwd", &ctx).await.unwrap();
        assert!(p
            .describe_instances(&Tags::new(), false)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn deleting_the_file_by_hand_kills_the_instance() {
        let (_tmp, p) = plugin();
        let a = p.provision(spec("a")).await.unwrap();
        let b = p.provision(spec("a")).await.unwrap();
        fs::remove_file(p.dir().join(&a)).unwrap();
        let left = p.describe_instances(&Tags::new(), false).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, b);
    }

    #[tokio::test]
    async fn validate_accepts_objects_and_null_only() {
        let (_tmp, p) = plugin();
        p.validate(&json!({"Note": 1})).await.unwrap();
        p.validate(&Value::Null).await.unwrap();
        for bad in [json!([1]), json!("x"), json!(3), json!(true)] {
            match p.validate(&bad).await.unwrap_err() {
                Error::Invalid { path, .. } => assert_eq!(path, "Properties"),
                other => panic!("unexpected {other}"),
            }
        }
        let mut s = spec("a");
        s.properties = json!("x");
        assert!(p.provision(s).await.is_err());
        assert!(p
            .describe_instances(&Tags::new(), false)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn without_a_watcher_describes_find_the_changes_and_publish_them() {
        let tmp = tempfile::tempdir().unwrap();
        let p = FilePlugin::open(tmp.path().join("instances"), false).unwrap();
        assert!(!p.watching());
        let mut rx = p.subscribe();
        let id = p.provision(spec("a")).await.unwrap();
        assert!(rx.try_recv().is_err(), "nobody looked yet");
        assert_eq!(
            p.describe_instances(&Tags::new(), false)
                .await
                .unwrap()
                .len(),
            1
        );
        let e = rx.try_recv().unwrap();
        assert_eq!((e.kind.as_str(), e.id.as_str()), (CREATED, id.as_str()));

        fs::remove_file(p.dir().join(&id)).unwrap();
        assert!(p
            .describe_instances(&Tags::new(), false)
            .await
            .unwrap()
            .is_empty());
        let e = rx.try_recv().unwrap();
        assert_eq!((e.kind.as_str(), e.id.as_str()), (DESTROYED, id.as_str()));
        assert_eq!(e.data["Tags"]["infrakit.group"], json!("a"));
        assert!(rx.try_recv().is_err(), "once");
        p.describe_instances(&Tags::new(), false).await.unwrap();
        assert!(rx.try_recv().is_err(), "once");
    }

    #[tokio::test]
    async fn new_creates_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/c");
        let p = FilePlugin::new(dir.clone()).unwrap();
        assert!(dir.is_dir());
        assert_eq!(p.dir(), dir);
        // A path that is a file cannot become the directory.
        let file = tmp.path().join("file");
        fs::write(&file, "x").unwrap();
        assert!(FilePlugin::new(file.join("sub")).is_err());
    }
}
