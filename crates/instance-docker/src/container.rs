//! What a spec makes of its container besides the properties: the container's name, its labels,
//! its environment and the mounts of the spec's volume attachments.

use bollard::models::{Mount, MountType};
use infrakit_spi::instance::{GROUP_TAG, LOGICAL_ID_TAG};
use infrakit_spi::{Error, Result, Spec, Tags};
use rand::Rng;

use crate::options::PLUGIN_LABEL;
use crate::properties::{self, DockerProperties};

/// Where volume attachments are mounted unless the properties mount them elsewhere.
pub const VOLUME_MOUNT_ROOT: &str = "/data";
/// Attachment type that becomes a named Docker volume.
pub const VOLUME_ATTACHMENT: &str = "volume";

/// Environment variable holding the instance ID (the container name).
pub const ENV_INSTANCE_ID: &str = "INFRAKIT_INSTANCE_ID";
/// Environment variable holding the logical ID (empty for cattle).
pub const ENV_LOGICAL_ID: &str = "INFRAKIT_LOGICAL_ID";
/// Environment variable holding the `infrakit.group` tag (empty if absent).
pub const ENV_GROUP: &str = "INFRAKIT_GROUP";
/// Prefix of the variables holding each volume attachment's mount point.
pub const ENV_VOLUME_PREFIX: &str = "INFRAKIT_VOLUME_";

/// The name of the variable holding the mount point of volume attachment `id`:
/// [`ENV_VOLUME_PREFIX`] followed by the ID upper-cased, every character other than a letter or
/// digit replaced by `_` (`data-db1` is `INFRAKIT_VOLUME_DATA_DB1`).
pub fn volume_env_name(id: &str) -> String {
    let suffix: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{ENV_VOLUME_PREFIX}{suffix}")
}

/// `s` reduced to the characters Docker allows in container names (`[a-zA-Z0-9_.-]`, others
/// become `-`), starting with a letter or digit.
pub use infrakit_spi::instance::safe_name as sanitize_name;

fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The `infrakit.group` tag of `spec`, empty if absent.
pub(crate) fn group(spec: &Spec) -> String {
    spec.tags
        .get(GROUP_TAG)
        .map(str::to_string)
        .unwrap_or_default()
}

/// The first part of container names: the group, or the plugin name without one, as a Docker
/// name.
pub(crate) fn name_prefix(group: &str, plugin: &str) -> String {
    sanitize_name(if group.is_empty() { plugin } else { group })
}

/// A pet's own container name, `<prefix>-<logical ID>`; `None` for cattle.
pub(crate) fn pet_name(prefix: &str, logical_id: Option<&String>) -> Option<String> {
    logical_id.map(|l| format!("{prefix}-{}", sanitize_name(l)))
}

/// The name to try at attempt `attempt` (counting from 1): a pet's own name for the first two
/// attempts, then that name with a random suffix; for cattle a random name every time.
pub(crate) fn candidate_name(prefix: &str, pet_name: Option<&String>, attempt: u32) -> String {
    match pet_name {
        Some(p) if attempt <= 2 => p.clone(),
        Some(p) => format!("{p}-{}", random_suffix(6)),
        None => format!("{prefix}-{}", random_suffix(8)),
    }
}

/// The container's labels: the properties' labels, then the spec's tags, its logical ID and the
/// plugin's own [`PLUGIN_LABEL`].
pub(crate) fn labels(props: &DockerProperties, spec: &Spec, plugin: &str) -> Tags {
    let mut labels = props.labels().clone();
    labels.extend(
        spec.tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    if let Some(l) = &spec.logical_id {
        labels.insert(LOGICAL_ID_TAG, l);
    }
    labels.insert(PLUGIN_LABEL, plugin);
    labels
}

/// The mounts of the volume attachments `volumes` that the properties do not mount already,
/// and the environment every container of the spec gets: the logical ID, the group and each
/// volume's mount point ([`volume_env_name`]). The instance ID is added per name tried.
pub(crate) fn volumes_and_env(
    props: &DockerProperties,
    spec: &Spec,
    group: &str,
    volumes: &[&str],
) -> (Vec<Mount>, Vec<(String, String)>) {
    let already = props.mounted_volumes();
    let mut mounts = Vec::new();
    let mut env = vec![
        (
            ENV_LOGICAL_ID.to_string(),
            spec.logical_id.clone().unwrap_or_default(),
        ),
        (ENV_GROUP.to_string(), group.to_string()),
    ];
    for id in volumes {
        let target = match already.get(*id) {
            Some(t) => t.clone(),
            None => {
                let t = format!("{VOLUME_MOUNT_ROOT}/{id}");
                mounts.push(Mount {
                    target: Some(t.clone()),
                    source: Some(id.to_string()),
                    typ: Some(MountType::VOLUME),
                    ..Default::default()
                });
                t
            }
        };
        env.push((volume_env_name(id), target));
    }
    (mounts, env)
}

/// Volume attachment IDs of `spec`, checked to be valid Docker volume names.
pub(crate) fn volume_attachments(spec: &Spec) -> Result<Vec<&str>> {
    let mut out = Vec::new();
    for (i, a) in spec.attachments.iter().enumerate() {
        if a.kind != VOLUME_ATTACHMENT {
            continue;
        }
        if !properties::valid_volume_name(&a.id) {
            return Err(Error::invalid(
                format!("Spec.Attachments[{i}].ID"),
                format!(
                    "{:?} is not a Docker volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)",
                    a.id
                ),
            ));
        }
        if !out.contains(&a.id.as_str()) {
            out.push(a.id.as_str());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_docker_names() {
        assert_eq!(sanitize_name("web"), "web");
        assert_eq!(sanitize_name("my group/1"), "my-group-1");
        assert_eq!(sanitize_name("_x"), "x");
        assert_eq!(sanitize_name("--"), "x");
        assert_eq!(sanitize_name("db.1_a"), "db.1_a");
    }

    #[test]
    fn volume_variables() {
        assert_eq!(volume_env_name("data-db1"), "INFRAKIT_VOLUME_DATA_DB1");
    }

    #[test]
    fn attachments_must_be_volume_names() {
        let spec: Spec = serde_json::from_value(json!({
            "Attachments": [{"ID": "ok-1", "Type": "volume"}, {"ID": "x", "Type": "ebs"}, {"ID": "a/b", "Type": "volume"}]
        }))
        .unwrap();
        let err = volume_attachments(&spec).unwrap_err().to_string();
        assert!(err.starts_with("Spec.Attachments[2].ID"), "{err}");
    }
}
