//! `Microsoft.Network/publicIPAddresses` and `Microsoft.Network/networkInterfaces`.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use crate::model::{self, NicBody, PipBody, Root, TagsBody};
use crate::reply::{ArmError, Reply};
use crate::request::Req;
use crate::state::{key, Action, IpConfig, Key, Kind, Meta, Nic, Prov, PublicIp, State};
use crate::util::{self, ip_text, normalize_location, ResourceId};
use crate::validate;
use crate::ResourceGroup;

/// Network's answer to a reference that does not resolve.
pub(crate) fn invalid_reference(referenced: &str, by: &str) -> ArmError {
    ArmError::bad(
        "InvalidResourceReference",
        format!(
            "Resource {referenced} referenced by resource {by} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
        ),
    )
    .with_detail("NotFound", format!("Resource {referenced} not found."))
}

/// ARM's answer to an id that is not a resource id.
pub(crate) fn invalid_id(id: &str, path: &str) -> ArmError {
    ArmError::bad(
        "LinkedInvalidPropertyId",
        format!(
            "Property id '{id}' at path '{path}' is invalid. Expect fully qualified resource Id that start with '/subscriptions/{{subscriptionId}}' or '/providers/{{resourceProviderNamespace}}/'."
        ),
    )
}

/// ARM's answer to a PUT that moves an existing resource to another location.
pub(crate) fn location_change(name: &str, rg: &str, old: &str, new: &str) -> ArmError {
    ArmError::bad(
        "InvalidResourceLocation",
        format!(
            "The resource '{name}' already exists in location '{old}' in resource group '{rg}'. A resource with the same name cannot be created in location '{new}'. Please select a new resource name."
        ),
    )
}

fn another_operation(id: &str) -> ArmError {
    ArmError::conflict(
        "AnotherOperationInProgress",
        format!("Another operation on this or dependent resource is in progress. To retry later, see https://aka.ms/retry-on-conflict. Resource: {id}."),
    )
}

fn unsupported(path: &str, what: &str) -> ArmError {
    ArmError::bad(
        "InvalidRequestFormat",
        format!("Cannot parse the request. {what} is not supported here (at '{path}')."),
    )
}

impl State {
    /// The key of a resource that `id` names, if it is of `kind` in this subscription and a
    /// configured resource group. `path` names the member in errors.
    pub(crate) fn resolve(
        &self,
        id: &str,
        kind: Kind,
        path: &str,
    ) -> Result<Option<Key>, ArmError> {
        let parsed = ResourceId::parse(id).ok_or_else(|| invalid_id(id, path))?;
        if !parsed.is(kind.namespace(), &[kind.type_name()])
            || !parsed.subscription.eq_ignore_ascii_case(self.sub())
            || self.rg(&parsed.resource_group).is_none()
        {
            return Ok(None);
        }
        Ok(Some(key(&parsed.resource_group, parsed.name(0))))
    }

    fn subnet_index(&self, id: &str, path: &str) -> Result<Option<usize>, ArmError> {
        let parsed = ResourceId::parse(id).ok_or_else(|| invalid_id(id, path))?;
        if !parsed.is("Microsoft.Network", &["virtualNetworks", "subnets"])
            || !parsed.subscription.eq_ignore_ascii_case(self.sub())
        {
            return Ok(None);
        }
        Ok(self.env.options.subnets.iter().position(|s| {
            s.resource_group
                .eq_ignore_ascii_case(&parsed.resource_group)
                && s.vnet.eq_ignore_ascii_case(parsed.name(0))
                && s.name.eq_ignore_ascii_case(parsed.name(1))
        }))
    }

    /// The location of configured subnet `i` (its virtual network's resource group's).
    fn subnet_location(&self, i: usize) -> String {
        let subnet = &self.env.options.subnets[i];
        self.rg(&subnet.resource_group)
            .map(|g| normalize_location(&g.location))
            .unwrap_or_default()
    }

    // --------------------------------------------------------------------------------------
    // Public IP addresses
    // --------------------------------------------------------------------------------------

