//! The Azure Resource Manager resources the plugin reads and writes, typed after the published
//! REST specification (Microsoft.Compute `virtualMachines` and `disks`, Microsoft.Network
//! `networkInterfaces` and `publicIPAddresses`).
//!
//! What the plugin sends carries only the fields it sets (`None` is left out). What it reads is
//! lenient: every field but a resource's `id` and `name` may be missing, and fields it does not
//! know are ignored, so a newer api-version's answers still parse.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Tags of a resource.
pub type ArmTags = BTreeMap<String, String>;

/// A reference to another resource by its ID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// The resource ID, `/subscriptions/.../providers/...`.
    pub id: String,
}

/// A page of a list operation.
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    /// The resources of this page.
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    /// Where the next page is, if there is one (an absolute URL).
    #[serde(rename = "nextLink", default)]
    pub next_link: Option<String>,
}

/// The body of an `Azure-AsyncOperation` status.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OperationStatus {
    /// `InProgress`, `Succeeded`, `Failed`, `Canceled` (or a provider's own non-terminal value).
    #[serde(default)]
    pub status: String,
    /// Why the operation failed, when it did.
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

/// ARM's error body: `{"error": {...}}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

/// One error, with the details ARM nests in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `InvalidParameter`.
    #[serde(default)]
    pub code: String,
    /// What went wrong, in words.
    #[serde(default)]
    pub message: String,
    /// The field or resource the error is about, if ARM says.
    #[serde(default)]
    pub target: Option<String>,
    /// Finer errors.
    #[serde(default)]
    pub details: Vec<ErrorDetail>,
}

impl ErrorDetail {
    /// `code: message`, with the target and the first details' messages.
    pub fn describe(&self) -> String {
        let mut out = match &self.target {
            Some(t) if !t.is_empty() => format!("{}: {} (target {t})", self.code, self.message),
            _ => format!("{}: {}", self.code, self.message),
        };
        for d in self.details.iter().take(3) {
            out.push_str(&format!("; {}: {}", d.code, d.message));
        }
        out
    }
}

/// A virtual machine (`Microsoft.Compute/virtualMachines`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VirtualMachine {
    /// Resource ID (read only).
    #[serde(default, skip_serializing)]
    pub id: String,
    /// Name (read only; the URL names it).
    #[serde(default, skip_serializing)]
    pub name: String,
    /// Region.
    #[serde(default)]
    pub location: String,
    /// Tags.
    #[serde(default, skip_serializing_if = "ArmTags::is_empty")]
    pub tags: ArmTags,
    /// Availability zones (at most one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// The VM's settings and state.
    #[serde(default)]
    pub properties: VmProperties,
}

/// A virtual machine's properties.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmProperties {
    /// Size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_profile: Option<HardwareProfile>,
    /// Image and disks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_profile: Option<StorageProfile>,
    /// Computer name, admin account and custom data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_profile: Option<OsProfile>,
    /// Network interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_profile: Option<NetworkProfile>,
    /// `Creating`, `Updating`, `Succeeded`, `Failed`, `Deleting` (read only).
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
    /// Unique ID (read only).
    #[serde(default, skip_serializing)]
    pub vm_id: Option<String>,
    /// When it was created, RFC 3339 (read only).
    #[serde(default, skip_serializing)]
    pub time_created: Option<String>,
    /// Its instance view, when asked for (read only).
    #[serde(default, skip_serializing)]
    pub instance_view: Option<InstanceView>,
}

/// A VM's size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HardwareProfile {
    /// E.g. `Standard_B2s`.
    #[serde(default)]
    pub vm_size: String,
}

/// A VM's image and disks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageProfile {
    /// The image the OS disk is made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_reference: Option<ImageReference>,
    /// The OS disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_disk: Option<OsDisk>,
    /// Data disks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_disks: Vec<DataDisk>,
}

/// An image: a marketplace image by publisher, offer, SKU and version, or an image by ID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageReference {
    /// Publisher, e.g. `Canonical`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// Offer, e.g. `ubuntu-24_04-lts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    /// SKU, e.g. `server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// Version, e.g. `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// A gallery or managed image's resource ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A VM's OS disk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsDisk {
    /// Disk name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `FromImage`.
    #[serde(default)]
    pub create_option: String,
    /// Size in GiB (at least the image's).
    #[serde(
        rename = "diskSizeGB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_size_gb: Option<u32>,
    /// The managed disk's storage type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_disk: Option<ManagedDisk>,
    /// `Delete` or `Detach`: what happens to it when the VM is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<String>,
}

/// A VM's data disk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataDisk {
    /// Logical unit number.
    pub lun: u32,
    /// Disk name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Attach` (an existing disk) or `Empty` (a new one).
    #[serde(default)]
    pub create_option: String,
    /// Size in GiB (for `Empty`).
    #[serde(
        rename = "diskSizeGB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_size_gb: Option<u32>,
    /// The managed disk: its ID (for `Attach`) or storage type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_disk: Option<ManagedDisk>,
    /// `Delete` or `Detach`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<String>,
}

/// A managed disk, by ID or by storage type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedDisk {
    /// The disk's resource ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// E.g. `Standard_LRS`, `Premium_LRS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account_type: Option<String>,
}

/// A VM's computer name, admin account and custom data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsProfile {
    /// Host name.
    #[serde(default)]
    pub computer_name: String,
    /// The admin account.
    #[serde(default)]
    pub admin_username: String,
    /// Base64 custom data (cloud-init reads it). Never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_data: Option<String>,
    /// SSH settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_configuration: Option<LinuxConfiguration>,
}

