//! How the answers of the combined flavors become one answer. Pure functions, no I/O.

use infrakit_spi::{Error, Health, Spec};

use crate::properties::{entry_path, plugin_path, properties_path, PREFIX};

/// Folds one flavor's Prepare output into the combination. `before` is the spec the flavor was
/// given (the previous flavor's result) and `out` what it returned:
/// - tags: `before`'s, overridden and extended by `out`'s (a flavor cannot drop earlier tags);
/// - Init: `out`'s when it starts with `before`'s (the flavor appended to it, as vanilla does),
///   otherwise `before`'s and `out`'s joined by a newline (the flavor returned only its own);
/// - attachments: the same rule, by list prefix;
/// - Properties and LogicalID: as `out` has them.
pub fn merge_step(before: &Spec, out: Spec) -> Spec {
    let mut tags = before.tags.clone();
    tags.extend(out.tags);
    let init = if out.init.starts_with(&before.init) {
        out.init
    } else if out.init.is_empty() {
        before.init.clone()
    } else if before.init.is_empty() {
        out.init
    } else {
        format!("{}\n{}", before.init, out.init)
    };
    let attachments = if out.attachments.starts_with(&before.attachments) {
        out.attachments
    } else {
        let mut all = before.attachments.clone();
        all.extend(out.attachments);
        all
    };
    Spec {
        properties: out.properties,
        tags,
        init,
        logical_id: out.logical_id,
        attachments,
    }
}

/// How bad a health is: Healthy < Unknown < Unhealthy.
fn severity(h: Health) -> u8 {
    match h {
        Health::Healthy => 0,
        Health::Unknown => 1,
        Health::Unhealthy => 2,
    }
}

/// The worst of `healths` (Unhealthy over Unknown over Healthy); Healthy when there are none.
pub fn worst(healths: impl IntoIterator<Item = Health>) -> Health {
    healths
        .into_iter()
        .max_by_key(|h| severity(*h))
        .unwrap_or(Health::Healthy)
}

/// The health one flavor's answer counts as: an error counts as Unknown.
pub fn counted(answer: &Result<Health, Error>) -> Health {
    match answer {
        Ok(h) => *h,
        Err(_) => Health::Unknown,
    }
}

/// Re-roots an error from validating entry `i` of the list under that entry, so the user sees
/// which flavor's field is wrong: `Properties.x` becomes `Properties.Flavors[i].Properties.x`.
/// A plugin that cannot be reached is reported at `Properties.Flavors[i].Plugin`, any other
/// failure at the entry's `Properties`.
pub fn under_entry(i: usize, e: Error) -> Error {
    match e {
        Error::Invalid { path, message } => match properties_suffix(&path) {
            Some(rest) => Error::invalid(format!("{}{rest}", properties_path(i)), message),
            None => Error::invalid(entry_path(i), format!("{path}: {message}")),
        },
        Error::Unavailable { .. } | Error::Timeout { .. } => {
            Error::invalid(plugin_path(i), e.to_string())
        }
        other => Error::invalid(properties_path(i), other.to_string()),
    }
}

