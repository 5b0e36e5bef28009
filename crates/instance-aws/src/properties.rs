//! Instance properties: the `RunInstances` input and the plugin's own settings, decoded with the
//! path of the first bad field.
//!
//! Two shapes are accepted. InfraKit's original nests the EC2 input under `RunInstancesInput`:
//!
//! ```yaml
//! RunInstancesInput:
//!   ImageId: ami-0123456789abcdef0
//!   InstanceType: t3.micro
//! Tags: {tier: web}
//! ```
//!
//! and the short one puts the same fields at the top:
//!
//! ```yaml
//! ImageId: ami-0123456789abcdef0
//! InstanceType: t3.micro
//! Tags: {tier: web}
//! ```
//!
//! Field names are the EC2 API's (`SubnetId`, `SecurityGroupIds`, `BlockDeviceMappings`, ...);
//! an unknown one is an error that lists the known ones. Besides the launch fields, the
//! plugin reads `Tags`, `LogicalIdIs`, `VolumeTag`, `VolumeDevice` and `AttachVolumeInputs`
//! ([`PLUGIN_KEYS`]).

use std::net::IpAddr;

use aws_sdk_ec2::operation::run_instances::builders::RunInstancesInputBuilder;
use aws_sdk_ec2::types as ec2;
use infrakit_spi::error::decode_at;
use infrakit_spi::{Error, Result, Tags};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Tag key that finds the volume of an `ebs` attachment, unless `VolumeTag` says otherwise.
pub const DEFAULT_VOLUME_TAG: &str = "infrakit.volume";
/// Device name of the first `ebs` attachment, unless `VolumeDevice` says otherwise.
pub const DEFAULT_VOLUME_DEVICE: &str = "/dev/sdf";
/// The key that holds the EC2 input in InfraKit's original shape.
pub const RUN_INSTANCES_INPUT: &str = "RunInstancesInput";
/// The properties that are the plugin's own, beside the launch fields.
pub const PLUGIN_KEYS: &[&str] = &[
    "Tags",
    "LogicalIdIs",
    "VolumeTag",
    "VolumeDevice",
    "AttachVolumeInputs",
];
/// Prefix of the tag keys AWS reserves; they can be neither written nor changed.
pub const RESERVED_TAG_PREFIX: &str = "aws:";
/// Longest tag key EC2 accepts.
pub const MAX_TAG_KEY: usize = 128;
/// Longest tag value EC2 accepts.
pub const MAX_TAG_VALUE: usize = 256;
/// Most tags EC2 accepts on one resource.
pub const MAX_TAGS: usize = 50;

/// What a pet's logical ID becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum LogicalIdIs {
    /// The primary private IP address of the instance (the ID must be an IP address).
    PrivateIp,
    /// Only the `infrakit.logical_id` tag.
    Tag,
}

/// A volume to attach to every instance of the spec, in InfraKit's original shape.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachVolume {
    /// Device name, e.g. `/dev/sdh`.
    #[serde(rename = "Device")]
    pub device: String,
    /// The volume's ID.
    #[serde(rename = "VolumeId")]
    pub volume_id: String,
}

/// The plugin's settings next to the launch fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginKeys {
    #[serde(rename = "Tags", default)]
    tags: Tags,
    #[serde(rename = "LogicalIdIs", default)]
    logical_id_is: Option<LogicalIdIs>,
    #[serde(rename = "VolumeTag", default)]
    volume_tag: Option<String>,
    #[serde(rename = "VolumeDevice", default)]
    volume_device: Option<String>,
    #[serde(rename = "AttachVolumeInputs", default)]
    attach_volume_inputs: Vec<AttachVolume>,
}

/// Decoded instance properties.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsProperties {
    /// The launch input.
    pub run: RunInstances,
    /// Where the launch fields were (`Properties` or `Properties.RunInstancesInput`), for
    /// error paths.
    pub run_path: String,
    /// Tags for every instance (the spec's tags win).
    pub tags: Tags,
    /// What a logical ID becomes; `None` decides per ID (an IP address becomes the private IP).
    pub logical_id_is: Option<LogicalIdIs>,
    /// Tag key whose value is an `ebs` attachment's ID.
    pub volume_tag: String,
    /// Device name of the first `ebs` attachment; the next ones count up its last letter.
    pub volume_device: String,
    /// Volumes attached to every instance.
    pub attach_volumes: Vec<AttachVolume>,
}

