//! Request bodies, as the published specification names their members. Every struct refuses
//! members it does not know (`deny_unknown_fields`), as Compute does ("Could not find member 'x'
//! on object of type 'HardwareProfile'"). Members the specification defines but this server does
//! not act on are accepted as opaque JSON (and echoed back), so a valid request is never refused
//! for them. Read-only members that a client may send back after a GET are accepted and ignored.
//!
//! Required members are `Option`s here: what is missing is answered with the provider's own
//! message by the handlers, not by serde.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_path_to_error::Segment;

use crate::reply::ArmError;

/// Resource tags.
pub(crate) type Tags = BTreeMap<String, String>;

/// Opaque JSON accepted as it is.
pub(crate) type Opaque = Option<Value>;

// ------------------------------------------------------------------------------------------
// Microsoft.Compute/virtualMachines
// ------------------------------------------------------------------------------------------

/// `VirtualMachine` (PUT body).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct VmBody {
    pub location: Option<String>,
    pub tags: Option<Tags>,
    pub zones: Option<Vec<String>>,
    pub properties: Option<VmProps>,
    pub identity: Opaque,
    pub plan: Opaque,
    pub extended_location: Opaque,
    pub placement: Opaque,
    // Read-only.
    pub id: Opaque,
    pub name: Opaque,
    #[serde(rename = "type")]
    pub kind: Opaque,
    pub etag: Opaque,
    pub managed_by: Opaque,
    pub resources: Opaque,
    pub system_data: Opaque,
}

/// `VirtualMachineUpdate` (PATCH body).
// Read-only members are accepted and never read.
#[allow(dead_code)]
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct VmPatch {
    pub tags: Option<Tags>,
    pub zones: Option<Vec<String>>,
    pub properties: Option<VmProps>,
    pub identity: Opaque,
    pub plan: Opaque,
}

/// `VirtualMachineProperties`.
// Read-only members are accepted and never read.
#[allow(dead_code)]
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct VmProps {
    pub hardware_profile: Option<HardwareProfile>,
    pub storage_profile: Option<StorageProfile>,
    pub os_profile: Option<OsProfile>,
    pub network_profile: Option<NetworkProfile>,
    #[serde(skip_serializing)]
    pub user_data: Option<String>,
    pub diagnostics_profile: Opaque,
    pub security_profile: Opaque,
    pub priority: Opaque,
    pub eviction_policy: Opaque,
    pub billing_profile: Opaque,
    pub availability_set: Opaque,
    pub virtual_machine_scale_set: Opaque,
    pub proximity_placement_group: Opaque,
    pub license_type: Opaque,
    pub extensions_time_budget: Opaque,
    pub additional_capabilities: Opaque,
    pub host: Opaque,
    pub host_group: Opaque,
    pub scheduled_events_policy: Opaque,
    pub scheduled_events_profile: Opaque,
    pub capacity_reservation: Opaque,
    pub application_profile: Opaque,
    pub platform_fault_domain: Opaque,
    // Read-only.
    #[serde(skip_serializing)]
    pub vm_id: Opaque,
    #[serde(skip_serializing)]
    pub provisioning_state: Opaque,
    #[serde(skip_serializing)]
    pub time_created: Opaque,
    #[serde(skip_serializing)]
    pub instance_view: Opaque,
}

/// `HardwareProfile`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct HardwareProfile {
    pub vm_size: Option<String>,
    pub vm_size_properties: Opaque,
}

/// `StorageProfile`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct StorageProfile {
    pub image_reference: Option<ImageReference>,
    pub os_disk: Option<OsDisk>,
    pub data_disks: Option<Vec<DataDisk>>,
    pub disk_controller_type: Opaque,
    pub align_regional_disks_to_vm_zone: Opaque,
}

/// `ImageReference`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ImageReference {
    pub publisher: Option<String>,
    pub offer: Option<String>,
    pub sku: Option<String>,
    pub version: Option<String>,
    pub id: Option<String>,
    pub shared_gallery_image_id: Option<String>,
    pub community_gallery_image_id: Option<String>,
    pub exact_version: Opaque,
}

