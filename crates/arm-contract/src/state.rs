//! The server's state: resources, long-running operations and their progression, addresses,
//! issued tokens and the request log.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Value};

use crate::model::{Tags, VmProps};
use crate::options::{ArmOptions, Logged, ResourceGroup, COMPUTE_API, DISK_API, NETWORK_API};
use crate::reply::{ArmError, Reply};
use crate::util::{self, Prefix};

/// The resource types served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// `Microsoft.Network/publicIPAddresses`.
    PublicIp,
    /// `Microsoft.Network/networkInterfaces`.
    Nic,
    /// `Microsoft.Compute/disks`.
    Disk,
    /// `Microsoft.Compute/virtualMachines`.
    Vm,
}

impl Kind {
    /// The provider namespace.
    pub(crate) fn namespace(self) -> &'static str {
        match self {
            Kind::PublicIp | Kind::Nic => "Microsoft.Network",
            Kind::Disk | Kind::Vm => "Microsoft.Compute",
        }
    }

    /// The resource type within the namespace.
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Kind::PublicIp => "publicIPAddresses",
            Kind::Nic => "networkInterfaces",
            Kind::Disk => "disks",
            Kind::Vm => "virtualMachines",
        }
    }

    /// `Namespace/type`.
    pub(crate) fn full_type(self) -> String {
        format!("{}/{}", self.namespace(), self.type_name())
    }

    /// The api-version this server speaks for the type.
    pub(crate) fn api(self) -> &'static str {
        match self {
            Kind::PublicIp | Kind::Nic => NETWORK_API,
            Kind::Disk => DISK_API,
            Kind::Vm => COMPUTE_API,
        }
    }

    /// The type named by a namespace and a type segment, without case.
    pub(crate) fn from_segments(namespace: &str, type_name: &str) -> Option<Kind> {
        [Kind::PublicIp, Kind::Nic, Kind::Disk, Kind::Vm]
            .into_iter()
            .find(|k| {
                k.namespace().eq_ignore_ascii_case(namespace)
                    && k.type_name().eq_ignore_ascii_case(type_name)
            })
    }
}

/// A resource's key: resource group and name, lowercased (ARM names are case-insensitive).
pub(crate) type Key = (String, String);

/// The key of `name` in `rg`.
pub(crate) fn key(rg: &str, name: &str) -> Key {
    (rg.to_lowercase(), name.to_lowercase())
}

/// `provisioningState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prov {
    /// A VM being created.
    Creating,
    /// Being created (network, disks) or updated.
    Updating,
    /// Done.
    Succeeded,
    /// Failed.
    Failed,
    /// Being deleted.
    Deleting,
}

impl Prov {
    /// The value answered.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Prov::Creating => "Creating",
            Prov::Updating => "Updating",
            Prov::Succeeded => "Succeeded",
            Prov::Failed => "Failed",
            Prov::Deleting => "Deleting",
        }
    }
}

/// What every resource has.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    /// The resource group, as configured.
    pub rg: String,
    /// The name, as created.
    pub name: String,
    /// The normalized location.
    pub location: String,
    /// Tags.
    pub tags: Option<Tags>,
    /// `provisioningState`.
    pub prov: Prov,
    /// The operation under way on the resource.
    pub pending: Option<String>,
    /// Bumped on every change.
    pub version: u64,
    /// A fresh value on every change (network resources answer it as their etag).
    pub etag: String,
}

impl Meta {
    /// A new resource's metadata.
    pub(crate) fn new(
        rg: &str,
        name: &str,
        location: &str,
        tags: Option<Tags>,
        prov: Prov,
    ) -> Meta {
        Meta {
            rg: rg.to_string(),
            name: name.to_string(),
            location: location.to_string(),
            tags,
            prov,
            pending: None,
            version: 1,
            etag: util::new_uuid(),
        }
    }

    /// Records a change.
    pub(crate) fn touch(&mut self) {
        self.version += 1;
        self.etag = util::new_uuid();
    }
}

