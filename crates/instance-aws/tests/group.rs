//! The group controller managing EC2 instances through the AWS plugin, in-process, against a
//! real moto server (one per test).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use infrakit_spi::Group;
use infrakit_testkit::{group, unique_name};

use common::{eventually, fixture, ids, subnet, tags_of, volume};

#[tokio::test]
async fn a_cattle_group_is_kept_at_its_size() {
    let f = fixture("cattle").await;
    f.group
        .commit_group(
            f.spec(
                json!({"Size": 3}),
                json!({"ImageId": f.ami, "InstanceType": "t2.micro", "Tags": {"team": "a"}}),
                json!({"Tags": {"tier": "web"}, "Init": ["echo hello"]}),
                json!({}),
            ),
            false,
        )
        .await
        .unwrap();
    let d = f.converged(3).await;
    let before = f.running(3, &BTreeSet::new()).await;
    assert_eq!(
        ids(&before),
        d.instances.iter().map(|i| i.id.clone()).collect(),
        "the group's members are the instances EC2 has"
    );
    let hash = d.status.as_ref().unwrap().config_hash.clone();
    for i in &before {
        let t = tags_of(i);
        assert_eq!(t["infrakit.group"], f.id);
        assert_eq!(t["infrakit.config.hash"], hash);
        assert_eq!(&t["tier"], "web");
        assert_eq!(&t["team"], "a");
        assert!(!t.contains_key("infrakit.logical_id"), "cattle: {t:?}");
    }

    // One terminated behind the controller's back is replaced; the others are untouched.
    let victim = before[1].instance_id().unwrap().to_string();
    f.terminate(&[&victim]).await;
    let after = f.running(3, &BTreeSet::from([victim.clone()])).await;
    let (old, new) = (ids(&before), ids(&after));
    assert_eq!(old.intersection(&new).count(), 2, "{old:?} -> {new:?}");
    f.converged(3).await;
    f.teardown().await;
}

#[tokio::test]
async fn a_rolling_update_changes_the_instance_type() {
    let f = fixture("rollout").await;
    let props = |t: &str| json!({"RunInstancesInput": {"ImageId": f.ami, "InstanceType": t}});
    let updating = json!({"Updating": {"MaxSurge": 1, "MaxUnavailable": 0}});
    f.group
        .commit_group(
            f.spec(
                json!({"Size": 3}),
                props("t2.micro"),
                json!({}),
                updating.clone(),
            ),
            false,
        )
        .await
        .unwrap();
    f.converged(3).await;
    let before = ids(&f.running(3, &BTreeSet::new()).await);

    f.group
        .commit_group(
            f.spec(json!({"Size": 3}), props("t2.small"), json!({}), updating),
            false,
        )
        .await
        .unwrap();
    group::converged_where(
        &f.group,
        &f.id,
        3,
        Duration::from_secs(90),
        "the rollout complete",
        |d| group::rollout_phase(d) == Some("complete"),
    )
    .await;
    let after = f.running(3, &before).await;
    for i in &after {
        assert_eq!(
            i.instance_type().map(|t| t.as_str()),
            Some("t2.small"),
            "{:?}",
            i.instance_id()
        );
    }
    f.teardown().await;
}

