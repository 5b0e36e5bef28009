//! From a JSON-RPC body to a call on a trait object and back: the envelope, the audit log, and
//! the result shapes of InfraKit's Instance, Flavor, Group and Handshake services.
//!
//! Every request is checked completely before a plugin is called: a body that is not JSON, an
//! envelope that is not JSON-RPC 2.0, params of the wrong shape or type, missing required fields
//! and contradictory fields all get a JSON-RPC error, and the plugin sees nothing. The method
//! and its params are parsed once into a typed call (a [`Method`] and decoded params); params
//! errors name the bad field (`params.Spec.Tags`) in the message and in `data.Path`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{json, Value};

use infrakit_spi::manager::Manager;
use infrakit_spi::{Description, Flavor, Group, Instance, Interface, Method};

use crate::call::{Call, FlavorCall, GroupCall, HandshakeCall, InstanceCall, ManagerCall, Served};
use crate::controller;
use crate::failure::{clip, failure, not_found, Failure};
use crate::handlers::Handlers;
use crate::jsonrpc::{self, Request};
use crate::keyed::{self, Addressed};
use crate::updatable;

/// Who is calling, for the audit log.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Caller {
    /// A process on this host, over the Unix socket (its pid from `SO_PEERCRED`).
    Local(Option<i32>),
    /// A client over TCP, by address.
    Remote(SocketAddr),
}

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
    let outcome = match Call::parse(method, params, handlers) {
        Ok((method, call)) => {
            audit(plugin, method, caller);
            execute(handlers, method, call).await
        }
        Err(f) => Err(f),
    };
    let id = id?;
    Some(match outcome {
        Ok(Reply::Value(result)) => jsonrpc::encode_result(id, &result),
        Ok(Reply::Raw(result)) => jsonrpc::encode_raw_result(id, &result),
        Err(f) => jsonrpc::encode_error_with(Some(id), f.code, &f.message, f.data),
    })
}

/// Logs a mutating call that passed validation and is about to reach the plugin: the plugin, the
/// method and the caller, never the params (they may hold secrets such as `Init` user data).
fn audit(plugin: &str, method: Method, caller: Caller) {
    if !method.mutates() {
        return;
    }
    let method = method.as_str();
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

impl Served for Handlers {
    fn serves(&self, interface: Interface) -> bool {
        match interface {
            Interface::Plugin | Interface::Handshake => true,
            Interface::Instance | Interface::InstanceBatch => !self.instances.is_empty(),
            Interface::Flavor | Interface::FlavorHealth | Interface::FlavorBatch => {
                !self.flavors.is_empty()
            }
            Interface::Group | Interface::Controller => self.group.is_some(),
            Interface::Manager | Interface::Updatable => self.manager.is_some(),
            Interface::Event => self.publisher.is_some(),
        }
    }

    fn check_type(&self, interface: Interface, kind: &str) -> Result<(), Failure> {
        match interface {
            Interface::Instance | Interface::InstanceBatch => {
                pick(&self.instances, kind, "instance").map(drop)
            }
            Interface::Flavor | Interface::FlavorHealth | Interface::FlavorBatch => {
                pick(&self.flavors, kind, "flavor").map(drop)
            }
            _ => Ok(()),
        }
    }
}

/// A call's result: a JSON value, or large answers already written as JSON text (so they are
/// not first built as a tree of values, and descriptions' properties go out verbatim).
pub(crate) enum Reply {
    /// A small answer.
    Value(Value),
    /// JSON text.
    Raw(Box<RawValue>),
}

/// `DescribeInstances`' result (keys in the order the value form writes them).
#[derive(serde::Serialize)]
struct Described<'a> {
    #[serde(rename = "Descriptions")]
    descriptions: &'a [infrakit_spi::Description],
    #[serde(rename = "Type")]
    kind: &'a str,
}

/// `DescribeGroup`'s result (keys in the order the value form writes them).
#[derive(serde::Serialize)]
struct GroupDescribed<'a> {
    #[serde(rename = "Description")]
    description: &'a infrakit_spi::group::GroupDescription,
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "Name")]
    name: &'a str,
}