impl AwsProperties {
    /// Decodes and checks `Properties`; errors name the bad field (`Properties.ImageId`,
    /// `Properties.RunInstancesInput.BlockDeviceMappings[0].Ebs.VolumeSize`, ...).
    pub fn parse(value: &Value) -> Result<AwsProperties> {
        let empty = Map::new();
        let object =
            match value {
                Value::Object(o) => o,
                Value::Null => &empty,
                _ => return Err(Error::invalid(
                    "Properties",
                    "expected an object with the RunInstances fields (ImageId, InstanceType, ...) \
                     or a RunInstancesInput",
                )),
            };
        let (mut own, mut launch) = (Map::new(), Map::new());
        for (k, v) in object {
            if PLUGIN_KEYS.contains(&k.as_str()) {
                own.insert(k.clone(), v.clone());
            } else {
                launch.insert(k.clone(), v.clone());
            }
        }
        let keys: PluginKeys = decode_at("Properties", &Value::Object(own))?;
        let (run, run_path) = match launch.remove(RUN_INSTANCES_INPUT) {
            Some(nested) => {
                if let Some(other) = launch.keys().next() {
                    return Err(Error::invalid(
                        format!("Properties.{other}"),
                        "unknown field: with RunInstancesInput, the launch fields go inside it",
                    ));
                }
                let path = format!("Properties.{RUN_INSTANCES_INPUT}");
                (decode_at::<RunInstances>(&path, &nested)?, path)
            }
            None => (
                decode_at::<RunInstances>("Properties", &Value::Object(launch))?,
                "Properties".to_string(),
            ),
        };
        run.check(&run_path)?;
        check_tags("Properties.Tags", &keys.tags)?;
        let volume_tag = keys
            .volume_tag
            .unwrap_or_else(|| DEFAULT_VOLUME_TAG.to_string());
        check_tag_key("Properties.VolumeTag", &volume_tag)?;
        let volume_device = keys
            .volume_device
            .unwrap_or_else(|| DEFAULT_VOLUME_DEVICE.to_string());
        if !volume_device.ends_with(|c: char| c.is_ascii_lowercase()) {
            return Err(Error::invalid(
                "Properties.VolumeDevice",
                format!(
                    "{volume_device:?}: expected a device name ending in a letter, like /dev/sdf"
                ),
            ));
        }
        for (i, a) in keys.attach_volume_inputs.iter().enumerate() {
            if a.device.is_empty() {
                return Err(Error::invalid(
                    format!("Properties.AttachVolumeInputs[{i}].Device"),
                    "must not be empty",
                ));
            }
            if !is_volume_id(&a.volume_id) {
                return Err(Error::invalid(
                    format!("Properties.AttachVolumeInputs[{i}].VolumeId"),
                    format!("{:?} is not a volume ID (vol-...)", a.volume_id),
                ));
            }
        }
        Ok(AwsProperties {
            run,
            run_path,
            tags: keys.tags,
            logical_id_is: keys.logical_id_is,
            volume_tag,
            volume_device,
            attach_volumes: keys.attach_volume_inputs,
        })
    }

    /// What logical ID `id` becomes under these properties: `Some(ip)` for the private IP,
    /// `None` for a tag only. `PrivateIp` with an ID that is not an address is an error at
    /// `LogicalID`.
    pub fn private_ip_for(&self, id: &str) -> Result<Option<IpAddr>> {
        let ip = id.parse::<IpAddr>().ok();
        match (self.logical_id_is, ip) {
            (Some(LogicalIdIs::Tag), _) => Ok(None),
            (_, Some(ip)) => Ok(Some(ip)),
            (Some(LogicalIdIs::PrivateIp), None) => Err(Error::invalid(
                "LogicalID",
                format!("{id:?} is not an IP address, and Properties.LogicalIdIs is PrivateIp"),
            )),
            (None, None) => Ok(None),
        }
    }
}

/// True for `vol-` followed by hexadecimal digits.
pub fn is_volume_id(s: &str) -> bool {
    s.strip_prefix("vol-")
        .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Checks tags EC2 would refuse: reserved `aws:` keys, empty or long keys, long values, too many.
pub fn check_tags(path: &str, tags: &Tags) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid(
            path,
            format!("{} tags; EC2 allows {MAX_TAGS} per instance", tags.len()),
        ));
    }
    for (k, v) in tags {
        check_tag_key(&format!("{path}.{k}"), k)?;
        if v.chars().count() > MAX_TAG_VALUE {
            return Err(Error::invalid(
                format!("{path}.{k}"),
                format!("the value is longer than {MAX_TAG_VALUE} characters"),
            ));
        }
    }
    Ok(())
}

fn check_tag_key(path: &str, k: &str) -> Result<()> {
    if k.is_empty() {
        return Err(Error::invalid(path, "a tag key must not be empty"));
    }
    if k.to_ascii_lowercase().starts_with(RESERVED_TAG_PREFIX) {
        return Err(Error::invalid(
            path,
            format!("tag keys starting with {RESERVED_TAG_PREFIX:?} are reserved by AWS"),
        ));
    }
    if k.chars().count() > MAX_TAG_KEY {
        return Err(Error::invalid(
            path,
            format!("the key is longer than {MAX_TAG_KEY} characters"),
        ));
    }
    Ok(())
}

