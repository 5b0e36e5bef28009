//! The decisions around one `terraform apply` run, as pure functions.
//!
//! Every change (provision, destroy, label, adoption) is first written to the directory, then
//! waits for the next apply. All changes waiting when an apply starts form its batch. Afterwards
//! each change is judged against the new state ([`verdict`]): it is done when its goal holds in
//! the state (the instance exists, is gone, carries the labels), whatever Terraform's exit status
//! was; it failed when Terraform's error messages point at its file or resources ([`blame`]);
//! otherwise it is retried with the next apply, up to a number of attempts. Files of instances
//! that are in no batch and not in the state any more (destroyed outside, or never applied) are
//! removed before an apply ([`orphans`]), so Terraform does not bring them back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use infrakit_spi::instance::tags_match;
use infrakit_spi::Tags;

use crate::state::{belongs_to, State};

/// What a waiting change wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The instance's file was written; it must exist after the apply.
    Provision,
    /// The instance's file was removed; nothing of it may remain.
    Destroy,
    /// The instance's file carries these labels; its record must carry them.
    Label(Tags),
    /// The instance's file imports or moves an existing resource; it must exist after the apply.
    Adopt,
}

impl Change {
    /// A verb for messages.
    pub fn verb(&self) -> &'static str {
        match self {
            Change::Provision => "provision",
            Change::Destroy => "destroy",
            Change::Label(_) => "label",
            Change::Adopt => "import",
        }
    }
}

/// One error or warning from `terraform apply -json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostic {
    /// `error` or `warning`.
    pub severity: String,
    /// One-line summary.
    pub summary: String,
    /// Explanation.
    pub detail: String,
    /// The resource it is about, if any.
    pub address: Option<String>,
    /// The configuration file it points into, relative to the directory, if any.
    pub filename: Option<String>,
}

impl Diagnostic {
    /// The message as a user reads it: `summary: detail`.
    pub fn message(&self) -> String {
        let detail = self.detail.trim();
        let mut m = if detail.is_empty() {
            self.summary.clone()
        } else {
            format!("{}: {detail}", self.summary)
        };
        if let Some(a) = &self.address {
            m.push_str(&format!(" (resource {a})"));
        } else if let Some(f) = &self.filename {
            m.push_str(&format!(" (in {f})"));
        }
        m
    }

    /// True for an error.
    pub fn is_error(&self) -> bool {
        self.severity == "error"
    }
}

/// The instance (one of `ids`) that diagnostic `d` is about: the one whose file it points into,
/// or whose resources it names.
pub fn instance_of<'a>(d: &Diagnostic, ids: &[&'a str]) -> Option<&'a str> {
    if let Some(f) = &d.filename {
        let base = f.rsplit('/').next().unwrap_or(f);
        if let Some(stem) = base.strip_suffix(".tf.json") {
            if let Some(id) = ids.iter().find(|id| **id == stem) {
                return Some(id);
            }
        }
    }
    let address = d.address.as_deref()?;
    // `type.name`, `type.name[0]`, `module.m.type.name`, `data.type.name`.
    let name = address.split('[').next()?.rsplit('.').next()?;
    ids.iter()
        .filter(|id| belongs_to(name, id))
        .max_by_key(|id| id.len())
        .copied()
}

/// The error messages of `diagnostics`, by the instance (of `ids`) they are about.
pub fn blame(diagnostics: &[Diagnostic], ids: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in diagnostics.iter().filter(|d| d.is_error()) {
        if let Some(id) = instance_of(d, ids) {
            let m = d.message();
            let list = out.entry(id.to_string()).or_default();
            if !list.contains(&m) {
                list.push(m);
            }
        }
    }
    out
}

/// All error messages of a run, joined, for changes no message points at.
pub fn summary(diagnostics: &[Diagnostic], fallback: &str) -> String {
    let errors: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(Diagnostic::message)
        .collect();
    if errors.is_empty() {
        fallback.trim().to_string()
    } else {
        errors.join("; ")
    }
}

/// What becomes of a change after an apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its goal holds in the state.
    Done,
    /// It failed, with this message; its file is undone.
    Failed(String),
    /// Not its fault: it goes into the next apply.
    Retry,
}

/// How an apply went, for judging its changes.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    /// Terraform's success.
    pub applied: bool,
    /// The state after the apply.
    pub state: &'a State,
    /// Error messages by the instance they are about ([`blame`]).
    pub blamed: &'a BTreeMap<String, Vec<String>>,
    /// All of the run's error messages ([`summary`]).
    pub errors: &'a str,
    /// How many applies a change may be in before it fails.
    pub max_attempts: u32,
}

/// Judges change `change` of instance `id`, which has now been in `attempts` applies (this one
/// included), by the `outcome` of the apply.
pub fn verdict(change: &Change, id: &str, attempts: u32, outcome: &Outcome<'_>) -> Verdict {
    let Outcome {
        applied,
        state,
        blamed,
        errors,
        max_attempts,
    } = *outcome;
    let reached = match change {
        Change::Provision | Change::Adopt => state.instance(id).is_some(),
        Change::Destroy => !state.holds_anything_of(id),
        Change::Label(labels) => state
            .instance(id)
            .is_some_and(|f| tags_match(&f.record.tags, labels)),
    };
    if reached {
        return Verdict::Done;
    }
    if let Some(messages) = blamed.get(id) {
        return Verdict::Failed(messages.join("; "));
    }
    if applied {
        return Verdict::Failed(match change {
            Change::Provision | Change::Adopt | Change::Label(_) => format!(
                "instance {id} is not in Terraform's state after a successful apply; \
                 was it destroyed meanwhile?"
            ),
            Change::Destroy => format!(
                "resources of instance {id} are still in Terraform's state after a successful apply"
            ),
        });
    }
    if attempts >= max_attempts {
        return Verdict::Failed(format!(
            "terraform apply failed {attempts} time(s): {errors}"
        ));
    }
    Verdict::Retry
}