/// `OSDisk`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct OsDisk {
    pub os_type: Option<String>,
    pub name: Option<String>,
    pub create_option: Option<String>,
    pub caching: Option<String>,
    #[serde(rename = "diskSizeGB")]
    pub disk_size_gb: Option<i64>,
    pub managed_disk: Option<ManagedDisk>,
    pub delete_option: Option<String>,
    pub write_accelerator_enabled: Opaque,
    pub diff_disk_settings: Opaque,
    pub encryption_settings: Opaque,
    pub vhd: Opaque,
    pub image: Opaque,
}

/// `DataDisk`.
// Read-only members are accepted and never read.
#[allow(dead_code)]
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DataDisk {
    pub lun: Option<i64>,
    pub name: Option<String>,
    pub create_option: Option<String>,
    pub caching: Option<String>,
    #[serde(rename = "diskSizeGB")]
    pub disk_size_gb: Option<i64>,
    pub managed_disk: Option<ManagedDisk>,
    pub delete_option: Option<String>,
    pub to_be_detached: Option<bool>,
    pub detach_option: Opaque,
    pub write_accelerator_enabled: Opaque,
    pub vhd: Opaque,
    pub image: Opaque,
    pub source_resource: Opaque,
    #[serde(rename = "diskIOPSReadWrite", skip_serializing)]
    pub disk_iops_read_write: Opaque,
    #[serde(rename = "diskMBpsReadWrite", skip_serializing)]
    pub disk_mbps_read_write: Opaque,
}

/// `ManagedDiskParameters`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ManagedDisk {
    pub id: Option<String>,
    pub storage_account_type: Option<String>,
    pub disk_encryption_set: Opaque,
    pub security_profile: Opaque,
}

/// `OSProfile`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct OsProfile {
    pub computer_name: Option<String>,
    pub admin_username: Option<String>,
    #[serde(skip_serializing)]
    pub admin_password: Option<String>,
    #[serde(skip_serializing)]
    pub custom_data: Option<String>,
    pub linux_configuration: Option<LinuxConfiguration>,
    pub windows_configuration: Opaque,
    pub secrets: Opaque,
    pub allow_extension_operations: Opaque,
    pub require_guest_provision_signal: Opaque,
}

/// `LinuxConfiguration`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LinuxConfiguration {
    pub disable_password_authentication: Option<bool>,
    pub ssh: Option<SshConfiguration>,
    #[serde(rename = "provisionVMAgent")]
    pub provision_vm_agent: Option<bool>,
    pub patch_settings: Opaque,
    #[serde(rename = "enableVMAgentPlatformUpdates")]
    pub enable_vm_agent_platform_updates: Opaque,
}

/// `SshConfiguration`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SshConfiguration {
    pub public_keys: Option<Vec<SshPublicKey>>,
}

/// `SshPublicKey`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SshPublicKey {
    pub path: Option<String>,
    pub key_data: Option<String>,
}

/// `NetworkProfile`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NetworkProfile {
    pub network_interfaces: Option<Vec<NicReference>>,
    pub network_api_version: Opaque,
    pub network_interface_configurations: Opaque,
}

/// `NetworkInterfaceReference`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NicReference {
    pub id: Option<String>,
    pub properties: Option<NicReferenceProps>,
}

/// `NetworkInterfaceReferenceProperties`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NicReferenceProps {
    pub primary: Option<bool>,
    pub delete_option: Option<String>,
}

// ------------------------------------------------------------------------------------------
// Microsoft.Compute/disks
// ------------------------------------------------------------------------------------------

/// `Disk` (PUT body).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DiskBody {
    pub location: Option<String>,
    pub tags: Option<Tags>,
    pub zones: Option<Vec<String>>,
    pub sku: Option<DiskSku>,
    pub properties: Option<DiskProps>,
    pub extended_location: Opaque,
    // Read-only.
    pub id: Opaque,
    pub name: Opaque,
    #[serde(rename = "type")]
    pub kind: Opaque,
    pub managed_by: Opaque,
    pub managed_by_extended: Opaque,
    pub etag: Opaque,
    pub system_data: Opaque,
}

/// `DiskSku`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DiskSku {
    pub name: Option<String>,
    pub tier: Opaque,
}

