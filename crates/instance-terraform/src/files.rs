//! The instance files in the plugin's directory: `<id>.tf.json`, one per instance.
//!
//! IDs are `<prefix>-<unix seconds>-<6 random characters>`. A new file is written under a
//! temporary name Terraform does not read and then hard-linked to its final name, which fails if
//! that name exists: two provisions (even from two processes) can never take the same ID, and
//! Terraform never reads a half-written file. Rewrites go through a temporary file and a rename.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use infrakit_spi::{Error, Result};
use rand::Rng;
use serde_json::Value;

/// Suffix of every instance file.
pub const SUFFIX: &str = ".tf.json";
const RANDOM_LEN: usize = 6;

/// The instance files of one directory.
#[derive(Debug, Clone)]
pub struct Files {
    dir: PathBuf,
    prefix: String,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::caused(format!("{what} {}", path.display()), e)
}

impl Files {
    /// The files of `dir` whose IDs start with `prefix`.
    pub fn new(dir: PathBuf, prefix: String) -> Self {
        Files { dir, prefix }
    }

    /// The file of instance `id`.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}{SUFFIX}"))
    }

    /// True when `id` has the shape of this plugin's instance IDs.
    pub fn is_instance_id(&self, id: &str) -> bool {
        let Some(rest) = id
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('-'))
        else {
            return false;
        };
        let Some((secs, random)) = rest.split_once('-') else {
            return false;
        };
        !secs.is_empty()
            && secs.chars().all(|c| c.is_ascii_digit())
            && random.len() == RANDOM_LEN
            && random
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    }

    fn new_id(&self) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut rng = rand::rng();
        let random: String = (0..RANDOM_LEN)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        format!("{}-{secs}-{random}", self.prefix)
    }

    fn temp_path(&self, id: &str) -> PathBuf {
        // Neither `*.tf` nor `*.tf.json`: Terraform ignores it.
        let n: u32 = rand::rng().random();
        self.dir.join(format!(".{id}.{n:08x}.tmp"))
    }

    fn write_temp(&self, id: &str, content: &Value) -> Result<PathBuf> {
        let tmp = self.temp_path(id);
        let text = serde_json::to_vec_pretty(content).expect("JSON values serialise");
        let mut f = std::fs::File::create(&tmp).map_err(|e| io_error("cannot create", &tmp, e))?;
        f.write_all(&text)
            .and_then(|_| f.write_all(b"\n"))
            .and_then(|_| f.sync_all())
            .map_err(|e| io_error("cannot write", &tmp, e))?;
        Ok(tmp)
    }

    /// Creates the file of a new instance with a fresh ID; `render` makes its content from the
    /// ID. Returns the ID.
    pub fn create(&self, render: impl Fn(&str) -> Result<Value>) -> Result<String> {
        for _ in 0..64 {
            let id = self.new_id();
            let content = render(&id)?;
            let tmp = self.write_temp(&id, &content)?;
            let path = self.path(&id);
            let linked = std::fs::hard_link(&tmp, &path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => return Ok(id),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("cannot create", &path, e)),
            }
        }
        Err(Error::plugin(format!(
            "cannot find a free instance ID in {}",
            self.dir.display()
        )))
    }

    /// Replaces the file of instance `id`.
    pub fn write(&self, id: &str, content: &Value) -> Result<()> {
        let tmp = self.write_temp(id, content)?;
        let path = self.path(id);
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_error("cannot replace", &path, e)
        })
    }

    /// The content of instance `id`'s file, `None` if there is none.
    pub fn read(&self, id: &str) -> Result<Option<Value>> {
        let path = self.path(id);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::caused(format!("cannot parse {}", path.display()), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("cannot read", &path, e)),
        }
    }

    /// Removes instance `id`'s file; true if there was one.
    pub fn remove(&self, id: &str) -> Result<bool> {
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("cannot remove", &path, e)),
        }
    }

    /// The IDs of all instance files.
    pub fn list(&self) -> Result<BTreeSet<String>> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| io_error("cannot list", &self.dir, e))?;
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(SUFFIX))
                    .map(str::to_string)
            })
            .filter(|id| self.is_instance_id(id))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_unique_and_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path().to_path_buf(), "web".into());
        let mut ids = BTreeSet::new();
        for _ in 0..50 {
            let id = files.create(|id| Ok(json!({"id": id}))).unwrap();
            assert!(files.is_instance_id(&id), "{id}");
            assert!(ids.insert(id));
        }
        std::fs::write(dir.path().join("main.tf"), "").unwrap();
        std::fs::write(dir.path().join("other-1-abcdef.tf.json"), "{}").unwrap();
        assert_eq!(files.list().unwrap(), ids);
        let id = ids.iter().next().unwrap();
        assert_eq!(files.read(id).unwrap().unwrap()["id"], json!(id));
        files.write(id, &json!({"x": 1})).unwrap();
        assert_eq!(files.read(id).unwrap().unwrap()["x"], 1);
        assert!(files.remove(id).unwrap());
        assert!(!files.remove(id).unwrap());
        assert!(files.read(id).unwrap().is_none());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn id_shapes() {
        let files = Files::new(PathBuf::from("/x"), "instance".into());
        assert!(files.is_instance_id("instance-1700000000-ab12cd"));
        assert!(!files.is_instance_id("instance-1700000000-ab12c"));
        assert!(!files.is_instance_id("instance-x-ab12cd"));
        assert!(!files.is_instance_id("other-1700000000-ab12cd"));
        assert!(!files.is_instance_id("../instance-1-ab12cd"));
    }
}
