//! What the plugin reads and sends, checked against the published REST specification's own
//! example requests and responses (`tests/spec-examples`, from Azure/azure-rest-api-specs), so
//! that it reads what Azure sends and not only what our contract server sends.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use infrakit_instance_azure::model::{
    Disk, ErrorDetail, InstanceView, NetworkInterface, OperationStatus, Page, PublicIpAddress,
    VirtualMachine,
};
use infrakit_instance_azure::InstanceId;

/// An example file.
fn example(name: &str) -> Value {
    let path = format!("{}/tests/spec-examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The body of an example's response with `status`, read as `T` (a field of the wrong type
/// fails with its path).
fn response<T: DeserializeOwned>(name: &str, status: &str) -> T {
    let body = example(name)["responses"][status]["body"].clone();
    assert!(!body.is_null(), "{name} has a {status} body");
    serde_path_to_error::deserialize(body)
        .unwrap_or_else(|e| panic!("{name} {status}: at {}: {}", e.path(), e.inner()))
}

/// Every field of `ours` is in `theirs`, with the same value: what we would send uses the
/// specification's names and nesting.
fn is_within(ours: &Value, theirs: &Value, at: &str) {
    match (ours, theirs) {
        (Value::Object(o), Value::Object(t)) => {
            for (k, v) in o {
                let Some(tv) = t.get(k) else {
                    panic!(
                        "{at}.{k}: not in the specification's example: {}",
                        Value::Object(t.clone())
                    )
                };
                is_within(v, tv, &format!("{at}.{k}"));
            }
        }
        (Value::Array(o), Value::Array(t)) => {
            assert_eq!(o.len(), t.len(), "{at}");
            for (i, (a, b)) in o.iter().zip(t).enumerate() {
                is_within(a, b, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(ours, theirs, "{at}"),
    }
}

/// An example's request body read into our type and written back: it must say nothing the
/// example does not.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str, parameter: &str) {
    let request = example(name)["parameters"][parameter].clone();
    let ours: T = serde_path_to_error::deserialize(request.clone())
        .unwrap_or_else(|e| panic!("{name} request: at {}: {}", e.path(), e.inner()));
    is_within(&serde_json::to_value(&ours).unwrap(), &request, name);
}

#[test]
fn a_vm_reads_from_get() {
    let vm: VirtualMachine = response("compute-VirtualMachine_Get.json", "200");
    assert_eq!(vm.name, "myVM");
    assert_eq!(vm.tags["myTag1"], "tagValue1");
    let p = &vm.properties;
    assert_eq!(
        p.hardware_profile.as_ref().unwrap().vm_size,
        "Standard_DS3_v2"
    );
    assert_eq!(p.provisioning_state.as_deref(), Some("Succeeded"));
    assert!(p.time_created.is_some());
    let storage = p.storage_profile.as_ref().unwrap();
    assert_eq!(storage.data_disks.len(), 2);
    assert_eq!(storage.data_disks[1].create_option, "Attach");
    assert_eq!(
        p.network_profile.as_ref().unwrap().network_interfaces.len(),
        1
    );
    let id = InstanceId::of_resource(&vm.id).unwrap();
    assert_eq!(id.to_string(), "myResourceGroup/myVM");
}

#[test]
fn the_power_state_reads_from_the_instance_view() {
    let view: InstanceView = response("compute-VirtualMachine_Get_InstanceView.json", "200");
    assert_eq!(view.power_state(), Some("running"));
}

#[test]
fn lists_read_with_their_next_link_and_with_minimal_entries() {
    let page: Page<VirtualMachine> =
        response("compute-VirtualMachine_List_MaximumSet_Gen.json", "200");
    assert_eq!(page.value.len(), 2);
    assert!(page.next_link.is_some());
    assert_eq!(
        page.value[0].properties.provisioning_state.as_deref(),
        Some("Succeeded")
    );
    let minimal: Page<VirtualMachine> =
        response("compute-VirtualMachine_List_MinimumSet_Gen.json", "200");
    assert!(!minimal.value.is_empty());
    assert!(minimal.next_link.is_none());
    for vm in &minimal.value {
        assert!(
            !vm.id.is_empty(),
            "an entry with only its id and location still reads"
        );
    }
}

#[test]
fn a_created_vm_reads_as_creating() {
    for status in ["200", "201"] {
        let vm: VirtualMachine = response(
            "compute-VirtualMachine_Create_WithSshAuthentication.json",
            status,
        );
        assert_eq!(
            vm.properties.provisioning_state.as_deref(),
            Some("Creating")
        );
    }
    let updated: VirtualMachine = response(
        "compute-VirtualMachine_Update_DetachDataDiskUsingToBeDetachedProperty.json",
        "200",
    );
    assert!(updated.properties.provisioning_state.is_some());
}

#[test]
fn what_we_send_for_a_vm_uses_the_specifications_names() {
    round_trip::<VirtualMachine>(
        "compute-VirtualMachine_Create_WithSshAuthentication.json",
        "parameters",
    );
}

#[test]
fn disks_read_with_their_holder_and_tags() {
    let disk: Disk = response("disk-Disk_Get.json", "200");
    assert!(disk
        .managed_by
        .as_deref()
        .unwrap()
        .contains("/virtualMachines/"));
    assert_eq!(disk.tags["project"], "ManagedDisks");
    let page: Page<Disk> = response("disk-Disk_ListByResourceGroup.json", "200");
    assert_eq!(page.value.len(), 3);
    assert!(page.next_link.is_some());
    let created: Disk = response("disk-Disk_Create_Empty.json", "200");
    assert!(!created.name.is_empty());
}

#[test]
fn a_network_interface_reads_with_its_address_and_subnet() {
    let nic: NetworkInterface = response("network-NetworkInterfaceGet.json", "200");
    let ip = &nic.properties.ip_configurations[0].properties;
    assert_eq!(ip.private_ip_address.as_deref(), Some("172.20.2.4"));
    assert!(ip.subnet.as_ref().unwrap().id.ends_with("/subnets/default"));
    assert!(ip.public_ip_address.is_some());
    for status in ["200", "201"] {
        let _: NetworkInterface = response("network-NetworkInterfaceCreate.json", status);
    }
    round_trip::<NetworkInterface>("network-NetworkInterfaceCreate.json", "parameters");
}

#[test]
fn a_public_ip_reads_with_its_sku() {
    for name in [
        "network-PublicIpAddressCreateDefaults.json",
        "network-PublicIpAddressCreateCustomizedValues.json",
    ] {
        let ip: PublicIpAddress = response(name, "201");
        assert!(ip.sku.is_some(), "{name}");
    }
    let custom: PublicIpAddress =
        response("network-PublicIpAddressCreateCustomizedValues.json", "200");
    assert_eq!(custom.sku.unwrap().name, "Standard");
    let _: PublicIpAddress = response("network-PublicIpAddressGet.json", "200");
    round_trip::<PublicIpAddress>(
        "network-PublicIpAddressCreateCustomizedValues.json",
        "parameters",
    );
}

#[test]
fn operation_statuses_read_with_their_error() {
    let failed: OperationStatus = response(
        "servicefabric-Long_running_operation_status_failed.json",
        "200",
    );
    assert_eq!(failed.status, "Failed");
    let e = failed.error.unwrap();
    assert_eq!(e.message, "A task was canceled.");
    let running: OperationStatus =
        response("apimanagement-ApiManagementGetOperationStatus.json", "200");
    assert_eq!(running.status, "InProgress");
    assert!(running.error.is_none());
}

#[test]
fn the_error_shape_is_the_common_types_one() {
    let defs = &example("common-types-ErrorResponse.json")["definitions"];
    let detail = &defs["ErrorDetail"]["properties"];
    for field in ["code", "message", "target", "details"] {
        assert!(detail.get(field).is_some(), "ErrorDetail.{field}");
    }
    assert!(defs["ErrorResponse"]["properties"].get("error").is_some());
    // And it reads as such.
    let e: ErrorDetail = serde_json::from_value(serde_json::json!({
        "code": "InvalidParameter",
        "message": "bad size",
        "target": "vmSize",
        "details": [{"code": "Inner", "message": "more"}],
    }))
    .unwrap();
    assert_eq!(
        e.describe(),
        "InvalidParameter: bad size (target vmSize); Inner: more"
    );
}
