//! `Microsoft.Compute/virtualMachines`: create or update, update (PATCH), get (with
//! `$expand`), instance view and delete.

use serde_json::{json, Value};

use crate::disks::{attached, DISK_SKUS, MAX_DISK_GB};
use crate::model::{self, ImageReference, OsDisk, Root, VmBody, VmPatch, VmProps};
use crate::network::{invalid_reference, location_change};
use crate::reply::{ArmError, Reply};
use crate::request::Req;
use crate::state::{key, Action, Disk, Key, Kind, Meta, Prov, State, Vm};
use crate::util;
use crate::validate;
use crate::ResourceGroup;

/// The size of the OS disk of the images served, in GiB.
pub(crate) const IMAGE_DISK_GB: i64 = 30;

/// The largest OS disk, in GiB.
const MAX_OS_DISK_GB: i64 = 4095;

const CACHING: &[&str] = &["None", "ReadOnly", "ReadWrite"];
const DELETE_OPTIONS: &[&str] = &["Delete", "Detach"];

fn not_supported(target: &str, what: &str) -> ArmError {
    ArmError::invalid_parameter(target, format!("{what} is not supported here."))
}

fn change_not_allowed(property: &str) -> ArmError {
    ArmError::conflict(
        "PropertyChangeNotAllowed",
        format!("Changing property '{property}' is not allowed."),
    )
    .with_target(property)
}

fn eq_ci(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (None, None) => true,
        _ => false,
    }
}

/// Whether a password meets Azure's rules: 6 to 72 characters, at least three of upper case,
/// lower case, digit and other, no control characters.
fn password_ok(password: &str) -> bool {
    let len = password.chars().count();
    if !(6..=72).contains(&len) || password.chars().any(char::is_control) {
        return false;
    }
    let classes = [
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ];
    classes.iter().filter(|c| **c).count() >= 3
}

/// A VM about to be created, after its checks.
struct NewVm {
    props: VmProps,
    nics: Vec<(Key, String)>,
    os_disk: Key,
    data_disks: Vec<(i64, Key)>,
    custom_data: Option<String>,
    user_data: Option<String>,
}

impl State {
    fn check_size(&self, size: &str) -> Result<String, ArmError> {
        let sizes = &self.env.options.vm_sizes;
        sizes
            .iter()
            .find(|s| s.eq_ignore_ascii_case(size))
            .cloned()
            .ok_or_else(|| {
                ArmError::invalid_parameter(
                    "vmSize",
                    format!(
                        "The value {size} provided for the VM size is not valid. The valid sizes in the current region are: {}. Find out more on the available VM sizes in each region at https://aka.ms/azure-regions.",
                        sizes.join(",")
                    ),
                )
            })
    }