/// The `RunInstances` fields the plugin understands, with the EC2 API's names.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RunInstances {
    /// The AMI (`ami-...` or `resolve:ssm:<parameter>`); required unless a launch template
    /// names one.
    pub image_id: Option<String>,
    /// Instance type, e.g. `t3.micro`.
    pub instance_type: Option<String>,
    /// Must be 1 if given: one `Provision` launches one instance.
    pub min_count: Option<i32>,
    /// Must be 1 if given.
    pub max_count: Option<i32>,
    /// Subnet to launch in.
    pub subnet_id: Option<String>,
    /// Security group IDs.
    pub security_group_ids: Option<Vec<String>>,
    /// Security group names (default VPC / EC2-Classic).
    pub security_groups: Option<Vec<String>>,
    /// Key pair name.
    pub key_name: Option<String>,
    /// Root and extra volumes created with the instance.
    pub block_device_mappings: Option<Vec<BlockDeviceMapping>>,
    /// Instance profile (role) by name or ARN.
    pub iam_instance_profile: Option<IamInstanceProfile>,
    /// Primary private IP address (a pet's logical ID may set it instead).
    pub private_ip_address: Option<String>,
    /// Availability zone, placement group, tenancy.
    pub placement: Option<Placement>,
    /// User data, base64-encoded as the API wants it; a non-empty `Init` replaces it.
    pub user_data: Option<String>,
    /// Network interfaces; with them, subnet, groups and private IP go on the interfaces.
    pub network_interfaces: Option<Vec<NetworkInterface>>,
    /// EBS-optimised instance.
    pub ebs_optimized: Option<bool>,
    /// Detailed monitoring.
    pub monitoring: Option<Monitoring>,
    /// `stop` or `terminate` when the instance shuts itself down.
    pub instance_initiated_shutdown_behavior: Option<String>,
    /// Termination protection (Destroy then fails until it is turned off).
    pub disable_api_termination: Option<bool>,
    /// Instance metadata service options.
    pub metadata_options: Option<MetadataOptions>,
    /// Burstable CPU credits.
    pub credit_specification: Option<CreditSpecification>,
    /// Launch template to start from.
    pub launch_template: Option<LaunchTemplate>,
    /// Kernel ID.
    pub kernel_id: Option<String>,
    /// RAM disk ID.
    pub ramdisk_id: Option<String>,
    /// Number of IPv6 addresses on the primary interface.
    pub ipv6_address_count: Option<i32>,
    /// Tags for resources created with the instance; the instance's own tags are merged into
    /// the `instance` entry.
    pub tag_specifications: Option<Vec<TagSpecification>>,
    /// Spot instead of on-demand.
    pub instance_market_options: Option<InstanceMarketOptions>,
}

/// One block device.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct BlockDeviceMapping {
    /// Device name, e.g. `/dev/xvda`.
    pub device_name: String,
    /// The EBS volume to create.
    pub ebs: Option<Ebs>,
    /// Suppress a device of the AMI (an empty string).
    pub no_device: Option<String>,
    /// Instance store volume, `ephemeral0`...
    pub virtual_name: Option<String>,
}

/// An EBS volume created with the instance.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Ebs {
    /// Delete with the instance (the API's default is true).
    pub delete_on_termination: Option<bool>,
    /// Encrypt the volume.
    pub encrypted: Option<bool>,
    /// Provisioned IOPS.
    pub iops: Option<i32>,
    /// KMS key for encryption.
    pub kms_key_id: Option<String>,
    /// Snapshot to create the volume from.
    pub snapshot_id: Option<String>,
    /// Throughput in MiB/s (gp3).
    pub throughput: Option<i32>,
    /// Size in GiB.
    pub volume_size: Option<i32>,
    /// `gp3`, `gp2`, `io1`, `io2`, `st1`, `sc1`, `standard`.
    pub volume_type: Option<String>,
}

/// Instance profile by name or ARN.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct IamInstanceProfile {
    /// The profile's ARN.
    pub arn: Option<String>,
    /// The profile's name.
    pub name: Option<String>,
}

/// Where the instance runs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Placement {
    /// Availability zone, e.g. `us-east-1a`.
    pub availability_zone: Option<String>,
    /// Placement group name.
    pub group_name: Option<String>,
    /// `default`, `dedicated` or `host`.
    pub tenancy: Option<String>,
    /// Dedicated host ID.
    pub host_id: Option<String>,
    /// Partition of a partition placement group.
    pub partition_number: Option<i32>,
}

/// A network interface of the instance.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct NetworkInterface {
    /// Position; 0 is the primary interface.
    pub device_index: Option<i32>,
    /// Existing interface to attach instead of creating one.
    pub network_interface_id: Option<String>,
    /// Subnet of a new interface.
    pub subnet_id: Option<String>,
    /// Security group IDs.
    pub groups: Option<Vec<String>>,
    /// Primary private IP address.
    pub private_ip_address: Option<String>,
    /// Public IPv4 address.
    pub associate_public_ip_address: Option<bool>,
    /// Delete the interface with the instance.
    pub delete_on_termination: Option<bool>,
    /// Description.
    pub description: Option<String>,
    /// Extra private addresses to assign.
    pub secondary_private_ip_address_count: Option<i32>,
    /// IPv6 addresses to assign.
    pub ipv6_address_count: Option<i32>,
}

