//! The plugin: the Instance SPI on ARM calls (see the crate's documentation for what each
//! method does).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use infrakit_spi::instance::{tags_match, LOGICAL_ID_TAG};
use infrakit_spi::{Description, DestroyContext, Error, Instance, Result, Spec, Tags};
use rand::Rng;
use serde_json::{json, Value};

use crate::arm::{Arm, ArmError, Pending};
use crate::model::{
    name_of, ArmTags, DataDisk, Disk, HardwareProfile, ImageReference, InstanceView,
    IpConfiguration, IpConfigurationProperties, LinuxConfiguration, ManagedDisk, NetworkInterface,
    NetworkProfile, NicProperties, NicReference, NicReferenceProperties, OsDisk, OsProfile,
    PublicIpAddress, PublicIpProperties, Reference, Sku, SshConfiguration, SshPublicKey,
    StorageProfile, VirtualMachine, VmProperties,
};
use crate::properties::{
    check_tags, computer_name, fixed_ip, pet_vm_name, AzureProperties, DiskSpec,
};

/// Default plugin name.
pub const DEFAULT_NAME: &str = "instance-azure";
/// How long a provision or destroy waits for ARM's operations, unless told otherwise.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(900);
/// The api-version of Microsoft.Compute virtual machines.
pub const COMPUTE_API: &str = "2025-04-01";
/// The api-version of Microsoft.Compute disks.
pub const DISK_API: &str = "2025-01-02";
/// The api-version of Microsoft.Network.
pub const NETWORK_API: &str = "2025-05-01";
/// Attachment types that are managed disks found by tag.
pub const DISK_ATTACHMENT_TYPES: &[&str] = &["disk", "azure-disk"];
/// Most decoded bytes of custom data Azure accepts.
pub const MAX_CUSTOM_DATA: usize = 65_535;

const VMS: &str = "Microsoft.Compute/virtualMachines";
const DISKS: &str = "Microsoft.Compute/disks";
const NICS: &str = "Microsoft.Network/networkInterfaces";
const PUBLIC_IPS: &str = "Microsoft.Network/publicIPAddresses";
/// How long a power state is reported without reading it again, unless told otherwise.
pub const DEFAULT_POWER_STATE_TTL: Duration = Duration::from_secs(30);
/// Instance views asked for at once while describing.
const VIEWS_AT_ONCE: usize = 16;

/// How the plugin behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureOptions {
    /// Plugin name (for messages).
    pub name: String,
    /// How long a VM's power state, once read, is reported without reading it again (while
    /// its provisioning state stays the same).
    pub power_state_ttl: Duration,
    /// How long a provision or a destroy waits for each of ARM's operations.
    pub wait_timeout: Duration,
    /// The resource groups `DescribeInstances` lists; empty: every VM of the subscription.
    pub resource_groups: Vec<String>,
}

impl Default for AzureOptions {
    fn default() -> Self {
        AzureOptions {
            name: DEFAULT_NAME.to_string(),
            power_state_ttl: DEFAULT_POWER_STATE_TTL,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            resource_groups: Vec::new(),
        }
    }
}

/// The Azure VM instance plugin. All methods take `&self` and may run concurrently.
#[derive(Debug)]
pub struct AzurePlugin {
    arm: Arm,
    options: AzureOptions,
    /// The last power state read of each VM (by resource ID, lower case), with the
    /// provisioning state it was read in and when.
    power: std::sync::Mutex<HashMap<String, Power>>,
}

/// A VM's power state as last read.
#[derive(Debug, Clone)]
struct Power {
    state: String,
    provisioning: Option<String>,
    at: Instant,
}

/// An instance ID: `<resource group>/<VM name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceId {
    /// The resource group.
    pub group: String,
    /// The VM's name.
    pub vm: String,
}

impl InstanceId {
    /// Reads `<resource group>/<VM name>`.
    pub fn parse(id: &str) -> Result<InstanceId> {
        match id.split_once('/') {
            Some((group, vm)) if !group.is_empty() && !vm.is_empty() && !vm.contains('/') => {
                Ok(InstanceId {
                    group: group.to_string(),
                    vm: vm.to_string(),
                })
            }
            _ => Err(Error::invalid(
                "ID",
                format!("an instance ID is <resource group>/<VM name> (got {id:?})"),
            )),
        }
    }

