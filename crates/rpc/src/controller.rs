//! The `Controller` and `Stack` calls of InfraKit's last version, served on top of the Group API:
//! a group is an object of kind `group` whose spec is its group spec and whose state is its
//! description.
//!
//! Unlike the original, a group object answers for itself only (the original's `Describe` on
//! `mystack/cattle` also returned every group listed before it), the object `""` answers like the
//! collection (the original's blocked on a plugin that never comes), destroying a group names it
//! by its ID, and the stack's `Enforce`, `Inspect` and `Terminate` do what they say (the
//! original's answered "not implemented").

use serde_json::{json, Value};

use infrakit_spi::object::{Metadata, Object, ObjectSpec};
use infrakit_spi::{Error, Group, GroupDescription, GroupSpec};

use crate::call::{ControllerCall, Operation};
use crate::failure::{bad_param, Failure};
use crate::keyed::{self, Addressed};

/// Makes a Controller call addressed to `name`.
pub(crate) async fn call(
    g: &dyn Group,
    name: &str,
    call: ControllerCall,
) -> Result<Value, Failure> {
    let scope = match keyed::group(name) {
        Addressed::All => None,
        Addressed::Group(id) => Some(id),
    };
    match call {
        ControllerCall::Find { free, search } => {
            let objects = find(g, name, scope, search.as_ref()).await?;
            if free {
                for o in &objects {
                    g.free_group(o.spec.metadata.instance()).await?;
                }
            }
            Ok(json!({"Name": name, "Objects": objects}))
        }
        ControllerCall::Change {
            commit,
            operation,
            spec,
        } => {
            let group = group_of(&spec, "params.Spec")?;
            if let Some(scope) = scope.filter(|s| *s != group.id) {
                return Err(bad_param(
                    "params.Spec.metadata.name",
                    format!(
                        "names group '{}', but this object is group '{scope}'",
                        group.id
                    ),
                ));
            }
            let (object, message) = change(g, commit, operation, group).await?;
            Ok(json!({"Name": name, "Object": object, "Plan": {"Message": [message]}}))
        }
    }
}

/// The group objects in `scope` (all when `None`) that `search` matches (all when `None`); a
/// scope that names no group here is not found.
async fn find(
    g: &dyn Group,
    name: &str,
    scope: Option<&str>,
    search: Option<&Metadata>,
) -> Result<Vec<Object>, Failure> {
    let specs = g.inspect_groups().await?;
    if let Some(scope) = scope {
        if !specs.iter().any(|s| s.id == scope) {
            return Err(keyed::not_found(name));
        }
    }
    let wanted = search.map(Metadata::instance).filter(|id| !id.is_empty());
    let mut out = Vec::new();
    for spec in specs {
        if scope.is_some_and(|s| s != spec.id) || wanted.is_some_and(|w| w != spec.id) {
            continue;
        }
        out.push(object(g, &spec).await?);
    }
    Ok(out)
}

/// Group `spec` as an object, with its description as state.
async fn object(g: &dyn Group, spec: &GroupSpec) -> Result<Object, Failure> {
    let description = g.describe_group(&spec.id).await?;
    Ok(Object::of_group(spec, &description)?)
}

/// Plans (`commit: false`) or makes a change to `group`; the object as it was before (a new
/// group's spec with an empty state) and what the change does.
async fn change(
    g: &dyn Group,
    commit: bool,
    operation: Operation,
    group: GroupSpec,
) -> Result<(Object, String), Failure> {
    let existing = g.inspect_groups().await?;
    let before = match existing.iter().find(|s| s.id == group.id) {
        Some(spec) => object(g, spec).await?,
        None => Object::of_group(&group, &GroupDescription::default())?,
    };
    let message = match (operation, commit) {
        (Operation::Enforce, pretend) => g.commit_group(group, !pretend).await?,
        (Operation::Destroy, false) => {
            if !existing.iter().any(|s| s.id == group.id) {
                return Err(Error::group_not_watched(&group.id).into());
            }
            format!("Destroying group {} and its instances", group.id)
        }
        (Operation::Destroy, true) => {
            g.destroy_group(&group.id).await?;
            format!("Destroyed {}", group.id)
        }
    };
    Ok((before, message))
}

/// The group spec an object spec at `path` describes, or the field at fault.
fn group_of(spec: &ObjectSpec, path: &str) -> Result<GroupSpec, Failure> {
    spec.to_group().map_err(|e| match e {
        Error::Invalid {
            path: field,
            message,
        } => bad_param(&format!("{path}.{field}"), message),
        other => other.into(),
    })
}

/// `Manager.Specs`: the spec of every group.
pub(crate) async fn specs(g: &dyn Group) -> Result<Value, Failure> {
    let specs: Vec<ObjectSpec> = g
        .inspect_groups()
        .await?
        .iter()
        .map(ObjectSpec::of_group)
        .collect();
    Ok(json!({ "Specs": specs }))
}

/// `Manager.Inspect`: every group with its state.
pub(crate) async fn inspect(g: &dyn Group) -> Result<Value, Failure> {
    let mut objects = Vec::new();
    for spec in g.inspect_groups().await? {
        objects.push(object(g, &spec).await?);
    }
    Ok(json!({ "Objects": objects }))
}

/// `Manager.Enforce` (commit each spec) or `Manager.Terminate` (destroy each group): every spec
/// is checked before anything changes; the details of each commit are returned.
pub(crate) async fn apply(
    g: &dyn Group,
    specs: Vec<ObjectSpec>,
    terminate: bool,
) -> Result<Value, Failure> {
    let groups = specs
        .iter()
        .enumerate()
        .map(|(i, s)| group_of(s, &format!("params.Specs[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut details = Vec::new();
    for group in groups {
        if terminate {
            g.destroy_group(&group.id).await?;
            details.push(format!("Destroyed {}", group.id));
        } else {
            let id = group.id.clone();
            let d = g.commit_group(group, false).await?;
            details.push(format!("Committed {id}: {d}"));
        }
    }
    Ok(json!({ "Details": details }))
}