/// Detailed monitoring.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Monitoring {
    /// On or off.
    pub enabled: bool,
}

/// Instance metadata service options.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct MetadataOptions {
    /// `required` (IMDSv2 only) or `optional`.
    pub http_tokens: Option<String>,
    /// `enabled` or `disabled`.
    pub http_endpoint: Option<String>,
    /// Hop limit of metadata responses.
    pub http_put_response_hop_limit: Option<i32>,
    /// `enabled` or `disabled`: tags in instance metadata.
    pub instance_metadata_tags: Option<String>,
    /// `enabled` or `disabled`: the IPv6 endpoint.
    pub http_protocol_ipv6: Option<String>,
}

/// Burstable CPU credits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct CreditSpecification {
    /// `standard` or `unlimited`.
    pub cpu_credits: String,
}

/// Launch template reference.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct LaunchTemplate {
    /// Template ID.
    pub launch_template_id: Option<String>,
    /// Template name.
    pub launch_template_name: Option<String>,
    /// Version number, `$Latest` or `$Default`.
    pub version: Option<String>,
}

/// Tags for one kind of resource created with the instance.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct TagSpecification {
    /// `instance`, `volume`, `network-interface`, `spot-instances-request`, ...
    pub resource_type: String,
    /// The tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// One tag in the API's list form.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Tag {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// Spot options.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct InstanceMarketOptions {
    /// `spot` (or `capacity-block`).
    pub market_type: String,
    /// Spot settings.
    pub spot_options: Option<SpotOptions>,
}

/// Spot settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct SpotOptions {
    /// Highest hourly price.
    pub max_price: Option<String>,
    /// `one-time` or `persistent`.
    pub spot_instance_type: Option<String>,
    /// `terminate`, `stop` or `hibernate`.
    pub instance_interruption_behavior: Option<String>,
}

/// Checks that `value` (at `path`) is one of the values the SDK knows for the field.
fn one_of(path: &str, value: &str, known: &[&str]) -> Result<()> {
    if known.contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid(
            path,
            format!("{value:?} is not one of {}", known.join(", ")),
        ))
    }
}

fn opt_one_of(path: &str, value: &Option<String>, known: &[&str]) -> Result<()> {
    value.as_deref().map_or(Ok(()), |v| one_of(path, v, known))
}

impl RunInstances {
    /// Checks what decoding cannot: required fields, counts, enumerations, base64, and
    /// combinations EC2 refuses. `at` is the path of the launch fields.
    pub fn check(&self, at: &str) -> Result<()> {
        self.check_image(at)?;
        self.check_scalars(at)?;
        self.check_addresses(at)?;
        for (i, b) in self.block_device_mappings.iter().flatten().enumerate() {
            b.check(&format!("{at}.BlockDeviceMappings[{i}]"))?;
        }
        if let Some(p) = &self.iam_instance_profile {
            p.check(&format!("{at}.IamInstanceProfile"))?;
        }
        if let Some(p) = &self.placement {
            p.check(&format!("{at}.Placement"))?;
        }
        opt_one_of(
            &format!("{at}.InstanceInitiatedShutdownBehavior"),
            &self.instance_initiated_shutdown_behavior,
            ec2::ShutdownBehavior::values(),
        )?;
        if let Some(m) = &self.metadata_options {
            m.check(&format!("{at}.MetadataOptions"))?;
        }
        if let Some(lt) = &self.launch_template {
            lt.check(&format!("{at}.LaunchTemplate"))?;
        }
        for (i, ts) in self.tag_specifications.iter().flatten().enumerate() {
            ts.check(&format!("{at}.TagSpecifications[{i}]"))?;
        }
        if let Some(m) = &self.instance_market_options {
            m.check(&format!("{at}.InstanceMarketOptions"))?;
        }
        if let Some(c) = &self.credit_specification {
            c.check(&format!("{at}.CreditSpecification"))?;
        }
        Ok(())
    }