/// A public IP address.
#[derive(Clone, Debug)]
pub(crate) struct PublicIp {
    pub meta: Meta,
    pub zones: Option<Vec<String>>,
    pub sku_name: String,
    pub sku_tier: String,
    /// `properties` to echo (normalized request).
    pub props: Value,
    /// The address, once assigned.
    pub address: Option<u32>,
    /// `deleteOption`.
    pub delete_option: String,
    pub guid: String,
}

/// One IP configuration of a NIC.
#[derive(Clone, Debug)]
pub(crate) struct IpConfig {
    pub name: String,
    /// Index into the configured subnets.
    pub subnet: usize,
    pub method: String,
    pub address: u32,
    pub public_ip: Option<Key>,
    pub primary: bool,
    /// Members to echo besides the ones above.
    pub extra: Value,
}

/// A network interface.
#[derive(Clone, Debug)]
pub(crate) struct Nic {
    pub meta: Meta,
    pub ip_configs: Vec<IpConfig>,
    /// `properties` to echo besides `ipConfigurations`.
    pub props: Value,
    pub mac: String,
    pub guid: String,
}

/// A managed disk.
#[derive(Clone, Debug)]
pub(crate) struct Disk {
    pub meta: Meta,
    pub zones: Option<Vec<String>>,
    pub sku: String,
    pub size_gb: i64,
    /// `properties` to echo (normalized request).
    pub props: Value,
    pub time_created: String,
    pub unique_id: String,
}

/// A virtual machine.
#[derive(Clone, Debug)]
pub(crate) struct Vm {
    pub meta: Meta,
    pub zones: Option<Vec<String>>,
    /// The normalized request properties (defaults filled in).
    pub props: VmProps,
    pub vm_id: String,
    pub time_created: String,
    /// Whether the creation operation has ended (successfully or not).
    pub created: bool,
    /// The failure the creation ends with.
    pub fail: Option<(String, String)>,
    /// `osProfile.customData` and `userData`, kept but never answered.
    pub custom_data: Option<String>,
    pub user_data: Option<String>,
    /// The NICs, in request order, with their `deleteOption`.
    pub nics: Vec<(Key, String)>,
    /// The OS disk.
    pub os_disk: Key,
    /// Data disks by LUN.
    pub data_disks: Vec<(i64, Key)>,
}

impl Vm {
    /// Every disk the VM uses.
    pub(crate) fn disks(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.os_disk).chain(self.data_disks.iter().map(|(_, k)| k))
    }
}

/// What an operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Creates the resource.
    Create,
    /// Updates it.
    Update,
    /// Deletes it.
    Delete,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Succeeded.
    Succeeded,
    /// Failed with a code and message.
    Failed(String, String),
    /// Canceled (preempted) with a code and message.
    Canceled(String, String),
}

/// A long-running operation.
#[derive(Clone, Debug)]
pub(crate) struct Operation {
    pub id: String,
    pub kind: Kind,
    pub key: Key,
    pub action: Action,
    pub location: String,
    pub polls: u32,
    pub start: String,
    pub end: Option<String>,
    pub outcome: Option<Outcome>,
}

impl Operation {
    /// `status` as the Azure-AsyncOperation URL answers it.
    pub(crate) fn status(&self) -> &'static str {
        match &self.outcome {
            None => "InProgress",
            Some(Outcome::Succeeded) => "Succeeded",
            Some(Outcome::Failed(..)) => "Failed",
            Some(Outcome::Canceled(..)) => "Canceled",
        }
    }

    /// The Azure-AsyncOperation body.
    pub(crate) fn body(&self) -> Value {
        let mut body = json!({"name": self.id, "status": self.status(), "startTime": self.start});
        if let Some(end) = &self.end {
            body["endTime"] = json!(end);
        }
        if let Some(Outcome::Failed(code, message) | Outcome::Canceled(code, message)) =
            &self.outcome
        {
            body["error"] = json!({"code": code, "message": message});
        }
        body
    }
}

/// Configuration the handlers need.
#[derive(Clone, Debug)]
pub(crate) struct Env {
    pub options: ArmOptions,
    /// `https://127.0.0.1:PORT`.
    pub endpoint: String,
}

