//! The group spec parser: arbitrary text read as the CLI reads a spec file (JSON, else YAML; one
//! spec or a list), decoded into `GroupSpec`s and validated by the group controller's
//! `Settings::parse`, then planned from nothing.
//!
//! Checked for every input: no panic; a spec that parses keeps its configuration hash when it is
//! written out and read back; redacting a spec for display never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

use infrakit_group::planner::{self, Desired, Target};
use infrakit_group::settings::Settings;
use infrakit_spi::error::decode_at;
use infrakit_spi::GroupSpec;

/// Groups larger than this are planned only up to their settings: planning creates one action
/// per missing instance (see docs/security.md, "Limits").
const PLAN_UP_TO: usize = 10_000;

fn document(text: &str) -> Option<Value> {
    if let Ok(v) = serde_json::from_str(text) {
        return Some(v);
    }
    serde_saphyr::from_str(text).ok()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(doc) = document(text) else {
        return;
    };
    let _ = infrakit_spi::secret::redact(&doc);
    let specs = match doc {
        Value::Array(items) => items,
        one => vec![one],
    };
    for v in specs {
        let Ok(spec) = decode_at::<GroupSpec>("", &v) else {
            continue;
        };
        let Ok(settings) = Settings::parse(&spec) else {
            continue;
        };
        // Written out and read back, the spec means the same.
        let again: GroupSpec = decode_at("", &serde_json::to_value(&spec).unwrap()).unwrap();
        let reparsed = Settings::parse(&again).expect("a valid spec stays valid");
        assert_eq!(settings.config_hash, reparsed.config_hash);

        let desired = match settings.props.allocation.logical_ids.as_ref() {
            Some(ids) if !ids.is_empty() => Desired::LogicalIds(ids.clone()),
            _ => Desired::Size(settings.desired()),
        };
        let _ = (
            settings.max_surge(),
            settings.max_unavailable(),
            settings.min_healthy_time(),
            settings.min_healthy_count(),
            settings.is_pets(),
        );
        if desired.count() <= PLAN_UP_TO {
            let target = Target::new(desired, settings.max_surge(), settings.max_unavailable());
            let plan = planner::plan(&target, &[]);
            assert!(plan.provisions() <= target.desired.count() + target.max_surge);
        }
    }
});