    /// The ID of the VM with resource ID `resource_id`.
    pub fn of_resource(resource_id: &str) -> Option<InstanceId> {
        let mut parts = resource_id.split('/');
        let mut group = None;
        while let Some(p) = parts.next() {
            if p.eq_ignore_ascii_case("resourceGroups") {
                group = parts.next();
                break;
            }
        }
        Some(InstanceId {
            group: group?.to_string(),
            vm: name_of(resource_id).to_string(),
        })
    }
}

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.group, self.vm)
    }
}

/// A disk to attach, found by its tag.
#[derive(Debug, Clone)]
struct Found {
    id: String,
    zone: Option<String>,
}

/// What a provision created so far, to delete if a later step fails.
#[derive(Debug, Default)]
struct Created {
    public_ip: Option<String>,
    nic: Option<String>,
    vm: Option<String>,
}

impl AzurePlugin {
    /// A plugin calling ARM through `arm`.
    pub fn new(arm: Arm, options: AzureOptions) -> Self {
        AzurePlugin {
            arm,
            options,
            power: Default::default(),
        }
    }

    /// The ARM client.
    pub fn arm(&self) -> &Arm {
        &self.arm
    }

    /// Waits for `pending`, if any, within the wait timeout.
    async fn settle(&self, what: &str, pending: Option<Pending>) -> Result<()> {
        match pending {
            Some(p) => self
                .arm
                .wait(what, p, self.options.wait_timeout)
                .await
                .map_err(arm_error),
            None => Ok(()),
        }
    }

    /// The disks of the spec's `disk` attachments, each found by its tag in the resource group
    /// and free.
    async fn disks(&self, props: &AzureProperties, spec: &Spec) -> Result<Vec<Found>> {
        let wanted: Vec<(usize, &str)> = spec
            .attachments
            .iter()
            .enumerate()
            .filter(|(_, a)| DISK_ATTACHMENT_TYPES.contains(&a.kind.as_str()))
            .map(|(i, a)| (i, a.id.as_str()))
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let all: Vec<Disk> = self
            .arm
            .list(
                &self.arm.collection_id(&props.resource_group, DISKS),
                DISK_API,
                &[],
            )
            .await
            .map_err(arm_error)?;
        let mut out = Vec::new();
        for (i, tag) in wanted {
            let origin = format!("Attachments[{i}] ({}={tag})", props.disk_tag);
            let matching: Vec<&Disk> = all
                .iter()
                .filter(|d| d.tags.get(&props.disk_tag).map(String::as_str) == Some(tag))
                .collect();
            let disk = match matching.as_slice() {
                [d] => *d,
                [] => {
                    return Err(Error::plugin(format!(
                        "{origin}: no managed disk with this tag in resource group {}; create \
                         it (tagged as shown) in the VMs' location and zone",
                        props.resource_group
                    )))
                }
                many => {
                    let names: Vec<&str> = many.iter().map(|d| d.name.as_str()).collect();
                    return Err(Error::plugin(format!(
                        "{origin}: {} disks match ({}); an attachment must find exactly one",
                        many.len(),
                        names.join(", ")
                    )));
                }
            };
            if let Some(holder) = disk.managed_by.as_deref().filter(|h| !h.is_empty()) {
                return Err(Error::plugin(format!(
                    "{origin}: disk {} is attached to VM {}; a disk is attached to one VM at a \
                     time (destroy that VM to free it)",
                    disk.name,
                    name_of(holder)
                )));
            }
            let zone = disk.zones.first().cloned();
            if let (Some(dz), Some(vz)) = (&zone, &props.zone) {
                if dz != vz {
                    return Err(Error::plugin(format!(
                        "{origin}: disk {} is in zone {dz}, the VM would be in zone {vz}",
                        disk.name
                    )));
                }
            }
            out.push(Found {
                id: disk.id.clone(),
                zone,
            });
        }
        Ok(out)
    }