/// `DiskProperties`.
// Read-only members are accepted and never read.
#[allow(dead_code)]
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DiskProps {
    pub creation_data: Option<CreationData>,
    #[serde(rename = "diskSizeGB")]
    pub disk_size_gb: Option<i64>,
    pub os_type: Opaque,
    pub hyper_v_generation: Opaque,
    pub purchase_plan: Opaque,
    pub supported_capabilities: Opaque,
    pub encryption_settings_collection: Opaque,
    #[serde(rename = "diskIOPSReadWrite")]
    pub disk_iops_read_write: Opaque,
    #[serde(rename = "diskMBpsReadWrite")]
    pub disk_mbps_read_write: Opaque,
    #[serde(rename = "diskIOPSReadOnly")]
    pub disk_iops_read_only: Opaque,
    #[serde(rename = "diskMBpsReadOnly")]
    pub disk_mbps_read_only: Opaque,
    pub max_shares: Opaque,
    pub encryption: Opaque,
    pub network_access_policy: Opaque,
    pub disk_access_id: Opaque,
    pub tier: Opaque,
    pub bursting_enabled: Opaque,
    pub supports_hibernation: Opaque,
    pub security_profile: Opaque,
    pub completion_percent: Opaque,
    pub public_network_access: Opaque,
    pub data_access_auth_mode: Opaque,
    pub optimized_for_frequent_attach: Opaque,
    pub availability_policy: Opaque,
    // Read-only.
    #[serde(skip_serializing)]
    pub provisioning_state: Opaque,
    #[serde(skip_serializing)]
    pub disk_state: Opaque,
    #[serde(skip_serializing)]
    pub time_created: Opaque,
    #[serde(skip_serializing)]
    pub unique_id: Opaque,
    #[serde(skip_serializing)]
    pub disk_size_bytes: Opaque,
    #[serde(rename = "LastOwnershipUpdateTime", skip_serializing)]
    pub last_ownership_update_time: Opaque,
    #[serde(skip_serializing)]
    pub share_info: Opaque,
    #[serde(skip_serializing)]
    pub property_updates_in_progress: Opaque,
    #[serde(skip_serializing)]
    pub bursting_enabled_time: Opaque,
}

/// `CreationData`.
// Read-only members are accepted and never read.
#[allow(dead_code)]
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreationData {
    pub create_option: Option<String>,
    pub storage_account_id: Opaque,
    pub image_reference: Opaque,
    pub gallery_image_reference: Opaque,
    pub source_uri: Opaque,
    pub source_resource_id: Opaque,
    pub upload_size_bytes: Opaque,
    pub logical_sector_size: Opaque,
    pub security_data_uri: Opaque,
    pub security_metadata_uri: Opaque,
    pub performance_plus: Opaque,
    pub elastic_san_resource_id: Opaque,
    pub provisioned_bandwidth_copy_speed: Opaque,
    pub instant_access_duration_minutes: Opaque,
    #[serde(skip_serializing)]
    pub source_unique_id: Opaque,
}

// ------------------------------------------------------------------------------------------
// Microsoft.Network
// ------------------------------------------------------------------------------------------

/// A reference to another network resource (`SubResource`, or the whole resource as a GET
/// returned it; only `id` is used).
// Read-only members are accepted and never read.
#[allow(dead_code)]
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NetRef {
    pub id: Option<String>,
    #[serde(skip_serializing)]
    pub name: Opaque,
    #[serde(skip_serializing)]
    pub etag: Opaque,
    #[serde(rename = "type", skip_serializing)]
    pub kind: Opaque,
    #[serde(skip_serializing)]
    pub location: Opaque,
    #[serde(skip_serializing)]
    pub tags: Opaque,
    #[serde(skip_serializing)]
    pub sku: Opaque,
    #[serde(skip_serializing)]
    pub zones: Opaque,
    #[serde(skip_serializing)]
    pub properties: Opaque,
}

/// `PublicIPAddress` (PUT body).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PipBody {
    pub location: Option<String>,
    pub tags: Option<Tags>,
    pub zones: Option<Vec<String>>,
    pub sku: Option<PipSku>,
    pub properties: Option<PipProps>,
    pub extended_location: Opaque,
    // Read-only.
    pub id: Opaque,
    pub name: Opaque,
    #[serde(rename = "type")]
    pub kind: Opaque,
    pub etag: Opaque,
}

/// `PublicIPAddressSku`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PipSku {
    pub name: Option<String>,
    pub tier: Option<String>,
}