/// Writes a large answer as JSON text.
fn raw(result: &impl serde::Serialize) -> Result<Reply, Failure> {
    serde_json::value::to_raw_value(result)
        .map(Reply::Raw)
        .map_err(|e| {
            failure(
                jsonrpc::SERVER_ERROR,
                format!("cannot encode the result: {e}"),
            )
        })
}

/// Makes a parsed call; `method` names it if what it calls is gone.
async fn execute(h: &Handlers, method: Method, call: Call) -> Result<Reply, Failure> {
    match call {
        Call::Handshake(call) => Ok(Reply::Value(handshake(h, call).await)),
        Call::Instance { kind, call } => {
            let plugin = pick(&h.instances, &kind, "instance")?;
            instance(plugin.as_ref(), kind, call).await
        }
        Call::Flavor { kind, call } => {
            let plugin = pick(&h.flavors, &kind, "flavor")?;
            flavor(plugin.as_ref(), kind, call).await
        }
        Call::Group { name, call } => match &h.group {
            Some(g) => group(g.as_ref(), name, call).await,
            None => Err(not_found(method.as_str())),
        },
        Call::Manager(call) => match &h.manager {
            Some(m) => manager(m.as_ref(), h.group.as_deref(), method, call).await,
            None => Err(not_found(method.as_str())),
        },
        Call::Controller { name, call } => match &h.group {
            Some(g) => controller::call(g.as_ref(), &name, call)
                .await
                .map(Reply::Value),
            None => Err(not_found(method.as_str())),
        },
        Call::Updatable { name, call } => match &h.manager {
            Some(m) => updatable::call(m.as_ref(), &name, call)
                .await
                .map(Reply::Value),
            None => Err(not_found(method.as_str())),
        },
        Call::EventList => Ok(Reply::Value(json!({"Nodes": ["instance"]}))),
    }
}

async fn handshake(h: &Handlers, call: HandshakeCall) -> Value {
    let ifaces = h.interfaces();
    match call {
        HandshakeCall::Implements => {
            let apis: Vec<Value> = ifaces
                .iter()
                .map(|(i, _)| json!({"Name": i.name, "Version": i.version}))
                .collect();
            json!({ "APIs": apis })
        }
        HandshakeCall::Types => {
            let types: BTreeMap<String, Vec<String>> = ifaces
                .iter()
                .map(|(i, types)| {
                    (
                        i.to_string(),
                        types.iter().map(|t| display_type(t)).collect(),
                    )
                })
                .collect();
            json!({ "Types": types })
        }
        HandshakeCall::Hello => {
            // The groups are listed only when a keyed interface needs them.
            let ids: Vec<String> = match &h.group {
                Some(g) => g
                    .inspect_groups()
                    .await
                    .map(|specs| specs.into_iter().map(|s| s.id).collect())
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let objects: BTreeMap<String, Vec<Value>> = ifaces
                .iter()
                .map(|(i, types)| {
                    let names = match (i.name, i.version) {
                        ("Group", "0.1.1") => keyed::group_objects(&ids),
                        ("Controller", _) => keyed::controller_objects(&ids),
                        ("Updatable", _) => keyed::metadata_objects(),
                        _ => types.iter().map(|t| display_type(t)).collect(),
                    };
                    let objs = names
                        .into_iter()
                        .map(|n| json!({"Name": n, "ProxyFor": ""}))
                        .collect();
                    (i.to_string(), objs)
                })
                .collect();
            json!({ "Objects": objects })
        }
    }
}

/// Adds the members of object `extra` to object `out`.
fn merge(out: &mut Value, extra: Value) {
    if let (Value::Object(out), Value::Object(extra)) = (out, extra) {
        out.extend(extra);
    }
}

fn display_type(t: &str) -> String {
    if t.is_empty() {
        ".".into()
    } else {
        t.to_string()
    }
}

/// The plugin of subtype `kind`, or an error listing the subtypes served.
fn pick<'a, T: ?Sized>(
    map: &'a BTreeMap<String, Arc<T>>,
    kind: &str,
    what: &str,
) -> Result<&'a Arc<T>, Failure> {
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

