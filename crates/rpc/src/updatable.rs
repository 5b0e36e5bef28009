//! The `Updatable` calls of InfraKit's last version on a manager: two metadata trees, `status`
//! (read-only: whether this manager leads, and its name) and `vars` (the operator's variables,
//! changed by proposing changes and committing the proposal with its hash).

use serde_json::{json, Value};

use infrakit_spi::manager::Manager;
use infrakit_spi::metadata::{self, Path};
use infrakit_spi::Error;

use crate::call::UpdatableCall;
use crate::failure::Failure;
use crate::keyed::{self, STATUS, VARS};

/// Makes an Updatable call addressed to `name`.
pub(crate) async fn call(
    m: &dyn Manager,
    name: &str,
    call: UpdatableCall,
) -> Result<Value, Failure> {
    let writable = match keyed::object(name) {
        Some(STATUS) => false,
        Some(VARS) => true,
        _ => return Err(keyed::not_found(name)),
    };
    let tree = if writable {
        m.vars().await?
    } else {
        let status = m.status().await?;
        json!({"leader": status.leader, "name": status.name})
    };
    match call {
        UpdatableCall::Keys { path } => {
            Ok(json!({"Name": name, "Nodes": metadata::keys(&tree, &path)}))
        }
        UpdatableCall::Get { path } => Ok(json!({"Name": name, "Value": value_at(&tree, &path)})),
        UpdatableCall::Changes { changes } => {
            if !writable {
                return Err(readonly());
            }
            let proposed = metadata::apply(&tree, &changes).map_err(|e| match e {
                Error::Invalid { path, message } => {
                    crate::failure::bad_param(&format!("params.{path}"), message)
                }
                other => other.into(),
            })?;
            let cas = metadata::fingerprint(&tree, &proposed);
            Ok(json!({"Name": name, "Original": tree, "Proposed": proposed, "Cas": cas}))
        }
        UpdatableCall::Commit { proposed, cas } => {
            if !writable {
                return Err(readonly());
            }
            m.commit_vars(&cas, proposed).await?;
            Ok(json!({ "Name": name }))
        }
    }
}

/// The value at `path`, `null` when there is none.
fn value_at(tree: &Value, path: &Path) -> Value {
    metadata::get(tree, path).cloned().unwrap_or(Value::Null)
}

/// A change to a read-only tree: the original's text.
fn readonly() -> Failure {
    Error::plugin("readonly").into()
}