    pub(crate) fn put_public_ip(
        &mut self,
        rg: &ResourceGroup,
        name: &str,
        req: &Req,
    ) -> Result<Reply, ArmError> {
        validate::network_name(name)?;
        let body: PipBody = model::parse(&req.body, Root::PublicIpAddress)?;
        let location = validate::location(body.location.as_deref())?;
        validate::tags(&body.tags)?;
        validate::zones(&body.zones, 3)?;
        let k = key(&rg.name, name);
        let existing = self.public_ips.get(&k).cloned();
        let id = self.id(Kind::PublicIp, &rg.name, name);
        if let Some(old) = &existing {
            if old.meta.prov == Prov::Deleting {
                return Err(another_operation(&id));
            }
            if old.meta.location != location {
                return Err(location_change(
                    name,
                    &rg.name,
                    &old.meta.location,
                    &location,
                ));
            }
        }
        let sku = body.sku.clone().unwrap_or_default();
        let sku_name = validate::network_enum(
            "sku.name",
            "PublicIPAddressSkuName",
            sku.name.as_deref().unwrap_or("Standard"),
            &["Basic", "Standard", "StandardV2"],
        )?;
        if sku_name == "Basic" {
            return Err(ArmError::bad(
                "BasicSkuPublicIpAddressRetired",
                format!(
                    "Public IP address {id} cannot be created with the Basic SKU: Basic SKU public IP addresses were retired on 30 September 2025. Use the Standard SKU."
                ),
            ));
        }
        let sku_tier = validate::network_enum(
            "sku.tier",
            "PublicIPAddressSkuTier",
            sku.tier.as_deref().unwrap_or("Regional"),
            &["Regional", "Global"],
        )?;
        let mut props = body.properties.clone().unwrap_or_default();
        let method = validate::network_enum(
            "properties.publicIPAllocationMethod",
            "IPAllocationMethod",
            props.allocation_method.as_deref().unwrap_or("Static"),
            &["Static", "Dynamic"],
        )?;
        if method == "Dynamic" {
            return Err(ArmError::bad(
                "StandardSkuPublicIPAddressesMustBeStatic",
                format!("Standard sku publicIp {id} must have AllocationMethod set to Static."),
            ));
        }
        let version = validate::network_enum(
            "properties.publicIPAddressVersion",
            "IPVersion",
            props.version.as_deref().unwrap_or("IPv4"),
            &["IPv4", "IPv6"],
        )?;
        if version == "IPv6" {
            return Err(unsupported(
                "properties.publicIPAddressVersion",
                "An IPv6 public IP address",
            ));
        }
        let idle = props.idle_timeout_in_minutes.unwrap_or(4);
        if !(4..=30).contains(&idle) {
            return Err(ArmError::bad(
                "PublicIPIdleTimeoutIsOutOfRange",
                format!(
                    "The idle timeout of public IP address {id} is {idle} minutes; it must be between 4 and 30 minutes."
                ),
            ));
        }
        let delete_option = match props.delete_option.as_deref() {
            Some(d) => Some(validate::network_enum(
                "properties.deleteOption",
                "DeleteOptions",
                d,
                &["Delete", "Detach"],
            )?),
            None => None,
        };
        let mut fqdn = None;
        if let Some(label) = props
            .dns_settings
            .as_ref()
            .and_then(|d| d.domain_name_label.as_deref())
        {
            let ok = label.len() >= 3
                && label.len() <= 63
                && label.starts_with(|c: char| c.is_ascii_lowercase())
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.ends_with('-');
            if !ok {
                return Err(ArmError::bad(
                    "InvalidDomainNameLabel",
                    format!(
                        "The domain name label {label} is invalid. It must conform to the following regular expression: ^[a-z][a-z0-9-]{{1,61}}[a-z0-9]$."
                    ),
                ));
            }
            let name_fqdn = format!("{label}.{location}.cloudapp.azure.com");
            let taken = self.public_ips.iter().any(|(other, p)| {
                *other != k && p.props["dnsSettings"]["fqdn"].as_str() == Some(name_fqdn.as_str())
            });
            if taken {
                return Err(ArmError::bad(
                    "DnsRecordInUse",
                    format!("DNS record {name_fqdn} is already used by another public IP."),
                ));
            }
            fqdn = Some(name_fqdn);
        }
        props.allocation_method = Some(method.to_string());
        props.version = Some(version.to_string());
        props.idle_timeout_in_minutes = Some(idle);
        props.delete_option = delete_option.map(str::to_string);
        let mut echo = model::to_json(&props);
        if echo.get("ipTags").is_none() {
            echo["ipTags"] = json!([]);
        }
        if let Some(fqdn) = fqdn {
            echo["dnsSettings"]["fqdn"] = json!(fqdn);
        }
        let display = existing
            .as_ref()
            .map(|p| p.meta.name.clone())
            .unwrap_or_else(|| name.to_string());
        let record = match existing {
            Some(mut old) => {
                old.meta.tags = body.tags.clone();
                old.meta.prov = Prov::Updating;
                old.meta.touch();
                old.zones = body.zones.clone();
                old.sku_name = sku_name.to_string();
                old.sku_tier = sku_tier.to_string();
                old.props = echo;
                old.delete_option = delete_option.unwrap_or("Detach").to_string();
                old
            }
            None => PublicIp {
                meta: Meta::new(
                    &rg.name,
                    &display,
                    &location,
                    body.tags.clone(),
                    Prov::Updating,
                ),
                zones: body.zones.clone(),
                sku_name: sku_name.to_string(),
                sku_tier: sku_tier.to_string(),
                props: echo,
                address: None,
                delete_option: delete_option.unwrap_or("Detach").to_string(),
                guid: util::new_uuid(),
            },
        };
        let created = !self.public_ips.contains_key(&k);
        self.public_ips.insert(k.clone(), record);
        let action = if created {
            Action::Create
        } else {
            Action::Update
        };
        let op = self.start_op(Kind::PublicIp, &k, action);
        let status = if created { 201 } else { 200 };
        Ok(self.lro(Reply::json(status, self.render_public_ip(&k)), &op, false))
    }

