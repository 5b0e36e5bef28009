//! `Microsoft.Compute/disks` (DiskRP).

use serde_json::{json, Value};

use crate::model::{self, DiskBody, Root, TagsBody};
use crate::network::location_change;
use crate::reply::{ArmError, Reply};
use crate::request::Req;
use crate::state::{key, Action, Disk, Key, Kind, Meta, Prov, State};
use crate::util;
use crate::validate;
use crate::ResourceGroup;

/// Disk SKUs (`DiskStorageAccountTypes`).
pub(crate) const DISK_SKUS: &[&str] = &[
    "Standard_LRS",
    "Premium_LRS",
    "StandardSSD_LRS",
    "UltraSSD_LRS",
    "Premium_ZRS",
    "StandardSSD_ZRS",
    "PremiumV2_LRS",
];

/// The largest managed disk, in GiB.
pub(crate) const MAX_DISK_GB: i64 = 32767;

fn tier(sku: &str) -> &'static str {
    if sku.starts_with("Premium") {
        "Premium"
    } else if sku.starts_with("Ultra") {
        "Ultra"
    } else {
        "Standard"
    }
}

/// Refusal of an operation on a disk a VM uses.
pub(crate) fn attached(disk: &str, vm_id: &str) -> ArmError {
    ArmError::conflict(
        "OperationNotAllowed",
        format!("Disk {disk} is attached to VM {vm_id}."),
    )
}

impl State {
    pub(crate) fn put_disk(
        &mut self,
        rg: &ResourceGroup,
        name: &str,
        req: &Req,
    ) -> Result<Reply, ArmError> {
        validate::disk_name(name)?;
        let body: DiskBody = model::parse(&req.body, Root::Disk)?;
        let location = validate::location(body.location.as_deref())?;
        validate::tags(&body.tags)?;
        validate::zones(&body.zones, 1)?;
        let sku = match body.sku.as_ref().and_then(|s| s.name.as_deref()) {
            Some(s) => validate::compute_enum("sku.name", s, DISK_SKUS)?,
            None => "Standard_LRS",
        };
        let mut props = body
            .properties
            .clone()
            .ok_or_else(|| ArmError::missing("properties"))?;
        let mut creation = props
            .creation_data
            .clone()
            .ok_or_else(|| ArmError::missing("creationData"))?;
        let option = creation
            .create_option
            .clone()
            .ok_or_else(|| ArmError::missing("creationData.createOption"))?;
        let option = validate::compute_enum(
            "creationData.createOption",
            &option,
            &[
                "Empty",
                "Attach",
                "FromImage",
                "Import",
                "Copy",
                "Restore",
                "Upload",
                "CopyStart",
                "ImportSecure",
                "UploadPreparedSecure",
                "CopyFromSanSnapshot",
            ],
        )?;
        if option != "Empty" {
            return Err(ArmError::invalid_parameter(
                "creationData.createOption",
                format!("Disks with createOption '{option}' are not supported here; create an Empty disk."),
            ));
        }
        let size = props
            .disk_size_gb
            .ok_or_else(|| ArmError::missing("diskSizeGB"))?;
        if !(1..=MAX_DISK_GB).contains(&size) {
            return Err(ArmError::invalid_parameter(
                "diskSizeGB",
                format!("The disk size {size} GB is not valid; it must be between 1 and {MAX_DISK_GB} GB."),
            ));
        }
        let k = key(&rg.name, name);
        let existing = self.disks.get(&k).cloned();
        if let Some(old) = &existing {
            if old.meta.prov == Prov::Deleting {
                return Err(ArmError::conflict(
                    "OperationNotAllowed",
                    format!(
                        "Operation 'PUT' is not allowed on disk '{}' since it is being deleted.",
                        old.meta.name
                    ),
                ));
            }
            if old.meta.location != location {
                return Err(location_change(
                    name,
                    &rg.name,
                    &old.meta.location,
                    &location,
                ));
            }
            if old.props["creationData"]["createOption"].as_str() != Some(option) {
                return Err(ArmError::conflict(
                    "PropertyChangeNotAllowed",
                    "Changing property 'creationData.createOption' is not allowed.",
                )
                .with_target("creationData.createOption"));
            }
            if old.zones != body.zones {
                return Err(ArmError::conflict(
                    "PropertyChangeNotAllowed",
                    "Changing property 'zones' is not allowed.",
                )
                .with_target("zones"));
            }
            if size < old.size_gb {
                return Err(ArmError::invalid_parameter(
                    "diskSizeGB",
                    format!(
                        "Disk '{}' is {} GB; a disk can only grow, not shrink to {size} GB.",
                        old.meta.name, old.size_gb
                    ),
                ));
            }
            if size != old.size_gb {
                if let Some(vm) = self.vm_using_disk(&k) {
                    return Err(ArmError::conflict(
                        "OperationNotAllowed",
                        format!(
                            "Disk resizing is allowed only when creating a VM or when the VM is deallocated. Disk '{}' is attached to VM {}.",
                            old.meta.name,
                            self.id_of(Kind::Vm, vm)
                        ),
                    ));
                }
            }
        }
        creation.create_option = Some(option.to_string());
        props.creation_data = Some(creation);
        props.disk_size_gb = Some(size);
        let echo = model::to_json(&props);
        let created = existing.is_none();
        let record = match existing {
            Some(mut old) => {
                old.meta.tags = body.tags.clone();
                old.meta.prov = Prov::Updating;
                old.meta.touch();
                old.sku = sku.to_string();
                old.size_gb = size;
                old.props = echo;
                old
            }
            None => Disk {
                meta: Meta::new(&rg.name, name, &location, body.tags.clone(), Prov::Updating),
                zones: body.zones.clone(),
                sku: sku.to_string(),
                size_gb: size,
                props: echo,
                time_created: util::now(),
                unique_id: util::new_uuid(),
            },
        };
        self.disks.insert(k.clone(), record);
        let action = if created {
            Action::Create
        } else {
            Action::Update
        };
        let op = self.start_op(Kind::Disk, &k, action);
        Ok(self.lro(Reply::json(202, self.render_disk(&k)), &op, true))
    }

