//! The link between an instance and its swarm node: a random value that Prepare puts both on the
//! instance (a tag) and on its Docker engine (a label), which the engine reports to the swarm
//! when it joins. The swarm's node list, filtered by that engine label, finds the node of an
//! instance; the group label finds every node of a group.
//!
//! The tag names are the original InfraKit swarm flavor's: `infrakit-link`,
//! `infrakit-link-context` (`swarm::<swarm ID>::<role>`), `infrakit-link-created` (RFC 3339)
//! and `swarm-id`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::Tags;
use rand::Rng;

use crate::role::Role;

/// Tag (on the instance) and label (on its engine) holding the link.
pub const LINK_TAG: &str = "infrakit-link";
/// Tag describing what the link is: `swarm::<swarm ID>::<role>`.
pub const LINK_CONTEXT_TAG: &str = "infrakit-link-context";
/// Tag holding when the link was made (RFC 3339), from which the join grace counts.
pub const LINK_CREATED_TAG: &str = "infrakit-link-created";
/// Tag holding the swarm's ID.
pub const SWARM_ID_TAG: &str = "swarm-id";
/// Engine label naming the instance's group (the `infrakit.group` tag).
pub const GROUP_LABEL: &str = GROUP_TAG;
/// Engine labels the flavor sets itself; `EngineLabels` may not.
pub const RESERVED_LABELS: &[&str] = &[LINK_TAG, GROUP_LABEL];
/// Length of a link value.
pub const LINK_LEN: usize = 16;

/// One instance's link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The random value.
    pub value: String,
    /// When it was made.
    pub created: SystemTime,
}

impl Link {
    /// A new random link made now.
    pub fn generate() -> Link {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        let value = (0..LINK_LEN)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        Link {
            value,
            created: SystemTime::now(),
        }
    }

    /// The tags Prepare adds to the instance.
    pub fn tags(&self, swarm_id: &str, role: Role) -> Tags {
        Tags::from([
            (LINK_TAG.to_string(), self.value.clone()),
            (LINK_CONTEXT_TAG.to_string(), context(swarm_id, role)),
            (
                LINK_CREATED_TAG.to_string(),
                humantime::format_rfc3339_seconds(self.created).to_string(),
            ),
            (SWARM_ID_TAG.to_string(), swarm_id.to_string()),
        ])
    }

    /// The labels of the instance's engine: `extra` (the properties' `EngineLabels`), the link
    /// and, when the instance has one, its group.
    pub fn engine_labels(
        &self,
        group: Option<&str>,
        extra: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut labels = extra.clone();
        labels.insert(LINK_TAG.to_string(), self.value.clone());
        if let Some(g) = group.filter(|g| !g.is_empty()) {
            labels.insert(GROUP_LABEL.to_string(), g.to_string());
        }
        labels
    }
}

/// `swarm::<swarm ID>::<role>`.
pub fn context(swarm_id: &str, role: Role) -> String {
    format!("swarm::{swarm_id}::{}", role.as_str())
}

/// How long ago the link in `tags` was made (`None`: no or unreadable `infrakit-link-created`,
/// or in the future).
pub fn age(tags: &Tags, now: SystemTime) -> Option<Duration> {
    let created = humantime::parse_rfc3339_weak(tags.get(LINK_CREATED_TAG)?).ok()?;
    now.duration_since(created).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_random_lowercase_alphanumerics() {
        let a = Link::generate();
        let b = Link::generate();
        assert_ne!(a.value, b.value);
        assert_eq!(a.value.len(), LINK_LEN);
        assert!(a
            .value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    }

    #[test]
    fn tags_labels_and_age() {
        let created = humantime::parse_rfc3339("2024-05-01T10:00:00Z").unwrap();
        let link = Link {
            value: "abcdefgh12345678".into(),
            created,
        };
        let tags = link.tags("swarm1", Role::Manager);
        assert_eq!(&tags[LINK_TAG], "abcdefgh12345678");
        assert_eq!(&tags[LINK_CONTEXT_TAG], "swarm::swarm1::manager");
        assert_eq!(&tags[LINK_CREATED_TAG], "2024-05-01T10:00:00Z");
        assert_eq!(&tags[SWARM_ID_TAG], "swarm1");
        assert_eq!(
            age(&tags, created + Duration::from_secs(90)),
            Some(Duration::from_secs(90))
        );
        assert_eq!(age(&tags, created - Duration::from_secs(1)), None);
        assert_eq!(age(&Tags::new(), created), None);

        let extra = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        let labels = link.engine_labels(Some("workers"), &extra);
        assert_eq!(
            labels.into_iter().collect::<Vec<_>>(),
            [
                ("infrakit-link".to_string(), "abcdefgh12345678".to_string()),
                ("infrakit.group".to_string(), "workers".to_string()),
                ("zone".to_string(), "a".to_string()),
            ]
        );
        assert!(!link.engine_labels(None, &extra).contains_key(GROUP_LABEL));
    }
}
