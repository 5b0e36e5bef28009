//! From a spec to one `RunInstances` request, and which volumes go where. No I/O.
//!
//! * Tags: the properties' `Tags`, then the spec's (which win), then `infrakit.logical_id` for a
//!   pet, all on the `instance` entry of `TagSpecifications`, so the instance never exists
//!   untagged. Other `TagSpecifications` entries (volumes, interfaces) are passed on.
//! * `Init` becomes the user data, base64-encoded.
//! * A pet whose logical ID is a private IP (see [`AwsProperties::private_ip_for`]) gets it on
//!   its primary network interface. Without `NetworkInterfaces` in the properties, the plugin
//!   writes that interface itself (subnet and security groups move onto it) with
//!   `DeleteOnTermination`, so the address is free again once the instance is gone and the
//!   pet's replacement can take it.
//! * When volumes are to be attached and nothing else pins the zone (no subnet, no placement),
//!   the instance is placed in the volumes' availability zone.

use aws_sdk_ec2::operation::run_instances::builders::RunInstancesInputBuilder;
use aws_sdk_ec2::operation::run_instances::RunInstancesInput;
use aws_sdk_ec2::types as ec2;
use infrakit_spi::instance::LOGICAL_ID_TAG;
use infrakit_spi::{Error, Result, Spec, Tags};

use crate::properties::{check_tags, AwsProperties};

/// Attachment type of an EBS volume (an empty type means the same, as in InfraKit before
/// attachments had types).
pub const EBS_ATTACHMENT: &str = "ebs";
/// Largest user data EC2 accepts, before base64.
pub const MAX_USER_DATA: usize = 16 * 1024;

/// The tags an instance is launched with: the properties' tags, the spec's (which win) and the
/// logical ID tag of a pet.
pub fn instance_tags(props: &AwsProperties, spec: &Spec) -> Result<Tags> {
    let mut tags = props.tags.clone();
    tags.extend(&spec.tags);
    if let Some(lid) = &spec.logical_id {
        tags.get_or_insert_with(LOGICAL_ID_TAG, || lid.clone());
    }
    check_tags("Tags", &tags)?;
    Ok(tags)
}

/// The IDs of the spec's EBS attachments, in order. Other attachment types are an error at
/// their `Attachments[i].Type`.
pub fn ebs_attachments(spec: &Spec) -> Result<Vec<String>> {
    spec.attachments
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if a.kind.is_empty() || a.kind.eq_ignore_ascii_case(EBS_ATTACHMENT) {
                if a.id.is_empty() {
                    Err(Error::invalid(
                        format!("Attachments[{i}].ID"),
                        "must not be empty",
                    ))
                } else {
                    Ok(a.id.clone())
                }
            } else {
                Err(Error::invalid(
                    format!("Attachments[{i}].Type"),
                    format!(
                        "{:?}: this plugin attaches EBS volumes only (Type \"{EBS_ATTACHMENT}\")",
                        a.kind
                    ),
                ))
            }
        })
        .collect()
}

/// `n` device names starting at `first` and counting up its last letter
/// (`/dev/sdf`, `/dev/sdg`, ...).
pub fn device_names(first: &str, n: usize) -> Result<Vec<String>> {
    let Some(last) = first.chars().last().filter(char::is_ascii_lowercase) else {
        return Err(Error::invalid(
            "Properties.VolumeDevice",
            format!("{first:?}: expected a device name ending in a letter"),
        ));
    };
    let stem = &first[..first.len() - 1];
    (0..n)
        .map(|i| {
            let c = (last as u8)
                .checked_add(i as u8)
                .filter(|c| *c <= b'z')
                .ok_or_else(|| {
                    Error::invalid(
                        "Attachments",
                        format!("{n} volumes do not fit in device names from {first} to {stem}z"),
                    )
                })?;
            Ok(format!("{stem}{}", c as char))
        })
        .collect()
}

/// The `RunInstances` request for `spec`. `volume_zone` is the availability zone of the
/// volumes to attach, if any.
pub fn run_instances_input(
    props: &AwsProperties,
    spec: &Spec,
    volume_zone: Option<&str>,
) -> Result<RunInstancesInput> {
    let mut b = props.run.to_input();
    b = b.set_tag_specifications(tag_specifications(props, spec)?);
    if let Some(data) = user_data(&spec.init)? {
        b = b.user_data(data);
    }
    let ip = match &spec.logical_id {
        Some(lid) => props.private_ip_for(lid)?,
        None => None,
    };
    if let Some(ip) = ip {
        b = pet_address(props, b, ip.to_string())?;
    }
    if let Some(zone) = volume_zone {
        b = volume_placement(props, b, zone)?;
    }
    b.build()
        .map_err(|e| Error::caused("cannot build the RunInstances request", e))
}

