//! Volume attachments: persistent directories that outlive the instances using them.
//!
//! An attachment of type [`VOLUME_ATTACHMENT`] names a directory `<state dir>/volumes/<ID>`,
//! created on first use and never removed by the plugin. Each instance sees every one of its
//! volumes twice: as `INFRAKIT_VOLUME_<NAME>` (see [`volume_env_name`]) and as a symlink
//! `<instance dir>/volumes/<ID>` inside the directory named by `INFRAKIT_VOLUMES`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use infrakit_spi::{Error, Result, Spec};

/// The attachment type that the plugin turns into a volume; other types are recorded only.
pub const VOLUME_ATTACHMENT: &str = "volume";
/// Environment variable holding the directory with one symlink per volume of the instance.
pub const ENV_VOLUMES: &str = "INFRAKIT_VOLUMES";
/// Prefix of the environment variables holding the path of each volume.
pub const ENV_VOLUME_PREFIX: &str = "INFRAKIT_VOLUME_";
/// Name of the directory of volumes, in the state directory and in each instance's directory.
pub(crate) const VOLUMES_DIR: &str = "volumes";

/// The environment variable holding the path of volume `id`: `INFRAKIT_VOLUME_` followed by the
/// ID upper-cased, with every character other than an ASCII letter or digit replaced by `_`
/// (`data-db1` gives `INFRAKIT_VOLUME_DATA_DB1`).
pub fn volume_env_name(id: &str) -> String {
    let mut name = String::with_capacity(ENV_VOLUME_PREFIX.len() + id.len());
    name.push_str(ENV_VOLUME_PREFIX);
    name.extend(id.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    name
}

/// True when `id` is a single, plain path component.
pub(crate) fn valid_volume_id(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains(['/', '\0'])
}

/// The distinct volume IDs of `spec`, in order, after checking that each is a safe path
/// component and that no two map to the same environment variable.
pub(crate) fn volume_ids(spec: &Spec) -> Result<Vec<&str>> {
    let mut ids: Vec<&str> = Vec::new();
    for (i, a) in spec.attachments.iter().enumerate() {
        if a.kind != VOLUME_ATTACHMENT {
            continue;
        }
        let path = || format!("Spec.Attachments[{i}].ID");
        if !valid_volume_id(&a.id) {
            return Err(Error::invalid(
                path(),
                format!(
                    "volume ID {:?} must be a plain directory name: not empty, '.' or '..', \
                     without '/'",
                    a.id
                ),
            ));
        }
        if ids.contains(&a.id.as_str()) {
            continue; // the same volume twice is the same volume
        }
        let env = volume_env_name(&a.id);
        if let Some(other) = ids.iter().find(|o| volume_env_name(o) == env) {
            return Err(Error::invalid(
                path(),
                format!(
                    "volume IDs {other:?} and {:?} would both be given in {env}",
                    a.id
                ),
            ));
        }
        ids.push(&a.id);
    }
    Ok(ids)
}

/// Creates the volumes `ids` under `volumes_root` (absolute) if missing and links each into
/// `links` (absolute, created). Returns the environment to give the instance.
pub(crate) fn attach(
    volumes_root: &Path,
    links: &Path,
    ids: &[&str],
) -> io::Result<Vec<(String, String)>> {
    let mut env = Vec::with_capacity(ids.len() + 1);
    fs::create_dir_all(links)?;
    for id in ids {
        let volume: PathBuf = volumes_root.join(id);
        fs::create_dir_all(&volume)?;
        let link = links.join(id);
        match std::os::unix::fs::symlink(&volume, &link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        env.push((volume_env_name(id), volume.to_string_lossy().into_owned()));
    }
    env.push((
        ENV_VOLUMES.to_string(),
        links.to_string_lossy().into_owned(),
    ));
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use infrakit_spi::Attachment;

    fn spec(attachments: &[(&str, &str)]) -> Spec {
        Spec {
            attachments: attachments
                .iter()
                .map(|(id, kind)| Attachment {
                    id: id.to_string(),
                    kind: kind.to_string(),
                })
                .collect(),
            ..Spec::default()
        }
    }

    fn err_path(s: &Spec) -> String {
        match volume_ids(s).unwrap_err() {
            Error::Invalid { path, .. } => path,
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn env_names_are_upper_case_with_underscores() {
        assert_eq!(volume_env_name("data-db1"), "INFRAKIT_VOLUME_DATA_DB1");
        assert_eq!(volume_env_name("a.b c"), "INFRAKIT_VOLUME_A_B_C");
        assert_eq!(volume_env_name("é"), "INFRAKIT_VOLUME__");
    }

    #[test]
    fn only_volumes_count_and_ids_must_be_path_components() {
        let s = spec(&[
            ("data", "volume"),
            ("../not/a/volume", "ebs"),
            ("data", "volume"),
            (".cache", "volume"),
            ("", ""),
        ]);
        assert_eq!(volume_ids(&s).unwrap(), vec!["data", ".cache"]);
        for bad in ["", ".", "..", "a/b", "../x", "/abs", "nul\0"] {
            assert_eq!(
                err_path(&spec(&[("ok", "volume"), (bad, "volume")])),
                "Spec.Attachments[1].ID",
                "{bad:?}"
            );
        }
        assert_eq!(
            err_path(&spec(&[("data-db1", "volume"), ("data_db1", "volume")])),
            "Spec.Attachments[1].ID"
        );
    }

    #[test]
    fn attach_creates_volumes_and_links_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("volumes");
        let links = dir.path().join("inst").join("volumes");
        let env = attach(&root, &links, &["v1"]).unwrap();
        assert_eq!(
            env,
            vec![
                (
                    "INFRAKIT_VOLUME_V1".to_string(),
                    root.join("v1").display().to_string()
                ),
                (ENV_VOLUMES.to_string(), links.display().to_string()),
            ]
        );
        assert_eq!(fs::read_link(links.join("v1")).unwrap(), root.join("v1"));
        fs::write(root.join("v1").join("f"), "x").unwrap();
        attach(&root, &links, &["v1"]).unwrap();
        assert_eq!(fs::read_to_string(links.join("v1").join("f")).unwrap(), "x");
    }
}