/// A Linux VM's login settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxConfiguration {
    /// Keys only.
    #[serde(default)]
    pub disable_password_authentication: bool,
    /// The admin's SSH keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshConfiguration>,
}

/// SSH keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshConfiguration {
    /// The keys.
    #[serde(default)]
    pub public_keys: Vec<SshPublicKey>,
}

/// One SSH key and where it goes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshPublicKey {
    /// `/home/<user>/.ssh/authorized_keys`.
    pub path: String,
    /// The key, e.g. `ssh-ed25519 AAAA...`.
    pub key_data: String,
}

/// A VM's network interfaces.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    /// The NICs, by ID.
    #[serde(default)]
    pub network_interfaces: Vec<NicReference>,
}

/// A VM's reference to a NIC.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NicReference {
    /// The NIC's ID.
    pub id: String,
    /// Primary or not, and what happens to it with the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<NicReferenceProperties>,
}

/// A NIC reference's settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NicReferenceProperties {
    /// The primary NIC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    /// `Delete` or `Detach`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<String>,
}

/// A VM's instance view: its statuses, among them its power state.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InstanceView {
    /// `ProvisioningState/succeeded`, `PowerState/running`, ...
    #[serde(default)]
    pub statuses: Vec<InstanceViewStatus>,
}

/// One status of an instance view.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceViewStatus {
    /// E.g. `PowerState/running`.
    #[serde(default)]
    pub code: String,
    /// E.g. `VM running`.
    #[serde(default)]
    pub display_status: Option<String>,
}

impl InstanceView {
    /// The power state, e.g. `running`, `stopped`, `deallocated`, `starting`.
    pub fn power_state(&self) -> Option<&str> {
        self.statuses
            .iter()
            .find_map(|s| s.code.strip_prefix("PowerState/"))
    }
}

/// A network interface (`Microsoft.Network/networkInterfaces`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkInterface {
    /// Resource ID (read only).
    #[serde(default, skip_serializing)]
    pub id: String,
    /// Region.
    #[serde(default)]
    pub location: String,
    /// Tags.
    #[serde(default, skip_serializing_if = "ArmTags::is_empty")]
    pub tags: ArmTags,
    /// Settings.
    #[serde(default)]
    pub properties: NicProperties,
}

/// A NIC's settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NicProperties {
    /// Its IP configurations (the first is primary).
    #[serde(default)]
    pub ip_configurations: Vec<IpConfiguration>,
    /// The VM using it (read only).
    #[serde(default, skip_serializing)]
    pub virtual_machine: Option<Reference>,
    /// Read only.
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
}

/// One IP configuration of a NIC.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IpConfiguration {
    /// Its name.
    pub name: String,
    /// Its settings.
    #[serde(default)]
    pub properties: IpConfigurationProperties,
}

/// An IP configuration's settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpConfigurationProperties {
    /// The subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Reference>,
    /// `Static` or `Dynamic`.
    #[serde(
        rename = "privateIPAllocationMethod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub private_ip_allocation_method: Option<String>,
    /// The private address (asked for when static; assigned when dynamic).
    #[serde(
        rename = "privateIPAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub private_ip_address: Option<String>,
    /// A public IP address resource.
    #[serde(
        rename = "publicIPAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub public_ip_address: Option<Reference>,
    /// The primary configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
}

/// A public IP address (`Microsoft.Network/publicIPAddresses`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PublicIpAddress {
    /// Resource ID (read only).
    #[serde(default, skip_serializing)]
    pub id: String,
    /// Region.
    #[serde(default)]
    pub location: String,
    /// Tags.
    #[serde(default, skip_serializing_if = "ArmTags::is_empty")]
    pub tags: ArmTags,
    /// SKU: `Standard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Sku>,
    /// Zones (zone-redundant when several).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Settings.
    #[serde(default)]
    pub properties: PublicIpProperties,
}

/// A SKU by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sku {
    /// E.g. `Standard`, `Premium_LRS`.
    pub name: String,
}

/// A public IP's settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicIpProperties {
    /// `Static` (a Standard SKU's only choice).
    #[serde(
        rename = "publicIPAllocationMethod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub public_ip_allocation_method: Option<String>,
    /// `Delete` or `Detach`: what happens to it when the VM using it is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_option: Option<String>,
    /// The address (read only).
    #[serde(rename = "ipAddress", default, skip_serializing)]
    pub ip_address: Option<String>,
}

/// A managed disk (`Microsoft.Compute/disks`), as listed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Disk {
    /// Resource ID.
    #[serde(default)]
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Region.
    #[serde(default)]
    pub location: String,
    /// Tags.
    #[serde(default)]
    pub tags: ArmTags,
    /// Zones.
    #[serde(default)]
    pub zones: Vec<String>,
    /// The VM it is attached to, if any.
    #[serde(default)]
    pub managed_by: Option<String>,
    /// State.
    #[serde(default)]
    pub properties: DiskProperties,
}

/// A disk's state.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskProperties {
    /// `Unattached`, `Attached`, `Reserved`, ...
    #[serde(default)]
    pub disk_state: Option<String>,
    /// Size.
    #[serde(rename = "diskSizeGB", default)]
    pub disk_size_gb: Option<u32>,
}

/// The last segment of a resource ID: the resource's name.
pub fn name_of(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}