/// Tags, at launch: the `instance` entry (the properties' `TagSpecifications` for instances,
/// then [`instance_tags`]) first, then the properties' other entries; `None` when there are
/// none.
fn tag_specifications(
    props: &AwsProperties,
    spec: &Spec,
) -> Result<Option<Vec<ec2::TagSpecification>>> {
    let tags = instance_tags(props, spec)?;
    let mut specs: Vec<ec2::TagSpecification> = Vec::new();
    let mut on_instance: Tags = Tags::new();
    for ts in props.run.tag_specifications.iter().flatten() {
        if ts.resource_type == ec2::ResourceType::Instance.as_str() {
            on_instance.extend(ts.tags.iter().map(|t| (t.key.clone(), t.value.clone())));
        } else {
            specs.push(
                ec2::TagSpecification::builder()
                    .resource_type(ec2::ResourceType::from(ts.resource_type.as_str()))
                    .set_tags(Some(
                        ts.tags.iter().map(|t| tag(&t.key, &t.value)).collect(),
                    ))
                    .build(),
            );
        }
    }
    on_instance.extend(tags);
    check_tags("Tags", &on_instance)?;
    if !on_instance.is_empty() {
        specs.insert(
            0,
            ec2::TagSpecification::builder()
                .resource_type(ec2::ResourceType::Instance)
                .set_tags(Some(on_instance.iter().map(|(k, v)| tag(k, v)).collect()))
                .build(),
        );
    }
    Ok((!specs.is_empty()).then_some(specs))
}

/// The spec's `Init` as user data, base64-encoded; `None` when it is empty.
fn user_data(init: &str) -> Result<Option<String>> {
    if init.is_empty() {
        return Ok(None);
    }
    if init.len() > MAX_USER_DATA {
        return Err(Error::invalid(
            "Init",
            format!(
                "{} bytes; EC2 takes at most {MAX_USER_DATA} bytes of user data",
                init.len()
            ),
        ));
    }
    Ok(Some(data_encoding::BASE64.encode(init.as_bytes())))
}

/// Puts a pet's private IP address `ip` on its primary network interface: the one of the
/// properties' `NetworkInterfaces` with `DeviceIndex` 0, or, without any, one written here, onto
/// which the subnet and security groups move.
fn pet_address(
    props: &AwsProperties,
    b: RunInstancesInputBuilder,
    ip: String,
) -> Result<RunInstancesInputBuilder> {
    let run = &props.run;
    let at = &props.run_path;
    match &run.network_interfaces {
        Some(nics) => {
            let mut nics = nics.clone();
            let primary = nics
                .iter()
                .position(|n| n.device_index.unwrap_or(0) == 0)
                .ok_or_else(|| {
                    Error::invalid(
                        format!("{at}.NetworkInterfaces"),
                        "a pet's logical ID is its private IP, but there is no primary \
                         interface (DeviceIndex 0) to put it on",
                    )
                })?;
            if nics[primary].network_interface_id.is_some() {
                return Err(Error::invalid(
                    format!("{at}.NetworkInterfaces[{primary}].NetworkInterfaceId"),
                    "an existing interface keeps its own address; a pet's logical ID cannot \
                     become it (set LogicalIdIs: Tag)",
                ));
            }
            nics[primary].private_ip_address = Some(ip);
            Ok(b.set_network_interfaces(Some(nics.iter().map(|n| n.to_sdk()).collect())))
        }
        None => {
            if run.private_ip_address.is_some() {
                return Err(Error::invalid(
                    format!("{at}.PrivateIpAddress"),
                    "a pet's logical ID is its private IP: remove PrivateIpAddress, or set \
                     LogicalIdIs: Tag",
                ));
            }
            let nic = ec2::InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .set_subnet_id(run.subnet_id.clone())
                .set_groups(run.security_group_ids.clone())
                .set_ipv6_address_count(run.ipv6_address_count)
                .private_ip_address(ip)
                .delete_on_termination(true)
                .build();
            Ok(b.network_interfaces(nic)
                .set_subnet_id(None)
                .set_security_group_ids(None)
                .set_ipv6_address_count(None)
                .set_private_ip_address(None))
        }
    }
}

