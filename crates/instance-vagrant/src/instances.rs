//! The plugin's directory: one sub-directory per instance, named after the instance ID, holding
//! the `Vagrantfile`, Vagrant's `.vagrant/` and the instance's tags in `tags.json`.
//!
//! `tags.json` is written (atomically) only once `vagrant up` has succeeded, so a directory
//! without it is an instance being provisioned, or the remains of a provision that never
//! finished.

use std::io;
use std::path::{Path, PathBuf};

use infrakit_spi::{Error, Result, Tags};
use rand::Rng;

/// The generated Vagrantfile.
pub const VAGRANTFILE: &str = "Vagrantfile";
/// The instance's tags, a JSON object.
pub const TAGS_FILE: &str = "tags.json";

/// Length of the random part of an instance ID.
const SUFFIX_LEN: usize = 8;

/// `s` reduced to the characters allowed in an instance ID (`[a-zA-Z0-9_.-]`, others become
/// `-`), starting with a letter or digit; `x` when nothing is left.
pub use infrakit_spi::instance::safe_name as sanitize;

/// True when `id` could have been made by [`new_id`]: safe as a directory name and as a Docker
/// container name.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && sanitize(id) == id
}

/// A fresh instance ID: `<prefix>-<8 random characters>`.
pub fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..SUFFIX_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{}-{suffix}", sanitize(prefix))
}

/// Checks an ID received from a caller, so it cannot name anything outside the directory.
pub fn check_id(id: &str) -> Result<()> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(Error::invalid(
            "ID",
            format!("{id:?} is not an instance ID of this plugin"),
        ))
    }
}

/// The instance directories under `root`.
#[derive(Debug, Clone)]
pub struct Dirs {
    root: PathBuf,
}

/// What [`Dirs::list`] found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Instances whose provision finished, with their tags.
    pub instances: Vec<(String, Tags)>,
    /// Directories without tags: being provisioned, or left by a provision that never finished.
    pub incomplete: Vec<String>,
}

fn io_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::caused(format!("{what} {}", path.display()), e)
}

impl Dirs {
    /// The directories under `root` (created if missing).
    pub fn open(root: &Path) -> Result<Dirs> {
        std::fs::create_dir_all(root).map_err(|e| io_error("cannot create", root, e))?;
        Ok(Dirs {
            root: root.to_path_buf(),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of instance `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Creates the directory of a new instance with its Vagrantfile; `false` if `id` is taken.
    pub fn create(&self, id: &str, vagrantfile: &str) -> Result<bool> {
        let dir = self.dir(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io_error("cannot create", &dir, e)),
        }
        let file = dir.join(VAGRANTFILE);
        std::fs::write(&file, vagrantfile).map_err(|e| io_error("cannot write", &file, e))?;
        Ok(true)
    }

    /// Removes the directory of `id`; a missing one is fine.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("cannot remove", &dir, e)),
        }
    }

    /// True when the directory of `id` exists.
    pub fn exists(&self, id: &str) -> bool {
        self.dir(id).is_dir()
    }

    /// The tags of `id`, `None` if it has none (missing, or not provisioned yet).
    pub fn tags(&self, id: &str) -> Result<Option<Tags>> {
        let file = self.dir(id).join(TAGS_FILE);
        match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::caused(format!("corrupt tags file {}", file.display()), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("cannot read", &file, e)),
        }
    }

    /// Writes the tags of `id`, atomically (a temporary file renamed over the old one).
    pub fn write_tags(&self, id: &str, tags: &Tags) -> Result<()> {
        let dir = self.dir(id);
        let file = dir.join(TAGS_FILE);
        let tmp = dir.join(format!(".{TAGS_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(tags).expect("tags serialise");
        std::fs::write(&tmp, json).map_err(|e| io_error("cannot write", &tmp, e))?;
        std::fs::rename(&tmp, &file).map_err(|e| io_error("cannot write", &file, e))
    }

    /// Every instance directory.
    pub fn list(&self) -> Result<Listing> {
        let mut listing = Listing::default();
        let entries =
            std::fs::read_dir(&self.root).map_err(|e| io_error("cannot list", &self.root, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("cannot list", &self.root, e))?;
            let Some(id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !valid_id(&id) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            // Removed between listing and reading: gone.
            match self.tags(&id) {
                Ok(Some(tags)) => listing.instances.push((id, tags)),
                Ok(None) if self.exists(&id) => listing.incomplete.push(id),
                Ok(None) => {}
                Err(e) if !self.exists(&id) => tracing::debug!(error = %e, "instance gone"),
                Err(e) => return Err(e),
            }
        }
        listing.instances.sort_by(|a, b| a.0.cmp(&b.0));
        listing.incomplete.sort();
        Ok(listing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_safe_names() {
        assert_eq!(sanitize("web"), "web");
        assert_eq!(sanitize("my group/1"), "my-group-1");
        assert_eq!(sanitize("../x"), "x");
        assert_eq!(sanitize(".."), "x");
        let id = new_id("a/b");
        assert!(id.starts_with("a-b-") && id.len() == 4 + SUFFIX_LEN, "{id}");
        assert!(valid_id(&id));
        for bad in ["", "..", "a/b", ".hidden", "x y"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listing_separates_finished_from_incomplete() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs::open(&tmp.path().join("instances")).unwrap();
        assert!(dirs.create("a-1", "# a").unwrap());
        assert!(!dirs.create("a-1", "# again").unwrap());
        assert!(dirs.create("b-2", "# b").unwrap());
        let tags: Tags = [("k".to_string(), "v".to_string())].into();
        dirs.write_tags("a-1", &tags).unwrap();
        std::fs::write(dirs.root().join("stray-file"), "x").unwrap();
        let l = dirs.list().unwrap();
        assert_eq!(l.instances, vec![("a-1".to_string(), tags)]);
        assert_eq!(l.incomplete, vec!["b-2".to_string()]);
        assert_eq!(
            std::fs::read_to_string(dirs.dir("a-1").join(VAGRANTFILE)).unwrap(),
            "# a"
        );
        dirs.remove("a-1").unwrap();
        dirs.remove("a-1").unwrap();
        assert_eq!(dirs.tags("a-1").unwrap(), None);
    }
}