/// `PublicIPAddressPropertiesFormat`.
// Read-only members are accepted and never read.
#[allow(dead_code)]
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PipProps {
    #[serde(rename = "publicIPAllocationMethod")]
    pub allocation_method: Option<String>,
    #[serde(rename = "publicIPAddressVersion")]
    pub version: Option<String>,
    pub idle_timeout_in_minutes: Option<i64>,
    pub delete_option: Option<String>,
    pub dns_settings: Option<PipDns>,
    pub ip_tags: Opaque,
    pub ddos_settings: Opaque,
    #[serde(rename = "publicIPPrefix")]
    pub public_ip_prefix: Opaque,
    pub migration_phase: Opaque,
    #[serde(rename = "natGateway")]
    pub nat_gateway: Opaque,
    #[serde(rename = "linkedPublicIPAddress")]
    pub linked_public_ip_address: Opaque,
    #[serde(rename = "servicePublicIPAddress")]
    pub service_public_ip_address: Opaque,
    // Read-only (or assigned by the service).
    #[serde(skip_serializing)]
    pub ip_address: Opaque,
    #[serde(skip_serializing)]
    pub ip_configuration: Opaque,
    #[serde(skip_serializing)]
    pub resource_guid: Opaque,
    #[serde(skip_serializing)]
    pub provisioning_state: Opaque,
}

/// `PublicIPAddressDnsSettings`.
// Read-only members are accepted and never read.
#[allow(dead_code)]
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PipDns {
    pub domain_name_label: Option<String>,
    pub domain_name_label_scope: Opaque,
    #[serde(skip_serializing)]
    pub fqdn: Opaque,
    pub reverse_fqdn: Opaque,
}

/// `NetworkInterface` (PUT body).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NicBody {
    pub location: Option<String>,
    pub tags: Option<Tags>,
    pub properties: Option<NicProps>,
    pub extended_location: Opaque,
    // Read-only.
    pub id: Opaque,
    pub name: Opaque,
    #[serde(rename = "type")]
    pub kind: Opaque,
    pub etag: Opaque,
}

/// `NetworkInterfacePropertiesFormat`.
// Read-only members are accepted and never read.
#[allow(dead_code)]
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NicProps {
    pub ip_configurations: Option<Vec<IpConfigBody>>,
    pub enable_accelerated_networking: Option<bool>,
    #[serde(rename = "enableIPForwarding")]
    pub enable_ip_forwarding: Option<bool>,
    pub disable_tcp_state_tracking: Option<bool>,
    pub network_security_group: Option<NetRef>,
    pub dns_settings: Opaque,
    pub auxiliary_mode: Opaque,
    pub auxiliary_sku: Opaque,
    pub nic_type: Opaque,
    pub workload_type: Opaque,
    pub migration_phase: Opaque,
    pub private_link_service: Opaque,
    // Read-only.
    #[serde(skip_serializing)]
    pub provisioning_state: Opaque,
    #[serde(skip_serializing)]
    pub resource_guid: Opaque,
    #[serde(skip_serializing)]
    pub mac_address: Opaque,
    #[serde(skip_serializing)]
    pub primary: Opaque,
    #[serde(skip_serializing)]
    pub virtual_machine: Opaque,
    #[serde(skip_serializing)]
    pub vnet_encryption_supported: Opaque,
    #[serde(skip_serializing)]
    pub default_outbound_connectivity_enabled: Opaque,
    #[serde(skip_serializing)]
    pub hosted_workloads: Opaque,
    #[serde(skip_serializing)]
    pub tap_configurations: Opaque,
    #[serde(skip_serializing)]
    pub private_endpoint: Opaque,
    #[serde(skip_serializing)]
    pub dscp_configuration: Opaque,
}

/// `NetworkInterfaceIPConfiguration`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct IpConfigBody {
    pub name: Option<String>,
    pub properties: Option<IpConfigProps>,
    // Read-only.
    pub id: Opaque,
    pub etag: Opaque,
    #[serde(rename = "type")]
    pub kind: Opaque,
}