/// Everything the server holds.
#[derive(Debug)]
pub(crate) struct State {
    pub env: Env,
    pub tokens: HashSet<String>,
    /// Requests still to throttle, and the Retry-After to answer them with.
    pub throttle: Option<(u32, u32)>,
    pub fail_next_vm: Option<(String, String)>,
    pub log: Vec<Logged>,
    pub public_ips: BTreeMap<Key, PublicIp>,
    pub nics: BTreeMap<Key, Nic>,
    pub disks: BTreeMap<Key, Disk>,
    pub vms: BTreeMap<Key, Vm>,
    pub ops: HashMap<String, Operation>,
    /// The next public address to hand out (in 20.0.0.0/8).
    pub next_public: u32,
}

impl State {
    /// An empty state.
    pub(crate) fn new(options: ArmOptions, endpoint: String) -> State {
        State {
            env: Env { options, endpoint },
            tokens: HashSet::new(),
            throttle: None,
            fail_next_vm: None,
            log: Vec::new(),
            public_ips: BTreeMap::new(),
            nics: BTreeMap::new(),
            disks: BTreeMap::new(),
            vms: BTreeMap::new(),
            ops: HashMap::new(),
            next_public: u32::from(std::net::Ipv4Addr::new(20, 0, 0, 4)),
        }
    }

    /// The subscription.
    pub(crate) fn sub(&self) -> &str {
        &self.env.options.subscription
    }

    /// The configured resource group named `name` (without case).
    pub(crate) fn rg(&self, name: &str) -> Option<&ResourceGroup> {
        self.env
            .options
            .resource_groups
            .iter()
            .find(|g| g.name.eq_ignore_ascii_case(name))
    }