    /// An AMI, or a launch template to take it from.
    fn check_image(&self, at: &str) -> Result<()> {
        match (&self.image_id, &self.launch_template) {
            (None, None) => Err(Error::invalid(
                format!("{at}.ImageId"),
                "missing (or name a LaunchTemplate that has one)",
            )),
            (Some(image), _)
                if !image.starts_with("ami-") && !image.starts_with("resolve:ssm:") =>
            {
                Err(Error::invalid(
                    format!("{at}.ImageId"),
                    format!("{image:?} is not an AMI ID (ami-...) nor resolve:ssm:<parameter>"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// `InstanceType`, `MinCount`, `MaxCount` and `UserData`.
    fn check_scalars(&self, at: &str) -> Result<()> {
        if let Some(t) = &self.instance_type {
            if t.trim().is_empty() {
                return Err(Error::invalid(
                    format!("{at}.InstanceType"),
                    "must not be empty",
                ));
            }
        }
        for (name, count) in [("MinCount", self.min_count), ("MaxCount", self.max_count)] {
            if count.is_some_and(|c| c != 1) {
                return Err(Error::invalid(
                    format!("{at}.{name}"),
                    "must be 1: every Provision launches one instance (the group sets the size)",
                ));
            }
        }
        if let Some(data) = &self.user_data {
            if data_encoding::BASE64.decode(data.as_bytes()).is_err() {
                return Err(Error::invalid(
                    format!("{at}.UserData"),
                    "is not base64 (the API takes user data base64-encoded; or use the spec's Init)",
                ));
            }
        }
        Ok(())
    }

    /// Where the instance is on the network: the fields that go on the network interfaces when
    /// there are some, and the private IP addresses.
    fn check_addresses(&self, at: &str) -> Result<()> {
        if self.network_interfaces.is_some() {
            for (name, set) in [
                ("SubnetId", self.subnet_id.is_some()),
                ("SecurityGroupIds", self.security_group_ids.is_some()),
                ("PrivateIpAddress", self.private_ip_address.is_some()),
            ] {
                if set {
                    return Err(Error::invalid(
                        format!("{at}.{name}"),
                        "cannot be used with NetworkInterfaces: set it on the network interface",
                    ));
                }
            }
        }
        check_ip(&format!("{at}.PrivateIpAddress"), &self.private_ip_address)?;
        for (i, nic) in self.network_interfaces.iter().flatten().enumerate() {
            check_ip(
                &format!("{at}.NetworkInterfaces[{i}].PrivateIpAddress"),
                &nic.private_ip_address,
            )?;
        }
        Ok(())
    }

    /// The SDK's input for these fields, with `MinCount` and `MaxCount` 1. Tags, user data
    /// and the logical ID are added by [`crate::launch`].
    pub fn to_input(&self) -> RunInstancesInputBuilder {
        let mut b = RunInstancesInputBuilder::default()
            .min_count(1)
            .max_count(1)
            .set_image_id(self.image_id.clone())
            .set_instance_type(self.instance_type.as_deref().map(ec2::InstanceType::from))
            .set_subnet_id(self.subnet_id.clone())
            .set_security_group_ids(self.security_group_ids.clone())
            .set_security_groups(self.security_groups.clone())
            .set_key_name(self.key_name.clone())
            .set_private_ip_address(self.private_ip_address.clone())
            .set_user_data(self.user_data.clone())
            .set_ebs_optimized(self.ebs_optimized)
            .set_disable_api_termination(self.disable_api_termination)
            .set_kernel_id(self.kernel_id.clone())
            .set_ramdisk_id(self.ramdisk_id.clone())
            .set_ipv6_address_count(self.ipv6_address_count)
            .set_instance_initiated_shutdown_behavior(
                self.instance_initiated_shutdown_behavior
                    .as_deref()
                    .map(ec2::ShutdownBehavior::from),
            );
        if let Some(bdms) = &self.block_device_mappings {
            b = b.set_block_device_mappings(Some(bdms.iter().map(block_device).collect()));
        }
        if let Some(p) = &self.iam_instance_profile {
            b = b.iam_instance_profile(
                ec2::IamInstanceProfileSpecification::builder()
                    .set_arn(p.arn.clone())
                    .set_name(p.name.clone())
                    .build(),
            );
        }
        if let Some(p) = &self.placement {
            b = b.placement(
                ec2::Placement::builder()
                    .set_availability_zone(p.availability_zone.clone())
                    .set_group_name(p.group_name.clone())
                    .set_tenancy(p.tenancy.as_deref().map(ec2::Tenancy::from))
                    .set_host_id(p.host_id.clone())
                    .set_partition_number(p.partition_number)
                    .build(),
            );
        }
        if let Some(nics) = &self.network_interfaces {
            b = b.set_network_interfaces(Some(nics.iter().map(NetworkInterface::to_sdk).collect()));
        }
        if let Some(m) = &self.monitoring {
            b = b.monitoring(
                ec2::RunInstancesMonitoringEnabled::builder()
                    .enabled(m.enabled)
                    .build(),
            );
        }
        if let Some(m) = &self.metadata_options {
            b = b.metadata_options(
                ec2::InstanceMetadataOptionsRequest::builder()
                    .set_http_tokens(m.http_tokens.as_deref().map(ec2::HttpTokensState::from))
                    .set_http_endpoint(
                        m.http_endpoint
                            .as_deref()
                            .map(ec2::InstanceMetadataEndpointState::from),
                    )
                    .set_http_put_response_hop_limit(m.http_put_response_hop_limit)
                    .set_instance_metadata_tags(
                        m.instance_metadata_tags
                            .as_deref()
                            .map(ec2::InstanceMetadataTagsState::from),
                    )
                    .set_http_protocol_ipv6(
                        m.http_protocol_ipv6
                            .as_deref()
                            .map(ec2::InstanceMetadataProtocolState::from),
                    )
                    .build(),
            );
        }
        if let Some(c) = &self.credit_specification {
            b = b.credit_specification(
                ec2::CreditSpecificationRequest::builder()
                    .cpu_credits(c.cpu_credits.clone())
                    .build(),
            );
        }
        if let Some(lt) = &self.launch_template {
            b = b.launch_template(
                ec2::LaunchTemplateSpecification::builder()
                    .set_launch_template_id(lt.launch_template_id.clone())
                    .set_launch_template_name(lt.launch_template_name.clone())
                    .set_version(lt.version.clone())
                    .build(),
            );
        }
        if let Some(m) = &self.instance_market_options {
            let spot = m.spot_options.as_ref().map(|s| {
                ec2::SpotMarketOptions::builder()
                    .set_max_price(s.max_price.clone())
                    .set_spot_instance_type(
                        s.spot_instance_type
                            .as_deref()
                            .map(ec2::SpotInstanceType::from),
                    )
                    .set_instance_interruption_behavior(
                        s.instance_interruption_behavior
                            .as_deref()
                            .map(ec2::InstanceInterruptionBehavior::from),
                    )
                    .build()
            });
            b = b.instance_market_options(
                ec2::InstanceMarketOptionsRequest::builder()
                    .market_type(ec2::MarketType::from(m.market_type.as_str()))
                    .set_spot_options(spot)
                    .build(),
            );
        }
        b
    }
}

/// Checks that `ip` (at `path`), if given, is an IP address.
fn check_ip(path: &str, ip: &Option<String>) -> Result<()> {
    if let Some(ip) = ip {
        if ip.parse::<IpAddr>().is_err() {
            return Err(Error::invalid(path, format!("{ip:?} is not an IP address")));
        }
    }
    Ok(())
}

impl BlockDeviceMapping {
    /// `at` is the mapping's path, `...BlockDeviceMappings[i]`.
    fn check(&self, at: &str) -> Result<()> {
        if self.device_name.is_empty() {
            return Err(Error::invalid(
                format!("{at}.DeviceName"),
                "must not be empty",
            ));
        }
        if let Some(ebs) = &self.ebs {
            ebs.check(&format!("{at}.Ebs"))?;
        }
        Ok(())
    }
}

impl Ebs {
    fn check(&self, at: &str) -> Result<()> {
        opt_one_of(
            &format!("{at}.VolumeType"),
            &self.volume_type,
            ec2::VolumeType::values(),
        )?;
        if self.volume_size.is_some_and(|s| s <= 0) {
            return Err(Error::invalid(
                format!("{at}.VolumeSize"),
                "must be a positive number of GiB",
            ));
        }
        Ok(())
    }
}

impl IamInstanceProfile {
    fn check(&self, at: &str) -> Result<()> {
        if self.arn.is_none() && self.name.is_none() {
            return Err(Error::invalid(at, "needs a Name or an Arn"));
        }
        Ok(())
    }
}

impl Placement {
    fn check(&self, at: &str) -> Result<()> {
        opt_one_of(
            &format!("{at}.Tenancy"),
            &self.tenancy,
            ec2::Tenancy::values(),
        )
    }
}

impl MetadataOptions {
    fn check(&self, at: &str) -> Result<()> {
        opt_one_of(
            &format!("{at}.HttpTokens"),
            &self.http_tokens,
            ec2::HttpTokensState::values(),
        )?;
        opt_one_of(
            &format!("{at}.HttpEndpoint"),
            &self.http_endpoint,
            ec2::InstanceMetadataEndpointState::values(),
        )?;
        opt_one_of(
            &format!("{at}.InstanceMetadataTags"),
            &self.instance_metadata_tags,
            ec2::InstanceMetadataTagsState::values(),
        )?;
        opt_one_of(
            &format!("{at}.HttpProtocolIpv6"),
            &self.http_protocol_ipv6,
            ec2::InstanceMetadataProtocolState::values(),
        )
    }
}

impl LaunchTemplate {
    fn check(&self, at: &str) -> Result<()> {
        if self.launch_template_id.is_none() && self.launch_template_name.is_none() {
            return Err(Error::invalid(
                at,
                "needs a LaunchTemplateId or a LaunchTemplateName",
            ));
        }
        Ok(())
    }
}

impl TagSpecification {
    /// `at` is the entry's path, `...TagSpecifications[i]`.
    fn check(&self, at: &str) -> Result<()> {
        one_of(
            &format!("{at}.ResourceType"),
            &self.resource_type,
            ec2::ResourceType::values(),
        )?;
        let tags: Tags = self
            .tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect();
        check_tags(&format!("{at}.Tags"), &tags)
    }
}

impl InstanceMarketOptions {
    fn check(&self, at: &str) -> Result<()> {
        one_of(
            &format!("{at}.MarketType"),
            &self.market_type,
            ec2::MarketType::values(),
        )?;
        if let Some(s) = &self.spot_options {
            s.check(&format!("{at}.SpotOptions"))?;
        }
        Ok(())
    }
}

impl SpotOptions {
    fn check(&self, at: &str) -> Result<()> {
        opt_one_of(
            &format!("{at}.SpotInstanceType"),
            &self.spot_instance_type,
            ec2::SpotInstanceType::values(),
        )?;
        opt_one_of(
            &format!("{at}.InstanceInterruptionBehavior"),
            &self.instance_interruption_behavior,
            ec2::InstanceInterruptionBehavior::values(),
        )
    }
}

impl CreditSpecification {
    fn check(&self, at: &str) -> Result<()> {
        one_of(
            &format!("{at}.CpuCredits"),
            &self.cpu_credits,
            &["standard", "unlimited"],
        )
    }
}

impl NetworkInterface {
    /// The SDK's form.
    pub fn to_sdk(&self) -> ec2::InstanceNetworkInterfaceSpecification {
        ec2::InstanceNetworkInterfaceSpecification::builder()
            .set_device_index(self.device_index)
            .set_network_interface_id(self.network_interface_id.clone())
            .set_subnet_id(self.subnet_id.clone())
            .set_groups(self.groups.clone())
            .set_private_ip_address(self.private_ip_address.clone())
            .set_associate_public_ip_address(self.associate_public_ip_address)
            .set_delete_on_termination(self.delete_on_termination)
            .set_description(self.description.clone())
            .set_secondary_private_ip_address_count(self.secondary_private_ip_address_count)
            .set_ipv6_address_count(self.ipv6_address_count)
            .build()
    }
}

fn block_device(b: &BlockDeviceMapping) -> ec2::BlockDeviceMapping {
    let ebs = b.ebs.as_ref().map(|e| {
        ec2::EbsBlockDevice::builder()
            .set_delete_on_termination(e.delete_on_termination)
            .set_encrypted(e.encrypted)
            .set_iops(e.iops)
            .set_kms_key_id(e.kms_key_id.clone())
            .set_snapshot_id(e.snapshot_id.clone())
            .set_throughput(e.throughput)
            .set_volume_size(e.volume_size)
            .set_volume_type(e.volume_type.as_deref().map(ec2::VolumeType::from))
            .build()
    });
    ec2::BlockDeviceMapping::builder()
        .device_name(b.device_name.clone())
        .set_ebs(ebs)
        .set_no_device(b.no_device.clone())
        .set_virtual_name(b.virtual_name.clone())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        AwsProperties::parse(&v).unwrap_err().to_string()
    }

    #[test]
    fn both_shapes_decode_to_the_same_input() {
        let flat = AwsProperties::parse(&json!({
            "ImageId": "ami-0abc",
            "InstanceType": "t3.micro",
            "SubnetId": "subnet-1",
            "SecurityGroupIds": ["sg-1"],
            "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 20, "VolumeType": "gp3"}}],
            "IamInstanceProfile": {"Name": "web"},
            "Tags": {"tier": "web"}
        }))
        .unwrap();
        let nested = AwsProperties::parse(&json!({
            "RunInstancesInput": {
                "ImageId": "ami-0abc",
                "InstanceType": "t3.micro",
                "SubnetId": "subnet-1",
                "SecurityGroupIds": ["sg-1"],
                "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 20, "VolumeType": "gp3"}}],
                "IamInstanceProfile": {"Name": "web"}
            },
            "Tags": {"tier": "web"}
        }))
        .unwrap();
        assert_eq!(flat.run, nested.run);
        assert_eq!(flat.tags, nested.tags);
        assert_eq!(nested.run_path, "Properties.RunInstancesInput");
        let input = flat.run.to_input().build().unwrap();
        assert_eq!(input.image_id(), Some("ami-0abc"));
        assert_eq!(input.instance_type(), Some(&ec2::InstanceType::T3Micro));
        assert_eq!((input.min_count(), input.max_count()), (Some(1), Some(1)));
        let bdm = &input.block_device_mappings()[0];
        assert_eq!(
            bdm.ebs().unwrap().volume_type(),
            Some(&ec2::VolumeType::Gp3)
        );
        assert_eq!(input.iam_instance_profile().unwrap().name(), Some("web"));
        assert_eq!(flat.volume_tag, DEFAULT_VOLUME_TAG);
        assert_eq!(flat.volume_device, DEFAULT_VOLUME_DEVICE);
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err(json!({})).starts_with("Properties.ImageId: missing"));
        assert!(err(Value::Null).starts_with("Properties.ImageId: missing"));
        assert!(err(json!("ami-1")).starts_with("Properties: expected an object"));
        assert!(err(json!({"ImageId": "ami-1", "InstanceTpye": "t3.micro"}))
            .starts_with("Properties.InstanceTpye: unknown field"));
        assert!(
            err(json!({"RunInstancesInput": {"ImageId": "ami-1", "Subnet": "x"}}))
                .starts_with("Properties.RunInstancesInput.Subnet: unknown field")
        );
        assert!(err(
            json!({"RunInstancesInput": {"ImageId": "ami-1"}, "InstanceType": "t3.micro"})
        )
        .starts_with("Properties.InstanceType: unknown field"));
        assert!(err(json!({"ImageId": "centos"})).starts_with("Properties.ImageId: \"centos\""));
        assert!(err(json!({"ImageId": "ami-1", "MaxCount": 3})).starts_with("Properties.MaxCount"));
        assert!(err(json!({"ImageId": "ami-1", "UserData": "not base64!"}))
            .starts_with("Properties.UserData: is not base64"));
        assert!(err(json!({"ImageId": "ami-1",
            "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeType": "gp9"}}]}))
        .starts_with("Properties.BlockDeviceMappings[0].Ebs.VolumeType: \"gp9\" is not one of"));
        assert!(err(json!({"ImageId": "ami-1",
            "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": "big"}}]}))
        .starts_with("Properties.BlockDeviceMappings[0].Ebs.VolumeSize: invalid type"));
        assert!(
            err(json!({"ImageId": "ami-1", "Tags": {"aws:cloudformation": "x"}}))
                .starts_with("Properties.Tags.aws:cloudformation: tag keys starting with")
        );
        assert!(err(json!({"ImageId": "ami-1", "Tags": {"port": 80}}))
            .starts_with("Properties.Tags.port: invalid type"));
        assert!(err(json!({"ImageId": "ami-1", "LogicalIdIs": "Hostname"}))
            .starts_with("Properties.LogicalIdIs: unknown variant"));
        assert!(err(json!({"ImageId": "ami-1", "SubnetId": "subnet-1",
            "NetworkInterfaces": [{"DeviceIndex": 0}]}))
        .starts_with("Properties.SubnetId: cannot be used with NetworkInterfaces"));
        assert!(
            err(json!({"ImageId": "ami-1", "PrivateIpAddress": "10.0.0.300"}))
                .starts_with("Properties.PrivateIpAddress")
        );
        assert!(err(json!({"ImageId": "ami-1", "AttachVolumeInputs": [{"Device": "/dev/sdh", "VolumeId": "db"}]}))
            .starts_with("Properties.AttachVolumeInputs[0].VolumeId"));
        assert!(err(json!({"ImageId": "ami-1", "VolumeDevice": "/dev/sd1"}))
            .starts_with("Properties.VolumeDevice"));
        assert!(
            err(json!({"ImageId": "ami-1", "Placement": {"Tenancy": "shared"}}))
                .starts_with("Properties.Placement.Tenancy")
        );
        assert!(err(json!({"ImageId": "ami-1",
            "TagSpecifications": [{"ResourceType": "volume", "Tags": [{"Key": "aws:x", "Value": "1"}]}]}))
        .starts_with("Properties.TagSpecifications[0].Tags.aws:x"));
    }

    #[test]
    fn a_launch_template_may_name_the_image() {
        let p = AwsProperties::parse(
            &json!({"LaunchTemplate": {"LaunchTemplateName": "web", "Version": "$Latest"}}),
        )
        .unwrap();
        assert!(p.run.image_id.is_none());
        assert!(err(json!({"LaunchTemplate": {"Version": "1"}}))
            .starts_with("Properties.LaunchTemplate: needs"));
    }

    #[test]
    fn logical_ids_become_addresses_when_they_are_addresses() {
        let auto = AwsProperties::parse(&json!({"ImageId": "ami-1"})).unwrap();
        assert_eq!(
            auto.private_ip_for("10.0.1.5").unwrap(),
            Some("10.0.1.5".parse().unwrap())
        );
        assert_eq!(auto.private_ip_for("db1").unwrap(), None);
        let tag = AwsProperties::parse(&json!({"ImageId": "ami-1", "LogicalIdIs": "Tag"})).unwrap();
        assert_eq!(tag.private_ip_for("10.0.1.5").unwrap(), None);
        let ip =
            AwsProperties::parse(&json!({"ImageId": "ami-1", "LogicalIdIs": "PrivateIp"})).unwrap();
        assert!(ip
            .private_ip_for("db1")
            .unwrap_err()
            .to_string()
            .starts_with("LogicalID: \"db1\" is not an IP address"));
    }

    #[test]
    fn volume_ids() {
        assert!(is_volume_id("vol-0123abcd"));
        assert!(!is_volume_id("vol-"));
        assert!(!is_volume_id("data-db1"));
        assert!(!is_volume_id("vol-xyz"));
    }
}