    pub(crate) fn render_disk(&self, k: &Key) -> Value {
        let Some(d) = self.disks.get(k) else {
            return Value::Null;
        };
        let owner = self.vm_using_disk(k).filter(|v| self.vm_created(v));
        let mut props = d.props.clone();
        props["diskSizeGB"] = json!(d.size_gb);
        props["diskSizeBytes"] = json!(d.size_gb * 1024 * 1024 * 1024);
        props["provisioningState"] = json!(d.meta.prov.as_str());
        props["timeCreated"] = json!(d.time_created);
        props["uniqueId"] = json!(d.unique_id);
        props["diskState"] = json!(if owner.is_some() {
            "Attached"
        } else {
            "Unattached"
        });
        for (member, default) in [
            (
                "encryption",
                json!({"type": "EncryptionAtRestWithPlatformKey"}),
            ),
            ("networkAccessPolicy", json!("AllowAll")),
            ("publicNetworkAccess", json!("Enabled")),
        ] {
            if props.get(member).is_none() {
                props[member] = default;
            }
        }
        let mut body = json!({
            "name": d.meta.name,
            "id": self.id(Kind::Disk, &d.meta.rg, &d.meta.name),
            "type": Kind::Disk.full_type(),
            "location": d.meta.location,
            "sku": {"name": d.sku, "tier": tier(&d.sku)},
            "properties": props,
        });
        if let Some(vm) = owner {
            body["managedBy"] = json!(self.id_of(Kind::Vm, vm));
        }
        if let Some(tags) = &d.meta.tags {
            body["tags"] = json!(tags);
        }
        if let Some(zones) = &d.zones {
            body["zones"] = json!(zones);
        }
        body
    }

