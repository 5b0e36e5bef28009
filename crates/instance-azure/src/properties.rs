//! Instance properties, decoded with the path of the first bad field:
//!
//! ```yaml
//! ResourceGroup: infrakit                     # required
//! Location: westeurope                        # required
//! VMSize: Standard_B2s                        # required
//! Image:                                      # required: a marketplace image...
//!   Publisher: Canonical
//!   Offer: ubuntu-24_04-lts
//!   Sku: server
//!   Version: latest                           # default latest
//! # Image: {ID: /subscriptions/.../images/web} # ...or an image by resource ID
//! AdminUsername: azureuser                    # required
//! SSHPublicKeys: ["ssh-ed25519 AAAA..."]      # at least one
//! Subnet: /subscriptions/.../virtualNetworks/vnet/subnets/default   # required
//! PublicIP: false                             # a Standard static public IP per VM
//! OSDisk: {SizeGB: 30, StorageAccountType: StandardSSD_LRS}
//! DataDisks: [{SizeGB: 64, StorageAccountType: Premium_LRS}]        # new, deleted with the VM
//! Zone: "1"
//! Tags: {tier: web}
//! NamePrefix: web                             # cattle VMs are named <prefix>-<random>
//! DiskTag: infrakit.disk                      # how `disk` attachments find their disk
//! ```
//!
//! An unknown field is an error naming it; so is a value ARM would refuse that can be seen
//! without asking it (a name it does not allow, a zone that is not 1, 2 or 3, a tag it
//! forbids).

use std::net::Ipv4Addr;

use infrakit_spi::error::decode_at;
use infrakit_spi::{Error, Result, Tags};
use serde::Deserialize;
use serde_json::Value;

/// Tag key that finds the disk of a `disk` attachment, unless `DiskTag` says otherwise.
pub const DEFAULT_DISK_TAG: &str = "infrakit.disk";
/// Prefix of cattle VM names, unless `NamePrefix` says otherwise.
pub const DEFAULT_NAME_PREFIX: &str = "infrakit";
/// Most tags ARM accepts on one resource.
pub const MAX_TAGS: usize = 50;
/// Longest tag name ARM accepts.
pub const MAX_TAG_NAME: usize = 512;
/// Longest tag value ARM accepts.
pub const MAX_TAG_VALUE: usize = 256;
/// Characters ARM refuses in tag names.
pub const FORBIDDEN_TAG_CHARS: &[char] = &['<', '>', '%', '&', '\\', '?', '/'];
/// Longest Linux VM name.
pub const MAX_VM_NAME: usize = 64;

/// The plugin's properties.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureProperties {
    /// The resource group of the VMs and their NICs, IPs and disks.
    #[serde(rename = "ResourceGroup")]
    pub resource_group: String,
    /// Region, e.g. `westeurope`.
    #[serde(rename = "Location")]
    pub location: String,
    /// Size, e.g. `Standard_B2s`.
    #[serde(rename = "VMSize")]
    pub vm_size: String,
    /// The OS image.
    #[serde(rename = "Image")]
    pub image: Image,
    /// The admin account.
    #[serde(rename = "AdminUsername")]
    pub admin_username: String,
    /// The admin's SSH public keys.
    #[serde(rename = "SSHPublicKeys")]
    pub ssh_public_keys: Vec<String>,
    /// The subnet's resource ID.
    #[serde(rename = "Subnet")]
    pub subnet: String,
    /// Whether each VM gets a public IP address.
    #[serde(rename = "PublicIP", default)]
    pub public_ip: bool,
    /// The OS disk.
    #[serde(rename = "OSDisk", default)]
    pub os_disk: DiskSpec,
    /// New data disks, deleted with the VM.
    #[serde(rename = "DataDisks", default)]
    pub data_disks: Vec<DiskSpec>,
    /// Availability zone.
    #[serde(rename = "Zone", default)]
    pub zone: Option<String>,
    /// Tags of every VM (the spec's win).
    #[serde(rename = "Tags", default)]
    pub tags: Tags,
    /// Prefix of cattle VM names.
    #[serde(rename = "NamePrefix", default = "default_prefix")]
    pub name_prefix: String,
    /// The tag that finds the disk of a `disk` attachment.
    #[serde(rename = "DiskTag", default = "default_disk_tag")]
    pub disk_tag: String,
}

fn default_prefix() -> String {
    DEFAULT_NAME_PREFIX.to_string()
}

fn default_disk_tag() -> String {
    DEFAULT_DISK_TAG.to_string()
}