/// One item's failure in a batch answer, as the error object of a whole call would carry it.
fn error_object(e: infrakit_spi::Error) -> jsonrpc::ErrorObject {
    let f = Failure::from(e);
    jsonrpc::ErrorObject {
        code: f.code,
        message: crate::failure::clip(f.message),
        data: f.data,
    }
}

async fn instance(
    plugin: &dyn Instance,
    kind: String,
    call: InstanceCall,
) -> Result<Reply, Failure> {
    match call {
        InstanceCall::Validate { properties } => {
            plugin.validate(&properties).await?;
            Ok(Reply::Value(json!({"Type": kind, "OK": true})))
        }
        InstanceCall::Provision { spec } => {
            let id = plugin.provision(spec).await?;
            Ok(Reply::Value(json!({"Type": kind, "ID": id})))
        }
        InstanceCall::ProvisionMany { specs, parallel } => {
            let results = plugin.provision_many(specs, parallel).await;
            let results: Vec<Value> = results
                .into_iter()
                .map(|r| match r {
                    Ok(id) => json!({"ID": id}),
                    Err(e) => json!({"Error": error_object(e)}),
                })
                .collect();
            Ok(Reply::Value(json!({"Type": kind, "Results": results})))
        }
        InstanceCall::Label { instance, labels } => {
            plugin.label(&instance, &labels).await?;
            Ok(Reply::Value(json!({"Type": kind, "OK": true})))
        }
        InstanceCall::Destroy { instance, context } => {
            plugin.destroy(&instance, &context).await?;
            Ok(Reply::Value(json!({"Type": kind, "OK": true})))
        }
        InstanceCall::DescribeInstances { tags, properties } => {
            let list = plugin.describe_instances(&tags, properties).await?;
            // Large: written straight to text (descriptions' properties verbatim).
            raw(&Described {
                descriptions: &list,
                kind: &kind,
            })
        }
    }
}

async fn flavor(plugin: &dyn Flavor, kind: String, call: FlavorCall) -> Result<Reply, Failure> {
    match call {
        FlavorCall::Validate {
            properties,
            allocation,
        } => {
            plugin.validate(&properties, &allocation).await?;
            Ok(Reply::Value(json!({"Type": kind, "OK": true})))
        }
        FlavorCall::Prepare {
            properties,
            spec,
            allocation,
            index,
        } => {
            let spec = plugin
                .prepare(&properties, spec, &allocation, &index)
                .await?;
            Ok(Reply::Value(json!({"Type": kind, "Spec": spec})))
        }
        FlavorCall::PrepareMany {
            properties,
            allocation,
            items,
        } => {
            let results = plugin.prepare_many(&properties, items, &allocation).await;
            let results: Vec<Value> = results
                .into_iter()
                .map(|r| match r {
                    Ok(spec) => json!({"Spec": spec}),
                    Err(e) => json!({"Error": error_object(e)}),
                })
                .collect();
            Ok(Reply::Value(json!({"Type": kind, "Results": results})))
        }
        FlavorCall::Healthy {
            properties,
            instance,
        } => {
            let health = plugin.healthy(&properties, &instance).await?;
            Ok(Reply::Value(json!({"Type": kind, "Health": health})))
        }
        FlavorCall::Drain {
            properties,
            instance,
        } => {
            plugin.drain(&properties, &instance).await?;
            Ok(Reply::Value(json!({"Type": kind, "OK": true})))
        }
        FlavorCall::HealthCadence { properties } => {
            let cadence = plugin.health_cadence(&properties).await?;
            let mut out = json!({"Type": kind});
            merge(&mut out, json!(cadence));
            Ok(Reply::Value(out))
        }
        FlavorCall::HealthCheck {
            properties,
            instances,
        } => {
            let all: Vec<&Description> = instances.iter().collect();
            let health = plugin.healthy_many(&properties, &all).await?;
            if health.len() != instances.len() {
                return Err(failure(
                    jsonrpc::SERVER_ERROR,
                    format!(
                        "flavor judged {} of {} instances",
                        health.len(),
                        instances.len()
                    ),
                ));
            }
            Ok(Reply::Value(json!({"Type": kind, "Health": health})))
        }
        FlavorCall::HealthWatch {
            properties,
            watch,
            instances,
            lease,
        } => {
            let all: Vec<&Description> = instances.iter().collect();
            let watching = plugin
                .watch_health(&properties, &watch, &all, lease)
                .await?;
            let topic = infrakit_spi::event::health_topic(&watch);
            Ok(Reply::Value(
                json!({"Type": kind, "Watching": watching, "Topic": topic}),
            ))
        }
    }
}

