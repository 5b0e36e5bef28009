//! From a JSON-RPC body to a call on a trait object and back: method names, parameter and
//! result shapes of InfraKit's Instance, Flavor, Group and Handshake services.
//!
//! Every request is checked completely before a plugin is called: a body that is not JSON, an
//! envelope that is not JSON-RPC 2.0, params of the wrong shape or type, missing required fields
//! and contradictory fields all get a JSON-RPC error, and the plugin sees nothing. Params errors
//! name the bad field (`params.Spec.Tags`) in the message and in `data.Path`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use infrakit_spi::group::RolloutAction;
use infrakit_spi::{Allocation, Description, DestroyContext, Error, GroupSpec, Index, Spec, Tags};

use crate::handlers::Handlers;
use crate::jsonrpc::{self, Request};

/// Who is calling, for the audit log.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Caller {
    /// A process on this host, over the Unix socket (its pid from `SO_PEERCRED`).
    Local(Option<i32>),
    /// A client over TCP, by address.
    Remote(SocketAddr),
}

/// Messages of protocol errors (not the plugin's own) are cut to this many bytes: some echo the
/// input (a method name, a bad value, a map key).
const MAX_MESSAGE_BYTES: usize = 1024;

/// Cuts `s` to at most [`MAX_MESSAGE_BYTES`] on a character boundary.
fn clip(mut s: String) -> String {
    if s.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

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
        message: clip(message.into()),
        data: Value::Null,
    }
}

/// Invalid params: code -32602, the path of the bad field in the message and in `data`.
fn bad_param(path: &str, message: impl Into<String>) -> Failure {
    // Paths hold the caller's map keys, which may be of any length.
    let path = clip(path.to_string());
    let message = clip(message.into());
    Failure {
        code: jsonrpc::INVALID_PARAMS,
        data: json!({"Path": path, "Message": message}),
        message: format!("{path}: {message}"),
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

/// Handles one JSON-RPC request body as a server would, without a socket: the response body, or
/// `None` for a notification. This is the entry point of the protocol fuzz target; it never
/// panics, whatever the bytes.
pub async fn handle_bytes(handlers: &Handlers, body: &[u8]) -> Option<Vec<u8>> {
    handle(handlers, body, "-", Caller::Local(None)).await
}

/// Handles one request body; `None` for a notification (no response body). `plugin` and
/// `caller` go into the audit log.
pub(crate) async fn handle(
    handlers: &Handlers,
    body: &[u8],
    plugin: &str,
    caller: Caller,
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
                &clip(format!("invalid request: {e}")),
            ));
        }
    };
    let id = req.id.filter(|id| id.get() != "null");
    // JSON-RPC 2.0: an id is a string, a number or null.
    if let Some(raw) = id {
        if !matches!(
            raw.get().as_bytes().first(),
            Some(b'"' | b'-' | b'0'..=b'9')
        ) {
            return Some(jsonrpc::encode_error(
                None,
                jsonrpc::INVALID_REQUEST,
                "id must be a string, a number or null",
            ));
        }
    }
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
    let outcome = call(handlers, method, params, &|| audit(plugin, method, caller)).await;
    let id = id?;
    Some(match outcome {
        Ok(result) => jsonrpc::encode_result(id, &result),
        Err(f) => jsonrpc::encode_error_with(Some(id), f.code, &f.message, f.data),
    })
}

/// Logs a mutating call that passed validation and is about to reach the plugin: the plugin, the
/// method and the caller, never the params (they may hold secrets such as `Init` user data).
fn audit(plugin: &str, method: &str, caller: Caller) {
    if !MUTATING.contains(&method) {
        return;
    }
    match caller {
        Caller::Local(pid) => {
            let caller = pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
            tracing::info!(target: "infrakit::audit", plugin, method, caller_pid = %caller, "call");
        }
        Caller::Remote(peer) => {
            tracing::info!(target: "infrakit::audit", plugin, method, caller_pid = "-", peer = %peer, "call");
        }
    }
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
    infrakit_spi::error::decode_at("params", &params).map_err(|e| match e {
        Error::Invalid { path, message } => bad_param(&path, message),
        other => failure(jsonrpc::INVALID_PARAMS, other.to_string()),
    })
}