/// `NetworkInterfaceIPConfigurationPropertiesFormat`.
// Read-only members are accepted and never read.
#[allow(dead_code)]
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct IpConfigProps {
    pub subnet: Option<NetRef>,
    #[serde(rename = "privateIPAllocationMethod")]
    pub allocation_method: Option<String>,
    #[serde(rename = "privateIPAddress")]
    pub address: Option<String>,
    #[serde(rename = "privateIPAddressVersion")]
    pub version: Option<String>,
    #[serde(rename = "privateIPAddressPrefixLength")]
    pub prefix_length: Opaque,
    #[serde(rename = "publicIPAddress")]
    pub public_ip_address: Option<NetRef>,
    pub primary: Option<bool>,
    pub gateway_load_balancer: Opaque,
    pub virtual_network_taps: Opaque,
    pub application_gateway_backend_address_pools: Opaque,
    pub load_balancer_backend_address_pools: Opaque,
    pub load_balancer_inbound_nat_rules: Opaque,
    pub application_security_groups: Opaque,
    // Read-only.
    #[serde(skip_serializing)]
    pub private_link_connection_properties: Opaque,
    #[serde(skip_serializing)]
    pub provisioning_state: Opaque,
}

/// `TagsObject` (PATCH body of the network resources and disks' tags).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TagsBody {
    pub tags: Option<Tags>,
}

// ------------------------------------------------------------------------------------------
// Parsing with paths
// ------------------------------------------------------------------------------------------

/// Which body is parsed: it decides the type names in messages and the provider's error shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Root {
    /// A VM PUT.
    VirtualMachine,
    /// A VM PATCH.
    VirtualMachineUpdate,
    /// A disk PUT.
    Disk,
    /// A NIC PUT.
    NetworkInterface,
    /// A public IP PUT.
    PublicIpAddress,
    /// A network resource's tags PATCH.
    NetworkTags,
    /// A disk's tags PATCH.
    DiskUpdate,
}

impl Root {
    fn network(self) -> bool {
        matches!(
            self,
            Root::NetworkInterface | Root::PublicIpAddress | Root::NetworkTags
        )
    }

    /// The specification's type name of the object at `path` (the path of the object, not of the
    /// member).
    fn type_at(self, path: &[&str]) -> String {
        let last = path.last().copied().unwrap_or("");
        let prev = if path.len() >= 2 {
            path[path.len() - 2]
        } else {
            ""
        };
        let known = match (self, prev, last) {
            (Root::VirtualMachine, _, "") => "VirtualMachine",
            (Root::VirtualMachineUpdate, _, "") => "VirtualMachineUpdate",
            (Root::Disk, _, "") => "Disk",
            (Root::DiskUpdate, _, "") => "DiskUpdate",
            (Root::NetworkInterface, _, "") => "NetworkInterface",
            (Root::PublicIpAddress, _, "") => "PublicIPAddress",
            (Root::NetworkTags, _, "") => "TagsObject",
            (Root::VirtualMachine | Root::VirtualMachineUpdate, "", "properties") => {
                "VirtualMachineProperties"
            }
            (Root::Disk, "", "properties") => "DiskProperties",
            (Root::NetworkInterface, "", "properties") => "NetworkInterfacePropertiesFormat",
            (Root::PublicIpAddress, "", "properties") => "PublicIPAddressPropertiesFormat",
            (_, "networkInterfaces", "properties") => "NetworkInterfaceReferenceProperties",
            (_, "ipConfigurations", "properties") => {
                "NetworkInterfaceIPConfigurationPropertiesFormat"
            }
            (_, _, "hardwareProfile") => "HardwareProfile",
            (_, _, "storageProfile") => "StorageProfile",
            (_, _, "imageReference") => "ImageReference",
            (_, _, "osDisk") => "OSDisk",
            (_, _, "dataDisks") => "DataDisk",
            (_, _, "managedDisk") => "ManagedDiskParameters",
            (_, _, "osProfile") => "OSProfile",
            (_, _, "linuxConfiguration") => "LinuxConfiguration",
            (_, _, "ssh") => "SshConfiguration",
            (_, _, "publicKeys") => "SshPublicKey",
            (_, _, "networkProfile") => "NetworkProfile",
            (_, _, "networkInterfaces") => "NetworkInterfaceReference",
            (_, _, "creationData") => "CreationData",
            (Root::Disk, _, "sku") => "DiskSku",
            (Root::PublicIpAddress, _, "sku") => "PublicIPAddressSku",
            (Root::PublicIpAddress, _, "dnsSettings") => "PublicIPAddressDnsSettings",
            (_, _, "ipConfigurations") => "NetworkInterfaceIPConfiguration",
            (_, _, "subnet") => "Subnet",
            (_, _, "publicIPAddress") => "PublicIPAddress",
            (_, _, "networkSecurityGroup") => "NetworkSecurityGroup",
            _ => "",
        };
        if !known.is_empty() {
            return known.to_string();
        }
        let mut chars = last.chars();
        match chars.next() {
            Some(c) => c.to_uppercase().chain(chars).collect(),
            None => "Object".to_string(),
        }
    }
}

