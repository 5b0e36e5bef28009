//! Typed calls: a JSON-RPC method name and its params, parsed once into a [`Method`] and a
//! [`Call`] whose params are decoded and checked, so dispatching is a match on a Rust value.
//!
//! Parsing checks in the order the protocol always has, and answers the same errors: the name
//! must have a service part; the service must be served here (else the method is not found);
//! Instance and Flavor calls then need a served `Type`; only then must the method be known;
//! last, its params are decoded, naming the bad field (`params.Spec.Tags`) on failure, and
//! checked for missing or contradictory fields.

use serde::Deserialize;
use serde_json::{json, Value};

use infrakit_spi::group::RolloutAction;
use infrakit_spi::metadata::{Change, Path};
use infrakit_spi::object::{Metadata, ObjectSpec};
use infrakit_spi::serde_util::null_as_default;
use infrakit_spi::{
    Allocation, Description, DestroyContext, GroupSpec, Index, Interface, Method, Spec, Tags,
};

use crate::failure::{bad_param, decode, failure, not_found, Failure};
use crate::jsonrpc;
use crate::keyed::{self, Addressed};

/// What a server serves, as far as parsing a call needs to know.
pub(crate) trait Served {
    /// Whether calls of `interface` are served here.
    fn serves(&self, interface: Interface) -> bool;

    /// Checks that `interface` (Instance or Flavor) has a plugin of subtype `kind` here.
    fn check_type(&self, interface: Interface, kind: &str) -> Result<(), Failure>;
}

/// A call with its params decoded and checked.
#[derive(Debug)]
pub(crate) enum Call {
    /// `Handshake.*`, or the first generation's `Plugin.*`.
    Handshake(HandshakeCall),
    /// A call of the instance plugin of subtype `kind` (`""` is the default).
    Instance {
        /// The `Type` param.
        kind: String,
        /// The call.
        call: InstanceCall,
    },
    /// A call of the flavor plugin of subtype `kind` (`""` is the default).
    Flavor {
        /// The `Type` param.
        kind: String,
        /// The call.
        call: FlavorCall,
    },
    /// A call of the group plugin.
    Group {
        /// The `Name` param, echoed in the result.
        name: String,
        /// The call.
        call: GroupCall,
    },
    /// A call of the manager.
    Manager(ManagerCall),
    /// A call of a controller object (InfraKit's last version).
    Controller {
        /// The `Name` param, echoed in the result.
        name: String,
        /// The call.
        call: ControllerCall,
    },
    /// A call of a metadata object (InfraKit's last version).
    Updatable {
        /// The `Name` param, echoed in the result.
        name: String,
        /// The call.
        call: UpdatableCall,
    },
    /// `Event.List`.
    EventList,
}

/// The handshake methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeCall {
    Implements,
    Types,
    Hello,
}

/// The Instance methods and their params.
#[derive(Debug)]
pub(crate) enum InstanceCall {
    Validate {
        properties: Value,
    },
    Provision {
        spec: Spec,
    },
    /// `InstanceBatch.Provision`.
    ProvisionMany {
        specs: Vec<Spec>,
        parallel: usize,
    },
    Label {
        instance: String,
        labels: Tags,
    },
    Destroy {
        instance: String,
        context: DestroyContext,
    },
    DescribeInstances {
        tags: Tags,
        properties: bool,
    },
}

/// The Flavor methods and their params.
#[derive(Debug)]
pub(crate) enum FlavorCall {
    Validate {
        properties: Value,
        allocation: Allocation,
    },
    Prepare {
        properties: Value,
        spec: Spec,
        allocation: Allocation,
        index: Index,
    },
    Healthy {
        properties: Value,
        instance: Description,
    },
    Drain {
        properties: Value,
        instance: Description,
    },
    /// `FlavorBatch.Prepare`.
    PrepareMany {
        properties: Value,
        allocation: Allocation,
        items: Vec<(Spec, Index)>,
    },
    /// `FlavorHealth.Cadence`.
    HealthCadence { properties: Value },
    /// `FlavorHealth.Check`.
    HealthCheck {
        properties: Value,
        instances: Vec<Description>,
    },
    /// `FlavorHealth.Watch`.
    HealthWatch {
        properties: Value,
        watch: String,
        instances: Vec<Description>,
        lease: std::time::Duration,
    },
}