/// An image: by publisher, offer, SKU and version, or by resource ID.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Publisher, e.g. `Canonical`.
    #[serde(rename = "Publisher", default)]
    pub publisher: Option<String>,
    /// Offer, e.g. `ubuntu-24_04-lts`.
    #[serde(rename = "Offer", default)]
    pub offer: Option<String>,
    /// SKU, e.g. `server`.
    #[serde(rename = "Sku", default)]
    pub sku: Option<String>,
    /// Version (default `latest`).
    #[serde(rename = "Version", default)]
    pub version: Option<String>,
    /// An image's resource ID instead.
    #[serde(rename = "ID", default)]
    pub id: Option<String>,
}

/// A disk's size and storage type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// Size in GiB (the image's size when absent, for the OS disk).
    #[serde(rename = "SizeGB", default)]
    pub size_gb: Option<u32>,
    /// E.g. `Standard_LRS`, `StandardSSD_LRS`, `Premium_LRS`.
    #[serde(rename = "StorageAccountType", default)]
    pub storage_account_type: Option<String>,
}

impl AzureProperties {
    /// Decodes and checks `value`; errors name the field, e.g. `Properties.Image.Sku`.
    pub fn parse(value: &Value) -> Result<AzureProperties> {
        let props: AzureProperties = decode_at("Properties", value)?;
        props.check()?;
        Ok(props)
    }

    fn check(&self) -> Result<()> {
        let required = |path: &str, v: &str| {
            if v.trim().is_empty() {
                Err(Error::invalid(
                    format!("Properties.{path}"),
                    "must not be empty",
                ))
            } else {
                Ok(())
            }
        };
        required("ResourceGroup", &self.resource_group)?;
        required("Location", &self.location)?;
        required("VMSize", &self.vm_size)?;
        required("AdminUsername", &self.admin_username)?;
        required("Subnet", &self.subnet)?;
        if !self.subnet.starts_with("/subscriptions/") || !self.subnet.contains("/subnets/") {
            return Err(Error::invalid(
                "Properties.Subnet",
                format!(
                    "a subnet's resource ID, /subscriptions/<id>/resourceGroups/<group>/providers/\
                     Microsoft.Network/virtualNetworks/<network>/subnets/<subnet> (got {:?})",
                    self.subnet
                ),
            ));
        }
        match (
            &self.image.id,
            &self.image.publisher,
            &self.image.offer,
            &self.image.sku,
        ) {
            (Some(id), None, None, None) => required("Image.ID", id)?,
            (None, Some(p), Some(o), Some(s)) => {
                required("Image.Publisher", p)?;
                required("Image.Offer", o)?;
                required("Image.Sku", s)?;
            }
            _ => {
                return Err(Error::invalid(
                    "Properties.Image",
                    "either Publisher, Offer and Sku (and Version), or ID",
                ))
            }
        }
        if self.ssh_public_keys.is_empty() {
            return Err(Error::invalid(
                "Properties.SSHPublicKeys",
                "at least one key: password logins are not offered",
            ));
        }
        for (i, k) in self.ssh_public_keys.iter().enumerate() {
            if !k.starts_with("ssh-") && !k.starts_with("ecdsa-") {
                return Err(Error::invalid(
                    format!("Properties.SSHPublicKeys[{i}]"),
                    "an OpenSSH public key (ssh-ed25519 AAAA..., ssh-rsa AAAA...)",
                ));
            }
        }
        if let Some(z) = &self.zone {
            if !matches!(z.as_str(), "1" | "2" | "3") {
                return Err(Error::invalid("Properties.Zone", "\"1\", \"2\" or \"3\""));
            }
        }
        check_name_part("Properties.NamePrefix", &self.name_prefix, MAX_VM_NAME - 9)?;
        check_tags("Properties.Tags", &self.tags)?;
        required("DiskTag", &self.disk_tag)
    }

    /// The admin's SSH keys' path on the VM.
    pub fn authorized_keys(&self) -> String {
        format!("/home/{}/.ssh/authorized_keys", self.admin_username)
    }
}

/// Checks that `name` can begin a VM name: letters, digits, `-`, `_` and `.`, starting with a
/// letter or digit, at most `max` long.
fn check_name_part(path: &str, name: &str, max: usize) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            path,
            format!(
                "1 to {max} letters, digits, '-', '_' or '.', starting with a letter or digit \
                 (got {name:?})"
            ),
        ))
    }
}

/// The VM name of a pet: its logical ID, which must be a valid VM name.
pub fn pet_vm_name(logical_id: &str) -> Result<String> {
    check_name_part("LogicalID", logical_id, MAX_VM_NAME)?;
    if logical_id.ends_with(['-', '.']) {
        return Err(Error::invalid(
            "LogicalID",
            format!("a VM name cannot end with '-' or '.' (got {logical_id:?})"),
        ));
    }
    Ok(logical_id.to_string())
}