    /// The full id of a resource.
    pub(crate) fn id(&self, kind: Kind, rg: &str, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{}/{}",
            self.sub(),
            rg,
            kind.full_type(),
            name
        )
    }

    /// The id of the resource at `key`, with the names as created.
    pub(crate) fn id_of(&self, kind: Kind, key: &Key) -> String {
        match self.meta(kind, key) {
            Some(m) => self.id(kind, &m.rg, &m.name),
            None => self.id(kind, &key.0, &key.1),
        }
    }

    /// A resource's metadata.
    pub(crate) fn meta(&self, kind: Kind, key: &Key) -> Option<&Meta> {
        match kind {
            Kind::PublicIp => self.public_ips.get(key).map(|r| &r.meta),
            Kind::Nic => self.nics.get(key).map(|r| &r.meta),
            Kind::Disk => self.disks.get(key).map(|r| &r.meta),
            Kind::Vm => self.vms.get(key).map(|r| &r.meta),
        }
    }

    /// A resource's metadata, to change.
    pub(crate) fn meta_mut(&mut self, kind: Kind, key: &Key) -> Option<&mut Meta> {
        match kind {
            Kind::PublicIp => self.public_ips.get_mut(key).map(|r| &mut r.meta),
            Kind::Nic => self.nics.get_mut(key).map(|r| &mut r.meta),
            Kind::Disk => self.disks.get_mut(key).map(|r| &mut r.meta),
            Kind::Vm => self.vms.get_mut(key).map(|r| &mut r.meta),
        }
    }

    /// The keys of a type's resources, in `rg` or everywhere, in a stable order.
    pub(crate) fn keys(&self, kind: Kind, rg: Option<&str>) -> Vec<Key> {
        let all: Vec<Key> = match kind {
            Kind::PublicIp => self.public_ips.keys().cloned().collect(),
            Kind::Nic => self.nics.keys().cloned().collect(),
            Kind::Disk => self.disks.keys().cloned().collect(),
            Kind::Vm => self.vms.keys().cloned().collect(),
        };
        match rg {
            Some(rg) => {
                let rg = rg.to_lowercase();
                all.into_iter().filter(|k| k.0 == rg).collect()
            }
            None => all,
        }
    }

    /// The answer to a request for a resource that does not exist.
    pub(crate) fn not_found(&self, kind: Kind, rg: &str, name: &str) -> ArmError {
        ArmError::new(
            404,
            "ResourceNotFound",
            format!(
                "The Resource '{}/{}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
                kind.full_type(),
                name,
                rg
            ),
        )
    }

    // --------------------------------------------------------------------------------------
    // Relations
    // --------------------------------------------------------------------------------------

    /// The VM that uses the NIC.
    pub(crate) fn vm_using_nic(&self, nic: &Key) -> Option<&Key> {
        self.vms
            .iter()
            .find(|(_, vm)| vm.nics.iter().any(|(k, _)| k == nic))
            .map(|(k, _)| k)
    }

    /// The VM that uses the disk.
    pub(crate) fn vm_using_disk(&self, disk: &Key) -> Option<&Key> {
        self.vms
            .iter()
            .find(|(_, vm)| vm.disks().any(|k| k == disk))
            .map(|(k, _)| k)
    }

    /// The NIC (and IP configuration) that uses the public IP.
    pub(crate) fn nic_using_public_ip(&self, pip: &Key) -> Option<(&Key, &str)> {
        self.nics.iter().find_map(|(k, nic)| {
            nic.ip_configs
                .iter()
                .find(|c| c.public_ip.as_ref() == Some(pip))
                .map(|c| (k, c.name.as_str()))
        })
    }

    /// Whether the VM at `key` has finished its creation (so that what it uses shows it).
    pub(crate) fn vm_created(&self, key: &Key) -> bool {
        self.vms.get(key).is_some_and(|vm| vm.created)
    }

    /// The private addresses taken in subnet `subnet`, except by NIC `except`.
    pub(crate) fn used_addresses(&self, subnet: usize, except: Option<&Key>) -> Vec<u32> {
        self.nics
            .iter()
            .filter(|(k, _)| Some(*k) != except)
            .flat_map(|(_, nic)| nic.ip_configs.iter())
            .filter(|c| c.subnet == subnet)
            .map(|c| c.address)
            .collect()
    }

    /// The prefix of configured subnet `i`.
    pub(crate) fn subnet_prefix(&self, i: usize) -> Option<Prefix> {
        Prefix::parse(&self.env.options.subnets.get(i)?.prefix)
    }

    fn allocate_public(&mut self) -> u32 {
        let taken: Vec<u32> = self.public_ips.values().filter_map(|p| p.address).collect();
        loop {
            let a = self.next_public;
            self.next_public = self.next_public.wrapping_add(1);
            if a >> 24 != 20 {
                self.next_public = u32::from(std::net::Ipv4Addr::new(20, 0, 0, 4));
                continue;
            }
            if matches!(a & 0xff, 0 | 255) || taken.contains(&a) {
                continue;
            }
            return a;
        }
    }

    // --------------------------------------------------------------------------------------
    // Operations
    // --------------------------------------------------------------------------------------

    /// Starts an operation on a resource and marks the resource with it.
    pub(crate) fn start_op(&mut self, kind: Kind, key: &Key, action: Action) -> String {
        let location = self
            .meta(kind, key)
            .map(|m| m.location.clone())
            .unwrap_or_default();
        let id = util::new_uuid();
        self.ops.insert(
            id.clone(),
            Operation {
                id: id.clone(),
                kind,
                key: key.clone(),
                action,
                location,
                polls: 0,
                start: util::now(),
                end: None,
                outcome: None,
            },
        );
        if let Some(meta) = self.meta_mut(kind, key) {
            meta.pending = Some(id.clone());
        }
        id
    }

    /// An operation that has already succeeded (for changes that take effect at once).
    pub(crate) fn done_op(&mut self, kind: Kind, key: &Key, action: Action) -> String {
        let location = self
            .meta(kind, key)
            .map(|m| m.location.clone())
            .unwrap_or_default();
        let id = util::new_uuid();
        let now = util::now();
        self.ops.insert(
            id.clone(),
            Operation {
                id: id.clone(),
                kind,
                key: key.clone(),
                action,
                location,
                polls: 0,
                start: now.clone(),
                end: Some(now),
                outcome: Some(Outcome::Succeeded),
            },
        );
        id
    }

    fn op_url(&self, op: &Operation, segment: &str) -> String {
        format!(
            "{}/subscriptions/{}/providers/{}/locations/{}/{}/{}?api-version={}",
            self.env.endpoint,
            self.sub(),
            op.kind.namespace(),
            op.location,
            segment,
            op.id,
            op.kind.api()
        )
    }

    /// The Azure-AsyncOperation URL of an operation.
    pub(crate) fn async_url(&self, op_id: &str) -> String {
        self.ops
            .get(op_id)
            .map(|op| self.op_url(op, "operations"))
            .unwrap_or_default()
    }

    /// The Location URL of an operation.
    pub(crate) fn location_url(&self, op_id: &str) -> String {
        self.ops
            .get(op_id)
            .map(|op| self.op_url(op, "operationResults"))
            .unwrap_or_default()
    }

    /// Adds the long-running-operation headers: Azure-AsyncOperation, Location when asked,
    /// and Retry-After.
    pub(crate) fn lro(&self, reply: Reply, op_id: &str, with_location: bool) -> Reply {
        let mut reply = reply.header("Azure-AsyncOperation", self.async_url(op_id));
        if with_location {
            reply = reply.header("Location", self.location_url(op_id));
        }
        reply.header("Retry-After", self.env.options.retry_after_secs.to_string())
    }

    /// Cancels the create or update under way on a resource (a delete preempts it).
    pub(crate) fn preempt(&mut self, kind: Kind, key: &Key) {
        let Some(pending) = self.meta(kind, key).and_then(|m| m.pending.clone()) else {
            return;
        };
        if let Some(op) = self.ops.get_mut(&pending) {
            if op.outcome.is_none() && op.action != Action::Delete {
                op.outcome = Some(Outcome::Canceled(
                    "OperationPreempted".into(),
                    "Operation execution has been preempted by a more recent operation.".into(),
                ));
                op.end = Some(util::now());
            }
        }
        if let Some(meta) = self.meta_mut(kind, key) {
            meta.pending = None;
        }
    }

    /// One poll of an operation (by its Azure-AsyncOperation or Location URL): the
    /// `operation_polls`+1-th poll ends it, and the resource changes then.
    pub(crate) fn poll(&mut self, op_id: &str) -> Option<&Operation> {
        let limit = self.env.options.operation_polls;
        let op = self.ops.get_mut(op_id)?;
        if op.outcome.is_none() {
            op.polls += 1;
            if op.polls > limit {
                let outcome = self.finish(op_id);
                if let Some(op) = self.ops.get_mut(op_id) {
                    op.outcome = Some(outcome);
                    op.end = Some(util::now());
                }
            }
        }
        self.ops.get(op_id)
    }

    fn finish(&mut self, op_id: &str) -> Outcome {
        let Some(op) = self.ops.get(op_id).cloned() else {
            return Outcome::Succeeded;
        };
        match op.action {
            Action::Delete => {
                self.remove(op.kind, &op.key);
                Outcome::Succeeded
            }
            Action::Create | Action::Update => {
                let Some(meta) = self.meta(op.kind, &op.key) else {
                    return Outcome::Canceled(
                        "OperationPreempted".into(),
                        "Operation execution has been preempted by a more recent operation.".into(),
                    );
                };
                if meta.pending.as_deref() != Some(op_id) {
                    return Outcome::Succeeded;
                }
                let mut outcome = Outcome::Succeeded;
                match op.kind {
                    Kind::PublicIp => {
                        if self
                            .public_ips
                            .get(&op.key)
                            .is_some_and(|p| p.address.is_none())
                        {
                            let a = self.allocate_public();
                            if let Some(p) = self.public_ips.get_mut(&op.key) {
                                p.address = Some(a);
                            }
                        }
                    }
                    Kind::Vm => {
                        if !self.vm_created(&op.key) {
                            self.materialize_vm_disks(&op.key);
                        }
                        if let Some(vm) = self.vms.get_mut(&op.key) {
                            vm.created = true;
                            if let Some((code, message)) = vm.fail.take() {
                                outcome = Outcome::Failed(code, message);
                            }
                        }
                    }
                    Kind::Nic | Kind::Disk => {}
                }
                if let Some(meta) = self.meta_mut(op.kind, &op.key) {
                    meta.pending = None;
                    meta.prov = if outcome == Outcome::Succeeded {
                        Prov::Succeeded
                    } else {
                        Prov::Failed
                    };
                    meta.touch();
                }
                outcome
            }
        }
    }

    /// Removes a resource; a VM takes with it the NICs, public IPs and disks whose
    /// `deleteOption` is `Delete`.
    pub(crate) fn remove(&mut self, kind: Kind, key: &Key) {
        match kind {
            Kind::PublicIp => {
                self.public_ips.remove(key);
            }
            Kind::Nic => {
                self.nics.remove(key);
            }
            Kind::Disk => {
                self.disks.remove(key);
            }
            Kind::Vm => {
                let Some(vm) = self.vms.remove(key) else {
                    return;
                };
                for (nic_key, delete_option) in &vm.nics {
                    if !delete_option.eq_ignore_ascii_case("Delete") {
                        continue;
                    }
                    self.preempt(Kind::Nic, nic_key);
                    let Some(nic) = self.nics.remove(nic_key) else {
                        continue;
                    };
                    for pip_key in nic.ip_configs.iter().filter_map(|c| c.public_ip.as_ref()) {
                        let delete = self
                            .public_ips
                            .get(pip_key)
                            .is_some_and(|p| p.delete_option.eq_ignore_ascii_case("Delete"));
                        if delete && self.nic_using_public_ip(pip_key).is_none() {
                            self.preempt(Kind::PublicIp, pip_key);
                            self.public_ips.remove(pip_key);
                        }
                    }
                }
                let storage = vm.props.storage_profile.as_ref();
                let os_delete = storage
                    .and_then(|s| s.os_disk.as_ref())
                    .and_then(|d| d.delete_option.as_deref())
                    .is_some_and(|o| o.eq_ignore_ascii_case("Delete"));
                if os_delete {
                    self.disks.remove(&vm.os_disk);
                }
                let data = storage.and_then(|s| s.data_disks.as_ref());
                for (lun, disk_key) in &vm.data_disks {
                    let delete = data
                        .and_then(|d| d.iter().find(|d| d.lun == Some(*lun)))
                        .and_then(|d| d.delete_option.as_deref())
                        .is_some_and(|o| o.eq_ignore_ascii_case("Delete"));
                    if delete {
                        self.disks.remove(disk_key);
                    }
                }
            }
        }
    }

    /// The answer to a DELETE of an existing resource: 202 with Location and
    /// Azure-AsyncOperation; a delete already under way is answered with its operation.
    pub(crate) fn accept_delete(&mut self, kind: Kind, key: &Key) -> Reply {
        let under_way = self
            .meta(kind, key)
            .and_then(|m| m.pending.clone())
            .filter(|p| {
                self.ops
                    .get(p)
                    .is_some_and(|op| op.action == Action::Delete && op.outcome.is_none())
            });
        let op_id = match under_way {
            Some(op) => op,
            None => {
                self.preempt(kind, key);
                if let Some(meta) = self.meta_mut(kind, key) {
                    meta.prov = Prov::Deleting;
                    meta.touch();
                }
                self.start_op(kind, key, Action::Delete)
            }
        };
        self.lro(Reply::empty(202), &op_id, true)
    }

    /// Whether a delete is under way on the resource.
    pub(crate) fn deleting(&self, kind: Kind, key: &Key) -> bool {
        self.meta(kind, key)
            .is_some_and(|m| m.prov == Prov::Deleting)
    }

    /// The names of the VMs in a resource group, sorted.
    pub(crate) fn vm_names(&self, rg: &str) -> Vec<String> {
        let rg = rg.to_lowercase();
        let mut names: Vec<String> = self
            .vms
            .iter()
            .filter(|(k, _)| k.0 == rg)
            .map(|(_, vm)| vm.meta.name.clone())
            .collect();
        names.sort();
        names
    }

    /// The id of configured subnet `i`.
    pub(crate) fn subnet_id(&self, i: usize) -> String {
        self.env.options.subnets[i].id(self.sub())
    }

    /// A NIC IP configuration's id.
    pub(crate) fn ip_config_id(&self, nic: &Key, name: &str) -> String {
        format!("{}/ipConfigurations/{}", self.id_of(Kind::Nic, nic), name)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn state(polls: u32) -> State {
        let options = ArmOptions {
            operation_polls: polls,
            ..ArmOptions::default()
        };
        State::new(options, "https://127.0.0.1:1".into())
    }

    fn add_pip(st: &mut State, name: &str) -> Key {
        let k = key("infrakit-test", name);
        st.public_ips.insert(
            k.clone(),
            PublicIp {
                meta: Meta::new("infrakit-test", name, "westeurope", None, Prov::Updating),
                zones: None,
                sku_name: "Standard".into(),
                sku_tier: "Regional".into(),
                props: json!({}),
                address: None,
                delete_option: "Delete".into(),
                guid: util::new_uuid(),
            },
        );
        k
    }

    #[test]
    fn operations_end_on_the_poll_after_the_configured_count() {
        let mut st = state(2);
        let k = add_pip(&mut st, "ip");
        let op = st.start_op(Kind::PublicIp, &k, Action::Create);
        assert!(st.async_url(&op).starts_with(
            "https://127.0.0.1:1/subscriptions/00000000-0000-0000-0000-000000000001/providers/Microsoft.Network/locations/westeurope/operations/"
        ));
        assert!(st.async_url(&op).ends_with("?api-version=2025-05-01"));
        assert!(st.location_url(&op).contains("/operationResults/"));
        assert_eq!(st.poll(&op).unwrap().status(), "InProgress");
        assert!(st.public_ips[&k].address.is_none());
        assert_eq!(st.poll(&op).unwrap().status(), "InProgress");
        assert_eq!(st.poll(&op).unwrap().status(), "Succeeded");
        assert_eq!(st.public_ips[&k].meta.prov, Prov::Succeeded);
        assert_eq!(
            st.public_ips[&k].address.map(util::ip_text).as_deref(),
            Some("20.0.0.4")
        );
        // Later polls keep answering the outcome.
        let body = st.poll(&op).unwrap().body();
        assert_eq!(body["status"], "Succeeded");
        assert!(body.get("endTime").is_some());
        assert!(st.poll("nope").is_none());
    }

    #[test]
    fn deletes_happen_when_their_operation_ends() {
        let mut st = state(0);
        let k = add_pip(&mut st, "ip");
        let reply = st.accept_delete(Kind::PublicIp, &k);
        assert_eq!(reply.status, 202);
        assert!(reply.header_value("Location").is_some());
        let op = reply
            .header_value("Azure-AsyncOperation")
            .unwrap()
            .split("/operations/")
            .nth(1)
            .unwrap()
            .split('?')
            .next()
            .unwrap()
            .to_string();
        assert!(st.deleting(Kind::PublicIp, &k));
        // A second DELETE answers the same operation.
        let again = st.accept_delete(Kind::PublicIp, &k);
        assert!(again
            .header_value("Azure-AsyncOperation")
            .unwrap()
            .contains(&op));
        assert_eq!(st.poll(&op).unwrap().status(), "Succeeded");
        assert!(!st.public_ips.contains_key(&k));
    }

    #[test]
    fn a_delete_preempts_a_creation() {
        let mut st = state(1);
        let k = add_pip(&mut st, "ip");
        let create = st.start_op(Kind::PublicIp, &k, Action::Create);
        st.accept_delete(Kind::PublicIp, &k);
        let body = st.poll(&create).unwrap().body();
        assert_eq!(body["status"], "Canceled");
        assert_eq!(body["error"]["code"], "OperationPreempted");
    }

    #[test]
    fn public_addresses_are_unique() {
        let mut st = state(0);
        let a = st.allocate_public();
        let b = st.allocate_public();
        assert_ne!(a, b);
        assert_eq!(a >> 24, 20);
    }
}