/// The Group methods and their params; `id` is the group acted on.
#[derive(Debug)]
pub(crate) enum GroupCall {
    CommitGroup {
        spec: GroupSpec,
        pretend: bool,
    },
    PlanGroup {
        spec: GroupSpec,
    },
    /// `id` is only echoed (possibly empty); a keyed `Name` must name a group that exists.
    InspectGroups {
        id: String,
    },
    DescribeGroup {
        id: String,
    },
    Size {
        id: String,
    },
    FreeGroup {
        id: String,
    },
    DestroyGroup {
        id: String,
    },
    DestroyInstances {
        id: String,
        instances: Vec<String>,
    },
    SetSize {
        id: String,
        size: usize,
    },
    Rollout {
        id: String,
        action: RolloutAction,
    },
}

/// The Manager methods.
#[derive(Debug)]
pub(crate) enum ManagerCall {
    IsLeader,
    LeaderLocation,
    Status,
    /// `Stack`: commit these specs.
    Enforce {
        specs: Vec<ObjectSpec>,
    },
    /// `Stack`: the specs committed.
    Specs,
    /// `Stack`: the objects committed, with their state.
    Inspect,
    /// `Stack`: destroy what these specs name.
    Terminate {
        specs: Vec<ObjectSpec>,
    },
}

/// The Controller methods and their params.
#[derive(Debug)]
pub(crate) enum ControllerCall {
    /// `Plan` (`commit: false`) or `Commit`, of `operation` on `spec`.
    Change {
        commit: bool,
        operation: Operation,
        spec: ObjectSpec,
    },
    /// `Describe` (`free: false`) or `Free` of the objects `search` matches (all if none).
    Find {
        free: bool,
        search: Option<Metadata>,
    },
}

/// What a controller change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// Make the object match its spec (`0` on the wire).
    Enforce,
    /// Destroy the object (`1`).
    Destroy,
}

/// The Updatable methods and their params.
#[derive(Debug)]
pub(crate) enum UpdatableCall {
    Keys { path: Path },
    Get { path: Path },
    Changes { changes: Vec<Change> },
    Commit { proposed: Value, cas: String },
}