/// The host name of a VM: its name with `.` and `_` as `-` (host names allow neither).
pub fn computer_name(vm: &str) -> String {
    vm.replace(['.', '_'], "-")
}

/// A pet's fixed private IP: its logical ID, when that is an IPv4 address.
pub fn fixed_ip(logical_id: Option<&str>) -> Option<Ipv4Addr> {
    logical_id.and_then(|l| l.parse().ok())
}

/// Checks tags against ARM's limits; errors name the tag under `path`.
pub fn check_tags(path: &str, tags: &Tags) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid(
            path,
            format!("at most {MAX_TAGS} tags (got {})", tags.len()),
        ));
    }
    for (k, v) in tags.iter() {
        let at = format!("{path}.{k}");
        if k.is_empty() || k.len() > MAX_TAG_NAME {
            return Err(Error::invalid(
                at,
                format!("a tag name is 1 to {MAX_TAG_NAME} characters"),
            ));
        }
        if let Some(c) = k.chars().find(|c| FORBIDDEN_TAG_CHARS.contains(c)) {
            return Err(Error::invalid(
                at,
                format!("Azure does not allow '{c}' in tag names"),
            ));
        }
        if v.len() > MAX_TAG_VALUE {
            return Err(Error::invalid(
                at,
                format!("a tag value is at most {MAX_TAG_VALUE} characters"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "ResourceGroup": "rg",
            "Location": "westeurope",
            "VMSize": "Standard_B1s",
            "Image": {"Publisher": "Canonical", "Offer": "ubuntu-24_04-lts", "Sku": "server"},
            "AdminUsername": "azureuser",
            "SSHPublicKeys": ["ssh-ed25519 AAAAC3Nza test"],
            "Subnet": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/default",
        })
    }

    fn path_of(mut v: Value, f: impl FnOnce(&mut Value)) -> String {
        f(&mut v);
        match AzureProperties::parse(&v) {
            Err(Error::Invalid { path, .. }) => path,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn good_properties_parse_with_defaults() {
        let p = AzureProperties::parse(&good()).unwrap();
        assert_eq!(p.name_prefix, DEFAULT_NAME_PREFIX);
        assert_eq!(p.disk_tag, DEFAULT_DISK_TAG);
        assert!(!p.public_ip);
        assert_eq!(p.authorized_keys(), "/home/azureuser/.ssh/authorized_keys");
    }

    #[test]
    fn errors_name_the_bad_field() {
        assert_eq!(
            path_of(good(), |v| v["Imag"] = json!({})),
            "Properties.Imag"
        );
        assert_eq!(
            path_of(good(), |v| v["Image"]["Skew"] = json!("x")),
            "Properties.Image.Skew"
        );
        assert_eq!(
            path_of(good(), |v| v["OSDisk"] = json!({"SizeGB": "big"})),
            "Properties.OSDisk.SizeGB"
        );
        assert_eq!(
            path_of(good(), |v| v["Zone"] = json!("4")),
            "Properties.Zone"
        );
        assert_eq!(
            path_of(good(), |v| v["Subnet"] = json!("default")),
            "Properties.Subnet"
        );
        assert_eq!(
            path_of(good(), |v| v["SSHPublicKeys"] = json!(["hunter2"])),
            "Properties.SSHPublicKeys[0]"
        );
        assert_eq!(
            path_of(good(), |v| v["Tags"] = json!({"a/b": "c"})),
            "Properties.Tags.a/b"
        );
        assert_eq!(
            path_of(good(), |v| v["Image"] = json!({"Publisher": "Canonical"})),
            "Properties.Image"
        );
        assert_eq!(
            path_of(good(), |v| v["NamePrefix"] = json!("-web")),
            "Properties.NamePrefix"
        );
    }

    #[test]
    fn pets_are_named_by_their_logical_id_and_an_ip_is_kept() {
        assert_eq!(pet_vm_name("db-1").unwrap(), "db-1");
        assert_eq!(pet_vm_name("10.0.1.10").unwrap(), "10.0.1.10");
        assert!(pet_vm_name("db 1").is_err());
        assert!(pet_vm_name("db-").is_err());
        assert_eq!(computer_name("10.0.1.10"), "10-0-1-10");
        assert_eq!(
            fixed_ip(Some("10.0.1.10")),
            Some(Ipv4Addr::new(10, 0, 1, 10))
        );
        assert_eq!(fixed_ip(Some("db-1")), None);
    }
}