    /// Creates the public IP, the NIC and the VM, each waited for.
    async fn create(
        &self,
        props: &AzureProperties,
        spec: &Spec,
        name: &str,
        tags: &ArmTags,
        created: &mut Created,
    ) -> Result<()> {
        let disks = self.disks(props, spec).await?;
        let zone = props
            .zone
            .clone()
            .or_else(|| disks.iter().find_map(|d| d.zone.clone()));
        let group = &props.resource_group;

        let mut public_ip = None;
        if props.public_ip {
            let id = self
                .arm
                .resource_id(group, PUBLIC_IPS, &format!("{name}-ip"));
            let body = PublicIpAddress {
                location: props.location.clone(),
                tags: tags.clone(),
                sku: Some(Sku {
                    name: "Standard".into(),
                }),
                zones: zone.iter().cloned().collect(),
                properties: PublicIpProperties {
                    public_ip_allocation_method: Some("Static".into()),
                    delete_option: Some("Delete".into()),
                    ip_address: None,
                },
                ..PublicIpAddress::default()
            };
            let (_, pending): (Value, _) = self
                .arm
                .put(&id, NETWORK_API, &body)
                .await
                .map_err(arm_error)?;
            created.public_ip = Some(id.clone());
            self.settle(&format!("creating public IP {name}-ip"), pending)
                .await?;
            public_ip = Some(Reference { id });
        }

        let nic_id = self.arm.resource_id(group, NICS, &format!("{name}-nic"));
        let ip = fixed_ip(spec.logical_id.as_deref());
        let nic = NetworkInterface {
            location: props.location.clone(),
            tags: tags.clone(),
            properties: NicProperties {
                ip_configurations: vec![IpConfiguration {
                    name: "ipconfig1".into(),
                    properties: IpConfigurationProperties {
                        subnet: Some(Reference {
                            id: props.subnet.clone(),
                        }),
                        private_ip_allocation_method: Some(
                            if ip.is_some() { "Static" } else { "Dynamic" }.into(),
                        ),
                        private_ip_address: ip.map(|a: Ipv4Addr| a.to_string()),
                        public_ip_address: public_ip,
                        primary: Some(true),
                    },
                }],
                ..NicProperties::default()
            },
            ..NetworkInterface::default()
        };
        let (_, pending): (Value, _) = self
            .arm
            .put(&nic_id, NETWORK_API, &nic)
            .await
            .map_err(arm_error)?;
        created.nic = Some(nic_id.clone());
        self.settle(&format!("creating network interface {name}-nic"), pending)
            .await?;

        let vm_id = self.arm.resource_id(group, VMS, name);
        let vm = vm_body(props, spec, name, tags, zone, &nic_id, &disks)?;
        let (_, pending): (Value, _) = self
            .arm
            .put(&vm_id, COMPUTE_API, &vm)
            .await
            .map_err(arm_error)?;
        created.vm = Some(vm_id);
        self.settle(&format!("creating VM {name}"), pending).await
    }

    /// Deletes what a failed provision created, newest first; says what could not be deleted.
    async fn undo(&self, created: Created) -> Vec<String> {
        let mut left = Vec::new();
        let steps = [
            (created.vm, COMPUTE_API),
            (created.nic, NETWORK_API),
            (created.public_ip, NETWORK_API),
        ];
        for (id, api) in steps {
            let Some(id) = id else { continue };
            let what = format!("deleting {}", name_of(&id));
            let done = match self.arm.delete(&id, api, &[]).await {
                Ok(pending) => self.settle(&what, pending).await,
                Err(e) => Err(arm_error(e)),
            };
            if let Err(e) = done {
                left.push(format!("{} ({e})", name_of(&id)));
            }
        }
        left
    }

    /// The VMs `DescribeInstances` looks at: the configured resource groups', or the
    /// subscription's.
    async fn vms(&self) -> Result<Vec<VirtualMachine>> {
        if self.options.resource_groups.is_empty() {
            let all = format!("/subscriptions/{}/providers/{VMS}", self.arm.subscription());
            return self
                .arm
                .list(&all, COMPUTE_API, &[])
                .await
                .map_err(arm_error);
        }
        let mut out = Vec::new();
        for group in &self.options.resource_groups {
            let vms: Vec<VirtualMachine> = self
                .arm
                .list(&self.arm.collection_id(group, VMS), COMPUTE_API, &[])
                .await
                .map_err(arm_error)?;
            out.extend(vms);
        }
        Ok(out)
    }

