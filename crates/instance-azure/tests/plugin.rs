//! The plugin through the Instance SPI, against the ARM contract server (or Azure itself, when
//! asked: see `common`).

mod common;

use std::time::Duration;

use serde_json::{json, Value};

use infrakit_arm_contract::ArmOptions;
use infrakit_instance_azure::model::{Disk, NetworkInterface, VirtualMachine};
use infrakit_instance_azure::{COMPUTE_API, DISK_API, NETWORK_API};
use infrakit_spi::{Attachment, DestroyContext, Instance, Spec, Tags};

use common::{unique, Azure};

fn group_tags(group: &str) -> Tags {
    Tags::from([("infrakit.group", group)])
}

fn spec(properties: Value, group: &str) -> Spec {
    Spec {
        properties,
        tags: group_tags(group),
        ..Spec::default()
    }
}

/// The VM behind instance `id` (`<group>/<vm>`), if it exists.
async fn vm(azure: &Azure, id: &str) -> Option<VirtualMachine> {
    let (_, name) = id.split_once('/').unwrap();
    azure
        .arm()
        .get(
            &azure.resource_id("Microsoft.Compute/virtualMachines", name),
            COMPUTE_API,
            &[],
        )
        .await
        .unwrap()
}

async fn nic(azure: &Azure, vm: &str) -> Option<NetworkInterface> {
    azure
        .arm()
        .get(
            &azure.resource_id("Microsoft.Network/networkInterfaces", &format!("{vm}-nic")),
            NETWORK_API,
            &[],
        )
        .await
        .unwrap()
}