/// Instance files (by ID) to remove before an apply: those of instances that are neither in
/// the batch nor in the state. They were destroyed outside the plugin or never applied (their
/// `Provision` is gone); applying them would bring back what is no longer wanted.
pub fn orphans(files: &BTreeSet<String>, batch: &BTreeSet<String>, state: &State) -> Vec<String> {
    let alive: BTreeSet<String> = state.instances().into_iter().map(|f| f.record.id).collect();
    files
        .iter()
        .filter(|id| !batch.contains(*id) && !alive.contains(*id))
        .cloned()
        .collect()
}

/// Exponential back-off between failed applies that no change was to blame for.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The wait before the next attempt; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to the initial wait, after a success.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn diag(address: Option<&str>, filename: Option<&str>, summary: &str) -> Diagnostic {
        Diagnostic {
            severity: "error".into(),
            summary: summary.into(),
            detail: "detail".into(),
            address: address.map(str::to_string),
            filename: filename.map(str::to_string),
        }
    }

    fn state_with(ids: &[&str], tags: Value2) -> State {
        let mut resources = Vec::new();
        let mut outputs = serde_json::Map::new();
        for id in ids {
            resources.push(
                json!({"address": format!("terraform_data.{id}"), "mode": "managed",
                "type": "terraform_data", "name": id, "values": {}}),
            );
            outputs.insert(
                format!("infrakit_{id}"),
                json!({"value": {"ID": id, "Tags": tags.0.clone(), "Primary": format!("terraform_data.{id}")}}),
            );
        }
        State::parse(
            &serde_json::to_vec(&json!({"values": {"outputs": outputs,
                "root_module": {"resources": resources}}}))
            .unwrap(),
        )
        .unwrap()
    }

    struct Value2(serde_json::Value);

    #[test]
    fn diagnostics_are_blamed_on_the_instance_they_point_at() {
        let ids = ["i-1-aa", "i-1-a", "i-2-bb"];
        let ds = vec![
            diag(
                None,
                Some("i-1-a.tf.json"),
                "Extraneous JSON object property",
            ),
            diag(
                Some("terraform_data.i-2-bb-disk"),
                None,
                "local-exec provisioner error",
            ),
            diag(Some("terraform_data.i-1-aa[0]"), Some("main.tf"), "boom"),
            diag(Some("terraform_data.shared"), Some("main.tf"), "user's own"),
            Diagnostic {
                severity: "warning".into(),
                ..diag(Some("terraform_data.i-1-a"), None, "just a warning")
            },
        ];
        let b = blame(&ds, &ids);
        assert_eq!(b.len(), 3, "{b:?}");
        assert!(b["i-1-a"][0].starts_with("Extraneous JSON object property: detail"));
        assert!(b["i-2-bb"][0].contains("(resource terraform_data.i-2-bb-disk)"));
        assert!(b["i-1-aa"][0].starts_with("boom"));
        assert_eq!(summary(&ds, "x").matches("; ").count(), 3);
        assert_eq!(summary(&[], " killed \n"), "killed");
    }

    #[test]
    fn verdicts_follow_the_state_first() {
        let after = state_with(&["a"], Value2(json!({"k": "v"})));
        let none = BTreeMap::new();
        let blamed: BTreeMap<String, Vec<String>> = [
            ("a".to_string(), vec!["bad".to_string()]),
            ("b".to_string(), vec!["bad".to_string()]),
        ]
        .into();
        let failed = |blamed| Outcome {
            applied: false,
            state: &after,
            blamed,
            errors: "lock",
            max_attempts: 3,
        };
        let ok = Outcome {
            applied: true,
            state: &after,
            blamed: &none,
            errors: "",
            max_attempts: 3,
        };
        // The goal holds: done, even when the apply failed and blamed it.
        assert_eq!(
            verdict(&Change::Provision, "a", 1, &failed(&blamed)),
            Verdict::Done
        );
        let labels: Tags = [("k".to_string(), "v".to_string())].into();
        assert_eq!(verdict(&Change::Label(labels), "a", 1, &ok), Verdict::Done);
        assert_eq!(
            verdict(&Change::Destroy, "b", 1, &failed(&none)),
            Verdict::Done
        );
        // Not reached and blamed: failed with Terraform's message.
        assert_eq!(
            verdict(&Change::Provision, "b", 1, &failed(&blamed)),
            Verdict::Failed("bad".into())
        );
        // Not reached, not blamed, apply failed: retried until the attempts run out.
        assert_eq!(
            verdict(&Change::Provision, "b", 1, &failed(&none)),
            Verdict::Retry
        );
        assert!(matches!(
            verdict(&Change::Provision, "b", 3, &failed(&none)),
            Verdict::Failed(m) if m == "terraform apply failed 3 time(s): lock"
        ));
        // Not reached although the apply succeeded.
        assert!(matches!(
            verdict(&Change::Destroy, "a", 1, &ok),
            Verdict::Failed(m) if m.contains("still in Terraform's state")
        ));
    }

    #[test]
    fn orphans_are_files_in_no_batch_and_not_in_the_state() {
        let st = state_with(&["a", "b"], Value2(json!({})));
        let files: BTreeSet<String> = ["a", "c", "d"].iter().map(|s| s.to_string()).collect();
        let batch: BTreeSet<String> = ["d".to_string()].into();
        assert_eq!(orphans(&files, &batch, &st), vec!["c".to_string()]);
    }

    #[test]
    fn backoff_doubles_up_to_the_max_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let seq: Vec<u64> = (0..5).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(seq, vec![1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }
}
