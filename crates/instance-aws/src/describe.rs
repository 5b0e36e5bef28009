//! What `DescribeInstances` asks EC2 and how an EC2 instance reads as an InfraKit description.
//! No I/O.

use aws_sdk_ec2::primitives::DateTimeFormat;
use aws_sdk_ec2::types as ec2;
use infrakit_spi::instance::{Properties, LOGICAL_ID_TAG};
use infrakit_spi::{Description, Tags};
use serde_json::{json, Map, Value};

/// Instance states that count as instances: the others are stopping, stopped or gone.
pub const LIVE_STATES: &[&str] = &["pending", "running"];

/// The server-side filters for instances carrying every one of `tags`, in a live state.
pub fn filters(tags: &Tags) -> Vec<ec2::Filter> {
    let mut out = vec![ec2::Filter::builder()
        .name("instance-state-name")
        .set_values(Some(LIVE_STATES.iter().map(|s| s.to_string()).collect()))
        .build()];
    out.extend(tags.iter().map(|(k, v)| {
        ec2::Filter::builder()
            .name(format!("tag:{k}"))
            .values(v)
            .build()
    }));
    out
}

/// The instance's tags as a map.
pub fn tags_of(instance: &ec2::Instance) -> Tags {
    instance
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .collect()
}

/// The state name (`pending`, `running`, ...), empty if EC2 did not say.
pub fn state_of(instance: &ec2::Instance) -> &str {
    instance
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str())
        .unwrap_or("")
}

/// The description of `instance`: its ID, its `infrakit.logical_id` tag as the logical ID, its
/// tags and, with `properties`, what [`properties_of`] reports.
pub fn description(instance: &ec2::Instance, properties: bool) -> Description {
    let tags = tags_of(instance);
    Description {
        id: instance.instance_id().unwrap_or_default().to_string(),
        logical_id: tags.get(LOGICAL_ID_TAG).map(str::to_string),
        tags,
        properties: properties.then(|| Properties::new(&properties_of(instance))),
        created: instance
            .launch_time()
            .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
    }
}

/// The provider state reported with `Properties: true`: `State`, `InstanceType`, `ImageId`,
/// `LaunchTime` (RFC 3339), the addresses and DNS names, `SubnetId`, `VpcId`,
/// `AvailabilityZone` and the attached `Volumes` (`{DeviceName, VolumeId}`). Missing values are
/// left out.
pub fn properties_of(instance: &ec2::Instance) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            m.insert(k.to_string(), Value::String(v.to_string()));
        }
    };
    put("State", Some(state_of(instance)));
    put("InstanceType", instance.instance_type().map(|t| t.as_str()));
    put("ImageId", instance.image_id());
    put("PrivateIpAddress", instance.private_ip_address());
    put("PublicIpAddress", instance.public_ip_address());
    put("PrivateDnsName", instance.private_dns_name());
    put("PublicDnsName", instance.public_dns_name());
    put("SubnetId", instance.subnet_id());
    put("VpcId", instance.vpc_id());
    put(
        "AvailabilityZone",
        instance.placement().and_then(|p| p.availability_zone()),
    );
    let launched = instance
        .launch_time()
        .and_then(|t| t.fmt(DateTimeFormat::DateTime).ok());
    put("LaunchTime", launched.as_deref());
    let volumes: Vec<Value> = instance
        .block_device_mappings()
        .iter()
        .filter_map(|b| {
            Some(json!({
                "DeviceName": b.device_name()?,
                "VolumeId": b.ebs()?.volume_id()?,
            }))
        })
        .collect();
    if !volumes.is_empty() {
        m.insert("Volumes".into(), Value::Array(volumes));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::primitives::DateTime;

    fn instance() -> ec2::Instance {
        ec2::Instance::builder()
            .instance_id("i-0abc")
            .state(
                ec2::InstanceState::builder()
                    .name(ec2::InstanceStateName::Running)
                    .build(),
            )
            .instance_type(ec2::InstanceType::T3Micro)
            .private_ip_address("10.0.1.10")
            .launch_time(DateTime::from_secs(1_700_000_000))
            .placement(
                ec2::Placement::builder()
                    .availability_zone("us-east-1a")
                    .build(),
            )
            .tags(
                ec2::Tag::builder()
                    .key("infrakit.group")
                    .value("db")
                    .build(),
            )
            .tags(
                ec2::Tag::builder()
                    .key(LOGICAL_ID_TAG)
                    .value("10.0.1.10")
                    .build(),
            )
            .block_device_mappings(
                ec2::InstanceBlockDeviceMapping::builder()
                    .device_name("/dev/sdf")
                    .ebs(
                        ec2::EbsInstanceBlockDevice::builder()
                            .volume_id("vol-1")
                            .build(),
                    )
                    .build(),
            )
            .build()
    }

    #[test]
    fn an_instance_reads_as_a_description() {
        let d = description(&instance(), true);
        assert_eq!(d.id, "i-0abc");
        assert_eq!(d.logical_id.as_deref(), Some("10.0.1.10"));
        assert_eq!(&d.tags["infrakit.group"], "db");
        assert_eq!(
            d.properties.unwrap(),
            json!({
                "State": "running",
                "InstanceType": "t3.micro",
                "PrivateIpAddress": "10.0.1.10",
                "AvailabilityZone": "us-east-1a",
                "LaunchTime": "2023-11-14T22:13:20Z",
                "Volumes": [{"DeviceName": "/dev/sdf", "VolumeId": "vol-1"}],
            })
        );
        assert!(description(&instance(), false).properties.is_none());
    }

    #[test]
    fn filters_are_live_states_and_tags() {
        let f = filters(&Tags::from([("infrakit.group", "db")]));
        assert_eq!(f[0].name(), Some("instance-state-name"));
        assert_eq!(f[0].values(), ["pending", "running"]);
        assert_eq!(f[1].name(), Some("tag:infrakit.group"));
        assert_eq!(f[1].values(), ["db"]);
    }
}
