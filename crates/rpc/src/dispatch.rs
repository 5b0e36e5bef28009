//! From a JSON-RPC body to a call on a trait object and back: method names, parameter and
//! result shapes of InfraKit's Instance, Flavor, Group and Handshake services.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use infrakit_spi::group::RolloutAction;
use infrakit_spi::{Allocation, Description, DestroyContext, Error, GroupSpec, Index, Spec, Tags};

use crate::jsonrpc::{self, Request};
use crate::server::Handlers;

/// What went wrong, mapped to a JSON-RPC error code.
struct Failure {
    code: i64,
    message: String,
    data: Value,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let data = match &e {
            Error::Invalid { path, message } => json!({"Path": path, "Message": message}),
            _ => Value::Null,
        };
        Failure {
            code: jsonrpc::SERVER_ERROR,
            message: e.to_string(),
            data,
        }
    }
}

fn failure(code: i64, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
        data: Value::Null,
    }
}

/// Methods that change infrastructure or a group; each call is logged (the audit trail) with the
/// caller's pid.
const MUTATING: &[&str] = &[
    "Instance.Provision",
    "Instance.Destroy",
    "Instance.Label",
    "Flavor.Drain",
    "Group.CommitGroup",
    "Group.FreeGroup",
    "Group.DestroyGroup",
    "Group.DestroyInstances",
    "Group.SetSize",
    "Group.PauseRollout",
    "Group.ResumeRollout",
    "Group.UndoRollout",
];

/// Handles one request body; `None` for a notification (no response body). `plugin` and
/// `caller` (the peer's pid) go into the audit log.
pub(crate) async fn handle(
    handlers: &Handlers,
    body: &[u8],
    plugin: &str,
    caller: Option<i32>,
) -> Option<Vec<u8>> {
    let req: Request = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            let code = if serde_json::from_slice::<Value>(body).is_ok() {
                jsonrpc::INVALID_REQUEST
            } else {
                jsonrpc::PARSE_ERROR
            };
            return Some(jsonrpc::encode_error(
                None,
                code,
                &format!("invalid request: {e}"),
            ));
        }
    };
    let id = req.id.filter(|id| id.get() != "null");
    if req.jsonrpc.as_deref() != Some("2.0") {
        return Some(jsonrpc::encode_error(
            id,
            jsonrpc::INVALID_REQUEST,
            "jsonrpc must be \"2.0\"",
        ));
    }
    let Some(method) = req.method.as_deref() else {
        return Some(jsonrpc::encode_error(
            id,
            jsonrpc::INVALID_REQUEST,
            "method is missing",
        ));
    };
    let params = match unwrap_params(req.params) {
        Ok(p) => p,
        Err(f) => return Some(jsonrpc::encode_error(id, f.code, &f.message)),
    };
    if MUTATING.contains(&method) {
        let caller = caller.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        tracing::info!(target: "infrakit::audit", plugin, method, caller_pid = %caller, "call");
    }
    let outcome = call(handlers, method, params).await;
    let id = id?;
    Some(match outcome {
        Ok(result) => jsonrpc::encode_result(id, &result),
        Err(f) => jsonrpc::encode_error_with(Some(id), f.code, &f.message, f.data),
    })
}

/// Params are one object; gorilla also accepts a one-element array holding it.
fn unwrap_params(raw: Option<&RawValue>) -> Result<Value, Failure> {
    let Some(raw) = raw else {
        return Ok(json!({}));
    };
    let v: Value = serde_json::from_str(raw.get())
        .map_err(|e| failure(jsonrpc::INVALID_PARAMS, format!("invalid params: {e}")))?;
    match v {
        Value::Null => Ok(json!({})),
        Value::Object(_) => Ok(v),
        Value::Array(mut a) if a.len() == 1 && a[0].is_object() => Ok(a.remove(0)),
        _ => Err(failure(
            jsonrpc::INVALID_PARAMS,
            "params must be one object",
        )),
    }
}

