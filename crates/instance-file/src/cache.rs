//! What the plugin knows of its instance files: each file's tags, logical ID and properties as
//! last read, with the file's identity and times, so a file is read again only once it changed.
//!
//! Every observation of a file (by a describe finding its stamp changed, or by the watcher told
//! of a change) goes through [`Cache::record`], which also says what changed as an instance
//! event. Whoever notices a change first publishes it; the others find nothing new.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use infrakit_spi::event::Event;
use infrakit_spi::instance::Properties;
use infrakit_spi::Tags;
use serde_json::json;

use crate::record::{InstanceFile, CHANGED, CREATED, DESTROYED};

/// A file's identity, size and times: when none of them moved, neither did its content (short
/// of an in-place rewrite of the same size within one tick of the kernel's clock, which the
/// watcher notices instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub(crate) fn of(m: &Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// What an instance file says, in the form `DescribeInstances` hands out: the properties (the
/// spec the instance was provisioned with) as compact JSON text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Known {
    pub(crate) logical_id: Option<String>,
    pub(crate) tags: Tags,
    pub(crate) properties: Properties,
}

impl Known {
    fn parse(buf: &[u8]) -> serde_json::Result<Known> {
        let file: InstanceFile = serde_json::from_slice(buf)?;
        Ok(Known {
            properties: Properties::from_serialize(&file.spec)?,
            logical_id: file.logical_id,
            tags: file.tags,
        })
    }
}

/// One look at a file name.
#[derive(Debug)]
pub(crate) enum Seen {
    /// No regular file by that name.
    Gone,
    /// A regular file with this stamp, holding an instance (`None`: unreadable or not JSON of an
    /// instance, so not an instance).
    File(Stamp, Option<Known>),
}

/// Reads the file at `path`: its stamp (taken before its content, so the content is at least as
/// new as the stamp says) and what it holds. Symbolic links and directories are not instances.
pub(crate) fn load(path: &Path) -> Seen {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => {}
        _ => return Seen::Gone,
    }
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Seen::Gone,
        Err(e) => {
            tracing::debug!(file = %path.display(), error = %e, "cannot open instance file");
            return match fs::symlink_metadata(path) {
                Ok(m) if m.is_file() => Seen::File(Stamp::of(&m), None),
                _ => Seen::Gone,
            };
        }
    };
    let meta = match file.metadata() {
        Ok(m) if m.is_file() => m,
        _ => return Seen::Gone,
    };
    let stamp = Stamp::of(&meta);
    let mut buf = Vec::with_capacity(meta.len() as usize);
    if let Err(e) = file.read_to_end(&mut buf) {
        tracing::debug!(file = %path.display(), error = %e, "cannot read instance file");
        return Seen::File(stamp, None);
    }
    match Known::parse(&buf) {
        Ok(known) => Seen::File(stamp, Some(known)),
        Err(e) => {
            tracing::debug!(file = %path.display(), error = %e, "skipping unreadable instance file");
            Seen::File(stamp, None)
        }
    }
}

#[derive(Debug)]
struct Entry {
    stamp: Stamp,
    known: Option<Known>,
}

/// The instance files last seen, by name.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    entries: HashMap<String, Entry>,
}

impl Cache {
    /// The stamp `name` had when last read.
    pub(crate) fn stamp(&self, name: &str) -> Option<Stamp> {
        self.entries.get(name).map(|e| e.stamp)
    }

    /// What `name` held when last read, if it was an instance.
    pub(crate) fn get(&self, name: &str) -> Option<&Known> {
        self.entries.get(name)?.known.as_ref()
    }

    /// How many files were seen.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The names of the files seen.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Records what was seen of `name` and returns the instance event it amounts to: `created`
    /// when an instance appeared, `changed` when its tags, logical ID or spec changed,
    /// `destroyed` (with the tags it last had) when it went away or stopped being readable.
    pub(crate) fn record(&mut self, name: &str, seen: Seen) -> Option<Event> {
        match seen {
            Seen::Gone => {
                let known = self.entries.remove(name)?.known?;
                Some(event(DESTROYED, name, &known.tags, "was removed"))
            }
            Seen::File(stamp, known) => {
                let Some(entry) = self.entries.get_mut(name) else {
                    let event = known
                        .as_ref()
                        .map(|new| event(CREATED, name, &new.tags, "appeared"));
                    self.entries
                        .insert(name.to_string(), Entry { stamp, known });
                    return event;
                };
                let event = match (&entry.known, &known) {
                    (None, Some(new)) => Some(event(CREATED, name, &new.tags, "appeared")),
                    (Some(old), Some(new)) if old != new => {
                        Some(event(CHANGED, name, &new.tags, "changed"))
                    }
                    (Some(old), None) => Some(event(
                        DESTROYED,
                        name,
                        &old.tags,
                        "is no longer a readable instance file",
                    )),
                    _ => None,
                };
                *entry = Entry { stamp, known };
                event
            }
        }
    }
}

fn event(kind: &str, id: &str, tags: &Tags, what: &str) -> Event {
    Event::instance(
        kind,
        id,
        format!("instance file {id} {what}"),
        json!({ "Tags": tags }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(group: &str) -> Known {
        let mut tags = Tags::new();
        tags.insert("infrakit.group", group);
        Known {
            logical_id: None,
            tags,
            properties: Properties::new(&json!({"Init": ""})),
        }
    }

    fn stamp(ino: u64) -> Stamp {
        Stamp {
            dev: 1,
            ino,
            size: 10,
            mtime: (0, 0),
            ctime: (0, 0),
        }
    }

    #[test]
    fn record_says_what_changed_once() {
        let mut c = Cache::default();
        let e = c
            .record("i-1", Seen::File(stamp(1), Some(known("a"))))
            .unwrap();
        assert_eq!(
            (e.topic.as_str(), e.id.as_str()),
            ("/instance/created", "i-1")
        );
        assert_eq!(e.data["Tags"]["infrakit.group"], "a");
        assert!(
            c.record("i-1", Seen::File(stamp(2), Some(known("a"))))
                .is_none(),
            "same content, new stamp: nothing to tell"
        );
        assert_eq!(c.stamp("i-1"), Some(stamp(2)));
        let e = c
            .record("i-1", Seen::File(stamp(3), Some(known("b"))))
            .unwrap();
        assert_eq!(e.kind, CHANGED);
        assert_eq!(e.data["Tags"]["infrakit.group"], "b");
        let e = c.record("i-1", Seen::Gone).unwrap();
        assert_eq!(e.kind, DESTROYED);
        assert_eq!(
            e.data["Tags"]["infrakit.group"], "b",
            "the tags it last had"
        );
        assert!(c.record("i-1", Seen::Gone).is_none());
        assert_eq!(c.names().count(), 0);
    }

    #[test]
    fn unreadable_files_are_remembered_but_are_no_instances() {
        let mut c = Cache::default();
        assert!(c.record("junk", Seen::File(stamp(1), None)).is_none());
        assert_eq!(c.stamp("junk"), Some(stamp(1)));
        assert!(c.get("junk").is_none());
        assert!(c.record("junk", Seen::Gone).is_none());

        c.record("i-1", Seen::File(stamp(1), Some(known("a"))));
        let e = c.record("i-1", Seen::File(stamp(2), None)).unwrap();
        assert_eq!(e.kind, DESTROYED);
        let e = c
            .record("i-1", Seen::File(stamp(3), Some(known("a"))))
            .unwrap();
        assert_eq!(e.kind, CREATED);
    }
}