/// Places the instance in `zone`, the availability zone of the volumes to attach, unless a
/// subnet or network interface decides the zone; a placement in another zone is an error.
fn volume_placement(
    props: &AwsProperties,
    b: RunInstancesInputBuilder,
    zone: &str,
) -> Result<RunInstancesInputBuilder> {
    let run = &props.run;
    let placed = run
        .placement
        .as_ref()
        .and_then(|p| p.availability_zone.as_deref());
    let subnet = run.subnet_id.is_some()
        || run
            .network_interfaces
            .iter()
            .flatten()
            .any(|n| n.subnet_id.is_some() || n.network_interface_id.is_some());
    match placed {
        Some(p) if p != zone => Err(Error::invalid(
            format!("{}.Placement.AvailabilityZone", props.run_path),
            format!("{p}, but the volumes to attach are in {zone}"),
        )),
        Some(_) => Ok(b),
        None if !subnet => {
            let mut placement = b
                .get_placement()
                .clone()
                .unwrap_or_else(|| ec2::Placement::builder().build());
            placement.availability_zone = Some(zone.to_string());
            Ok(b.placement(placement))
        }
        None => Ok(b),
    }
}

fn tag(k: &str, v: &str) -> ec2::Tag {
    ec2::Tag::builder().key(k).value(v).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use infrakit_spi::instance::Attachment;
    use serde_json::json;

    fn props(v: serde_json::Value) -> AwsProperties {
        AwsProperties::parse(&v).unwrap()
    }

    fn spec(tags: &[(&str, &str)], init: &str, lid: Option<&str>) -> Spec {
        Spec {
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            init: init.to_string(),
            logical_id: lid.map(str::to_string),
            ..Spec::default()
        }
    }

    fn instance_tags_of(input: &RunInstancesInput) -> Tags {
        input
            .tag_specifications()
            .iter()
            .find(|t| t.resource_type() == Some(&ec2::ResourceType::Instance))
            .map(|t| {
                t.tags()
                    .iter()
                    .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn cattle_are_tagged_at_launch_and_init_is_user_data() {
        let p = props(json!({
            "ImageId": "ami-1", "SubnetId": "subnet-1", "SecurityGroupIds": ["sg-1"],
            "Tags": {"tier": "web", "infrakit.group": "old"},
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "a"}, {"Key": "tier", "Value": "db"}]},
                {"ResourceType": "volume", "Tags": [{"Key": "backup", "Value": "daily"}]}
            ]
        }));
        let input = run_instances_input(
            &p,
            &spec(&[("infrakit.group", "web")], "#!/bin/sh\necho hi", None),
            None,
        )
        .unwrap();
        let tags = instance_tags_of(&input);
        assert_eq!(&tags["infrakit.group"], "web", "the spec's tags win");
        assert_eq!(
            &tags["tier"], "web",
            "the properties' tags win over TagSpecifications"
        );
        assert_eq!(&tags["team"], "a");
        assert!(!tags.contains_key(LOGICAL_ID_TAG));
        assert_eq!(input.tag_specifications().len(), 2);
        assert_eq!(
            input.user_data(),
            Some(data_encoding::BASE64.encode(b"#!/bin/sh\necho hi").as_str())
        );
        assert_eq!(input.subnet_id(), Some("subnet-1"));
        assert!(input.network_interfaces().is_empty());
    }

    #[test]
    fn a_pet_address_goes_on_its_primary_interface() {
        let p = props(json!({
            "ImageId": "ami-1", "SubnetId": "subnet-1", "SecurityGroupIds": ["sg-1"]
        }));
        let input = run_instances_input(&p, &spec(&[], "", Some("10.0.1.10")), None).unwrap();
        assert_eq!(input.subnet_id(), None);
        assert!(input.security_group_ids().is_empty());
        let nic = &input.network_interfaces()[0];
        assert_eq!(nic.device_index(), Some(0));
        assert_eq!(nic.subnet_id(), Some("subnet-1"));
        assert_eq!(nic.groups(), ["sg-1".to_string()]);
        assert_eq!(nic.private_ip_address(), Some("10.0.1.10"));
        assert_eq!(nic.delete_on_termination(), Some(true));
        assert_eq!(&instance_tags_of(&input)[LOGICAL_ID_TAG], "10.0.1.10");

        let named = run_instances_input(&p, &spec(&[], "", Some("db1")), None).unwrap();
        assert!(
            named.network_interfaces().is_empty(),
            "db1 is not an address"
        );
        assert_eq!(&instance_tags_of(&named)[LOGICAL_ID_TAG], "db1");

        let tag_only = props(json!({"ImageId": "ami-1", "LogicalIdIs": "Tag"}));
        let input =
            run_instances_input(&tag_only, &spec(&[], "", Some("10.0.1.10")), None).unwrap();
        assert!(input.network_interfaces().is_empty());
    }

    #[test]
    fn a_pet_address_goes_on_given_interfaces_too() {
        let p = props(json!({"ImageId": "ami-1", "NetworkInterfaces": [
            {"DeviceIndex": 1, "SubnetId": "subnet-2"},
            {"DeviceIndex": 0, "SubnetId": "subnet-1", "AssociatePublicIpAddress": true}
        ]}));
        let input = run_instances_input(&p, &spec(&[], "", Some("10.0.1.11")), None).unwrap();
        let nics = input.network_interfaces();
        assert_eq!(nics[1].private_ip_address(), Some("10.0.1.11"));
        assert_eq!(nics[0].private_ip_address(), None);

        let existing = props(json!({"ImageId": "ami-1", "NetworkInterfaces": [
            {"DeviceIndex": 0, "NetworkInterfaceId": "eni-1"}
        ]}));
        let e = run_instances_input(&existing, &spec(&[], "", Some("10.0.1.11")), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("Properties.NetworkInterfaces[0].NetworkInterfaceId"),
            "{e}"
        );
        let fixed = props(json!({"ImageId": "ami-1", "PrivateIpAddress": "10.0.1.5"}));
        let e = run_instances_input(&fixed, &spec(&[], "", Some("10.0.1.11")), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("Properties.PrivateIpAddress"), "{e}");
    }

    #[test]
    fn volumes_pick_the_zone_unless_something_else_does() {
        let free = props(json!({"ImageId": "ami-1"}));
        let input = run_instances_input(&free, &spec(&[], "", None), Some("us-east-1b")).unwrap();
        assert_eq!(
            input.placement().unwrap().availability_zone(),
            Some("us-east-1b")
        );
        let subnet = props(json!({"ImageId": "ami-1", "SubnetId": "subnet-1"}));
        let input = run_instances_input(&subnet, &spec(&[], "", None), Some("us-east-1b")).unwrap();
        assert!(input.placement().is_none());
        let elsewhere =
            props(json!({"ImageId": "ami-1", "Placement": {"AvailabilityZone": "us-east-1a"}}));
        let e = run_instances_input(&elsewhere, &spec(&[], "", None), Some("us-east-1b"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("Properties.Placement.AvailabilityZone"),
            "{e}"
        );
    }

    #[test]
    fn bad_tags_and_init_are_refused() {
        let p = props(json!({"ImageId": "ami-1"}));
        let e = run_instances_input(&p, &spec(&[("aws:x", "1")], "", None), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("Tags.aws:x"), "{e}");
        let big = "x".repeat(MAX_USER_DATA + 1);
        let e = run_instances_input(&p, &spec(&[], &big, None), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("Init:"), "{e}");
    }

    #[test]
    fn attachments_and_devices() {
        let mut s = spec(&[], "", Some("db1"));
        s.attachments = vec![
            Attachment {
                id: "data-db1".into(),
                kind: "ebs".into(),
            },
            Attachment {
                id: "vol-0abc".into(),
                kind: String::new(),
            },
        ];
        assert_eq!(ebs_attachments(&s).unwrap(), ["data-db1", "vol-0abc"]);
        s.attachments.push(Attachment {
            id: "x".into(),
            kind: "volume".into(),
        });
        assert!(ebs_attachments(&s)
            .unwrap_err()
            .to_string()
            .starts_with("Attachments[2].Type"));
        assert_eq!(
            device_names("/dev/sdf", 3).unwrap(),
            ["/dev/sdf", "/dev/sdg", "/dev/sdh"]
        );
        assert_eq!(device_names("xvdz", 1).unwrap(), ["xvdz"]);
        assert!(device_names("xvdz", 2).is_err());
    }
}