    /// A VM's power state (`running`, `stopped`, ...; empty when its instance view has
    /// none): remembered for the TTL while its provisioning state stays the same, else read
    /// from its instance view. `None` when the VM is gone.
    async fn power_state(&self, vm: &VirtualMachine) -> Result<Option<String>> {
        let key = vm.id.to_ascii_lowercase();
        let provisioning = vm.properties.provisioning_state.clone();
        {
            let known = self.power.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(p) = known.get(&key) {
                if p.provisioning == provisioning && p.at.elapsed() < self.options.power_state_ttl {
                    return Ok(Some(p.state.clone()));
                }
            }
        }
        let view: Option<InstanceView> = self
            .arm
            .get(&format!("{}/instanceView", vm.id), COMPUTE_API, &[])
            .await
            .map_err(arm_error)?;
        let Some(view) = view else { return Ok(None) };
        let state = view.power_state().unwrap_or_default().to_string();
        self.power.lock().unwrap_or_else(|p| p.into_inner()).insert(
            key,
            Power {
                state: state.clone(),
                provisioning,
                at: Instant::now(),
            },
        );
        Ok(Some(state))
    }

    /// Forgets the power states of VMs no longer listed.
    fn forget_power_states(&self, listed: &[VirtualMachine]) {
        let ids: std::collections::HashSet<String> =
            listed.iter().map(|vm| vm.id.to_ascii_lowercase()).collect();
        self.power
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| ids.contains(k));
    }
}

/// The VM's body.
fn vm_body(
    props: &AzureProperties,
    spec: &Spec,
    name: &str,
    tags: &ArmTags,
    zone: Option<String>,
    nic_id: &str,
    disks: &[Found],
) -> Result<VirtualMachine> {
    let image = match &props.image.id {
        Some(id) => ImageReference {
            id: Some(id.clone()),
            ..ImageReference::default()
        },
        None => ImageReference {
            publisher: props.image.publisher.clone(),
            offer: props.image.offer.clone(),
            sku: props.image.sku.clone(),
            version: Some(
                props
                    .image
                    .version
                    .clone()
                    .unwrap_or_else(|| "latest".into()),
            ),
            id: None,
        },
    };
    let managed = |d: &DiskSpec| {
        d.storage_account_type.as_ref().map(|t| ManagedDisk {
            id: None,
            storage_account_type: Some(t.clone()),
        })
    };
    let mut data_disks: Vec<DataDisk> = props
        .data_disks
        .iter()
        .enumerate()
        .map(|(lun, d)| DataDisk {
            lun: lun as u32,
            name: Some(format!("{name}-data{lun}")),
            create_option: "Empty".into(),
            disk_size_gb: Some(d.size_gb.unwrap_or(32)),
            managed_disk: managed(d),
            delete_option: Some("Delete".into()),
        })
        .collect();
    let first = data_disks.len() as u32;
    data_disks.extend(disks.iter().enumerate().map(|(i, d)| DataDisk {
        lun: first + i as u32,
        name: None,
        create_option: "Attach".into(),
        disk_size_gb: None,
        managed_disk: Some(ManagedDisk {
            id: Some(d.id.clone()),
            storage_account_type: None,
        }),
        // The disk outlives the VM: the next one of this pet attaches it.
        delete_option: Some("Detach".into()),
    }));
    let custom_data = if spec.init.is_empty() {
        None
    } else if spec.init.len() > MAX_CUSTOM_DATA {
        return Err(Error::invalid(
            "Init",
            format!(
                "Azure takes at most {MAX_CUSTOM_DATA} bytes of custom data (got {})",
                spec.init.len()
            ),
        ));
    } else {
        Some(data_encoding::BASE64.encode(spec.init.as_bytes()))
    };
    Ok(VirtualMachine {
        location: props.location.clone(),
        tags: tags.clone(),
        zones: zone.into_iter().collect(),
        properties: VmProperties {
            hardware_profile: Some(HardwareProfile {
                vm_size: props.vm_size.clone(),
            }),
            storage_profile: Some(StorageProfile {
                image_reference: Some(image),
                os_disk: Some(OsDisk {
                    name: Some(format!("{name}-osdisk")),
                    create_option: "FromImage".into(),
                    disk_size_gb: props.os_disk.size_gb,
                    managed_disk: managed(&props.os_disk),
                    delete_option: Some("Delete".into()),
                }),
                data_disks,
            }),
            os_profile: Some(OsProfile {
                computer_name: computer_name(name),
                admin_username: props.admin_username.clone(),
                custom_data,
                linux_configuration: Some(LinuxConfiguration {
                    disable_password_authentication: true,
                    ssh: Some(SshConfiguration {
                        public_keys: props
                            .ssh_public_keys
                            .iter()
                            .map(|k| SshPublicKey {
                                path: props.authorized_keys(),
                                key_data: k.clone(),
                            })
                            .collect(),
                    }),
                }),
            }),
            network_profile: Some(NetworkProfile {
                network_interfaces: vec![NicReference {
                    id: nic_id.to_string(),
                    properties: Some(NicReferenceProperties {
                        primary: Some(true),
                        delete_option: Some("Delete".into()),
                    }),
                }],
            }),
            ..VmProperties::default()
        },
        ..VirtualMachine::default()
    })
}