    pub(crate) fn render_public_ip(&self, k: &Key) -> Value {
        let Some(p) = self.public_ips.get(k) else {
            return Value::Null;
        };
        let mut props = p.props.clone();
        props["provisioningState"] = json!(p.meta.prov.as_str());
        props["resourceGuid"] = json!(p.guid);
        if let Some(a) = p.address {
            props["ipAddress"] = json!(ip_text(a));
        }
        if let Some((nic, config)) = self.nic_using_public_ip(k) {
            props["ipConfiguration"] = json!({"id": self.ip_config_id(nic, config)});
        }
        let mut body = json!({
            "name": p.meta.name,
            "id": self.id(Kind::PublicIp, &p.meta.rg, &p.meta.name),
            "etag": format!("W/\"{}\"", p.meta.etag),
            "location": p.meta.location,
            "type": Kind::PublicIp.full_type(),
            "sku": {"name": p.sku_name, "tier": p.sku_tier},
            "properties": props,
        });
        if let Some(tags) = &p.meta.tags {
            body["tags"] = json!(tags);
        }
        if let Some(zones) = &p.zones {
            body["zones"] = json!(zones);
        }
        body
    }

    pub(crate) fn delete_public_ip(
        &mut self,
        rg: &ResourceGroup,
        name: &str,
    ) -> Result<Reply, ArmError> {
        let k = key(&rg.name, name);
        if !self.public_ips.contains_key(&k) {
            return Ok(Reply::empty(204));
        }
        if let Some((nic, config)) = self.nic_using_public_ip(&k) {
            return Err(ArmError::bad(
                "PublicIPAddressInUse",
                format!(
                    "Public IP address {} can not be deleted since it is still allocated to resource {}. In order to delete the public IP, disassociate/detach the Public IP address from the resource. To learn how to do this, see aka.ms/deletepublicip.",
                    self.id_of(Kind::PublicIp, &k),
                    self.ip_config_id(nic, config)
                ),
            ));
        }
        Ok(self.accept_delete(Kind::PublicIp, &k))
    }

    /// `PATCH` of a network resource's tags (`UpdateTags`): synchronous.
    pub(crate) fn patch_network_tags(
        &mut self,
        kind: Kind,
        rg: &ResourceGroup,
        name: &str,
        req: &Req,
    ) -> Result<Reply, ArmError> {
        let k = key(&rg.name, name);
        if self.meta(kind, &k).is_none() {
            return Err(self.not_found(kind, &rg.name, name));
        }
        let body: TagsBody = model::parse(&req.body, Root::NetworkTags)?;
        validate::tags(&body.tags)?;
        if self.deleting(kind, &k) {
            return Err(another_operation(&self.id_of(kind, &k)));
        }
        if let Some(meta) = self.meta_mut(kind, &k) {
            if body.tags.is_some() {
                meta.tags = body.tags;
            }
            meta.touch();
        }
        Ok(Reply::json(200, self.render(kind, &k)))
    }

    // --------------------------------------------------------------------------------------
    // Network interfaces
    // --------------------------------------------------------------------------------------