/// Parses `body` as `T`, answering what cannot be parsed as the provider does: Compute
/// (and disks) with `InvalidRequestContent`, Network with `InvalidRequestFormat` and an
/// `InvalidJson` detail; both name the path of the offending member.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8], root: Root) -> Result<T, ArmError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(err) => {
            let segments: Vec<String> = err
                .path()
                .iter()
                .map(|s| match s {
                    Segment::Seq { index } => format!("[{index}]"),
                    Segment::Map { key } => key.clone(),
                    Segment::Enum { variant } => variant.clone(),
                    Segment::Unknown => "?".to_string(),
                })
                .collect();
            return Err(refusal(root, &segments, err.into_inner()));
        }
    };
    // Nothing but whitespace may follow the value.
    de.end().map_err(|e| refusal(root, &[], e))?;
    Ok(value)
}

fn refusal(root: Root, segments: &[String], inner: serde_json::Error) -> ArmError {
    let (line, column) = (inner.line(), inner.column());
    let text = inner.to_string();
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    let detail = describe(root, segments, &text, line, column);
    if root.network() {
        ArmError::bad("InvalidRequestFormat", "Cannot parse the request.")
            .with_detail("InvalidJson", detail)
    } else {
        ArmError::bad(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{detail}'."),
        )
    }
}

fn join_path(segments: &[String]) -> String {
    let mut out = String::new();
    for s in segments {
        if !s.starts_with('[') && !out.is_empty() {
            out.push('.');
        }
        out.push_str(s);
    }
    out
}

fn describe(root: Root, segments: &[String], text: &str, line: usize, column: usize) -> String {
    let position = format!("line {line}, position {column}");
    if let Some(rest) = text.strip_prefix("unknown field `") {
        let member = rest.split('`').next().unwrap_or_default().to_string();
        // The path names the unknown member last when it was recorded; the object is its parent.
        let mut parent: Vec<String> = segments.to_vec();
        if parent.last() == Some(&member) {
            parent.pop();
        }
        let named: Vec<&str> = parent
            .iter()
            .filter(|s| !s.starts_with('['))
            .map(String::as_str)
            .collect();
        let type_name = root.type_at(&named);
        let mut full = parent.clone();
        full.push(member.clone());
        return format!(
            "Could not find member '{member}' on object of type '{type_name}'. Path '{}', {position}.",
            join_path(&full)
        );
    }
    let path = join_path(segments);
    if path.is_empty() {
        format!("{text}. Path '', {position}.")
    } else {
        format!("{text}. Path '{path}', {position}.")
    }
}