/// The tags of a new VM: the properties', then the spec's, and a pet's logical ID.
fn vm_tags(props: &AzureProperties, spec: &Spec) -> Result<ArmTags> {
    let mut tags = props.tags.clone();
    tags.extend(spec.tags.iter());
    if let Some(l) = &spec.logical_id {
        tags.insert(LOGICAL_ID_TAG, l);
    }
    check_tags("Tags", &tags)?;
    Ok(tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// A cattle VM's name: the prefix and eight random letters and digits.
fn cattle_name(prefix: &str) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..8)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect();
    format!("{prefix}-{suffix}")
}

/// What ARM said, as the SPI's error: the request, ARM's code and message.
fn arm_error(e: ArmError) -> Error {
    Error::plugin(e.to_string())
}

/// A VM as `DescribeInstances` reports it.
fn description(vm: &VirtualMachine, power: Option<&String>) -> Option<Description> {
    let id = InstanceId::of_resource(&vm.id)?;
    let tags: Tags = vm.tags.iter().collect();
    let created = vm.properties.time_created.as_deref().and_then(parse_time);
    let properties = power.map(|power| {
        let provisioning = vm.properties.provisioning_state.clone().unwrap_or_default();
        let state = match (provisioning.as_str(), power.as_str()) {
            ("Failed", _) => "failed".to_string(),
            (_, "deallocated" | "deallocating" | "stopped" | "stopping") => "stopped".into(),
            (_, "") => provisioning.to_ascii_lowercase(),
            (_, p) => p.to_string(),
        };
        json!({
            "State": state,
            "PowerState": power,
            "ProvisioningState": provisioning,
            "VMSize": vm.properties.hardware_profile.as_ref().map(|h| h.vm_size.clone()),
            "Location": vm.location,
            "Zone": vm.zones.first(),
            "ResourceID": vm.id,
        })
        .into()
    });
    Some(Description {
        id: id.to_string(),
        logical_id: tags.get(LOGICAL_ID_TAG).map(str::to_string),
        tags,
        properties,
        created,
    })
}

/// An RFC 3339 time as ARM writes it (`2021-06-27T01:02:38.3138469+00:00`).
fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let utc = match s.strip_suffix("+00:00") {
        Some(t) => format!("{t}Z"),
        None => s.to_string(),
    };
    humantime::parse_rfc3339_weak(&utc).ok()
}

#[async_trait]
impl Instance for AzurePlugin {
    async fn validate(&self, properties: &Value) -> Result<()> {
        AzureProperties::parse(properties).map(drop)
    }