/// The network interfaces of the resource group.
async fn nics(azure: &Azure) -> Vec<NetworkInterface> {
    let arm = azure.arm();
    arm.list(
        &arm.collection_id(&azure.resource_group, "Microsoft.Network/networkInterfaces"),
        NETWORK_API,
        &[],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_vm_is_created_described_labelled_and_deleted() {
    let azure = Azure::default().await;
    let plugin = azure.plugin();
    let group = unique("crud");
    let mut s = spec(
        azure.properties(json!({"Tags": {"tier": "web"}, "NamePrefix": "web"})),
        &group,
    );
    s.init = "#!/bin/sh\necho hello > /tmp/hello\n".into();
    let id = plugin.provision(s).await.unwrap();
    let (rg, name) = id.split_once('/').unwrap();
    assert_eq!(rg, azure.resource_group);
    assert!(name.starts_with("web-"), "{id}");

    let created = vm(&azure, &id).await.expect("the VM exists");
    assert_eq!(
        created.properties.provisioning_state.as_deref(),
        Some("Succeeded")
    );
    assert_eq!(created.tags["tier"], "web");
    assert_eq!(created.tags["infrakit.group"], group);
    let interface = nic(&azure, name)
        .await
        .expect("its network interface exists");
    assert!(interface
        .properties
        .virtual_machine
        .unwrap()
        .id
        .ends_with(name));

    let listed = plugin
        .describe_instances(&group_tags(&group), true)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    let props = listed[0].properties.as_ref().unwrap().to_value();
    assert_eq!(props["State"], "running", "{props}");
    assert_eq!(props["VMSize"], azure.vm_size());
    assert!(listed[0].created.is_some(), "its creation time");
    let other = plugin
        .describe_instances(&group_tags("another"), false)
        .await
        .unwrap();
    assert!(other.is_empty(), "{other:?}");

    plugin
        .label(&id, &Tags::from([("infrakit.config.hash", "abc")]))
        .await
        .unwrap();
    let labelled = vm(&azure, &id).await.unwrap();
    assert_eq!(labelled.tags["infrakit.config.hash"], "abc");
    assert_eq!(labelled.tags["tier"], "web", "labels merge into the tags");

    plugin
        .destroy(&id, &DestroyContext::reason("terminate"))
        .await
        .unwrap();
    assert!(vm(&azure, &id).await.is_none(), "the VM is gone");
    assert!(
        nic(&azure, name).await.is_none(),
        "its network interface went with it"
    );
    assert!(plugin
        .describe_instances(&group_tags(&group), false)
        .await
        .unwrap()
        .is_empty());
    // Already gone: destroyed.
    plugin
        .destroy(&id, &DestroyContext::reason("terminate"))
        .await
        .unwrap();
    let e = plugin
        .label(&id, &Tags::from([("a", "b")]))
        .await
        .unwrap_err();
    assert!(matches!(e, infrakit_spi::Error::NotFound { .. }), "{e:?}");
}

#[tokio::test]
async fn a_bad_image_or_subnet_fails_with_arms_error_and_leaves_nothing() {
    let azure = Azure::default().await;
    let plugin = azure.plugin();
    let group = unique("bad");
    let before = nics(&azure).await.len();

    let bad_image = azure.properties(json!({
        "Image": {"Publisher": "Nobody", "Offer": "nothing", "Sku": "none"}
    }));
    let e = plugin.provision(spec(bad_image, &group)).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("PlatformImageNotFound") || text.contains("InvalidParameter"),
        "ARM's code is in the error: {text}"
    );
    assert_eq!(nics(&azure).await.len(), before, "its NIC was deleted");

    let mut subnet = azure.subnet.clone();
    subnet.push_str("-missing");
    let bad_subnet = azure.properties(json!({ "Subnet": subnet }));
    let e = plugin
        .provision(spec(bad_subnet, &group))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("InvalidResourceReference"), "{e}");
    assert_eq!(nics(&azure).await.len(), before);
    assert!(plugin
        .describe_instances(&group_tags(&group), false)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_failed_operation_is_reported_and_what_it_made_is_deleted() {
    let azure = Azure::default().await;
    let Some(server) = &azure.server else {
        eprintln!("staging a failed operation needs the contract server");
        return;
    };
    let plugin = azure.plugin();
    server.fail_next_vm("AllocationFailed", "no capacity for this size in the zone");
    let e = plugin
        .provision(spec(azure.properties(json!({})), "failing"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("AllocationFailed"), "{e}");
    assert!(e.contains("no capacity"), "{e}");
    assert!(server.vm_names(&azure.resource_group).is_empty());
    assert!(nics(&azure).await.is_empty());
}

#[tokio::test]
async fn a_pet_keeps_its_address_and_its_disk() {
    let azure = Azure::default().await;
    let plugin = azure.plugin();
    let arm = azure.arm();
    let group = unique("pets");
    // The pet's data disk, made beforehand and found by its tag.
    let disk_name = unique("data-db1");
    let disk_id = azure.resource_id("Microsoft.Compute/disks", &disk_name);
    let (_, pending): (Value, _) = arm
        .put(
            &disk_id,
            DISK_API,
            &json!({
                "location": azure.location,
                "sku": {"name": "Standard_LRS"},
                "tags": {"infrakit.disk": disk_name},
                "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 8},
            }),
        )
        .await
        .unwrap();
    if let Some(p) = pending {
        arm.wait("creating the disk", p, Duration::from_secs(300))
            .await
            .unwrap();
    }
    let pet = || Spec {
        logical_id: Some("10.0.1.10".into()),
        attachments: vec![Attachment {
            id: disk_name.clone(),
            kind: "disk".into(),
        }],
        ..spec(azure.properties(json!({})), &group)
    };
    let disk = || async {
        arm.get::<Disk>(&disk_id, DISK_API, &[])
            .await
            .unwrap()
            .expect("the disk exists")
    };

    for round in 0..2 {
        let id = plugin.provision(pet()).await.unwrap();
        assert_eq!(
            id,
            format!("{}/10.0.1.10", azure.resource_group),
            "round {round}"
        );
        let interface = nic(&azure, "10.0.1.10").await.unwrap();
        assert_eq!(
            interface.properties.ip_configurations[0]
                .properties
                .private_ip_address
                .as_deref(),
            Some("10.0.1.10"),
            "round {round}: the logical ID is its private IP"
        );
        let held = disk().await;
        assert!(
            held.managed_by
                .as_deref()
                .unwrap_or("")
                .ends_with("/10.0.1.10"),
            "round {round}: the disk is attached: {held:?}"
        );
        let listed = plugin
            .describe_instances(&group_tags(&group), false)
            .await
            .unwrap();
        assert_eq!(listed[0].logical_id.as_deref(), Some("10.0.1.10"));

        // While it lives, a second VM cannot take its name or its disk.
        let e = plugin.provision(pet()).await.unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");

        plugin
            .destroy(&id, &DestroyContext::reason("unhealthy"))
            .await
            .unwrap();
        let freed = disk().await;
        assert!(
            freed.managed_by.as_deref().unwrap_or("").is_empty(),
            "round {round}: the disk is detached, not deleted: {freed:?}"
        );
    }
    if let Some(p) = arm.delete(&disk_id, DISK_API, &[]).await.unwrap() {
        arm.wait("deleting the disk", p, Duration::from_secs(300))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn describe_follows_every_page() {
    let azure = Azure::start(ArmOptions {
        page_size: 2,
        ..ArmOptions::default()
    })
    .await;
    let plugin = azure.plugin();
    let group = unique("paged");
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            plugin
                .provision(spec(azure.properties(json!({})), &group))
                .await
                .unwrap(),
        );
    }
    let mut listed: Vec<String> = plugin
        .describe_instances(&group_tags(&group), true)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);
    if let Some(server) = &azure.server {
        let pages = server
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/virtualMachines"))
            .filter(|r| r.query.contains("skiptoken"))
            .count();
        assert!(pages >= 2, "the list was read in pages of two");
        // Listed again: the power states are remembered, not read VM by VM once more.
        let views = |s: &infrakit_arm_contract::ArmServer| {
            s.requests()
                .iter()
                .filter(|r| r.path.ends_with("/instanceView"))
                .count()
        };
        let before = views(server);
        let again = plugin
            .describe_instances(&group_tags(&group), true)
            .await
            .unwrap();
        assert_eq!(again.len(), 5);
        assert_eq!(views(server), before, "no instance view read again");
    }
    for id in &ids {
        plugin
            .destroy(id, &DestroyContext::reason("terminate"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn throttled_requests_are_retried_after_what_arm_says() {
    let azure = Azure::default().await;
    let Some(server) = &azure.server else {
        eprintln!("staging throttling needs the contract server");
        return;
    };
    let plugin = azure.plugin();
    server.throttle(3, 1);
    let started = std::time::Instant::now();
    let id = plugin
        .provision(spec(azure.properties(json!({})), "throttled"))
        .await
        .unwrap();
    let throttled = server.requests().iter().filter(|r| r.status == 429).count();
    assert_eq!(throttled, 3, "each throttled request was answered 429");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was waited for"
    );
    assert!(vm(&azure, &id).await.is_some());
}

#[tokio::test]
async fn a_spec_arm_refuses_is_not_retried() {
    let azure = Azure::default().await;
    let Some(server) = &azure.server else {
        eprintln!("counting requests needs the contract server");
        return;
    };
    let plugin = azure.plugin();
    let bad = azure.properties(json!({"VMSize": "Standard_Imaginary"}));
    let e = plugin.provision(spec(bad, "refused")).await.unwrap_err();
    assert!(
        e.to_string().contains("vmSize") || e.to_string().contains("InvalidParameter"),
        "{e}"
    );
    let vm_puts = server
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/virtualMachines/"))
        .count();
    assert_eq!(vm_puts, 1, "a refused request is sent once");
}