    /// The configured image an image reference names, with the reference normalized.
    fn check_image(&self, image: &ImageReference) -> Result<ImageReference, ArmError> {
        if image.id.is_some() {
            return Err(not_supported(
                "imageReference.id",
                "A custom or gallery image id",
            ));
        }
        if image.shared_gallery_image_id.is_some() || image.community_gallery_image_id.is_some() {
            return Err(not_supported(
                "imageReference",
                "A shared or community gallery image",
            ));
        }
        let publisher = image
            .publisher
            .clone()
            .ok_or_else(|| ArmError::missing("imageReference.publisher"))?;
        let offer = image
            .offer
            .clone()
            .ok_or_else(|| ArmError::missing("imageReference.offer"))?;
        let sku = image
            .sku
            .clone()
            .ok_or_else(|| ArmError::missing("imageReference.sku"))?;
        let version = image.version.clone().unwrap_or_else(|| "latest".into());
        let version_ok = version.eq_ignore_ascii_case("latest")
            || (!version.is_empty()
                && version
                    .split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())));
        let found = self.env.options.images.iter().find(|i| {
            i.publisher.eq_ignore_ascii_case(&publisher)
                && i.offer.eq_ignore_ascii_case(&offer)
                && i.sku.eq_ignore_ascii_case(&sku)
        });
        let Some(found) = found.filter(|_| version_ok) else {
            return Err(ArmError::new(
                404,
                "PlatformImageNotFound",
                format!(
                    "The platform image '{publisher}:{offer}:{sku}:{version}' is not available. Verify that all fields in the storage profile are correct. For more details about storage profile information, please refer to https://aka.ms/storageprofile"
                ),
            )
            .with_target("imageReference"));
        };
        let exact = if version.eq_ignore_ascii_case("latest") {
            "1.0.20250101".to_string()
        } else {
            version.clone()
        };
        Ok(ImageReference {
            publisher: Some(found.publisher.clone()),
            offer: Some(found.offer.clone()),
            sku: Some(found.sku.clone()),
            version: Some(version),
            exact_version: Some(json!(exact)),
            ..ImageReference::default()
        })
    }

    /// Whether a disk name is taken in the resource group, by a disk or by a VM that will create it.
    fn disk_taken(&self, k: &Key) -> bool {
        self.disks.contains_key(k) || self.vms.values().any(|vm| vm.disks().any(|d| d == k))
    }

    fn check_new_vm(
        &self,
        rg: &ResourceGroup,
        name: &str,
        location: &str,
        zones: &Option<Vec<String>>,
        mut props: VmProps,
    ) -> Result<NewVm, ArmError> {
        let vm_id = self.id(Kind::Vm, &rg.name, name);
        // Hardware.
        let hardware = props
            .hardware_profile
            .as_mut()
            .ok_or_else(|| ArmError::missing("hardwareProfile"))?;
        let size = hardware
            .vm_size
            .clone()
            .ok_or_else(|| ArmError::missing("hardwareProfile.vmSize"))?;
        hardware.vm_size = Some(self.check_size(&size)?);

        // Storage.
        let storage = props
            .storage_profile
            .as_mut()
            .ok_or_else(|| ArmError::missing("storageProfile"))?;
        let image = storage
            .image_reference
            .as_ref()
            .ok_or_else(|| ArmError::missing("imageReference"))?;
        storage.image_reference = Some(self.check_image(image)?);

        let mut os = storage.os_disk.clone().unwrap_or_default();
        if storage.os_disk.is_some() {
            let option = os
                .create_option
                .clone()
                .ok_or_else(|| ArmError::missing("osDisk.createOption"))?;
            let option = validate::compute_enum(
                "osDisk.createOption",
                &option,
                &["FromImage", "Attach", "Empty"],
            )?;
            if option != "FromImage" {
                return Err(not_supported(
                    "osDisk.createOption",
                    &format!("An OS disk with createOption '{option}'"),
                ));
            }
        }
        os.create_option = Some("FromImage".into());
        os.os_type = Some("Linux".into());
        os.caching = Some(
            validate::compute_enum(
                "osDisk.caching",
                os.caching.as_deref().unwrap_or("ReadWrite"),
                CACHING,
            )?
            .to_string(),
        );
        os.delete_option = Some(
            validate::compute_enum(
                "osDisk.deleteOption",
                os.delete_option.as_deref().unwrap_or("Detach"),
                DELETE_OPTIONS,
            )?
            .to_string(),
        );
        let os_size = os.disk_size_gb.unwrap_or(IMAGE_DISK_GB);
        if os_size < IMAGE_DISK_GB {
            return Err(ArmError::invalid_parameter(
                "osDisk.diskSizeGB",
                format!(
                    "The specified disk size {os_size} GB is smaller than the size of the corresponding disk in the VM image: {IMAGE_DISK_GB} GB. This is not allowed. Please choose equal or greater size or do not specify an explicit size."
                ),
            ));
        }
        if os_size > MAX_OS_DISK_GB {
            return Err(ArmError::invalid_parameter(
                "osDisk.diskSizeGB",
                format!(
                    "The OS disk size {os_size} GB exceeds the maximum of {MAX_OS_DISK_GB} GB."
                ),
            ));
        }
        os.disk_size_gb = Some(os_size);
        let mut managed = os.managed_disk.clone().unwrap_or_default();
        let os_sku = validate::compute_enum(
            "osDisk.managedDisk.storageAccountType",
            managed
                .storage_account_type
                .as_deref()
                .unwrap_or("Premium_LRS"),
            DISK_SKUS,
        )?;
        managed.storage_account_type = Some(os_sku.to_string());
        managed.id = None;
        os.managed_disk = Some(managed);
        let os_name = match &os.name {
            Some(n) => {
                if !validate::word_name(n) {
                    return Err(ArmError::invalid_parameter(
                        "osDisk.name",
                        format!("The disk name '{n}' is not valid."),
                    ));
                }
                n.clone()
            }
            None => format!("{name}_OsDisk_1_{}", util::random_hex(32)),
        };
        let os_key = key(&rg.name, &os_name);
        if self.disk_taken(&os_key) {
            return Err(ArmError::conflict(
                "ConflictingUserInput",
                format!(
                    "Disk {os_name} already exists in resource group {}. Only CreateOption.Attach is supported.",
                    rg.name.to_uppercase()
                ),
            )
            .with_target("/disks/osDisk"));
        }
        os.name = Some(os_name);
        storage.os_disk = Some(os);

        let mut data_keys: Vec<(i64, Key)> = Vec::new();
        let mut data = storage.data_disks.clone().unwrap_or_default();
        for (i, d) in data.iter_mut().enumerate() {
            let lun = d.lun.ok_or_else(|| ArmError::missing("dataDisk.lun"))?;
            if !(0..=63).contains(&lun) {
                return Err(ArmError::invalid_parameter(
                    "dataDisks.lun",
                    format!("The LUN {lun} is not valid; it must be between 0 and 63."),
                ));
            }
            if data_keys.iter().any(|(l, _)| *l == lun) {
                return Err(ArmError::invalid_parameter(
                    "dataDisks",
                    format!("A disk at LUN {lun} already exists."),
                ));
            }
            let option = d
                .create_option
                .clone()
                .ok_or_else(|| ArmError::missing("dataDisk.createOption"))?;
            let option = validate::compute_enum(
                "dataDisk.createOption",
                &option,
                &[
                    "Attach",
                    "Empty",
                    "FromImage",
                    "Copy",
                    "Restore",
                    "CopyFromSanSnapshot",
                ],
            )?;
            d.create_option = Some(option.to_string());
            d.caching = Some(
                validate::compute_enum(
                    "dataDisk.caching",
                    d.caching.as_deref().unwrap_or("None"),
                    CACHING,
                )?
                .to_string(),
            );
            d.delete_option = Some(
                validate::compute_enum(
                    "dataDisk.deleteOption",
                    d.delete_option.as_deref().unwrap_or("Detach"),
                    DELETE_OPTIONS,
                )?
                .to_string(),
            );
            d.to_be_detached = Some(false);
            let mut managed = d.managed_disk.clone().unwrap_or_default();
            let disk_key = match option {
                "Empty" => {
                    let size = d
                        .disk_size_gb
                        .ok_or_else(|| ArmError::missing("dataDisk.diskSizeGB"))?;
                    if !(1..=MAX_DISK_GB).contains(&size) {
                        return Err(ArmError::invalid_parameter(
                            "dataDisk.diskSizeGB",
                            format!("The disk size {size} GB is not valid; it must be between 1 and {MAX_DISK_GB} GB."),
                        ));
                    }
                    let sku = validate::compute_enum(
                        "dataDisk.managedDisk.storageAccountType",
                        managed.storage_account_type.as_deref().unwrap_or(os_sku),
                        DISK_SKUS,
                    )?;
                    managed.storage_account_type = Some(sku.to_string());
                    managed.id = None;
                    let disk_name = match &d.name {
                        Some(n) => {
                            let k = key(&rg.name, n);
                            if !validate::word_name(n) {
                                return Err(ArmError::invalid_parameter(
                                    "dataDisk.name",
                                    format!("The disk name '{n}' is not valid."),
                                ));
                            }
                            if self.disk_taken(&k) || data_keys.iter().any(|(_, o)| *o == k) {
                                return Err(ArmError::conflict(
                                    "ConflictingUserInput",
                                    format!(
                                        "Disk {n} already exists in resource group {}. Only CreateOption.Attach is supported.",
                                        rg.name.to_uppercase()
                                    ),
                                ));
                            }
                            n.clone()
                        }
                        None => {
                            let mut n = format!("{name}_DataDisk_{lun}");
                            let taken = |n: &str| {
                                let k = key(&rg.name, n);
                                self.disk_taken(&k) || data_keys.iter().any(|(_, o)| *o == k)
                            };
                            if taken(&n) {
                                n = format!("{n}_{}", util::random_hex(8));
                            }
                            n
                        }
                    };
                    d.name = Some(disk_name.clone());
                    key(&rg.name, &disk_name)
                }
                "Attach" => {
                    let at = format!("properties.storageProfile.dataDisks[{i}].managedDisk.id");
                    let id = managed
                        .id
                        .clone()
                        .ok_or_else(|| ArmError::missing("dataDisk.managedDisk.id"))?;
                    let disk_key = self
                        .resolve(&id, Kind::Disk, &at)?
                        .filter(|k| {
                            self.disks
                                .get(k)
                                .is_some_and(|d| d.meta.prov != Prov::Deleting)
                        })
                        .ok_or_else(|| {
                            ArmError::new(404, "NotFound", format!("Disk {id} was not found."))
                                .with_target("dataDisk.managedDisk.id")
                        })?;
                    let disk = &self.disks[&disk_key];
                    if let Some(owner) = self.vm_using_disk(&disk_key) {
                        return Err(attached(&disk.meta.name, &self.id_of(Kind::Vm, owner)));
                    }
                    if data_keys.iter().any(|(_, o)| *o == disk_key) {
                        return Err(ArmError::invalid_parameter(
                            "dataDisks",
                            format!("Disk {} is specified more than once.", disk.meta.name),
                        ));
                    }
                    if disk.meta.location != location {
                        return Err(ArmError::bad(
                            "BadRequest",
                            format!(
                                "Disk {} is in location '{}' but the virtual machine is in location '{location}'.",
                                disk.meta.name, disk.meta.location
                            ),
                        ));
                    }
                    if let (Some(vm_zones), Some(disk_zones)) = (zones, &disk.zones) {
                        if vm_zones != disk_zones {
                            return Err(ArmError::bad(
                                "BadRequest",
                                format!(
                                    "Disk {} cannot be attached to the VM because it is not in the same zone as the VM. VM zone: '{}'. Disk zone: '{}'.",
                                    self.id_of(Kind::Disk, &disk_key),
                                    vm_zones.join(","),
                                    disk_zones.join(",")
                                ),
                            ));
                        }
                    }
                    d.name = Some(disk.meta.name.clone());
                    d.disk_size_gb = Some(disk.size_gb);
                    managed.id = Some(self.id_of(Kind::Disk, &disk_key));
                    managed.storage_account_type = Some(disk.sku.clone());
                    disk_key
                }
                other => {
                    return Err(not_supported(
                        "dataDisk.createOption",
                        &format!("A data disk with createOption '{other}'"),
                    ))
                }
            };
            d.managed_disk = Some(managed);
            data_keys.push((lun, disk_key));
        }
        storage.data_disks = Some(data);

        // OS profile.
        let os_profile = props
            .os_profile
            .as_mut()
            .ok_or_else(|| ArmError::missing("osProfile"))?;
        let computer = os_profile
            .computer_name
            .clone()
            .ok_or_else(|| ArmError::missing("computerName"))?;
        validate::computer_name(&computer)?;
        let user = os_profile
            .admin_username
            .clone()
            .ok_or_else(|| ArmError::missing("adminUsername"))?;
        validate::admin_username(&user)?;
        let custom_data = os_profile.custom_data.clone();
        if let Some(cd) = &custom_data {
            let ok = validate::base64(cd).is_some_and(|b| b.len() <= 65535);
            if !ok {
                return Err(ArmError::invalid_parameter(
                    "customData",
                    "Custom data in OSProfile must be in Base64 encoding and with a maximum length of 87380 characters.",
                ));
            }
        }
        if os_profile.windows_configuration.is_some() {
            return Err(ArmError::invalid_parameter(
                "windowsConfiguration",
                "The image is a Linux image; windowsConfiguration cannot be specified.",
            ));
        }
        let mut linux = os_profile.linux_configuration.clone().unwrap_or_default();
        let disable_password = linux.disable_password_authentication.unwrap_or(false);
        let keys = linux
            .ssh
            .as_ref()
            .and_then(|s| s.public_keys.clone())
            .unwrap_or_default();
        let want_path = format!("/home/{user}/.ssh/authorized_keys");
        for k in &keys {
            let path = k
                .path
                .as_deref()
                .ok_or_else(|| ArmError::missing("linuxConfiguration.ssh.publicKeys.path"))?;
            if path != want_path {
                return Err(ArmError::invalid_parameter(
                    "linuxConfiguration.ssh.publicKeys.path",
                    format!(
                        "Destination path for SSH public keys is currently limited to its default value {want_path}  due to a known issue in Linux provisioning agent."
                    ),
                ));
            }
            let data = k
                .key_data
                .as_deref()
                .ok_or_else(|| ArmError::missing("linuxConfiguration.ssh.publicKeys.keyData"))?;
            if !validate::ssh_public_key(data) {
                return Err(ArmError::invalid_parameter(
                    "linuxConfiguration.ssh.publicKeys.keyData",
                    "The value of parameter linuxConfiguration.ssh.publicKeys.keyData is invalid.",
                ));
            }
        }
        if disable_password && keys.is_empty() {
            return Err(ArmError::invalid_parameter(
                "linuxConfiguration",
                "Authentication using either SSH or by user name and password must be enabled in Linux profile.",
            ));
        }
        if !disable_password {
            let password = os_profile
                .admin_password
                .as_deref()
                .ok_or_else(|| ArmError::missing("adminPassword"))?;
            if !password_ok(password) {
                return Err(ArmError::invalid_parameter(
                    "adminPassword",
                    "The supplied password must be between 6-72 characters long and must satisfy at least 3 of password complexity requirements from the following: 1) Contains an uppercase character 2) Contains a lowercase character 3) Contains a numeric digit 4) Contains a special character 5) Control characters are not allowed",
                ));
            }
        }
        linux.disable_password_authentication = Some(disable_password);
        linux.provision_vm_agent.get_or_insert(true);
        linux.patch_settings.get_or_insert_with(
            || json!({"patchMode": "ImageDefault", "assessmentMode": "ImageDefault"}),
        );
        os_profile.linux_configuration = Some(linux);
        os_profile.secrets.get_or_insert_with(|| json!([]));
        os_profile
            .allow_extension_operations
            .get_or_insert(json!(true));
        os_profile
            .require_guest_provision_signal
            .get_or_insert(json!(true));

        // Network.
        let network = props
            .network_profile
            .as_ref()
            .ok_or_else(|| ArmError::missing("networkProfile"))?;
        if network.network_interface_configurations.is_some() {
            return Err(not_supported(
                "networkProfile.networkInterfaceConfigurations",
                "Creating network interfaces with the VM (networkInterfaceConfigurations)",
            ));
        }
        let refs = network.network_interfaces.clone().unwrap_or_default();
        if refs.is_empty() {
            return Err(ArmError::invalid_parameter(
                "networkProfile.networkInterfaces",
                "At least one network interface is required: networkProfile.networkInterfaces is empty.",
            ));
        }
        let mut nics: Vec<(Key, String)> = Vec::new();
        for (i, r) in refs.iter().enumerate() {
            let id =
                r.id.clone()
                    .ok_or_else(|| ArmError::missing("networkInterfaces.id"))?;
            let at = format!("properties.networkProfile.networkInterfaces[{i}].id");
            let nic_key = self
                .resolve(&id, Kind::Nic, &at)?
                .filter(|k| {
                    self.nics.get(k).is_some_and(|n| {
                        n.meta.location == location && n.meta.prov != Prov::Deleting
                    })
                })
                .ok_or_else(|| invalid_reference(&id, &vm_id))?;
            if let Some(owner) = self.vm_using_nic(&nic_key) {
                return Err(ArmError::bad(
                    "NicInUse",
                    format!(
                        "Network interface {} is used by virtual machine {}.",
                        self.id_of(Kind::Nic, &nic_key),
                        self.id_of(Kind::Vm, owner)
                    ),
                ));
            }
            if nics.iter().any(|(k, _)| *k == nic_key) {
                return Err(ArmError::invalid_parameter(
                    "networkProfile.networkInterfaces",
                    format!("Network interface {id} is specified more than once."),
                ));
            }
            let delete_option = match r
                .properties
                .as_ref()
                .and_then(|p| p.delete_option.as_deref())
            {
                Some(d) => validate::compute_enum(
                    "networkInterfaces.properties.deleteOption",
                    d,
                    DELETE_OPTIONS,
                )?,
                None => "Detach",
            };
            nics.push((nic_key, delete_option.to_string()));
        }
        if refs.len() > 1 {
            let primaries = refs
                .iter()
                .filter(|r| r.properties.as_ref().and_then(|p| p.primary) == Some(true))
                .count();
            if primaries != 1 {
                return Err(ArmError::invalid_parameter(
                    "networkProfile",
                    format!("Virtual machine {name} must have one network interface set as the primary."),
                ));
            }
        }

        let user_data = props.user_data.clone();
        if let Some(ud) = &user_data {
            if validate::base64(ud).is_none_or(|b| b.len() > 65535) {
                return Err(ArmError::invalid_parameter(
                    "userData",
                    "User data must be in Base64 encoding and at most 64 KB once decoded.",
                ));
            }
        }
        Ok(NewVm {
            props,
            nics,
            os_disk: os_key,
            data_disks: data_keys,
            custom_data,
            user_data,
        })
    }

    pub(crate) fn put_vm(
        &mut self,
        rg: &ResourceGroup,
        name: &str,
        req: &Req,
    ) -> Result<Reply, ArmError> {
        validate::vm_name(name)?;
        let body: VmBody = model::parse(&req.body, Root::VirtualMachine)?;
        let location = validate::location(body.location.as_deref())?;
        validate::tags(&body.tags)?;
        validate::zones(&body.zones, 1)?;
        let k = key(&rg.name, name);
        if self.vms.contains_key(&k) {
            return self.update_vm(&k, body, &location);
        }
        let props = body
            .properties
            .clone()
            .ok_or_else(|| ArmError::missing("properties"))?;
        let new = self.check_new_vm(rg, name, &location, &body.zones, props)?;
        let mut props = new.props;
        props.user_data = None;
        let vm = Vm {
            meta: Meta::new(&rg.name, name, &location, body.tags.clone(), Prov::Creating),
            zones: body.zones.clone(),
            props,
            vm_id: util::new_uuid(),
            time_created: util::now(),
            created: false,
            fail: self.fail_next_vm.take(),
            custom_data: new.custom_data,
            user_data: new.user_data,
            nics: new.nics,
            os_disk: new.os_disk,
            data_disks: new.data_disks,
        };
        self.vms.insert(k.clone(), vm);
        let op = self.start_op(Kind::Vm, &k, Action::Create);
        Ok(self.lro(Reply::json(201, self.render_vm(&k, false)), &op, false))
    }

    fn refuse_while_deleting(&self, k: &Key, method: &str) -> Result<(), ArmError> {
        if self.deleting(Kind::Vm, k) {
            return Err(ArmError::conflict(
                "OperationNotAllowed",
                format!(
                    "Operation '{method}' is not allowed on VM '{}' since the VM is marked for deletion. You can only retry the Delete operation (or wait for an ongoing one to complete).",
                    self.vms[k].meta.name
                ),
            ));
        }
        Ok(())
    }

    /// The checks of an update of `vm` with `props`: only the size may change. Answers the new
    /// size, if it changes.
    fn check_vm_update(&self, vm: &Vm, props: &VmProps) -> Result<Option<String>, ArmError> {
        let mut new_size = None;
        if let Some(size) = props
            .hardware_profile
            .as_ref()
            .and_then(|h| h.vm_size.as_deref())
        {
            let current = vm
                .props
                .hardware_profile
                .as_ref()
                .and_then(|h| h.vm_size.as_deref())
                .unwrap_or("");
            if !size.eq_ignore_ascii_case(current) {
                new_size = Some(self.check_size(size)?);
            }
        }
        let stored = vm.props.storage_profile.clone().unwrap_or_default();
        if let Some(storage) = &props.storage_profile {
            if let Some(image) = &storage.image_reference {
                let old = stored.image_reference.clone().unwrap_or_default();
                let same = eq_ci(image.publisher.as_deref(), old.publisher.as_deref())
                    && eq_ci(image.offer.as_deref(), old.offer.as_deref())
                    && eq_ci(image.sku.as_deref(), old.sku.as_deref())
                    && eq_ci(
                        Some(image.version.as_deref().unwrap_or("latest")),
                        old.version.as_deref(),
                    );
                if !same {
                    return Err(change_not_allowed("imageReference"));
                }
            }
            if let Some(os) = &storage.os_disk {
                let old: OsDisk = stored.os_disk.clone().unwrap_or_default();
                let differs = |new: Option<&str>, old: Option<&str>| {
                    new.is_some_and(|n| !eq_ci(Some(n), old))
                };
                let checks = [
                    (
                        "osDisk.name",
                        differs(os.name.as_deref(), old.name.as_deref()),
                    ),
                    (
                        "osDisk.createOption",
                        differs(os.create_option.as_deref(), old.create_option.as_deref()),
                    ),
                    (
                        "osDisk.caching",
                        differs(os.caching.as_deref(), old.caching.as_deref()),
                    ),
                    (
                        "osDisk.deleteOption",
                        differs(os.delete_option.as_deref(), old.delete_option.as_deref()),
                    ),
                    (
                        "osDisk.diskSizeGB",
                        os.disk_size_gb.is_some() && os.disk_size_gb != old.disk_size_gb,
                    ),
                ];
                if let Some((property, _)) = checks.iter().find(|(_, d)| *d) {
                    return Err(change_not_allowed(property));
                }
            }
            if let Some(data) = &storage.data_disks {
                let old = stored.data_disks.clone().unwrap_or_default();
                let same = data.len() == old.len()
                    && data.iter().all(|d| {
                        old.iter().any(|o| {
                            o.lun == d.lun
                                && (d.name.is_none() || eq_ci(d.name.as_deref(), o.name.as_deref()))
                                && d.managed_disk
                                    .as_ref()
                                    .and_then(|m| m.id.as_deref())
                                    .is_none_or(|id| {
                                        eq_ci(
                                            Some(id),
                                            o.managed_disk.as_ref().and_then(|m| m.id.as_deref()),
                                        )
                                    })
                        })
                    });
                if !same {
                    return Err(change_not_allowed("dataDisks"));
                }
            }
        }
        if let Some(os) = &props.os_profile {
            let old = vm.props.os_profile.clone().unwrap_or_default();
            if os.computer_name.is_some()
                && !eq_ci(os.computer_name.as_deref(), old.computer_name.as_deref())
            {
                return Err(change_not_allowed("osProfile.computerName"));
            }
            if os.admin_username.is_some() && os.admin_username != old.admin_username {
                return Err(change_not_allowed("osProfile.adminUsername"));
            }
            if os.custom_data.is_some() && os.custom_data != vm.custom_data {
                return Err(change_not_allowed("customData"));
            }
            if os.admin_password.is_some() {
                return Err(change_not_allowed("adminPassword"));
            }
            let keys = |p: &model::OsProfile| -> Vec<(Option<String>, Option<String>)> {
                p.linux_configuration
                    .as_ref()
                    .and_then(|l| l.ssh.as_ref())
                    .and_then(|s| s.public_keys.as_ref())
                    .map(|k| {
                        k.iter()
                            .map(|k| (k.path.clone(), k.key_data.clone()))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let new_keys = os
                .linux_configuration
                .as_ref()
                .and_then(|l| l.ssh.as_ref())
                .and_then(|s| s.public_keys.as_ref());
            if new_keys.is_some() && keys(os) != keys(&old) {
                return Err(change_not_allowed("linuxConfiguration.ssh.publicKeys"));
            }
        }
        if let Some(network) = &props.network_profile {
            if network.network_interface_configurations.is_some() {
                return Err(change_not_allowed(
                    "networkProfile.networkInterfaceConfigurations",
                ));
            }
            if let Some(refs) = &network.network_interfaces {
                let mut wanted = Vec::new();
                for (i, r) in refs.iter().enumerate() {
                    let id = r.id.clone().unwrap_or_default();
                    let at = format!("properties.networkProfile.networkInterfaces[{i}].id");
                    wanted.push(self.resolve(&id, Kind::Nic, &at)?);
                }
                let same = wanted.len() == vm.nics.len()
                    && wanted.iter().all(|w| {
                        w.as_ref()
                            .is_some_and(|w| vm.nics.iter().any(|(k, _)| k == w))
                    });
                if !same {
                    return Err(change_not_allowed("networkProfile.networkInterfaces"));
                }
            }
        }
        if let Some(ud) = &props.user_data {
            if validate::base64(ud).is_none() {
                return Err(ArmError::invalid_parameter(
                    "userData",
                    "User data must be in Base64 encoding and at most 64 KB once decoded.",
                ));
            }
        }
        Ok(new_size)
    }

    fn apply_size(&mut self, k: &Key, size: String) {
        if let Some(vm) = self.vms.get_mut(k) {
            vm.props
                .hardware_profile
                .get_or_insert_with(Default::default)
                .vm_size = Some(size);
        }
    }

    /// Starts the operation of an update; a VM still being created stays `Creating`.
    fn start_update(&mut self, k: &Key) -> String {
        if let Some(vm) = self.vms.get_mut(k) {
            if vm.meta.prov != Prov::Creating {
                vm.meta.prov = Prov::Updating;
            }
            vm.meta.touch();
        }
        self.start_op(Kind::Vm, k, Action::Update)
    }

    fn update_vm(&mut self, k: &Key, body: VmBody, location: &str) -> Result<Reply, ArmError> {
        self.refuse_while_deleting(k, "PUT")?;
        let vm = self.vms[k].clone();
        if vm.meta.location != location {
            return Err(location_change(
                &vm.meta.name,
                &vm.meta.rg,
                &vm.meta.location,
                location,
            ));
        }
        if body.zones.is_some() && body.zones != vm.zones {
            return Err(change_not_allowed("zones"));
        }
        let props = body.properties.clone().unwrap_or_default();
        let new_size = self.check_vm_update(&vm, &props)?;
        if let Some(size) = new_size {
            self.apply_size(k, size);
        }
        if let Some(ud) = props.user_data {
            if let Some(v) = self.vms.get_mut(k) {
                v.user_data = Some(ud);
            }
        }
        if let Some(v) = self.vms.get_mut(k) {
            v.meta.tags = body.tags;
        }
        let op = self.start_update(k);
        Ok(self.lro(Reply::json(200, self.render_vm(k, false)), &op, false))
    }

    pub(crate) fn patch_vm(
        &mut self,
        rg: &ResourceGroup,
        name: &str,
        req: &Req,
    ) -> Result<Reply, ArmError> {
        let k = key(&rg.name, name);
        if !self.vms.contains_key(&k) {
            return Err(self.not_found(Kind::Vm, &rg.name, name));
        }
        let body: VmPatch = model::parse(&req.body, Root::VirtualMachineUpdate)?;
        validate::tags(&body.tags)?;
        self.refuse_while_deleting(&k, "PATCH")?;
        let vm = self.vms[&k].clone();
        if body.zones.is_some() && body.zones != vm.zones {
            return Err(change_not_allowed("zones"));
        }
        let props = body.properties.clone().unwrap_or_default();
        let new_size = self.check_vm_update(&vm, &props)?;
        if let Some(v) = self.vms.get_mut(&k) {
            if let Some(tags) = body.tags {
                v.meta.tags = Some(tags);
            }
            if let Some(ud) = props.user_data {
                v.user_data = Some(ud);
            }
            v.meta.touch();
        }
        let op = match new_size {
            Some(size) => {
                self.apply_size(&k, size);
                self.start_update(&k)
            }
            None => self.done_op(Kind::Vm, &k, Action::Update),
        };
        Ok(self.lro(Reply::json(200, self.render_vm(&k, false)), &op, false))
    }

    pub(crate) fn delete_vm(
        &mut self,
        rg: &ResourceGroup,
        name: &str,
        req: &Req,
    ) -> Result<Reply, ArmError> {
        if let Some(force) = req.param("forceDeletion") {
            if !force.eq_ignore_ascii_case("true") && !force.eq_ignore_ascii_case("false") {
                return Err(ArmError::invalid_parameter(
                    "forceDeletion",
                    format!("The value '{force}' of parameter 'forceDeletion' is not valid. Allowed values are 'true', 'false'."),
                ));
            }
        }
        let k = key(&rg.name, name);
        if !self.vms.contains_key(&k) {
            return Ok(Reply::empty(204));
        }
        Ok(self.accept_delete(Kind::Vm, &k))
    }

    pub(crate) fn get_vm(&mut self, k: &Key, req: &Req) -> Result<Reply, ArmError> {
        let expand = req.param("$expand");
        let (instance_view, user_data) = match expand.as_deref() {
            None => (false, false),
            Some(e) if e.eq_ignore_ascii_case("instanceView") => (true, false),
            Some(e) if e.eq_ignore_ascii_case("userData") => (false, true),
            Some(e) => {
                return Err(ArmError::invalid_parameter(
                    "$expand",
                    format!("The value '{e}' of parameter '$expand' is not valid. Allowed values are 'instanceView', 'userData'."),
                ))
            }
        };
        let mut body = self.render_vm(k, instance_view);
        if user_data {
            if let Some(ud) = &self.vms[k].user_data {
                body["properties"]["userData"] = json!(ud);
            }
        }
        Ok(Reply::json(200, body))
    }

    pub(crate) fn vm_instance_view(
        &mut self,
        rg: &ResourceGroup,
        name: &str,
    ) -> Result<Reply, ArmError> {
        let k = key(&rg.name, name);
        if !self.vms.contains_key(&k) {
            return Err(self.not_found(Kind::Vm, &rg.name, name));
        }
        Ok(Reply::json(200, self.instance_view(&k)))
    }

    pub(crate) fn render_vm(&self, k: &Key, instance_view: bool) -> Value {
        let Some(vm) = self.vms.get(k) else {
            return Value::Null;
        };
        let mut props = model::to_json(&vm.props);
        props["vmId"] = json!(vm.vm_id);
        props["provisioningState"] = json!(vm.meta.prov.as_str());
        props["timeCreated"] = json!(vm.time_created);
        if instance_view {
            props["instanceView"] = self.instance_view(k);
        }
        let mut body = json!({
            "id": self.id(Kind::Vm, &vm.meta.rg, &vm.meta.name),
            "name": vm.meta.name,
            "type": Kind::Vm.full_type(),
            "location": vm.meta.location,
            "etag": format!("\"{}\"", vm.meta.version),
            "properties": props,
        });
        if let Some(tags) = &vm.meta.tags {
            body["tags"] = json!(tags);
        }
        if let Some(zones) = &vm.zones {
            body["zones"] = json!(zones);
        }
        body
    }

    /// `VirtualMachineInstanceView`.
    pub(crate) fn instance_view(&self, k: &Key) -> Value {
        let Some(vm) = self.vms.get(k) else {
            return Value::Null;
        };
        let time = self
            .ops
            .get(vm.meta.pending.as_deref().unwrap_or(""))
            .map(|op| op.start.clone())
            .unwrap_or_else(util::now);
        let failure = self
            .ops
            .values()
            .filter(|op| op.kind == Kind::Vm && &op.key == k)
            .find_map(|op| match &op.outcome {
                Some(crate::state::Outcome::Failed(code, message)) => {
                    Some((code.clone(), message.clone()))
                }
                _ => None,
            });
        let provisioning = match vm.meta.prov {
            Prov::Failed => {
                let (code, message) = failure.unwrap_or_else(|| ("Unknown".into(), String::new()));
                json!({"code": format!("ProvisioningState/failed/{code}"), "level": "Error",
                    "displayStatus": "Provisioning failed", "message": message, "time": time})
            }
            Prov::Succeeded => json!({"code": "ProvisioningState/succeeded", "level": "Info",
                "displayStatus": "Provisioning succeeded", "time": time}),
            Prov::Creating => json!({"code": "ProvisioningState/creating", "level": "Info",
                "displayStatus": "Creating", "time": time}),
            Prov::Updating => json!({"code": "ProvisioningState/updating", "level": "Info",
                "displayStatus": "Updating", "time": time}),
            Prov::Deleting => json!({"code": "ProvisioningState/deleting", "level": "Info",
                "displayStatus": "Deleting", "time": time}),
        };
        let (power, display) = match vm.meta.prov {
            Prov::Creating => ("starting", "VM starting"),
            Prov::Deleting => ("deallocating", "VM deallocating"),
            Prov::Failed => ("stopped", "VM stopped"),
            Prov::Succeeded | Prov::Updating => ("running", "VM running"),
        };
        let mut view = json!({
            "computerName": vm.props.os_profile.as_ref().and_then(|o| o.computer_name.clone()),
            "hyperVGeneration": "V2",
            "statuses": [provisioning, {"code": format!("PowerState/{power}"), "level": "Info", "displayStatus": display}],
        });
        let image = vm
            .props
            .storage_profile
            .as_ref()
            .and_then(|s| s.image_reference.clone())
            .unwrap_or_default();
        if vm.created && vm.meta.prov != Prov::Failed {
            let os_name = match image
                .publisher
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("canonical") => "ubuntu".to_string(),
                Some("debian") => "debian".to_string(),
                _ => image.offer.clone().unwrap_or_default(),
            };
            view["osName"] = json!(os_name);
            view["osVersion"] = json!(image.sku.clone().unwrap_or_default());
            view["vmAgent"] = json!({"vmAgentVersion": "2.13.1.1", "statuses": [{
                "code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready",
                "message": "Guest Agent is running", "time": time}]});
            let disks: Vec<Value> = vm
                .disks()
                .filter_map(|d| self.disks.get(d))
                .map(|d| json!({"name": d.meta.name, "statuses": [{"code": "ProvisioningState/succeeded",
                    "level": "Info", "displayStatus": "Provisioning succeeded", "time": d.time_created}]}))
                .collect();
            view["disks"] = json!(disks);
        }
        model::strip_nulls(&mut view);
        view
    }

    /// Creates the managed disks a new VM brings (its OS disk and its Empty data disks) and
    /// fills in their ids.
    pub(crate) fn materialize_vm_disks(&mut self, k: &Key) {
        let Some(vm) = self.vms.get(k).cloned() else {
            return;
        };
        let storage = vm.props.storage_profile.clone().unwrap_or_default();
        let os = storage.os_disk.clone().unwrap_or_default();
        let image = storage.image_reference.clone().unwrap_or_default();
        let mut created: Vec<(Key, Disk)> = Vec::new();
        if !self.disks.contains_key(&vm.os_disk) {
            let exact = image
                .exact_version
                .as_ref()
                .and_then(|v| v.as_str())
                .unwrap_or("1.0.0")
                .to_string();
            let image_id = format!(
                "/Subscriptions/{}/Providers/Microsoft.Compute/Locations/{}/Publishers/{}/ArtifactTypes/VMImage/Offers/{}/Skus/{}/Versions/{exact}",
                self.sub(),
                vm.meta.location,
                image.publisher.clone().unwrap_or_default(),
                image.offer.clone().unwrap_or_default(),
                image.sku.clone().unwrap_or_default()
            );
            created.push((
                vm.os_disk.clone(),
                Disk {
                    meta: Meta::new(
                        &vm.meta.rg,
                        os.name.as_deref().unwrap_or(&vm.os_disk.1),
                        &vm.meta.location,
                        None,
                        Prov::Succeeded,
                    ),
                    zones: vm.zones.clone(),
                    sku: os
                        .managed_disk
                        .as_ref()
                        .and_then(|m| m.storage_account_type.clone())
                        .unwrap_or_else(|| "Premium_LRS".into()),
                    size_gb: os.disk_size_gb.unwrap_or(IMAGE_DISK_GB),
                    props: json!({"osType": "Linux", "hyperVGeneration": "V2",
                        "creationData": {"createOption": "FromImage", "imageReference": {"id": image_id}}}),
                    time_created: util::now(),
                    unique_id: util::new_uuid(),
                },
            ));
        }
        for d in storage.data_disks.clone().unwrap_or_default() {
            if d.create_option.as_deref() != Some("Empty") {
                continue;
            }
            let Some((_, disk_key)) = vm.data_disks.iter().find(|(lun, _)| Some(*lun) == d.lun)
            else {
                continue;
            };
            if self.disks.contains_key(disk_key) {
                continue;
            }
            created.push((
                disk_key.clone(),
                Disk {
                    meta: Meta::new(
                        &vm.meta.rg,
                        d.name.as_deref().unwrap_or(&disk_key.1),
                        &vm.meta.location,
                        None,
                        Prov::Succeeded,
                    ),
                    zones: vm.zones.clone(),
                    sku: d
                        .managed_disk
                        .as_ref()
                        .and_then(|m| m.storage_account_type.clone())
                        .unwrap_or_else(|| "Standard_LRS".into()),
                    size_gb: d.disk_size_gb.unwrap_or(1),
                    props: json!({"creationData": {"createOption": "Empty"}}),
                    time_created: util::now(),
                    unique_id: util::new_uuid(),
                },
            ));
        }
        for (disk_key, disk) in created {
            self.disks.insert(disk_key, disk);
        }
        let os_id = self.id_of(Kind::Disk, &vm.os_disk);
        let data_ids: Vec<(i64, String)> = vm
            .data_disks
            .iter()
            .map(|(lun, dk)| (*lun, self.id_of(Kind::Disk, dk)))
            .collect();
        if let Some(vm) = self.vms.get_mut(k) {
            if let Some(storage) = vm.props.storage_profile.as_mut() {
                if let Some(os) = storage.os_disk.as_mut() {
                    os.managed_disk.get_or_insert_with(Default::default).id = Some(os_id);
                }
                for d in storage.data_disks.iter_mut().flatten() {
                    if let Some((_, id)) = data_ids.iter().find(|(lun, _)| Some(*lun) == d.lun) {
                        d.managed_disk.get_or_insert_with(Default::default).id = Some(id.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::state;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH me@host";

    fn req(method: &str, body: Value) -> Req {
        Req {
            method: method.into(),
            body: body.to_string().into_bytes().into(),
            ..Req::default()
        }
    }

    fn rg(st: &State) -> ResourceGroup {
        st.rg("infrakit-test").unwrap().clone()
    }

    /// A NIC named `name`, created and completed.
    fn nic(st: &mut State, name: &str) -> String {
        let body = json!({"location": "westeurope", "properties": {"ipConfigurations": [
            {"name": "ipconfig1", "properties": {"subnet": {"id": st.subnet_id(0)}}}]}});
        let g = rg(st);
        let r = st.put_nic(&g, name, &req("PUT", body)).unwrap();
        complete(st, &r);
        st.id(Kind::Nic, "infrakit-test", name)
    }

    fn op_of(reply: &Reply) -> String {
        reply
            .header_value("Azure-AsyncOperation")
            .unwrap()
            .split("/operations/")
            .nth(1)
            .unwrap()
            .split('?')
            .next()
            .unwrap()
            .to_string()
    }

    fn complete(st: &mut State, reply: &Reply) -> String {
        let op = op_of(reply);
        let mut status = String::new();
        for _ in 0..10 {
            status = st.poll(&op).unwrap().status().to_string();
            if status != "InProgress" {
                break;
            }
        }
        status
    }

    fn vm_body(nic_id: &str) -> Value {
        json!({
            "location": "westeurope",
            "tags": {"infrakit.group": "workers"},
            "zones": ["1"],
            "properties": {
                "hardwareProfile": {"vmSize": "Standard_B1s"},
                "storageProfile": {
                    "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
                    "osDisk": {"createOption": "FromImage", "deleteOption": "Delete", "managedDisk": {"storageAccountType": "StandardSSD_LRS"}},
                    "dataDisks": [{"lun": 0, "createOption": "Empty", "diskSizeGB": 4, "deleteOption": "Delete"}]
                },
                "osProfile": {
                    "computerName": "vm1", "adminUsername": "azureuser", "customData": "I2Nsb3VkLWNvbmZpZw==",
                    "linuxConfiguration": {"disablePasswordAuthentication": true, "ssh": {"publicKeys": [
                        {"path": "/home/azureuser/.ssh/authorized_keys", "keyData": KEY}]}}
                },
                "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {"primary": true, "deleteOption": "Delete"}}]}
            }
        })
    }

    #[test]
    fn create_poll_and_delete() {
        let mut st = state(1);
        let nic_id = nic(&mut st, "vm1-nic");
        let g = rg(&st);
        let r = st.put_vm(&g, "vm1", &req("PUT", vm_body(&nic_id))).unwrap();
        assert_eq!(r.status, 201);
        assert!(r.header_value("Location").is_none());
        assert!(r
            .header_value("Azure-AsyncOperation")
            .unwrap()
            .contains("/providers/Microsoft.Compute/locations/westeurope/operations/"));
        let body = r.body.clone().unwrap();
        assert_eq!(body["properties"]["provisioningState"], "Creating");
        assert!(body["properties"]["osProfile"].get("customData").is_none());
        assert_eq!(body["properties"]["vmId"].as_str().unwrap().len(), 36);
        let k = key("infrakit-test", "vm1");
        assert_eq!(
            st.instance_view(&k)["statuses"][1]["code"],
            "PowerState/starting"
        );
        // The NIC does not show the VM until the creation completes.
        let nic_key = key("infrakit-test", "vm1-nic");
        assert!(st.render_nic(&nic_key)["properties"]
            .get("virtualMachine")
            .is_none());
        assert_eq!(complete(&mut st, &r), "Succeeded");
        let body = st.render_vm(&k, true);
        assert_eq!(body["properties"]["provisioningState"], "Succeeded");
        assert_eq!(
            body["properties"]["instanceView"]["statuses"][1]["code"],
            "PowerState/running"
        );
        let os_id = body["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
            .as_str()
            .unwrap();
        assert!(os_id.contains("/disks/vm1_OsDisk_1_"));
        let data_key = key("infrakit-test", "vm1_DataDisk_0");
        let data = st.render_disk(&data_key);
        assert_eq!(data["properties"]["diskState"], "Attached");
        assert_eq!(data["managedBy"], st.id(Kind::Vm, "infrakit-test", "vm1"));
        assert_eq!(data["zones"], json!(["1"]));
        let nic_body = st.render_nic(&nic_key);
        assert_eq!(
            nic_body["properties"]["virtualMachine"]["id"],
            st.id(Kind::Vm, "infrakit-test", "vm1")
        );
        // In use: the NIC and the disks cannot go.
        assert_eq!(st.delete_nic(&g, "vm1-nic").unwrap_err().code, "NicInUse");
        assert_eq!(
            st.delete_disk(&g, "vm1_DataDisk_0").unwrap_err().status,
            409
        );
        // Delete: Deleting until the operation ends, then everything with deleteOption Delete goes.
        let d = st
            .delete_vm(&g, "vm1", &req("DELETE", Value::Null))
            .unwrap();
        assert_eq!(d.status, 202);
        assert!(d
            .header_value("Location")
            .unwrap()
            .contains("/operationResults/"));
        assert_eq!(
            st.render_vm(&k, false)["properties"]["provisioningState"],
            "Deleting"
        );
        assert_eq!(
            st.instance_view(&k)["statuses"][1]["code"],
            "PowerState/deallocating"
        );
        assert_eq!(complete(&mut st, &d), "Succeeded");
        assert!(st.vms.is_empty());
        assert!(st.nics.is_empty());
        assert!(st.disks.is_empty());
        assert_eq!(
            st.delete_vm(&g, "vm1", &req("DELETE", Value::Null))
                .unwrap()
                .status,
            204
        );
    }

    #[test]
    fn failures_leave_a_failed_vm() {
        let mut st = state(0);
        let nic_id = nic(&mut st, "n");
        st.fail_next_vm = Some(("OSProvisioningTimedOut".into(), "It took too long.".into()));
        let g = rg(&st);
        let r = st.put_vm(&g, "vm1", &req("PUT", vm_body(&nic_id))).unwrap();
        let op = op_of(&r);
        let body = st.poll(&op).unwrap().body();
        assert_eq!(body["status"], "Failed");
        assert_eq!(body["error"]["code"], "OSProvisioningTimedOut");
        let k = key("infrakit-test", "vm1");
        assert_eq!(
            st.render_vm(&k, false)["properties"]["provisioningState"],
            "Failed"
        );
        assert_eq!(
            st.instance_view(&k)["statuses"][0]["code"],
            "ProvisioningState/failed/OSProvisioningTimedOut"
        );
        // Only the next creation fails.
        let nic2 = nic(&mut st, "n2");
        let mut body = vm_body(&nic2);
        body["properties"]["storageProfile"]["dataDisks"] = json!([]);
        let r = st.put_vm(&g, "vm2", &req("PUT", body)).unwrap();
        assert_eq!(complete(&mut st, &r), "Succeeded");
    }

    /// A change to a good body, and the status, code and target it is refused with.
    type Case = (
        Box<dyn Fn(&mut Value)>,
        u16,
        &'static str,
        Option<&'static str>,
    );

    #[test]
    fn refusals() {
        let mut st = state(0);
        let nic_id = nic(&mut st, "n");
        let g = rg(&st);
        let cases: Vec<Case> = vec![
            (
                Box::new(|b| b["properties"]["hardwareProfile"]["vmSize"] = json!("Standard_X")),
                400,
                "InvalidParameter",
                Some("vmSize"),
            ),
            (
                Box::new(|b| {
                    b["properties"]["storageProfile"]["imageReference"]["sku"] = json!("nope")
                }),
                404,
                "PlatformImageNotFound",
                Some("imageReference"),
            ),
            (
                Box::new(|b| b["properties"]["osProfile"]["customData"] = json!("not base64!")),
                400,
                "InvalidParameter",
                Some("customData"),
            ),
            (
                Box::new(|b| b["properties"]["osProfile"]["adminUsername"] = json!("root")),
                400,
                "InvalidParameter",
                Some("adminUsername"),
            ),
            (
                Box::new(|b| {
                    b["properties"]["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"][0]
                        ["path"] = json!("/root/.ssh/authorized_keys")
                }),
                400,
                "InvalidParameter",
                Some("linuxConfiguration.ssh.publicKeys.path"),
            ),
            (
                Box::new(|b| {
                    b["properties"]["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"][0]
                        ["keyData"] = json!("ssh-rsa nope")
                }),
                400,
                "InvalidParameter",
                Some("linuxConfiguration.ssh.publicKeys.keyData"),
            ),
            (
                Box::new(|b| b["properties"]["osProfile"]["linuxConfiguration"] = json!({})),
                400,
                "InvalidParameter",
                Some("adminPassword"),
            ),
            (
                Box::new(|b| {
                    b["properties"]["osProfile"]["linuxConfiguration"]["ssh"] =
                        json!({"publicKeys": []})
                }),
                400,
                "InvalidParameter",
                Some("linuxConfiguration"),
            ),
            (
                Box::new(|b| {
                    b["properties"].as_object_mut().unwrap().remove("osProfile");
                }),
                400,
                "InvalidParameter",
                Some("osProfile"),
            ),
            (
                Box::new(|b| {
                    b["properties"]["osProfile"]
                        .as_object_mut()
                        .unwrap()
                        .remove("computerName");
                }),
                400,
                "InvalidParameter",
                Some("computerName"),
            ),
            (
                Box::new(|b| {
                    b["properties"]["hardwareProfile"] = json!({});
                }),
                400,
                "InvalidParameter",
                Some("hardwareProfile.vmSize"),
            ),
            (
                Box::new(|b| {
                    b["properties"]["networkProfile"]["networkInterfaces"] = json!([]);
                }),
                400,
                "InvalidParameter",
                Some("networkProfile.networkInterfaces"),
            ),
            (
                Box::new(|b| {
                    b["properties"]["networkProfile"]["networkInterfaces"][0]["id"] = json!(b
                        ["properties"]["networkProfile"]["networkInterfaces"][0]["id"]
                        .as_str()
                        .unwrap()
                        .replace("networkInterfaces/n", "networkInterfaces/missing"))
                }),
                400,
                "InvalidResourceReference",
                None,
            ),
            (
                Box::new(|b| b["location"] = json!("eastus")),
                400,
                "InvalidResourceReference",
                None,
            ),
            (
                Box::new(|b| b["zones"] = json!(["7"])),
                400,
                "InvalidParameter",
                Some("zones"),
            ),
            (
                Box::new(|b| b["properties"]["storageProfile"]["osDisk"]["diskSizeGB"] = json!(10)),
                400,
                "InvalidParameter",
                Some("osDisk.diskSizeGB"),
            ),
            (
                Box::new(|b| {
                    b["properties"]["storageProfile"]["dataDisks"][0]
                        .as_object_mut()
                        .unwrap()
                        .remove("diskSizeGB")
                        .map(|_| ())
                        .unwrap_or(())
                }),
                400,
                "InvalidParameter",
                Some("dataDisk.diskSizeGB"),
            ),
            (
                Box::new(
                    |b| b["properties"]["storageProfile"]["dataDisks"] = json!([{"lun": 0, "createOption": "Empty", "diskSizeGB": 1}, {"lun": 0, "createOption": "Empty", "diskSizeGB": 1}]),
                ),
                400,
                "InvalidParameter",
                Some("dataDisks"),
            ),
            (
                Box::new(|b| b["properties"]["hardwareProfile"]["vmsize"] = json!("x")),
                400,
                "InvalidRequestContent",
                None,
            ),
            (
                Box::new(|b| {
                    b.as_object_mut().unwrap().remove("location");
                }),
                400,
                "LocationRequired",
                None,
            ),
        ];
        for (i, (change, status, code, target)) in cases.into_iter().enumerate() {
            let mut body = vm_body(&nic_id);
            change(&mut body);
            let e = st.put_vm(&g, "vm1", &req("PUT", body)).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str(), e.target.as_deref()),
                (status, code, target),
                "case {i}: {}",
                e.message
            );
        }
        assert!(st.vms.is_empty());
        assert_eq!(
            st.put_vm(&g, "-vm", &req("PUT", vm_body(&nic_id)))
                .unwrap_err()
                .code,
            "InvalidResourceName"
        );
        let e = st.put_vm(&g, "vm1", &req("PUT", json!({"location": "westeurope", "properties": {"hardwareProfile": {"vmSize": "Standard_B1s", "x": 1}}}))).unwrap_err();
        assert!(e.message.contains("Could not find member 'x' on object of type 'HardwareProfile'. Path 'properties.hardwareProfile.x'"));
    }

    #[test]
    fn nics_and_disks_are_not_shared() {
        let mut st = state(0);
        let nic_id = nic(&mut st, "n");
        let g = rg(&st);
        let r = st.put_vm(&g, "vm1", &req("PUT", vm_body(&nic_id))).unwrap();
        complete(&mut st, &r);
        let e = st
            .put_vm(&g, "vm2", &req("PUT", vm_body(&nic_id)))
            .unwrap_err();
        assert_eq!(e.code, "NicInUse");
        // Attach: an Unattached disk in the same zone.
        let nic2 = nic(&mut st, "n2");
        let disk = json!({"location": "westeurope", "zones": ["2"], "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 8}});
        let r = st.put_disk(&g, "data", &req("PUT", disk)).unwrap();
        complete(&mut st, &r);
        let disk_id = st.id(Kind::Disk, "infrakit-test", "data");
        let mut body = vm_body(&nic2);
        body["properties"]["storageProfile"]["dataDisks"] =
            json!([{"lun": 1, "createOption": "Attach", "managedDisk": {"id": disk_id}}]);
        let e = st.put_vm(&g, "vm2", &req("PUT", body.clone())).unwrap_err();
        assert_eq!(e.code, "BadRequest");
        assert!(e.message.contains("not in the same zone"));
        body["zones"] = json!(["2"]);
        let r = st.put_vm(&g, "vm2", &req("PUT", body.clone())).unwrap();
        complete(&mut st, &r);
        let data = st.render_disk(&key("infrakit-test", "data"));
        assert_eq!(data["properties"]["diskState"], "Attached");
        let vm = st.render_vm(&key("infrakit-test", "vm2"), false);
        assert_eq!(
            vm["properties"]["storageProfile"]["dataDisks"][0]["name"],
            "data"
        );
        assert_eq!(
            vm["properties"]["storageProfile"]["dataDisks"][0]["diskSizeGB"],
            8
        );
        let nic3 = nic(&mut st, "n3");
        let mut body3 = vm_body(&nic3);
        body3["zones"] = json!(["2"]);
        body3["properties"]["storageProfile"]["dataDisks"] =
            json!([{"lun": 1, "createOption": "Attach", "managedDisk": {"id": disk_id}}]);
        let e = st.put_vm(&g, "vm3", &req("PUT", body3)).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (409, "OperationNotAllowed"));
        // Deleting vm2 detaches the disk (deleteOption Detach by default).
        let d = st
            .delete_vm(&g, "vm2", &req("DELETE", Value::Null))
            .unwrap();
        complete(&mut st, &d);
        let data = st.render_disk(&key("infrakit-test", "data"));
        assert_eq!(data["properties"]["diskState"], "Unattached");
        assert!(data.get("managedBy").is_none());
        // The NIC had deleteOption Delete.
        assert!(!st.nics.contains_key(&key("infrakit-test", "n2")));
    }

    #[test]
    fn updates() {
        let mut st = state(0);
        let nic_id = nic(&mut st, "n");
        let g = rg(&st);
        let r = st.put_vm(&g, "vm1", &req("PUT", vm_body(&nic_id))).unwrap();
        complete(&mut st, &r);
        let k = key("infrakit-test", "vm1");
        // A GET body sent back with another size and tags is an update.
        let mut body = st.render_vm(&k, false);
        body["properties"]["hardwareProfile"]["vmSize"] = json!("Standard_B2s");
        body["tags"] = json!({"a": "b"});
        let r = st.put_vm(&g, "VM1", &req("PUT", body.clone())).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body.as_ref().unwrap()["properties"]["provisioningState"],
            "Updating"
        );
        assert_eq!(complete(&mut st, &r), "Succeeded");
        let now = st.render_vm(&k, false);
        assert_eq!(
            now["properties"]["hardwareProfile"]["vmSize"],
            "Standard_B2s"
        );
        assert_eq!(now["tags"], json!({"a": "b"}));
        body["properties"]["storageProfile"]["imageReference"]["sku"] = json!("other");
        let e = st.put_vm(&g, "vm1", &req("PUT", body.clone())).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (409, "PropertyChangeNotAllowed")
        );
        let mut body = st.render_vm(&k, false);
        body["properties"]["osProfile"]["computerName"] = json!("other");
        let e = st.put_vm(&g, "vm1", &req("PUT", body)).unwrap_err();
        assert_eq!(e.target.as_deref(), Some("osProfile.computerName"));
        // PATCH replaces the tags.
        let r = st
            .patch_vm(&g, "vm1", &req("PATCH", json!({"tags": {"x": "y"}})))
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body.as_ref().unwrap()["tags"], json!({"x": "y"}));
        assert_eq!(
            r.body.as_ref().unwrap()["properties"]["provisioningState"],
            "Succeeded"
        );
        assert_eq!(complete(&mut st, &r), "Succeeded");
        let e = st
            .patch_vm(&g, "vm1", &req("PATCH", json!({"tag": {}})))
            .unwrap_err();
        assert!(e
            .message
            .contains("on object of type 'VirtualMachineUpdate'"));
        let e = st
            .patch_vm(&g, "nope", &req("PATCH", json!({})))
            .unwrap_err();
        assert_eq!(e.code, "ResourceNotFound");
        // Nothing but DELETE while deleting.
        st.delete_vm(&g, "vm1", &req("DELETE", Value::Null))
            .unwrap();
        let e = st
            .patch_vm(&g, "vm1", &req("PATCH", json!({"tags": {}})))
            .unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (409, "OperationNotAllowed"));
    }

    #[test]
    fn passwords() {
        assert!(password_ok("Abcdef1!"));
        assert!(password_ok("abcdef1!"));
        assert!(!password_ok("abcdefgh"));
        assert!(!password_ok("Ab1!"));
    }
}