/// Decodes params, naming the bad field (`params.Spec.Tags: ...`) on failure.
fn decode<T: DeserializeOwned>(params: Value) -> Result<T, Failure> {
    infrakit_spi::error::decode_at("params", &params)
        .map_err(|e| failure(jsonrpc::INVALID_PARAMS, e.to_string()))
}

async fn call(h: &Handlers, method: &str, params: Value) -> Result<Value, Failure> {
    let (service, name) = method.split_once('.').ok_or_else(|| {
        failure(
            jsonrpc::METHOD_NOT_FOUND,
            format!("rpc: service/method request ill-formed: \"{method}\""),
        )
    })?;
    match service {
        "Plugin" | "Handshake" => handshake(h, name),
        "Instance" if !h.instances.is_empty() => instance(h, name, params).await,
        "Flavor" if !h.flavors.is_empty() => flavor(h, name, params).await,
        "Group" if h.group.is_some() => group(h, name, params).await,
        "Manager" if h.manager.is_some() => manager(h, name).await,
        "Event" if h.publisher.is_some() && name == "List" => Ok(json!({"Nodes": ["instance"]})),
        _ => Err(not_found(method)),
    }
}

fn not_found(method: &str) -> Failure {
    failure(
        jsonrpc::METHOD_NOT_FOUND,
        format!("rpc: can't find method \"{method}\""),
    )
}

fn handshake(h: &Handlers, name: &str) -> Result<Value, Failure> {
    let ifaces = h.interfaces();
    match name {
        "Implements" => {
            let apis: Vec<Value> = ifaces
                .iter()
                .map(|(i, _)| json!({"Name": i.name, "Version": i.version}))
                .collect();
            Ok(json!({ "APIs": apis }))
        }
        "Types" => {
            let types: BTreeMap<String, Vec<String>> = ifaces
                .iter()
                .map(|(i, types)| {
                    (
                        i.to_string(),
                        types.iter().map(|t| display_type(t)).collect(),
                    )
                })
                .collect();
            Ok(json!({ "Types": types }))
        }
        "Hello" => {
            let objects: BTreeMap<String, Vec<Value>> = ifaces
                .iter()
                .map(|(i, types)| {
                    let objs = types
                        .iter()
                        .map(|t| json!({"Name": display_type(t), "ProxyFor": ""}))
                        .collect();
                    (i.to_string(), objs)
                })
                .collect();
            Ok(json!({ "Objects": objects }))
        }
        _ => Err(not_found(&format!("Handshake.{name}"))),
    }
}

fn display_type(t: &str) -> String {
    if t.is_empty() {
        ".".into()
    } else {
        t.to_string()
    }
}

#[derive(Deserialize)]
struct Typed {
    #[serde(rename = "Type", default)]
    kind: Option<String>,
}

fn type_of(params: &Value) -> String {
    serde_json::from_value::<Typed>(params.clone())
        .ok()
        .and_then(|t| t.kind)
        .unwrap_or_default()
}

