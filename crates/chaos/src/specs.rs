//! Group specs the fault tests commit.

use serde_json::json;

use infrakit_spi::GroupSpec;

/// A cattle group of `size` instances of the plugin called `instance`, flavored by
/// `flavor-vanilla`. `version` goes into the instance properties: changing it changes the
/// configuration hash, so committing another version starts a rollout.
pub fn cattle(
    id: &str,
    size: usize,
    instance: &str,
    properties: serde_json::Value,
    flavor: serde_json::Value,
) -> GroupSpec {
    GroupSpec {
        id: id.to_string(),
        properties: json!({
            "Allocation": {"Size": size},
            "Instance": {"Plugin": instance, "Properties": properties},
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": flavor},
        }),
    }
}

/// A group of simulated instances (plugin `instance-simulator`), configuration `version`.
pub fn simulated(id: &str, size: usize, version: u32) -> GroupSpec {
    cattle(
        id,
        size,
        "instance-simulator",
        json!({"Version": version}),
        json!({}),
    )
}

/// A group of processes run by the process plugin called `instance`: each instance runs
/// `argv`, with `VERSION=<version>` in its environment; the flavor's `Init` (run by the plugin
/// before the command, inside `Provision`) sleeps `init_secs`, so provisions take that long.
pub fn processes(
    id: &str,
    size: usize,
    version: u32,
    instance: &str,
    argv: &[String],
    init_secs: f64,
) -> GroupSpec {
    cattle(
        id,
        size,
        instance,
        json!({"Cmd": argv[0], "Args": argv[1..], "Env": {"VERSION": version.to_string()}}),
        json!({"Init": [format!("sleep {init_secs}")]}),
    )
}

/// The same spec with `Allocation.Size` set to `size`.
pub fn resized(spec: &GroupSpec, size: usize) -> GroupSpec {
    let mut s = spec.clone();
    s.properties["Allocation"] = json!({"Size": size});
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_valid_group_properties() {
        let argv = vec!["sleep".to_string(), "3600".to_string()];
        for s in [
            simulated("a", 3, 1),
            processes("b", 2, 1, "instance-process", &argv, 0.2),
        ] {
            infrakit_spi::GroupProperties::parse(&s).unwrap();
        }
        let p = processes("b", 2, 1, "p", &argv, 0.2);
        assert_eq!(
            p.properties["Instance"]["Properties"]["Args"],
            json!(["3600"])
        );
        assert_eq!(resized(&p, 5).properties["Allocation"]["Size"], 5);
    }
}