/// What follows `Properties` in `path` (`""`, `.x`, `[0]`), or `None` when the path is not under
/// `Properties`.
fn properties_suffix(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(PREFIX)?;
    (rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')).then_some(rest)
}

/// An error from entry `i` (plugin `plugin`) while preparing, healing or draining: invalid
/// properties are re-rooted under the entry, anything else is prefixed with the entry.
pub fn from_entry(i: usize, plugin: &str, e: Error) -> Error {
    match e {
        Error::Invalid { .. } => under_entry(i, e),
        other => Error::plugin(format!("Flavors[{i}] ({plugin}): {other}")),
    }
}

/// One error reporting every failure of a drain, in list order; `None` when all succeeded.
pub fn drain_errors(failures: Vec<Error>) -> Option<Error> {
    match failures.len() {
        0 => None,
        1 => failures.into_iter().next(),
        n => Some(Error::plugin(format!(
            "{n} flavors failed to drain: {}",
            failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infrakit_spi::Attachment;
    use serde_json::json;

    fn att(id: &str) -> Attachment {
        Attachment {
            id: id.into(),
            kind: "volume".into(),
        }
    }

    fn spec(init: &str, tags: &[(&str, &str)], atts: &[&str]) -> Spec {
        Spec {
            properties: json!({"Cmd": "sleep"}),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            init: init.into(),
            logical_id: Some("a".into()),
            attachments: atts.iter().map(|a| att(a)).collect(),
        }
    }

    #[test]
    fn an_appending_flavor_is_taken_as_is() {
        let before = spec("echo 1", &[("a", "1")], &["v1"]);
        let mut out = spec("echo 1\necho 2", &[("a", "2"), ("b", "1")], &["v1", "v2"]);
        out.properties = json!({"Cmd": "java"});
        out.logical_id = Some("b".into());
        let merged = merge_step(&before, out.clone());
        assert_eq!(merged, out);
    }

    #[test]
    fn a_replacing_flavor_cannot_drop_what_came_before() {
        let before = spec("echo 1", &[("a", "1"), ("keep", "x")], &["v1"]);
        let out = spec("echo 2", &[("a", "2")], &["v2"]);
        let merged = merge_step(&before, out);
        assert_eq!(merged.init, "echo 1\necho 2");
        assert_eq!(&merged.tags["a"], "2", "the later flavor wins");
        assert_eq!(&merged.tags["keep"], "x");
        assert_eq!(merged.attachments, vec![att("v1"), att("v2")]);

        let emptied = merge_step(&before, spec("", &[], &[]));
        assert_eq!(emptied.init, "echo 1");
        assert_eq!(emptied.attachments, vec![att("v1")]);
        let from_nothing = merge_step(&spec("", &[], &[]), spec("echo 2", &[], &[]));
        assert_eq!(from_nothing.init, "echo 2");
    }

    #[test]
    fn the_worst_health_wins() {
        use Health::*;
        assert_eq!(worst([]), Healthy);
        assert_eq!(worst([Healthy, Healthy]), Healthy);
        assert_eq!(worst([Healthy, Unknown, Healthy]), Unknown);
        assert_eq!(worst([Unknown, Unhealthy, Healthy]), Unhealthy);
        assert_eq!(worst([Unhealthy, Unknown]), Unhealthy);
        assert_eq!(counted(&Err(Error::plugin("boom"))), Unknown);
        assert_eq!(counted(&Ok(Unhealthy)), Unhealthy);
    }

    #[test]
    fn validation_errors_are_rerooted_under_their_entry() {
        let path = |e: Error| match e {
            Error::Invalid { path, message } => (path, message),
            other => panic!("not invalid: {other}"),
        };
        assert_eq!(
            path(under_entry(1, Error::invalid("Properties.x", "bad"))),
            ("Properties.Flavors[1].Properties.x".into(), "bad".into())
        );
        assert_eq!(
            path(under_entry(
                0,
                Error::invalid("Properties", "must be an object")
            ))
            .0,
            "Properties.Flavors[0].Properties"
        );
        assert_eq!(
            path(under_entry(2, Error::invalid("Properties[3]", "bad"))).0,
            "Properties.Flavors[2].Properties[3]"
        );
        // Not under Properties: kept in the message.
        assert_eq!(
            path(under_entry(0, Error::invalid("PropertiesX", "bad"))),
            ("Properties.Flavors[0]".into(), "PropertiesX: bad".into())
        );
        let (p, m) = path(under_entry(
            3,
            Error::Unavailable {
                name: "flavor-x".into(),
                socket: "/tmp/p/flavor-x".into(),
                reason: "no socket".into(),
            },
        ));
        assert_eq!(p, "Properties.Flavors[3].Plugin");
        assert!(m.contains("flavor-x"), "{m}");
        let (p, m) = path(under_entry(0, Error::plugin("refused")));
        assert_eq!(
            (p.as_str(), m.as_str()),
            ("Properties.Flavors[0].Properties", "refused")
        );
    }

    #[test]
    fn every_drain_failure_is_reported() {
        assert!(drain_errors(vec![]).is_none());
        let one = drain_errors(vec![from_entry(0, "a", Error::plugin("x"))]).unwrap();
        assert_eq!(one.to_string(), "Flavors[0] (a): x");
        let two = drain_errors(vec![
            from_entry(0, "a", Error::plugin("x")),
            from_entry(2, "c", Error::plugin("y")),
        ])
        .unwrap()
        .to_string();
        assert_eq!(
            two,
            "2 flavors failed to drain: Flavors[0] (a): x; Flavors[2] (c): y"
        );
    }
}