async fn group(g: &dyn Group, name: String, call: GroupCall) -> Result<Reply, Failure> {
    match call {
        GroupCall::CommitGroup { spec, pretend } => {
            let id = spec.id.clone();
            let details = g.commit_group(spec, pretend).await?;
            Ok(Reply::Value(
                json!({"Name": name, "ID": id, "Details": details}),
            ))
        }
        GroupCall::PlanGroup { spec } => {
            let id = spec.id.clone();
            let plan = g.plan_group(spec).await?;
            Ok(Reply::Value(json!({"Name": name, "ID": id, "Plan": plan})))
        }
        GroupCall::InspectGroups { id } => {
            let groups = g.inspect_groups().await?;
            if let Addressed::Group(scope) = keyed::group(&name) {
                if !groups.iter().any(|s| s.id == scope) {
                    return Err(keyed::not_found(&name));
                }
            }
            Ok(Reply::Value(
                json!({"Name": name, "ID": id, "Groups": groups}),
            ))
        }
        GroupCall::DescribeGroup { id } => {
            let d = g.describe_group(&id).await?;
            raw(&GroupDescribed {
                description: &d,
                id: &id,
                name: &name,
            })
        }
        GroupCall::Size { id } => {
            let size = g.size(&id).await?;
            Ok(Reply::Value(json!({"Name": name, "ID": id, "Size": size})))
        }
        GroupCall::FreeGroup { id } => {
            g.free_group(&id).await?;
            Ok(Reply::Value(json!({"Name": name, "ID": id, "OK": true})))
        }
        GroupCall::DestroyGroup { id } => {
            g.destroy_group(&id).await?;
            Ok(Reply::Value(json!({"Name": name, "ID": id, "OK": true})))
        }
        GroupCall::DestroyInstances { id, instances } => {
            g.destroy_instances(&id, &instances).await?;
            Ok(Reply::Value(json!({"Name": name, "ID": id})))
        }
        GroupCall::SetSize { id, size } => {
            g.set_size(&id, size).await?;
            Ok(Reply::Value(json!({"Name": name, "ID": id})))
        }
        GroupCall::Rollout { id, action } => {
            g.rollout(&id, action).await?;
            Ok(Reply::Value(json!({"Name": name, "ID": id, "OK": true})))
        }
    }
}

async fn manager(
    m: &dyn Manager,
    g: Option<&dyn Group>,
    method: Method,
    call: ManagerCall,
) -> Result<Reply, Failure> {
    let stack = || g.ok_or_else(|| not_found(method.as_str()));
    let value = match call {
        ManagerCall::IsLeader => json!({"Leader": m.is_leader().await?}),
        ManagerCall::LeaderLocation => json!({"Location": m.leader_location().await?}),
        ManagerCall::Status => json!({"Status": m.status().await?}),
        ManagerCall::Specs => controller::specs(stack()?).await?,
        ManagerCall::Inspect => controller::inspect(stack()?).await?,
        ManagerCall::Enforce { specs } => controller::apply(stack()?, specs, false).await?,
        ManagerCall::Terminate { specs } => controller::apply(stack()?, specs, true).await?,
    };
    Ok(Reply::Value(value))
}