/// Removes `null` members from objects, recursively: the bodies answered never hold them.
pub(crate) fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for v in map.values_mut() {
                strip_nulls(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// `value` as JSON without `null` members.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Value {
    let mut v = serde_json::to_value(value).unwrap_or(Value::Null);
    strip_nulls(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vm_error(body: Value) -> ArmError {
        parse::<VmBody>(body.to_string().as_bytes(), Root::VirtualMachine).unwrap_err()
    }

    #[test]
    fn unknown_members_are_named_with_their_path_and_type() {
        let e = vm_error(json!({"properties": {"hardwareProfile": {"vmSize": "a", "x": 1}}}));
        assert_eq!(e.status, 400);
        assert_eq!(e.code, "InvalidRequestContent");
        assert!(
            e.message.contains(
                "Could not find member 'x' on object of type 'HardwareProfile'. Path 'properties.hardwareProfile.x'"
            ),
            "{}",
            e.message
        );
        assert!(e.message.starts_with(
            "The request content was invalid and could not be deserialized: 'Could not find"
        ));
    }

    #[test]
    fn unknown_members_in_arrays() {
        let e = vm_error(json!({"properties": {"storageProfile": {"dataDisks": [
            {"lun": 0, "createOption": "Empty"}, {"lun": 1, "sizeGB": 3}]}}}));
        assert!(
            e.message.contains(
                "Could not find member 'sizeGB' on object of type 'DataDisk'. Path 'properties.storageProfile.dataDisks[1].sizeGB'"
            ),
            "{}",
            e.message
        );
        let e = vm_error(
            json!({"properties": {"networkProfile": {"networkInterfaces": [
            {"id": "x", "properties": {"primary": true, "deleteOptions": "Delete"}}]}}}),
        );
        assert!(
            e.message.contains("on object of type 'NetworkInterfaceReferenceProperties'. Path 'properties.networkProfile.networkInterfaces[0].properties.deleteOptions'"),
            "{}",
            e.message
        );
        let e = vm_error(json!({"locaton": "westeurope"}));
        assert!(
            e.message
                .contains("Could not find member 'locaton' on object of type 'VirtualMachine'. Path 'locaton'"),
            "{}",
            e.message
        );
    }

    #[test]
    fn wrong_types_name_the_path() {
        let e =
            vm_error(json!({"properties": {"storageProfile": {"dataDisks": [{"lun": "zero"}]}}}));
        assert!(
            e.message
                .contains("Path 'properties.storageProfile.dataDisks[0].lun'"),
            "{}",
            e.message
        );
        let e = vm_error(json!({"tags": {"a": 1}}));
        assert!(e.message.contains("Path 'tags.a'"), "{}", e.message);
    }

    #[test]
    fn malformed_json() {
        let e = parse::<VmBody>(b"{\"location\": ", Root::VirtualMachine).unwrap_err();
        assert_eq!(e.code, "InvalidRequestContent");
        let e = parse::<VmBody>(b"{} x", Root::VirtualMachine).unwrap_err();
        assert_eq!(e.code, "InvalidRequestContent");
        let e = parse::<VmBody>(b"", Root::VirtualMachine).unwrap_err();
        assert_eq!(e.code, "InvalidRequestContent");
    }

    #[test]
    fn network_errors_have_an_invalid_json_detail() {
        let body = json!({"location": "x", "properties": {"ipConfigurations": [
            {"name": "a", "properties": {"subnet": {"id": "s"}, "privateIpAddress": "10.0.0.4"}}]}});
        let e = parse::<NicBody>(body.to_string().as_bytes(), Root::NetworkInterface).unwrap_err();
        assert_eq!(e.code, "InvalidRequestFormat");
        let detail = e.details[0]["message"].as_str().unwrap();
        assert!(
            detail.contains("Could not find member 'privateIpAddress' on object of type 'NetworkInterfaceIPConfigurationPropertiesFormat'. Path 'properties.ipConfigurations[0].properties.privateIpAddress'"),
            "{detail}"
        );
    }

    #[test]
    fn read_only_members_from_a_get_are_accepted() {
        let body = json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
            "name": "vm", "type": "Microsoft.Compute/virtualMachines", "location": "westeurope",
            "properties": {"vmId": "x", "provisioningState": "Succeeded", "timeCreated": "t",
                "hardwareProfile": {"vmSize": "Standard_B1s"},
                "storageProfile": {"osDisk": {"osType": "Linux", "managedDisk": {"id": "d"}},
                    "imageReference": {"publisher": "p", "exactVersion": "1"}},
                "osProfile": {"secrets": [], "allowExtensionOperations": true}}});
        let vm: VmBody = parse(body.to_string().as_bytes(), Root::VirtualMachine).unwrap();
        assert_eq!(vm.location.as_deref(), Some("westeurope"));
    }

    #[test]
    fn echoes_leave_out_secrets_and_nulls() {
        let os = OsProfile {
            computer_name: Some("c".into()),
            admin_username: Some("u".into()),
            admin_password: Some("p".into()),
            custom_data: Some("Zm9v".into()),
            ..Default::default()
        };
        assert_eq!(
            to_json(&os),
            json!({"computerName": "c", "adminUsername": "u"})
        );
    }
}