impl Call {
    /// Parses `method` with `params` (one object, already unwrapped) for a server that serves
    /// what `served` says.
    pub(crate) fn parse(
        method: &str,
        params: Value,
        served: &dyn Served,
    ) -> Result<(Method, Call), Failure> {
        let (service, name) = method.split_once('.').ok_or_else(|| {
            failure(
                jsonrpc::METHOD_NOT_FOUND,
                format!("rpc: service/method request ill-formed: \"{method}\""),
            )
        })?;
        let interface = match service.parse::<Interface>() {
            Ok(i) if served.serves(i) => i,
            _ => return Err(not_found(method)),
        };
        let kind = match interface {
            Interface::Instance
            | Interface::InstanceBatch
            | Interface::Flavor
            | Interface::FlavorHealth
            | Interface::FlavorBatch => {
                let kind = type_of(&params)?;
                served.check_type(interface, &kind)?;
                kind
            }
            _ => String::new(),
        };
        let Ok(m) = method.parse::<Method>() else {
            return Err(match interface {
                // Unknown first-generation names are reported under the current service.
                Interface::Plugin => not_found(&format!("{}.{name}", Interface::Handshake)),
                _ => not_found(method),
            });
        };
        let call = match m {
            Method::PluginImplements | Method::HandshakeImplements => {
                Call::Handshake(HandshakeCall::Implements)
            }
            Method::PluginTypes | Method::HandshakeTypes => Call::Handshake(HandshakeCall::Types),
            Method::PluginHello | Method::HandshakeHello => Call::Handshake(HandshakeCall::Hello),

            Method::InstanceValidate => {
                let req: ValidateReq = decode(params)?;
                Call::Instance {
                    kind,
                    call: InstanceCall::Validate {
                        properties: req.properties,
                    },
                }
            }
            Method::InstanceProvision => {
                let req: ProvisionReq = decode(params)?;
                Call::Instance {
                    kind,
                    call: InstanceCall::Provision { spec: req.spec },
                }
            }
            Method::InstanceBatchProvision => {
                let req: ProvisionManyReq = decode(params)?;
                Call::Instance {
                    kind,
                    call: InstanceCall::ProvisionMany {
                        specs: req.specs,
                        parallel: req.parallel.unwrap_or(DEFAULT_BATCH_PARALLEL).max(1),
                    },
                }
            }
            Method::InstanceLabel => {
                let req: LabelReq = decode(params)?;
                non_empty("params.Instance", &req.instance)?;
                Call::Instance {
                    kind,
                    call: InstanceCall::Label {
                        instance: req.instance,
                        labels: req.labels.unwrap_or_default(),
                    },
                }
            }
            Method::InstanceDestroy => {
                let req: DestroyReq = decode(params)?;
                non_empty("params.Instance", &req.instance)?;
                Call::Instance {
                    kind,
                    call: InstanceCall::Destroy {
                        instance: req.instance,
                        context: req
                            .context
                            .unwrap_or_else(|| DestroyContext::reason("terminate")),
                    },
                }
            }
            Method::InstanceDescribeInstances => {
                let req: DescribeReq = decode(params)?;
                Call::Instance {
                    kind,
                    call: InstanceCall::DescribeInstances {
                        tags: req.tags.unwrap_or_default(),
                        properties: req.properties,
                    },
                }
            }

            Method::FlavorValidate => {
                let req: ValidateReq = decode(params)?;
                Call::Flavor {
                    kind,
                    call: FlavorCall::Validate {
                        properties: req.properties,
                        allocation: req.allocation,
                    },
                }
            }
            Method::FlavorPrepare => {
                let req: PrepareReq = decode(params)?;
                Call::Flavor {
                    kind,
                    call: FlavorCall::Prepare {
                        properties: req.properties,
                        spec: req.spec,
                        allocation: req.allocation,
                        index: req.index.unwrap_or_default(),
                    },
                }
            }
            Method::FlavorBatchPrepare => {
                let req: PrepareManyReq = decode(params)?;
                Call::Flavor {
                    kind,
                    call: FlavorCall::PrepareMany {
                        properties: req.properties,
                        allocation: req.allocation,
                        items: req
                            .items
                            .into_iter()
                            .map(|i| (i.spec, i.index.unwrap_or_default()))
                            .collect(),
                    },
                }
            }
            Method::FlavorHealthy => {
                let req: FlavorInstanceReq = decode(params)?;
                Call::Flavor {
                    kind,
                    call: FlavorCall::Healthy {
                        properties: req.properties,
                        instance: req.instance,
                    },
                }
            }
            Method::FlavorDrain => {
                let req: FlavorInstanceReq = decode(params)?;
                Call::Flavor {
                    kind,
                    call: FlavorCall::Drain {
                        properties: req.properties,
                        instance: req.instance,
                    },
                }
            }

            Method::FlavorHealthCadence => {
                let req: ValidateReq = decode(params)?;
                Call::Flavor {
                    kind,
                    call: FlavorCall::HealthCadence {
                        properties: req.properties,
                    },
                }
            }
            Method::FlavorHealthCheck => {
                let req: HealthCheckReq = decode(params)?;
                Call::Flavor {
                    kind,
                    call: FlavorCall::HealthCheck {
                        properties: req.properties,
                        instances: req.descriptions,
                    },
                }
            }

            Method::FlavorHealthWatch => {
                let req: HealthWatchReq = decode(params)?;
                let lease = match req.lease.as_deref() {
                    None => DEFAULT_WATCH_LEASE,
                    Some(l) => match humantime::parse_duration(l) {
                        Ok(d) if !d.is_zero() => d,
                        _ => {
                            return Err(bad_param(
                                "Lease",
                                format!("a duration such as \"60s\" (got \"{l}\")"),
                            ))
                        }
                    },
                };
                Call::Flavor {
                    kind,
                    call: FlavorCall::HealthWatch {
                        properties: req.properties,
                        watch: req.watch,
                        instances: req.descriptions,
                        lease,
                    },
                }
            }

            Method::GroupCommitGroup => group(params, |req| {
                Ok(GroupCall::CommitGroup {
                    spec: req.required_spec()?,
                    pretend: req.pretend,
                })
            })?,
            Method::GroupPlanGroup => group(params, |req| {
                Ok(GroupCall::PlanGroup {
                    spec: req.required_spec()?,
                })
            })?,
            Method::GroupInspectGroups => group(params, |req| {
                // Every group, whatever object is addressed; the ID is only echoed.
                Ok(GroupCall::InspectGroups {
                    id: req.id.clone().unwrap_or_default(),
                })
            })?,
            Method::GroupDescribeGroup => group(params, |req| {
                Ok(GroupCall::DescribeGroup {
                    id: req.required_id()?,
                })
            })?,
            Method::GroupSize => group(params, |req| {
                Ok(GroupCall::Size {
                    id: req.required_id()?,
                })
            })?,
            Method::GroupFreeGroup => group(params, |req| {
                Ok(GroupCall::FreeGroup {
                    id: req.required_id()?,
                })
            })?,
            Method::GroupDestroyGroup => group(params, |req| {
                Ok(GroupCall::DestroyGroup {
                    id: req.required_id()?,
                })
            })?,
            Method::GroupDestroyInstances => group(params, |req| {
                let id = req.required_id()?;
                Ok(GroupCall::DestroyInstances {
                    id,
                    instances: req.required_instances()?,
                })
            })?,
            Method::GroupSetSize => group(params, |req| {
                let id = req.required_id()?;
                let size = req
                    .size
                    .ok_or_else(|| bad_param("params.Size", "missing"))?;
                Ok(GroupCall::SetSize { id, size })
            })?,
            Method::GroupPauseRollout => rollout(params, RolloutAction::Pause)?,
            Method::GroupResumeRollout => rollout(params, RolloutAction::Resume)?,
            Method::GroupUndoRollout => rollout(params, RolloutAction::Undo)?,

            Method::ManagerIsLeader => Call::Manager(ManagerCall::IsLeader),
            Method::ManagerLeaderLocation => Call::Manager(ManagerCall::LeaderLocation),
            Method::ManagerStatus => Call::Manager(ManagerCall::Status),
            Method::ManagerEnforce => {
                let req: SpecsReq = decode(params)?;
                Call::Manager(ManagerCall::Enforce { specs: req.specs })
            }
            Method::ManagerSpecs => Call::Manager(ManagerCall::Specs),
            Method::ManagerInspect => Call::Manager(ManagerCall::Inspect),
            Method::ManagerTerminate => {
                let req: SpecsReq = decode(params)?;
                Call::Manager(ManagerCall::Terminate { specs: req.specs })
            }

            Method::ControllerPlan | Method::ControllerCommit => {
                let req: ChangeReq = decode(params)?;
                let operation = match req.operation {
                    0 => Operation::Enforce,
                    1 => Operation::Destroy,
                    n => {
                        return Err(bad_param(
                            "params.Operation",
                            format!("{n} is not an operation (0 enforce, 1 destroy)"),
                        ))
                    }
                };
                Call::Controller {
                    name: req.name,
                    call: ControllerCall::Change {
                        commit: m == Method::ControllerCommit,
                        operation,
                        spec: req.spec,
                    },
                }
            }
            Method::ControllerDescribe | Method::ControllerFree => {
                let req: FindReq = decode(params)?;
                Call::Controller {
                    name: req.name,
                    call: ControllerCall::Find {
                        free: m == Method::ControllerFree,
                        search: req.metadata,
                    },
                }
            }

            Method::UpdatableKeys | Method::UpdatableGet => {
                let req: PathReq = decode(params)?;
                let call = match m {
                    Method::UpdatableKeys => UpdatableCall::Keys { path: req.path },
                    _ => UpdatableCall::Get { path: req.path },
                };
                Call::Updatable {
                    name: req.name,
                    call,
                }
            }
            Method::UpdatableChanges => {
                let req: ChangesReq = decode(params)?;
                Call::Updatable {
                    name: req.name,
                    call: UpdatableCall::Changes {
                        changes: req.changes.unwrap_or_default(),
                    },
                }
            }
            Method::UpdatableCommit => {
                let req: CommitReq = decode(params)?;
                if req.cas.is_empty() {
                    return Err(bad_param("params.Cas", "missing"));
                }
                Call::Updatable {
                    name: req.name,
                    call: UpdatableCall::Commit {
                        proposed: req.proposed,
                        cas: req.cas,
                    },
                }
            }

            Method::EventList => Call::EventList,
        };
        Ok((m, call))
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

/// Provisions of one `InstanceBatch.Provision` run at most this many at a time unless the call
/// says `Parallel`.
const DEFAULT_BATCH_PARALLEL: usize = 64;

#[derive(Deserialize)]
struct ProvisionManyReq {
    #[serde(rename = "Specs", default, deserialize_with = "null_as_default")]
    specs: Vec<Spec>,
    #[serde(rename = "Parallel", default)]
    parallel: Option<usize>,
}

#[derive(Deserialize)]
struct PrepareManyReq {
    #[serde(rename = "Properties", default)]
    properties: Value,
    #[serde(rename = "Allocation", default)]
    allocation: Allocation,
    #[serde(rename = "Items", default, deserialize_with = "null_as_default")]
    items: Vec<PrepareItem>,
}

#[derive(Deserialize)]
struct PrepareItem {
    #[serde(rename = "Spec", default)]
    spec: Spec,
    #[serde(rename = "Index", default)]
    index: Option<Index>,
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

#[derive(Deserialize)]
struct HealthCheckReq {
    #[serde(rename = "Properties", default)]
    properties: Value,
    #[serde(rename = "Descriptions", default)]
    descriptions: Vec<Description>,
}

/// How long a health watch lasts without renewal when the caller does not say.
const DEFAULT_WATCH_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// The params of `FlavorHealth.Watch`.
#[derive(Deserialize)]
struct HealthWatchReq {
    #[serde(rename = "Properties", default)]
    properties: Value,
    #[serde(rename = "Watch")]
    watch: String,
    #[serde(rename = "Descriptions", default, deserialize_with = "null_as_default")]
    descriptions: Vec<Description>,
    #[serde(rename = "Lease", default)]
    lease: Option<String>,
}

/// The params of `Manager.Enforce` and `Manager.Terminate`.
#[derive(Deserialize)]
struct SpecsReq {
    #[serde(rename = "Specs", default, deserialize_with = "null_as_default")]
    specs: Vec<ObjectSpec>,
}

/// The params of `Controller.Plan` and `Controller.Commit`.
#[derive(Deserialize)]
struct ChangeReq {
    #[serde(rename = "Name", default, deserialize_with = "null_as_default")]
    name: String,
    #[serde(rename = "Operation", default)]
    operation: u8,
    #[serde(rename = "Spec")]
    spec: ObjectSpec,
}

/// The params of `Controller.Describe` and `Controller.Free`.
#[derive(Deserialize)]
struct FindReq {
    #[serde(rename = "Name", default, deserialize_with = "null_as_default")]
    name: String,
    #[serde(rename = "Metadata", default)]
    metadata: Option<Metadata>,
}

/// The params of `Updatable.Keys` and `Updatable.Get`.
#[derive(Deserialize)]
struct PathReq {
    #[serde(rename = "Name", default, deserialize_with = "null_as_default")]
    name: String,
    #[serde(rename = "Path", default)]
    path: Path,
}

/// The params of `Updatable.Changes`.
#[derive(Deserialize)]
struct ChangesReq {
    #[serde(rename = "Name", default, deserialize_with = "null_as_default")]
    name: String,
    #[serde(rename = "Changes", default)]
    changes: Option<Vec<Change>>,
}

/// The params of `Updatable.Commit`.
#[derive(Deserialize)]
struct CommitReq {
    #[serde(rename = "Name", default, deserialize_with = "null_as_default")]
    name: String,
    #[serde(rename = "Proposed", default)]
    proposed: Value,
    #[serde(rename = "Cas", default, deserialize_with = "null_as_default")]
    cas: String,
}

/// The params of every Group method.
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

/// A Group call: the params decoded, then `call` picks and checks what its method needs.
fn group(
    params: Value,
    call: impl FnOnce(&mut GroupReq) -> Result<GroupCall, Failure>,
) -> Result<Call, Failure> {
    let mut req: GroupReq = decode(params)?;
    let name = req.name.clone().unwrap_or_default();
    Ok(Call::Group {
        name,
        call: call(&mut req)?,
    })
}

/// A rollout command to the group named in `params`.
fn rollout(params: Value, action: RolloutAction) -> Result<Call, Failure> {
    group(params, |req| {
        Ok(GroupCall::Rollout {
            id: req.required_id()?,
            action,
        })
    })
}

impl GroupReq {
    /// The group a keyed name addresses (`mystack/workers` gives `workers`); none for the
    /// whole server or its collection `groups` (see [`keyed::group`]).
    fn name_object(&self) -> Option<&str> {
        match keyed::group(self.name.as_deref().unwrap_or("")) {
            Addressed::All => None,
            Addressed::Group(id) => Some(id),
        }
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

    /// The instances of DestroyInstances: present, none of them empty.
    fn required_instances(&mut self) -> Result<Vec<String>, Failure> {
        let instances = self
            .instances
            .take()
            .ok_or_else(|| bad_param("params.Instances", "missing"))?;
        if let Some(i) = instances.iter().position(|i| i.trim().is_empty()) {
            return Err(bad_param(
                &format!("params.Instances[{i}]"),
                "must not be empty",
            ));
        }
        Ok(instances)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves every interface; the only subtype of Instance and Flavor is the default.
    struct Everything;

    impl Served for Everything {
        fn serves(&self, _: Interface) -> bool {
            true
        }
        fn check_type(&self, _: Interface, kind: &str) -> Result<(), Failure> {
            if kind.is_empty() {
                Ok(())
            } else {
                Err(failure(jsonrpc::SERVER_ERROR, format!("no type '{kind}'")))
            }
        }
    }

    /// Serves the handshake only.
    struct Nothing;

    impl Served for Nothing {
        fn serves(&self, i: Interface) -> bool {
            matches!(i, Interface::Plugin | Interface::Handshake)
        }
        fn check_type(&self, _: Interface, _: &str) -> Result<(), Failure> {
            unreachable!("no Instance or Flavor here")
        }
    }

    /// Params every method accepts.
    fn good() -> Value {
        json!({
            "ID": "workers",
            "Instance": {"ID": "i-1"},
            "Spec": {"ID": "workers", "Properties": {}},
            "Instances": ["i-1"],
            "Size": 2,
            "Cas": "0123",
            "Watch": "workers/0",
        })
    }

    fn parse(method: &str, params: Value, served: &dyn Served) -> Result<(Method, Call), Failure> {
        Call::parse(method, params, served)
    }

    #[test]
    fn every_method_parses_to_itself() {
        for &m in Method::ALL {
            let mut params = good();
            if m == Method::InstanceLabel || m == Method::InstanceDestroy {
                params["Instance"] = json!("i-1");
            }
            let (parsed, call) = parse(m.as_str(), params, &Everything)
                .unwrap_or_else(|f| panic!("{m}: {}", f.message));
            assert_eq!(parsed, m);
            let interface = match call {
                Call::Handshake(_) => m.interface(),
                // The batch extension is served by the instance plugins.
                Call::Instance { .. } if m.interface() == Interface::InstanceBatch => {
                    Interface::InstanceBatch
                }
                Call::Instance { .. } => Interface::Instance,
                // The health and batch extensions are served by the flavors.
                Call::Flavor { .. }
                    if matches!(
                        m.interface(),
                        Interface::FlavorHealth | Interface::FlavorBatch
                    ) =>
                {
                    m.interface()
                }
                Call::Flavor { .. } => Interface::Flavor,
                Call::Group { .. } => Interface::Group,
                Call::Manager(_) => Interface::Manager,
                Call::Controller { .. } => Interface::Controller,
                Call::Updatable { .. } => Interface::Updatable,
                Call::EventList => Interface::Event,
            };
            assert_eq!(interface, m.interface(), "{m}");
        }
    }

    #[test]
    fn unknown_methods_are_not_found() {
        for (method, message) in [
            (
                "Instance.Bogus",
                "rpc: can't find method \"Instance.Bogus\"",
            ),
            (
                "Handshake.Bogus",
                "rpc: can't find method \"Handshake.Bogus\"",
            ),
            ("Plugin.Bogus", "rpc: can't find method \"Handshake.Bogus\""),
            ("Group.Size.x", "rpc: can't find method \"Group.Size.x\""),
            ("Nope.Thing", "rpc: can't find method \"Nope.Thing\""),
            ("group.Size", "rpc: can't find method \"group.Size\""),
            ("NoDot", "rpc: service/method request ill-formed: \"NoDot\""),
        ] {
            let f = parse(method, json!({}), &Everything).unwrap_err();
            assert_eq!(f.code, jsonrpc::METHOD_NOT_FOUND, "{method}");
            assert_eq!(f.message, message);
        }
    }

    #[test]
    fn methods_of_interfaces_not_served_are_not_found() {
        for &m in Method::ALL {
            let result = parse(m.as_str(), good(), &Nothing);
            if matches!(m.interface(), Interface::Plugin | Interface::Handshake) {
                assert!(result.is_ok(), "{m}");
            } else {
                let f = result.unwrap_err();
                assert_eq!(f.code, jsonrpc::METHOD_NOT_FOUND, "{m}");
                assert_eq!(f.message, format!("rpc: can't find method \"{m}\""));
            }
        }
    }

    #[test]
    fn the_type_is_checked_before_the_method_name() {
        let f = parse("Instance.Bogus", json!({"Type": "x"}), &Everything).unwrap_err();
        assert_eq!(f.message, "no type 'x'");
        let f = parse("Flavor.Bogus", json!({"Type": 5}), &Everything).unwrap_err();
        assert_eq!(f.code, jsonrpc::INVALID_PARAMS);
        assert!(f.message.starts_with("params.Type: "), "{}", f.message);
    }

    #[test]
    fn bad_params_name_the_field() {
        for (method, params, path) in [
            (
                Method::InstanceLabel.as_str(),
                json!({"Instance": " "}),
                "params.Instance",
            ),
            (Method::InstanceProvision.as_str(), json!({}), "params"),
            (
                Method::InstanceProvision.as_str(),
                json!({"Spec": {"Tags": {"a": 1}}}),
                "params.Spec.Tags.a",
            ),
            (Method::GroupSize.as_str(), json!({}), "params.ID"),
            (
                Method::GroupSize.as_str(),
                json!({"ID": "a", "Name": "g/b"}),
                "params.ID",
            ),
            (
                Method::GroupCommitGroup.as_str(),
                json!({"ID": "a"}),
                "params.Spec",
            ),
            (
                Method::GroupCommitGroup.as_str(),
                json!({"ID": "a", "Spec": {"ID": "b"}}),
                "params.Spec.ID",
            ),
            (
                Method::GroupDestroyInstances.as_str(),
                json!({"ID": "a", "Instances": ["x", ""]}),
                "params.Instances[1]",
            ),
            (
                Method::GroupSetSize.as_str(),
                json!({"ID": "a"}),
                "params.Size",
            ),
        ] {
            let f = parse(method, params, &Everything).unwrap_err();
            assert_eq!(f.code, jsonrpc::INVALID_PARAMS, "{method}");
            assert_eq!(f.data["Path"], path, "{method}: {}", f.message);
        }
    }

    #[test]
    fn group_calls_take_the_id_from_a_keyed_name() {
        let (_, call) = parse(
            Method::GroupPauseRollout.as_str(),
            json!({"Name": "group/workers"}),
            &Everything,
        )
        .unwrap();
        let Call::Group {
            name,
            call: GroupCall::Rollout { id, action },
        } = call
        else {
            panic!("{call:?}");
        };
        assert_eq!((name.as_str(), id.as_str()), ("group/workers", "workers"));
        assert_eq!(action, RolloutAction::Pause);
    }
}