    async fn provision(&self, spec: Spec) -> Result<String> {
        let props = AzureProperties::parse(&spec.properties)?;
        let tags = vm_tags(&props, &spec)?;
        let name = match &spec.logical_id {
            Some(l) => {
                let name = pet_vm_name(l)?;
                let id = self.arm.resource_id(&props.resource_group, VMS, &name);
                if let Some(vm) = self
                    .arm
                    .get::<VirtualMachine>(&id, COMPUTE_API, &[])
                    .await
                    .map_err(arm_error)?
                {
                    return Err(Error::plugin(format!(
                        "VM {name} (pet {l}) already exists in resource group {} \
                         (provisioning state {}); destroy it first",
                        props.resource_group,
                        vm.properties
                            .provisioning_state
                            .as_deref()
                            .unwrap_or("unknown")
                    )));
                }
                name
            }
            None => cattle_name(&props.name_prefix),
        };
        let mut created = Created::default();
        match self.create(&props, &spec, &name, &tags, &mut created).await {
            Ok(()) => {
                let id = InstanceId {
                    group: props.resource_group.clone(),
                    vm: name,
                };
                tracing::info!(instance = %id, logical_id = ?spec.logical_id, "created");
                Ok(id.to_string())
            }
            Err(e) => {
                tracing::warn!(vm = %name, error = %e, "provision failed; deleting what it created");
                let left = self.undo(created).await;
                if left.is_empty() {
                    Err(e)
                } else {
                    Err(Error::plugin(format!(
                        "{e}; and deleting what it created failed too: {}",
                        left.join(", ")
                    )))
                }
            }
        }
    }

    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        check_tags("Labels", labels)?;
        let iid = InstanceId::parse(id)?;
        let path = self.arm.resource_id(&iid.group, VMS, &iid.vm);
        let vm: VirtualMachine = self
            .arm
            .get(&path, COMPUTE_API, &[])
            .await
            .map_err(arm_error)?
            .ok_or_else(|| Error::instance_not_found(id))?;
        let mut tags = vm.tags;
        for (k, v) in labels.iter() {
            tags.insert(k.to_string(), v.to_string());
        }
        let (_, pending): (Value, _) = self
            .arm
            .patch(&path, COMPUTE_API, &json!({ "tags": tags }))
            .await
            .map_err(|e| match e {
                e if e.is_not_found() => Error::instance_not_found(id),
                e => arm_error(e),
            })?;
        self.settle(&format!("labelling VM {}", iid.vm), pending)
            .await
    }

    async fn destroy(&self, id: &str, context: &DestroyContext) -> Result<()> {
        let iid = InstanceId::parse(id)?;
        let path = self.arm.resource_id(&iid.group, VMS, &iid.vm);
        // Graceful: with every disk set to be deleted, ARM would otherwise force the deletion.
        let pending = self
            .arm
            .delete(&path, COMPUTE_API, &[("forceDeletion", "false")])
            .await
            .map_err(arm_error)?;
        self.settle(&format!("deleting VM {}", iid.vm), pending)
            .await?;
        tracing::info!(instance = id, reason = %context.reason, "deleted");
        Ok(())
    }

    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        let all = self.vms().await?;
        if properties {
            self.forget_power_states(&all);
        }
        let vms: Vec<VirtualMachine> = all
            .into_iter()
            .filter(|vm| {
                // A VM on its way out is not an instance any more.
                vm.properties.provisioning_state.as_deref() != Some("Deleting")
                    && tags_match(&vm.tags.iter().collect(), tags)
            })
            .collect();
        if !properties {
            return Ok(vms.iter().filter_map(|vm| description(vm, None)).collect());
        }
        let mut out = Vec::with_capacity(vms.len());
        for chunk in vms.chunks(VIEWS_AT_ONCE) {
            let mut states = Vec::with_capacity(chunk.len());
            for vm in chunk {
                states.push(self.power_state(vm));
            }
            let states = futures::future::try_join_all(states).await?;
            // A VM without a view was deleted while listed.
            out.extend(
                chunk
                    .iter()
                    .zip(states)
                    .filter_map(|(vm, state)| description(vm, Some(&state?))),
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_name_the_resource_group_and_the_vm() {
        let id = InstanceId::parse("rg/web-1").unwrap();
        assert_eq!(id.to_string(), "rg/web-1");
        assert!(InstanceId::parse("web-1").is_err());
        assert!(InstanceId::parse("rg/a/b").is_err());
        let of = InstanceId::of_resource(
            "/subscriptions/s/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/web-1",
        )
        .unwrap();
        assert_eq!(of.to_string(), "RG/web-1");
    }

    #[test]
    fn arm_times_read_with_their_offset() {
        let t = parse_time("2021-06-27T01:02:38.3138469+00:00").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_624_755_758);
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn cattle_names_are_the_prefix_and_eight_characters() {
        let n = cattle_name("web");
        assert_eq!(n.len(), 12);
        assert!(n.starts_with("web-"));
        assert_ne!(cattle_name("web"), cattle_name("web"));
    }
}