    pub(crate) fn put_nic(
        &mut self,
        rg: &ResourceGroup,
        name: &str,
        req: &Req,
    ) -> Result<Reply, ArmError> {
        validate::network_name(name)?;
        let body: NicBody = model::parse(&req.body, Root::NetworkInterface)?;
        let location = validate::location(body.location.as_deref())?;
        validate::tags(&body.tags)?;
        let k = key(&rg.name, name);
        let existing = self.nics.get(&k).cloned();
        let display = existing
            .as_ref()
            .map(|n| n.meta.name.clone())
            .unwrap_or_else(|| name.to_string());
        let nic_id = self.id(Kind::Nic, &rg.name, &display);
        if let Some(old) = &existing {
            if old.meta.prov == Prov::Deleting {
                return Err(another_operation(&nic_id));
            }
            if old.meta.location != location {
                return Err(location_change(
                    name,
                    &rg.name,
                    &old.meta.location,
                    &location,
                ));
            }
        }
        let props = body
            .properties
            .clone()
            .ok_or_else(|| validate::network_missing("properties"))?;
        let configs = props
            .ip_configurations
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| validate::network_missing("properties.ipConfigurations"))?;
        let mut chosen: Vec<IpConfig> = Vec::new();
        for (i, config) in configs.iter().enumerate() {
            let at = format!("properties.ipConfigurations[{i}]");
            let config_name = config
                .name
                .clone()
                .ok_or_else(|| validate::network_missing(&format!("{at}.name")))?;
            validate::network_name(&config_name)?;
            if chosen
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(&config_name))
            {
                return Err(ArmError::bad(
                    "DuplicateResourceName",
                    format!(
                        "Network interface {nic_id} has two IP configurations with the same name {config_name}."
                    ),
                ));
            }
            let config_id = format!("{nic_id}/ipConfigurations/{config_name}");
            let p = config
                .properties
                .clone()
                .ok_or_else(|| validate::network_missing(&format!("{at}.properties")))?;
            let subnet_ref = p
                .subnet
                .as_ref()
                .and_then(|s| s.id.clone())
                .ok_or_else(|| validate::network_missing(&format!("{at}.properties.subnet.id")))?;
            let subnet = self
                .subnet_index(&subnet_ref, &format!("{at}.properties.subnet.id"))?
                .filter(|i| self.subnet_location(*i) == location)
                .ok_or_else(|| invalid_reference(&subnet_ref, &nic_id))?;
            let prefix = self.subnet_prefix(subnet).ok_or_else(|| {
                ArmError::new(
                    500,
                    "InternalServerError",
                    format!("Subnet {subnet_ref} has no valid address prefix."),
                )
            })?;
            let version = validate::network_enum(
                &format!("{at}.properties.privateIPAddressVersion"),
                "IPVersion",
                p.version.as_deref().unwrap_or("IPv4"),
                &["IPv4", "IPv6"],
            )?;
            if version == "IPv6" {
                return Err(unsupported(
                    &format!("{at}.properties.privateIPAddressVersion"),
                    "An IPv6 IP configuration",
                ));
            }
            let method = validate::network_enum(
                &format!("{at}.properties.privateIPAllocationMethod"),
                "IPAllocationMethod",
                p.allocation_method.as_deref().unwrap_or("Dynamic"),
                &["Dynamic", "Static"],
            )?;
            let mut used = self.used_addresses(subnet, Some(&k));
            used.extend(
                chosen
                    .iter()
                    .filter(|c| c.subnet == subnet)
                    .map(|c| c.address),
            );
            let address = if method == "Static" {
                let text = p.address.clone().ok_or_else(|| {
                    ArmError::bad(
                        "PrivateIPAddressRequired",
                        format!(
                            "IP configuration {config_id} has privateIPAllocationMethod Static but no privateIPAddress."
                        ),
                    )
                })?;
                let addr: Ipv4Addr = text.parse().map_err(|_| {
                    ArmError::bad(
                        "InvalidPrivateIPAddress",
                        format!(
                            "The private IP address {text} of IP configuration {config_id} is not a valid IPv4 address."
                        ),
                    )
                })?;
                let addr = u32::from(addr);
                if !prefix.contains(addr) {
                    return Err(ArmError::bad(
                        "PrivateIPAddressNotInSubnet",
                        format!(
                            "IP configuration {config_id} is referencing a private IP address {text} which does not belong to the subnet prefix {} of subnet {}.",
                            self.env.options.subnets[subnet].prefix,
                            self.subnet_id(subnet)
                        ),
                    ));
                }
                if prefix.reserved(addr) {
                    return Err(ArmError::bad(
                        "PrivateIPAddressInReservedRange",
                        format!(
                            "Private static IP address {text} falls within reserved IP range of subnet prefix {}.",
                            self.env.options.subnets[subnet].prefix
                        ),
                    ));
                }
                if used.contains(&addr) {
                    let holder = self
                        .nics
                        .iter()
                        .filter(|(other, _)| **other != k)
                        .find_map(|(nk, n)| {
                            n.ip_configs
                                .iter()
                                .find(|c| c.subnet == subnet && c.address == addr)
                                .map(|c| self.ip_config_id(nk, &c.name))
                        })
                        .unwrap_or_else(|| config_id.clone());
                    return Err(ArmError::bad(
                        "PrivateIPAddressInUse",
                        format!(
                            "IP configuration {config_id} is using the private IP address {text} which is already allocated to resource {holder}."
                        ),
                    ));
                }
                addr
            } else {
                let kept = existing.as_ref().and_then(|n| {
                    n.ip_configs
                        .iter()
                        .find(|c| c.name.eq_ignore_ascii_case(&config_name) && c.subnet == subnet)
                        .map(|c| c.address)
                });
                match kept.filter(|a| !used.contains(a)) {
                    Some(a) => a,
                    None => prefix.next_free(&used).ok_or_else(|| {
                        ArmError::bad(
                            "SubnetIsFull",
                            format!(
                                "Subnet {} with address prefix {} does not have enough capacity for 1 IP addresses.",
                                self.env.options.subnets[subnet].name,
                                self.env.options.subnets[subnet].prefix
                            ),
                        )
                    })?,
                }
            };
            let public_ip = match &p.public_ip_address {
                None => None,
                Some(r) => {
                    let pip_ref = r.id.clone().ok_or_else(|| {
                        validate::network_missing(&format!("{at}.properties.publicIPAddress.id"))
                    })?;
                    let pk = self
                        .resolve(
                            &pip_ref,
                            Kind::PublicIp,
                            &format!("{at}.properties.publicIPAddress.id"),
                        )?
                        .filter(|pk| {
                            self.public_ips.get(pk).is_some_and(|pip| {
                                pip.meta.location == location && pip.meta.prov != Prov::Deleting
                            })
                        })
                        .ok_or_else(|| invalid_reference(&pip_ref, &nic_id))?;
                    let elsewhere = self
                        .nic_using_public_ip(&pk)
                        .filter(|(owner, _)| **owner != k)
                        .map(|(owner, c)| self.ip_config_id(owner, c));
                    let twice = chosen.iter().any(|c| c.public_ip.as_ref() == Some(&pk));
                    if let Some(holder) = elsewhere.or_else(|| twice.then(|| nic_id.clone())) {
                        return Err(ArmError::bad(
                            "PublicIPAddressInUse",
                            format!(
                                "Public IP address {} is already in use by {holder}.",
                                self.id_of(Kind::PublicIp, &pk)
                            ),
                        ));
                    }
                    Some(pk)
                }
            };
            let mut extra = p.clone();
            extra.subnet = None;
            extra.public_ip_address = None;
            extra.address = None;
            extra.allocation_method = None;
            extra.version = None;
            extra.primary = None;
            chosen.push(IpConfig {
                name: config_name,
                subnet,
                method: method.to_string(),
                address,
                public_ip,
                primary: p.primary.unwrap_or(false),
                extra: model::to_json(&extra),
            });
        }
        if chosen.len() == 1 {
            chosen[0].primary = true;
        } else if chosen.iter().filter(|c| c.primary).count() != 1 {
            return Err(ArmError::bad(
                "NetworkInterfaceMustHaveOnePrimaryIpConfiguration",
                format!(
                    "Network interface {nic_id} has {} IP configurations; exactly one of them must be primary.",
                    chosen.len()
                ),
            ));
        }
        if let Some(nsg) = &props.network_security_group {
            let id = nsg
                .id
                .clone()
                .ok_or_else(|| validate::network_missing("properties.networkSecurityGroup.id"))?;
            let parsed = ResourceId::parse(&id)
                .ok_or_else(|| invalid_id(&id, "properties.networkSecurityGroup.id"))?;
            if !parsed.is("Microsoft.Network", &["networkSecurityGroups"]) {
                return Err(invalid_reference(&id, &nic_id));
            }
        }
        let mut rest = props.clone();
        rest.ip_configurations = None;
        let mut echo = model::to_json(&rest);
        for (member, default) in [
            ("enableAcceleratedNetworking", json!(false)),
            ("enableIPForwarding", json!(false)),
            ("disableTcpStateTracking", json!(false)),
            (
                "dnsSettings",
                json!({"dnsServers": [], "appliedDnsServers": []}),
            ),
            ("nicType", json!("Standard")),
            ("hostedWorkloads", json!([])),
            ("tapConfigurations", json!([])),
            ("vnetEncryptionSupported", json!(false)),
        ] {
            if echo.get(member).is_none() {
                echo[member] = default;
            }
        }
        let created = existing.is_none();
        let record = match existing {
            Some(mut old) => {
                old.meta.tags = body.tags.clone();
                old.meta.prov = Prov::Updating;
                old.meta.touch();
                old.ip_configs = chosen;
                old.props = echo;
                old
            }
            None => Nic {
                meta: Meta::new(
                    &rg.name,
                    &display,
                    &location,
                    body.tags.clone(),
                    Prov::Updating,
                ),
                ip_configs: chosen,
                props: echo,
                mac: format!(
                    "00-0D-3A-{}-{}-{}",
                    util::random_hex(2).to_uppercase(),
                    util::random_hex(2).to_uppercase(),
                    util::random_hex(2).to_uppercase()
                ),
                guid: util::new_uuid(),
            },
        };
        self.nics.insert(k.clone(), record);
        let action = if created {
            Action::Create
        } else {
            Action::Update
        };
        let op = self.start_op(Kind::Nic, &k, action);
        let status = if created { 201 } else { 200 };
        Ok(self.lro(Reply::json(status, self.render_nic(&k)), &op, false))
    }

    pub(crate) fn render_nic(&self, k: &Key) -> Value {
        let Some(n) = self.nics.get(k) else {
            return Value::Null;
        };
        let nic_id = self.id(Kind::Nic, &n.meta.rg, &n.meta.name);
        let prov = n.meta.prov.as_str();
        let configs: Vec<Value> = n
            .ip_configs
            .iter()
            .map(|c| {
                let mut props = c.extra.clone();
                if !props.is_object() {
                    props = json!({});
                }
                props["provisioningState"] = json!(prov);
                props["privateIPAddress"] = json!(ip_text(c.address));
                props["privateIPAllocationMethod"] = json!(c.method);
                props["privateIPAddressVersion"] = json!("IPv4");
                props["subnet"] = json!({"id": self.subnet_id(c.subnet)});
                props["primary"] = json!(c.primary);
                if let Some(pk) = &c.public_ip {
                    props["publicIPAddress"] = json!({"id": self.id_of(Kind::PublicIp, pk)});
                }
                json!({
                    "name": c.name,
                    "id": format!("{nic_id}/ipConfigurations/{}", c.name),
                    "etag": format!("W/\"{}\"", n.meta.etag),
                    "type": "Microsoft.Network/networkInterfaces/ipConfigurations",
                    "properties": props,
                })
            })
            .collect();
        let mut props = n.props.clone();
        props["provisioningState"] = json!(prov);
        props["resourceGuid"] = json!(n.guid);
        props["ipConfigurations"] = json!(configs);
        if let Some(vm_key) = self.vm_using_nic(k).filter(|v| self.vm_created(v)) {
            let vm = &self.vms[vm_key];
            let primary = match vm.nics.len() {
                1 => true,
                _ => vm
                    .props
                    .network_profile
                    .as_ref()
                    .and_then(|p| p.network_interfaces.as_ref())
                    .and_then(|refs| {
                        refs.iter().find(|r| {
                            r.id.as_deref().is_some_and(|id| {
                                self.resolve(id, Kind::Nic, "id").ok().flatten().as_ref() == Some(k)
                            })
                        })
                    })
                    .and_then(|r| r.properties.as_ref())
                    .and_then(|p| p.primary)
                    .unwrap_or(false),
            };
            props["virtualMachine"] = json!({"id": self.id_of(Kind::Vm, vm_key)});
            props["macAddress"] = json!(n.mac);
            props["primary"] = json!(primary);
        }
        let mut body = json!({
            "name": n.meta.name,
            "id": nic_id,
            "etag": format!("W/\"{}\"", n.meta.etag),
            "location": n.meta.location,
            "type": Kind::Nic.full_type(),
            "kind": "Regular",
            "properties": props,
        });
        if let Some(tags) = &n.meta.tags {
            body["tags"] = json!(tags);
        }
        body
    }

    pub(crate) fn delete_nic(&mut self, rg: &ResourceGroup, name: &str) -> Result<Reply, ArmError> {
        let k = key(&rg.name, name);
        if !self.nics.contains_key(&k) {
            return Ok(Reply::empty(204));
        }
        if let Some(vm) = self.vm_using_nic(&k) {
            return Err(ArmError::bad(
                "NicInUse",
                format!(
                    "Network Interface {} is used by existing resource {}. In order to delete the network interface, it must be dissociated from the resource. To learn more, see aka.ms/deletenic.",
                    self.id_of(Kind::Nic, &k),
                    self.id_of(Kind::Vm, vm)
                ),
            ));
        }
        Ok(self.accept_delete(Kind::Nic, &k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::state;

    fn put(st: &mut State, kind: Kind, name: &str, body: Value) -> Result<Reply, ArmError> {
        let rg = st.rg("infrakit-test").unwrap().clone();
        let req = Req {
            method: "PUT".into(),
            body: body.to_string().into_bytes().into(),
            ..Req::default()
        };
        match kind {
            Kind::Nic => st.put_nic(&rg, name, &req),
            Kind::PublicIp => st.put_public_ip(&rg, name, &req),
            _ => unreachable!(),
        }
    }

    fn subnet() -> String {
        let options = crate::ArmOptions::default();
        options.subnets[0].id(&options.subscription)
    }

    fn nic_body(config: Value) -> Value {
        let mut props = json!({"subnet": {"id": subnet()}});
        for (k, v) in config.as_object().unwrap() {
            props[k] = v.clone();
        }
        json!({"location": "westeurope", "properties": {"ipConfigurations": [
            {"name": "ipconfig1", "properties": props}]}})
    }

    fn address(reply: &Reply) -> String {
        reply.body.as_ref().unwrap()["properties"]["ipConfigurations"][0]["properties"]
            ["privateIPAddress"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn dynamic_addresses_skip_the_reserved_ones() {
        let mut st = state(0);
        let a = put(&mut st, Kind::Nic, "a", nic_body(json!({}))).unwrap();
        assert_eq!(a.status, 201);
        assert!(a.header_value("Azure-AsyncOperation").is_some());
        assert_eq!(address(&a), "10.0.1.4");
        let b = put(&mut st, Kind::Nic, "b", nic_body(json!({}))).unwrap();
        assert_eq!(address(&b), "10.0.1.5");
        // An update keeps the address.
        let again = put(&mut st, Kind::Nic, "A", nic_body(json!({}))).unwrap();
        assert_eq!(again.status, 200);
        assert_eq!(address(&again), "10.0.1.4");
        assert_eq!(again.body.unwrap()["name"], "a");
    }

    #[test]
    fn static_addresses_are_checked() {
        let mut st = state(0);
        let ok = put(
            &mut st,
            Kind::Nic,
            "s",
            nic_body(
                json!({"privateIPAllocationMethod": "Static", "privateIPAddress": "10.0.1.50"}),
            ),
        )
        .unwrap();
        assert_eq!(address(&ok), "10.0.1.50");
        for (addr, code) in [
            ("10.0.2.50", "PrivateIPAddressNotInSubnet"),
            ("10.0.1.2", "PrivateIPAddressInReservedRange"),
            ("10.0.1.255", "PrivateIPAddressInReservedRange"),
            ("10.0.1.50", "PrivateIPAddressInUse"),
        ] {
            let e = put(
                &mut st,
                Kind::Nic,
                "t",
                nic_body(json!({"privateIPAllocationMethod": "Static", "privateIPAddress": addr})),
            )
            .unwrap_err();
            assert_eq!(e.code, code, "{addr}");
        }
        let e = put(
            &mut st,
            Kind::Nic,
            "t",
            nic_body(json!({"privateIPAllocationMethod": "Static"})),
        )
        .unwrap_err();
        assert_eq!(e.code, "PrivateIPAddressRequired");
        // Dynamic allocation skips the static address.
        let d = put(&mut st, Kind::Nic, "d", nic_body(json!({}))).unwrap();
        assert_eq!(address(&d), "10.0.1.4");
    }

    #[test]
    fn references_must_resolve() {
        let mut st = state(0);
        let mut body = nic_body(json!({}));
        body["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"] =
            json!(subnet().replace("/subnets/default", "/subnets/other"));
        let e = put(&mut st, Kind::Nic, "n", body).unwrap_err();
        assert_eq!(e.code, "InvalidResourceReference");
        assert!(e.message.contains("/subnets/other referenced by resource"));
        let mut body = nic_body(json!({}));
        body["location"] = json!("eastus");
        assert_eq!(
            put(&mut st, Kind::Nic, "n", body).unwrap_err().code,
            "InvalidResourceReference"
        );
        let missing_pip = st.id(Kind::PublicIp, "infrakit-test", "nope");
        let body = nic_body(json!({"publicIPAddress": {"id": missing_pip}}));
        assert_eq!(
            put(&mut st, Kind::Nic, "n", body).unwrap_err().code,
            "InvalidResourceReference"
        );
        let body = nic_body(json!({"publicIPAddress": {"id": "nope"}}));
        assert_eq!(
            put(&mut st, Kind::Nic, "n", body).unwrap_err().code,
            "LinkedInvalidPropertyId"
        );
        let e = put(
            &mut st,
            Kind::Nic,
            "n",
            json!({"location": "westeurope", "properties": {}}),
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidRequestFormat");
        let e = put(&mut st, Kind::Nic, "n", json!({"properties": {}})).unwrap_err();
        assert_eq!(e.code, "LocationRequired");
    }

    #[test]
    fn public_ips() {
        let mut st = state(0);
        let r = put(
            &mut st,
            Kind::PublicIp,
            "ip",
            json!({"location": "westeurope", "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Static", "deleteOption": "Delete",
                    "dnsSettings": {"domainNameLabel": "infrakit-1"}}}),
        )
        .unwrap();
        assert_eq!(r.status, 201);
        let body = r.body.clone().unwrap();
        assert_eq!(body["properties"]["provisioningState"], "Updating");
        assert!(body["properties"].get("ipAddress").is_none());
        assert_eq!(
            body["properties"]["dnsSettings"]["fqdn"],
            "infrakit-1.westeurope.cloudapp.azure.com"
        );
        let url = r.header_value("Azure-AsyncOperation").unwrap();
        let op = url
            .split("/operations/")
            .nth(1)
            .unwrap()
            .split('?')
            .next()
            .unwrap();
        st.poll(op);
        let k = key("infrakit-test", "ip");
        let body = st.render_public_ip(&k);
        assert_eq!(body["properties"]["provisioningState"], "Succeeded");
        assert_eq!(body["properties"]["ipAddress"], "20.0.0.4");
        for (body, code) in [
            (
                json!({"location": "westeurope", "sku": {"name": "Basic"}}),
                "BasicSkuPublicIpAddressRetired",
            ),
            (
                json!({"location": "westeurope", "properties": {"publicIPAllocationMethod": "Dynamic"}}),
                "StandardSkuPublicIPAddressesMustBeStatic",
            ),
            (
                json!({"location": "westeurope", "sku": {"name": "Gold"}}),
                "InvalidRequestFormat",
            ),
            (
                json!({"location": "westeurope", "properties": {"idleTimeoutInMinutes": 2}}),
                "PublicIPIdleTimeoutIsOutOfRange",
            ),
            (
                json!({"location": "westeurope", "properties": {"dnsSettings": {"domainNameLabel": "infrakit-1"}}}),
                "DnsRecordInUse",
            ),
            (json!({"location": "eastus"}), "InvalidResourceLocation"),
        ] {
            let name = if code == "InvalidResourceLocation" {
                "ip"
            } else {
                "other"
            };
            assert_eq!(
                put(&mut st, Kind::PublicIp, name, body).unwrap_err().code,
                code
            );
        }
    }

    #[test]
    fn in_use_resources_cannot_be_deleted() {
        let mut st = state(0);
        put(
            &mut st,
            Kind::PublicIp,
            "ip",
            json!({"location": "westeurope"}),
        )
        .unwrap();
        let pip = st.id(Kind::PublicIp, "infrakit-test", "ip");
        put(
            &mut st,
            Kind::Nic,
            "n",
            nic_body(json!({"publicIPAddress": {"id": pip}})),
        )
        .unwrap();
        let rg = st.rg("infrakit-test").unwrap().clone();
        let e = st.delete_public_ip(&rg, "ip").unwrap_err();
        assert_eq!(e.code, "PublicIPAddressInUse");
        let body = st.render_public_ip(&key("infrakit-test", "ip"));
        assert!(body["properties"]["ipConfiguration"]["id"]
            .as_str()
            .unwrap()
            .ends_with("/networkInterfaces/n/ipConfigurations/ipconfig1"));
        // A second NIC cannot take the same public IP.
        let e = put(
            &mut st,
            Kind::Nic,
            "m",
            nic_body(json!({"publicIPAddress": {"id": pip}})),
        )
        .unwrap_err();
        assert_eq!(e.code, "PublicIPAddressInUse");
        assert_eq!(st.delete_nic(&rg, "n").unwrap().status, 202);
        assert_eq!(st.delete_nic(&rg, "missing").unwrap().status, 204);
    }
}