#[tokio::test]
async fn a_replaced_pet_keeps_its_address_and_its_volume() {
    let f = fixture("pets").await;
    let subnet = subnet(&f.ec2, "10.7.0.0/16", "10.7.1.0/24").await;
    let pets = ["10.7.1.10", "10.7.1.11"];
    let prefix = unique_name("data");
    let mut volumes = Vec::new();
    for ip in pets {
        volumes.push(volume(&f.ec2, "infrakit.volume", &format!("{prefix}-{ip}")).await);
    }
    f.group
        .commit_group(
            f.spec(
                json!({"LogicalIDs": pets}),
                json!({"ImageId": f.ami, "InstanceType": "t2.micro", "SubnetId": subnet}),
                json!({"Attachments": [{"ID": format!("{prefix}-{{{{ LogicalID }}}}"), "Type": "ebs"}]}),
                json!({}),
            ),
            false,
        )
        .await
        .unwrap();
    let d = f.converged(2).await;
    let members = f.running(2, &BTreeSet::new()).await;
    let holder = |ip: &str| {
        members
            .iter()
            .find(|i| i.private_ip_address() == Some(ip))
            .and_then(|i| i.instance_id())
            .unwrap_or_else(|| panic!("no instance has {ip}"))
            .to_string()
    };
    for (ip, vol) in pets.iter().zip(&volumes) {
        let id = holder(ip);
        assert!(
            d.instances
                .iter()
                .any(|i| i.id == id && i.logical_id.as_deref() == Some(*ip)),
            "{:?}",
            d.instances
        );
        assert_eq!(common::attached_to(&f.ec2, vol).await, Some(id));
    }

    // Terminate the first pet: its replacement has its address and its volume.
    let old = holder(pets[0]);
    f.terminate(&[&old]).await;
    let after = f.running(2, &BTreeSet::from([old.clone()])).await;
    let new = after
        .iter()
        .find(|i| i.private_ip_address() == Some(pets[0]))
        .and_then(|i| i.instance_id())
        .expect("the replacement has the pet's address")
        .to_string();
    assert_ne!(new, old);
    assert_eq!(tags_of(&after[0])["infrakit.group"], f.id);
    eventually(
        "the volume is attached to the replacement",
        Duration::from_secs(30),
        || async {
            (common::attached_to(&f.ec2, &volumes[0]).await.as_deref() == Some(new.as_str()))
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        common::attached_to(&f.ec2, &volumes[1]).await,
        Some(holder(pets[1])),
        "the other pet keeps its volume"
    );
    f.converged(2).await;

    // Destroying the group keeps the volumes.
    f.teardown().await;
    for v in &volumes {
        let vol = common::describe_volume(&f.ec2, v).await;
        assert_eq!(
            vol.state(),
            Some(&aws_sdk_ec2::types::VolumeState::Available)
        );
    }
}

#[tokio::test]
async fn launch_errors_show_in_describe_and_destroy_nothing() {
    let f = fixture("broken").await;

    // A group whose subnet does not exist: the error is in its status, nothing runs.
    let mut broken = f.spec(
        json!({"Size": 2}),
        json!({"ImageId": f.ami, "SubnetId": "subnet-0badbadbadbadbad0"}),
        json!({}),
        json!({}),
    );
    broken.id = format!("{}-subnet", f.id);
    f.group.commit_group(broken.clone(), false).await.unwrap();
    let message = eventually(
        "the subnet error in the group's status",
        Duration::from_secs(30),
        || async {
            let d = f.group.describe_group(&broken.id).await.ok()?;
            let m = d.status?.message;
            m.contains("InvalidSubnetID.NotFound").then_some(m)
        },
    )
    .await;
    assert!(message.contains("RunInstances"), "{message}");
    assert!(common::all_instances(&f.ec2).await.is_empty());
    f.group.destroy_group(&broken.id).await.unwrap();

    // A running group updated to an AMI that does not exist: the error is in its status and
    // its instances stay.
    let updating = json!({"Updating": {"MaxSurge": 1, "MaxUnavailable": 0}});
    f.group
        .commit_group(
            f.spec(
                json!({"Size": 2}),
                json!({"ImageId": f.ami}),
                json!({}),
                updating.clone(),
            ),
            false,
        )
        .await
        .unwrap();
    f.converged(2).await;
    let before = ids(&f.running(2, &BTreeSet::new()).await);
    f.group
        .commit_group(
            f.spec(
                json!({"Size": 2}),
                json!({"ImageId": "ami-0badbadbadbadbad0"}),
                json!({}),
                updating,
            ),
            false,
        )
        .await
        .unwrap();
    let d = eventually(
        "the AMI error in the group's status",
        Duration::from_secs(30),
        || async {
            let d = f.group.describe_group(&f.id).await.ok()?;
            d.status
                .as_ref()?
                .message
                .contains("InvalidAMIID.NotFound")
                .then_some(d)
        },
    )
    .await;
    assert!(!d.converged);
    assert_eq!(
        d.instances
            .iter()
            .map(|i| i.id.clone())
            .collect::<BTreeSet<_>>(),
        before
    );
    assert_eq!(ids(&f.members().await), before, "nothing was destroyed");
    assert_eq!(
        common::all_instances(&f.ec2).await.len(),
        2,
        "and nothing else was launched"
    );
    f.teardown().await;
}