/// Called once a request has passed every check, just before the plugin is.
type Audit<'a> = &'a (dyn Fn() + Send + Sync);

async fn call(
    h: &Handlers,
    method: &str,
    params: Value,
    audit: Audit<'_>,
) -> Result<Value, Failure> {
    let (service, name) = method.split_once('.').ok_or_else(|| {
        failure(
            jsonrpc::METHOD_NOT_FOUND,
            format!("rpc: service/method request ill-formed: \"{method}\""),
        )
    })?;
    match service {
        "Plugin" | "Handshake" => handshake(h, name),
        "Instance" if !h.instances.is_empty() => instance(h, name, params, audit).await,
        "Flavor" if !h.flavors.is_empty() => flavor(h, name, params, audit).await,
        "Group" if h.group.is_some() => group(h, name, params, audit).await,
        "Manager" if h.manager.is_some() => manager(h, name).await,
        "Event" if h.publisher.is_some() && name == "List" => Ok(json!({"Nodes": ["instance"]})),
        _ => Err(not_found(method)),
    }
}

fn not_found(method: &str) -> Failure {
    failure(
        jsonrpc::METHOD_NOT_FOUND,
        format!("rpc: can't find method \"{}\"", clip(method.to_string())),
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

/// The `Type` of Instance and Flavor params (`""`, the default plugin, when absent or null).
fn type_of(params: &Value) -> Result<String, Failure> {
    match params.get("Type") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(v) => decode::<Typed>(json!({ "Type": v })).map(|t| t.kind.unwrap_or_default()),
    }
}

/// A required identifier that must not be empty.
fn non_empty(path: &str, value: &str) -> Result<(), Failure> {
    if value.trim().is_empty() {
        return Err(bad_param(path, "must not be empty"));
    }
    Ok(())
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

async fn instance(
    h: &Handlers,
    name: &str,
    params: Value,
    audit: Audit<'_>,
) -> Result<Value, Failure> {
    let kind = type_of(&params)?;
    let plugin = pick(&h.instances, &kind, "instance")?;
    match name {
        "Validate" => {
            let req: ValidateReq = decode(params)?;
            plugin.validate(&req.properties).await?;
            Ok(json!({"Type": kind, "OK": true}))
        }
        "Provision" => {
            let req: ProvisionReq = decode(params)?;
            audit();
            let id = plugin.provision(req.spec).await?;
            Ok(json!({"Type": kind, "ID": id}))
        }
        "Label" => {
            let req: LabelReq = decode(params)?;
            non_empty("params.Instance", &req.instance)?;
            audit();
            plugin
                .label(&req.instance, &req.labels.unwrap_or_default())
                .await?;
            Ok(json!({"Type": kind, "OK": true}))
        }
        "Destroy" => {
            let req: DestroyReq = decode(params)?;
            non_empty("params.Instance", &req.instance)?;
            audit();
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

async fn flavor(
    h: &Handlers,
    name: &str,
    params: Value,
    audit: Audit<'_>,
) -> Result<Value, Failure> {
    let kind = type_of(&params)?;
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
            audit();
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
    /// The object part of a keyed name (`mystack/workers` gives `workers`; `.` is the default).
    fn name_object(&self) -> Option<&str> {
        self.name
            .as_deref()
            .and_then(|n| n.split_once('/'))
            .map(|(_, obj)| obj)
            .filter(|obj| !obj.is_empty() && *obj != ".")
    }

    /// The group ID: `ID`, else the object part of a keyed `Name`; both given and different is
    /// contradictory.
    fn group_id(&self) -> Result<String, Failure> {
        let id = self.id.as_deref().filter(|id| !id.is_empty());
        match (id, self.name_object()) {
            (Some(id), Some(obj)) if id != obj => Err(bad_param(
                "params.ID",
                format!("'{id}' contradicts params.Name, which names group '{obj}'"),
            )),
            (Some(id), _) => Ok(id.to_string()),
            (None, Some(obj)) => Ok(obj.to_string()),
            (None, None) => Ok(String::new()),
        }
    }

    /// The group ID of a method that acts on one group.
    fn required_id(&self) -> Result<String, Failure> {
        let id = self.group_id()?;
        if id.is_empty() {
            return Err(bad_param(
                "params.ID",
                "missing: name the group with ID (or a Name of the form plugin/group)",
            ));
        }
        Ok(id)
    }

    /// The spec of CommitGroup and PlanGroup: present, with an ID, agreeing with `ID`/`Name`.
    fn required_spec(&mut self) -> Result<GroupSpec, Failure> {
        let id = self.group_id()?;
        let spec = self
            .spec
            .take()
            .ok_or_else(|| bad_param("params.Spec", "missing"))?;
        non_empty("params.Spec.ID", &spec.id)?;
        if !id.is_empty() && id != spec.id {
            return Err(bad_param(
                "params.Spec.ID",
                format!("'{}' contradicts the group '{id}' named in params", spec.id),
            ));
        }
        Ok(spec)
    }
}

const GROUP_METHODS: &[&str] = &[
    "CommitGroup",
    "FreeGroup",
    "DescribeGroup",
    "DestroyGroup",
    "InspectGroups",
    "DestroyInstances",
    "Size",
    "SetSize",
    "PlanGroup",
    "PauseRollout",
    "ResumeRollout",
    "UndoRollout",
];

async fn group(
    h: &Handlers,
    method: &str,
    params: Value,
    audit: Audit<'_>,
) -> Result<Value, Failure> {
    let g = h.group.as_ref().expect("checked by the caller");
    if !GROUP_METHODS.contains(&method) {
        return Err(not_found(&format!("Group.{method}")));
    }
    let mut req: GroupReq = decode(params)?;
    let name = req.name.clone().unwrap_or_default();
    match method {
        "CommitGroup" => {
            let spec = req.required_spec()?;
            let id = spec.id.clone();
            audit();
            let details = g.commit_group(spec, req.pretend).await?;
            Ok(json!({"Name": name, "ID": id, "Details": details}))
        }
        "PlanGroup" => {
            let spec = req.required_spec()?;
            let id = spec.id.clone();
            let plan = g.plan_group(spec).await?;
            Ok(json!({"Name": name, "ID": id, "Plan": plan}))
        }
        "InspectGroups" => {
            let id = req.group_id()?;
            let groups = g.inspect_groups().await?;
            Ok(json!({"Name": name, "ID": id, "Groups": groups}))
        }
        _ => {
            let id = req.required_id()?;
            one_group(g.as_ref(), method, req, name, id, audit).await
        }
    }
}

/// The Group methods that act on the one group `id`.
async fn one_group(
    g: &dyn infrakit_spi::Group,
    method: &str,
    req: GroupReq,
    name: String,
    id: String,
    audit: Audit<'_>,
) -> Result<Value, Failure> {
    match method {
        "DescribeGroup" => {
            let d = g.describe_group(&id).await?;
            Ok(json!({"Name": name, "ID": id, "Description": d}))
        }
        "Size" => {
            let size = g.size(&id).await?;
            Ok(json!({"Name": name, "ID": id, "Size": size}))
        }
        "FreeGroup" => {
            audit();
            g.free_group(&id).await?;
            Ok(json!({"Name": name, "ID": id, "OK": true}))
        }
        "DestroyGroup" => {
            audit();
            g.destroy_group(&id).await?;
            Ok(json!({"Name": name, "ID": id, "OK": true}))
        }
        "DestroyInstances" => {
            let instances = req
                .instances
                .ok_or_else(|| bad_param("params.Instances", "missing"))?;
            if let Some(i) = instances.iter().position(|i| i.trim().is_empty()) {
                return Err(bad_param(
                    &format!("params.Instances[{i}]"),
                    "must not be empty",
                ));
            }
            audit();
            g.destroy_instances(&id, &instances).await?;
            Ok(json!({"Name": name, "ID": id}))
        }
        "SetSize" => {
            let size = req
                .size
                .ok_or_else(|| bad_param("params.Size", "missing"))?;
            audit();
            g.set_size(&id, size).await?;
            Ok(json!({"Name": name, "ID": id}))
        }
        _ => {
            let action = match method {
                "PauseRollout" => RolloutAction::Pause,
                "ResumeRollout" => RolloutAction::Resume,
                "UndoRollout" => RolloutAction::Undo,
                _ => return Err(not_found(&format!("Group.{method}"))),
            };
            audit();
            g.rollout(&id, action).await?;
            Ok(json!({"Name": name, "ID": id, "OK": true}))
        }
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