    pub(crate) fn delete_disk(
        &mut self,
        rg: &ResourceGroup,
        name: &str,
    ) -> Result<Reply, ArmError> {
        let k = key(&rg.name, name);
        let Some(disk) = self.disks.get(&k) else {
            return Ok(Reply::empty(204));
        };
        if let Some(vm) = self.vm_using_disk(&k) {
            return Err(attached(&disk.meta.name, &self.id_of(Kind::Vm, vm)));
        }
        Ok(self.accept_delete(Kind::Disk, &k))
    }

    /// `PATCH` of a disk's tags.
    pub(crate) fn patch_disk(
        &mut self,
        rg: &ResourceGroup,
        name: &str,
        req: &Req,
    ) -> Result<Reply, ArmError> {
        let k = key(&rg.name, name);
        if !self.disks.contains_key(&k) {
            return Err(self.not_found(Kind::Disk, &rg.name, name));
        }
        let body: TagsBody = model::parse(&req.body, Root::DiskUpdate)?;
        validate::tags(&body.tags)?;
        if let Some(d) = self.disks.get_mut(&k) {
            if body.tags.is_some() {
                d.meta.tags = body.tags;
            }
            d.meta.touch();
        }
        Ok(Reply::json(200, self.render_disk(&k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::state;

    fn put(st: &mut State, name: &str, body: Value) -> Result<Reply, ArmError> {
        let rg = st.rg("infrakit-test").unwrap().clone();
        let req = Req {
            method: "PUT".into(),
            body: body.to_string().into_bytes().into(),
            ..Req::default()
        };
        st.put_disk(&rg, name, &req)
    }

    #[test]
    fn empty_disks() {
        let mut st = state(0);
        let r = put(
            &mut st,
            "data1",
            json!({"location": "westeurope", "zones": ["1"], "tags": {"pool": "a"},
                "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 8}}),
        )
        .unwrap();
        assert_eq!(r.status, 202);
        assert!(r.header_value("Location").is_some());
        assert!(r
            .header_value("Azure-AsyncOperation")
            .unwrap()
            .ends_with("api-version=2025-01-02"));
        let body = r.body.unwrap();
        assert_eq!(body["properties"]["provisioningState"], "Updating");
        assert_eq!(body["sku"]["name"], "Standard_LRS");
        let url = r
            .headers
            .iter()
            .find(|(n, _)| n == "Azure-AsyncOperation")
            .unwrap()
            .1
            .clone();
        let op = url
            .split("/operations/")
            .nth(1)
            .unwrap()
            .split('?')
            .next()
            .unwrap();
        st.poll(op);
        let body = st.render_disk(&key("infrakit-test", "data1"));
        assert_eq!(body["properties"]["provisioningState"], "Succeeded");
        assert_eq!(body["properties"]["diskState"], "Unattached");
        assert!(body.get("managedBy").is_none());
    }

    #[test]
    fn refusals() {
        let mut st = state(0);
        for (body, code, target) in [
            (
                json!({"location": "westeurope"}),
                "InvalidParameter",
                "properties",
            ),
            (
                json!({"location": "westeurope", "properties": {}}),
                "InvalidParameter",
                "creationData",
            ),
            (
                json!({"location": "westeurope", "properties": {"creationData": {"createOption": "Empty"}}}),
                "InvalidParameter",
                "diskSizeGB",
            ),
            (
                json!({"location": "westeurope", "properties": {"creationData": {"createOption": "Copy"}, "diskSizeGB": 1}}),
                "InvalidParameter",
                "creationData.createOption",
            ),
            (
                json!({"location": "westeurope", "sku": {"name": "Gold"}, "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 1}}),
                "InvalidParameter",
                "sku.name",
            ),
        ] {
            let e = put(&mut st, "d", body).unwrap_err();
            assert_eq!((e.code.as_str(), e.target.as_deref()), (code, Some(target)));
        }
        let e = put(
            &mut st,
            "d",
            json!({"location": "westeurope", "properties": {"diskSizeGb": 1}}),
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidRequestContent");
        assert!(e
            .message
            .contains("on object of type 'DiskProperties'. Path 'properties.diskSizeGb'"));
        assert_eq!(
            put(&mut st, "-d", json!({})).unwrap_err().code,
            "InvalidResourceName"
        );
    }
}
