//! The persisted state of one instance (`instances/<id>/instance.json`), written atomically so
//! that a plugin restarting at any moment finds either the old or the new content.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use infrakit_spi::{Attachment, Spec, Tags};
use serde::{Deserialize, Serialize};

/// Name of the state file inside an instance's directory.
pub(crate) const RECORD_FILE: &str = "instance.json";

/// Everything needed to describe an instance and to find its process again after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    #[serde(rename = "LogicalID", default)]
    pub(crate) logical_id: Option<String>,
    /// Current tags (the spec's, plus labels).
    #[serde(rename = "Tags", default)]
    pub(crate) tags: Tags,
    #[serde(rename = "Attachments", default)]
    pub(crate) attachments: Vec<Attachment>,
    /// The spec the instance was provisioned with.
    #[serde(rename = "Spec")]
    pub(crate) spec: Spec,
    #[serde(rename = "PID")]
    pub(crate) pid: i32,
    /// Field 22 of `/proc/<pid>/stat`, to tell the process from a later one with the same pid.
    #[serde(rename = "StartTime")]
    pub(crate) start_time: u64,
    /// RFC 3339 wall-clock start time.
    #[serde(rename = "StartedAt")]
    pub(crate) started_at: String,
    /// The working directory.
    #[serde(rename = "Dir")]
    pub(crate) dir: PathBuf,
    /// The program.
    #[serde(rename = "Cmd")]
    pub(crate) cmd: String,
}

impl Record {
    /// Writes the record into `dir` atomically (temporary file, then rename).
    pub(crate) fn save(&self, dir: &Path) -> io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".instance.json.")
            .tempfile_in(dir)?;
        serde_json::to_writer_pretty(&mut tmp, self)?;
        tmp.write_all(b"\n")?;
        tmp.persist(dir.join(RECORD_FILE)).map_err(|e| e.error)?;
        Ok(())
    }

    /// Reads the record from `dir`.
    pub(crate) fn load(dir: &Path) -> io::Result<Record> {
        let buf = std::fs::read(dir.join(RECORD_FILE))?;
        serde_json::from_slice(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Record {
            id: "proc-abcd1234".into(),
            logical_id: Some("db1".into()),
            tags: [("a".to_string(), "1".to_string())].into_iter().collect(),
            attachments: vec![],
            spec: Spec::default(),
            pid: 42,
            start_time: 7,
            started_at: "2024-01-01T00:00:00Z".into(),
            dir: "/tmp".into(),
            cmd: "sleep".into(),
        };
        r.save(dir.path()).unwrap();
        assert_eq!(Record::load(dir.path()).unwrap(), r);
        r.tags.insert("b", "2");
        r.save(dir.path()).unwrap();
        assert_eq!(Record::load(dir.path()).unwrap(), r);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![RECORD_FILE], "no temporary file is left");
    }
}