fn pick<'a, T: ?Sized>(
    map: &'a BTreeMap<String, std::sync::Arc<T>>,
    kind: &str,
    what: &str,
) -> Result<&'a std::sync::Arc<T>, Failure> {
    map.get(kind).ok_or_else(|| {
        failure(
            jsonrpc::SERVER_ERROR,
            format!(
                "no {what} plugin of type '{kind}' here (types: {})",
                map.keys()
                    .map(|k| display_type(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

#[derive(Deserialize)]
struct ValidateReq {
    #[serde(rename = "Properties", default)]
    properties: Value,
    #[serde(rename = "Allocation", default)]
    allocation: Allocation,
}

#[derive(Deserialize)]
struct ProvisionReq {
    #[serde(rename = "Spec")]
    spec: Spec,
}

#[derive(Deserialize)]
struct LabelReq {
    #[serde(rename = "Instance")]
    instance: String,
    #[serde(rename = "Labels", default)]
    labels: Option<Tags>,
}

#[derive(Deserialize)]
struct DestroyReq {
    #[serde(rename = "Instance")]
    instance: String,
    #[serde(rename = "Context", default)]
    context: Option<DestroyContext>,
}

#[derive(Deserialize)]
struct DescribeReq {
    #[serde(rename = "Tags", default)]
    tags: Option<Tags>,
    #[serde(rename = "Properties", default)]
    properties: bool,
}

async fn instance(h: &Handlers, name: &str, params: Value) -> Result<Value, Failure> {
    let kind = type_of(&params);
    let plugin = pick(&h.instances, &kind, "instance")?;
    match name {
        "Validate" => {
            let req: ValidateReq = decode(params)?;
            plugin.validate(&req.properties).await?;
            Ok(json!({"Type": kind, "OK": true}))
        }
        "Provision" => {
            let req: ProvisionReq = decode(params)?;
            let id = plugin.provision(req.spec).await?;
            Ok(json!({"Type": kind, "ID": id}))
        }
        "Label" => {
            let req: LabelReq = decode(params)?;
            plugin
                .label(&req.instance, &req.labels.unwrap_or_default())
                .await?;
            Ok(json!({"Type": kind, "OK": true}))
        }
        "Destroy" => {
            let req: DestroyReq = decode(params)?;
            let ctx = req
                .context
                .unwrap_or_else(|| DestroyContext::reason("terminate"));
            plugin.destroy(&req.instance, &ctx).await?;
            Ok(json!({"Type": kind, "OK": true}))
        }
        "DescribeInstances" => {
            let req: DescribeReq = decode(params)?;
            let list = plugin
                .describe_instances(&req.tags.unwrap_or_default(), req.properties)
                .await?;
            Ok(json!({"Type": kind, "Descriptions": list}))
        }
        _ => Err(not_found(&format!("Instance.{name}"))),
    }
}

#[derive(Deserialize)]
struct PrepareReq {
    #[serde(rename = "Properties", default)]
    properties: Value,
    #[serde(rename = "Spec", default)]
    spec: Spec,
    #[serde(rename = "Allocation", default)]
    allocation: Allocation,
    #[serde(rename = "Index", default)]
    index: Option<Index>,
}

#[derive(Deserialize)]
struct FlavorInstanceReq {
    #[serde(rename = "Properties", default)]
    properties: Value,
    #[serde(rename = "Instance")]
    instance: Description,
}

async fn flavor(h: &Handlers, name: &str, params: Value) -> Result<Value, Failure> {
    let kind = type_of(&params);
    let plugin = pick(&h.flavors, &kind, "flavor")?;
    match name {
        "Validate" => {
            let req: ValidateReq = decode(params)?;
            plugin.validate(&req.properties, &req.allocation).await?;
            Ok(json!({"Type": kind, "OK": true}))
        }
        "Prepare" => {
            let req: PrepareReq = decode(params)?;
            let spec = plugin
                .prepare(
                    &req.properties,
                    req.spec,
                    &req.allocation,
                    &req.index.unwrap_or_default(),
                )
                .await?;
            Ok(json!({"Type": kind, "Spec": spec}))
        }
        "Healthy" => {
            let req: FlavorInstanceReq = decode(params)?;
            let health = plugin.healthy(&req.properties, &req.instance).await?;
            Ok(json!({"Type": kind, "Health": health}))
        }
        "Drain" => {
            let req: FlavorInstanceReq = decode(params)?;
            plugin.drain(&req.properties, &req.instance).await?;
            Ok(json!({"Type": kind, "OK": true}))
        }
        _ => Err(not_found(&format!("Flavor.{name}"))),
    }
}

#[derive(Deserialize)]
struct GroupReq {
    #[serde(rename = "Name", default)]
    name: Option<String>,
    #[serde(rename = "ID", default)]
    id: Option<String>,
    #[serde(rename = "Spec", default)]
    spec: Option<GroupSpec>,
    #[serde(rename = "Pretend", default)]
    pretend: bool,
    #[serde(rename = "Instances", default)]
    instances: Option<Vec<String>>,
    #[serde(rename = "Size", default)]
    size: Option<usize>,
}

impl GroupReq {
    /// The group ID: `ID`, else the object part of a keyed name (`mystack/workers`).
    fn group_id(&self) -> String {
        match self.id.as_deref() {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => self
                .name
                .as_deref()
                .and_then(|n| n.split_once('/'))
                .map(|(_, obj)| obj.to_string())
                .unwrap_or_default(),
        }
    }
}

async fn group(h: &Handlers, method: &str, params: Value) -> Result<Value, Failure> {
    let g = h.group.as_ref().expect("checked by the caller");
    let req: GroupReq = decode(params)?;
    let name = req.name.clone().unwrap_or_default();
    let id = req.group_id();
    match method {
        "CommitGroup" => {
            let spec = req
                .spec
                .ok_or_else(|| failure(jsonrpc::INVALID_PARAMS, "params.Spec: missing"))?;
            let id = spec.id.clone();
            let details = g.commit_group(spec, req.pretend).await?;
            Ok(json!({"Name": name, "ID": id, "Details": details}))
        }
        "FreeGroup" => {
            g.free_group(&id).await?;
            Ok(json!({"Name": name, "ID": id, "OK": true}))
        }
        "DescribeGroup" => {
            let d = g.describe_group(&id).await?;
            Ok(json!({"Name": name, "ID": id, "Description": d}))
        }
        "DestroyGroup" => {
            g.destroy_group(&id).await?;
            Ok(json!({"Name": name, "ID": id, "OK": true}))
        }
        "InspectGroups" => {
            let groups = g.inspect_groups().await?;
            Ok(json!({"Name": name, "ID": id, "Groups": groups}))
        }
        "DestroyInstances" => {
            g.destroy_instances(&id, &req.instances.unwrap_or_default())
                .await?;
            Ok(json!({"Name": name, "ID": id}))
        }
        "Size" => {
            let size = g.size(&id).await?;
            Ok(json!({"Name": name, "ID": id, "Size": size}))
        }
        "SetSize" => {
            let size = req
                .size
                .ok_or_else(|| failure(jsonrpc::INVALID_PARAMS, "params.Size: missing"))?;
            g.set_size(&id, size).await?;
            Ok(json!({"Name": name, "ID": id}))
        }
        "PlanGroup" => {
            let spec = req
                .spec
                .ok_or_else(|| failure(jsonrpc::INVALID_PARAMS, "params.Spec: missing"))?;
            let id = spec.id.clone();
            let plan = g.plan_group(spec).await?;
            Ok(json!({"Name": name, "ID": id, "Plan": plan}))
        }
        "PauseRollout" | "ResumeRollout" | "UndoRollout" => {
            let action = match method {
                "PauseRollout" => RolloutAction::Pause,
                "ResumeRollout" => RolloutAction::Resume,
                _ => RolloutAction::Undo,
            };
            g.rollout(&id, action).await?;
            Ok(json!({"Name": name, "ID": id, "OK": true}))
        }
        _ => Err(not_found(&format!("Group.{method}"))),
    }
}

async fn manager(h: &Handlers, method: &str) -> Result<Value, Failure> {
    let m = h.manager.as_ref().expect("checked by the caller");
    match method {
        "IsLeader" => Ok(json!({"Leader": m.is_leader().await?})),
        "LeaderLocation" => Ok(json!({"Location": m.leader_location().await?})),
        "Status" => Ok(json!({"Status": m.status().await?})),
        _ => Err(not_found(&format!("Manager.{method}"))),
    }
}
