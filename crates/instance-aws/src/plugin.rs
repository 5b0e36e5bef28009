//! The plugin: the Instance SPI on EC2 calls.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::types as ec2;
use aws_sdk_ec2::Client;
use infrakit_spi::instance::tags_match;
use infrakit_spi::{Description, DestroyContext, Error, Instance, Result, Spec, Tags};
use serde_json::Value;

use crate::describe;
use crate::errors::{self, sdk_error, INSTANCE_NOT_FOUND, VOLUME_NOT_FOUND};
use crate::launch;
use crate::properties::{check_tags, is_volume_id, AwsProperties};
use crate::recent::Recent;

/// Default plugin name.
pub const DEFAULT_NAME: &str = "instance-aws";
/// How long `Provision` waits for an instance to run and for its volumes to be free, unless
/// told otherwise.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(300);
/// Instances per `DescribeInstances` page (EC2 allows 5 to 1000).
pub const DEFAULT_PAGE_SIZE: i32 = 1000;

/// How the plugin behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsOptions {
    /// Plugin name (for messages).
    pub name: String,
    /// How long `Provision` waits for the instance to run, then for each volume to be
    /// available, before it gives up (and terminates the instance).
    pub wait_timeout: Duration,
    /// Instances per `DescribeInstances` page.
    pub page_size: i32,
}

impl Default for AwsOptions {
    fn default() -> Self {
        AwsOptions {
            name: DEFAULT_NAME.to_string(),
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

/// The EC2 instance plugin. All methods take `&self` and may run concurrently.
#[derive(Debug)]
pub struct AwsPlugin {
    ec2: Client,
    options: AwsOptions,
    recent: Recent,
}

/// A volume to attach once the instance runs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Volume {
    id: String,
    device: String,
    zone: Option<String>,
    /// Where it was asked for, for messages: `Attachments[0] (infrakit.volume=data-db1)`.
    origin: String,
}

impl AwsPlugin {
    /// A plugin using `sdk` (see [`crate::config::load`]).
    pub fn new(sdk: &SdkConfig, options: AwsOptions) -> Self {
        Self::with_client(crate::config::client(sdk), options)
    }

    /// A plugin using an EC2 client of the caller's.
    pub fn with_client(ec2: Client, options: AwsOptions) -> Self {
        AwsPlugin {
            ec2,
            options,
            recent: Recent::default(),
        }
    }

    /// The EC2 client.
    pub fn client(&self) -> &Client {
        &self.ec2
    }

    /// The plugin's options.
    pub fn options(&self) -> &AwsOptions {
        &self.options
    }

    /// Finds the spec's volumes: `ebs` attachments by volume ID or by tag, then
    /// `AttachVolumeInputs`. Refuses volumes missing, ambiguous, in different zones, or attached
    /// to an instance that is not going away.
    async fn volumes(&self, props: &AwsProperties, spec: &Spec) -> Result<Vec<Volume>> {
        let ids = launch::ebs_attachments(spec)?;
        let devices = launch::device_names(&props.volume_device, ids.len())?;
        let mut wanted: Vec<(String, Vec<ec2::Volume>, String)> = Vec::new();
        for (i, (id, device)) in ids.iter().zip(devices).enumerate() {
            let (origin, found) = if is_volume_id(id) {
                (
                    format!("Attachments[{i}] ({id})"),
                    self.volume_by_id(id).await?,
                )
            } else {
                let filter = ec2::Filter::builder()
                    .name(format!("tag:{}", props.volume_tag))
                    .values(id)
                    .build();
                let found = self
                    .ec2
                    .describe_volumes()
                    .filters(filter)
                    .send()
                    .await
                    .map_err(|e| sdk_error("DescribeVolumes", e))?
                    .volumes
                    .unwrap_or_default();
                (
                    format!("Attachments[{i}] ({}={id})", props.volume_tag),
                    found,
                )
            };
            wanted.push((origin, found, device));
        }
        for (i, a) in props.attach_volumes.iter().enumerate() {
            wanted.push((
                format!("Properties.AttachVolumeInputs[{i}] ({})", a.volume_id),
                self.volume_by_id(&a.volume_id).await?,
                a.device.clone(),
            ));
        }
        let mut out: Vec<Volume> = Vec::new();
        let mut holders: Vec<(String, String)> = Vec::new();
        for (origin, found, device) in wanted {
            let v = match found.as_slice() {
                [v] => v,
                [] => {
                    return Err(Error::plugin(format!(
                        "{origin}: no such EBS volume; create it (tagged as shown) in the \
                         instances' availability zone"
                    )))
                }
                many => {
                    let ids: Vec<&str> = many.iter().filter_map(|v| v.volume_id()).collect();
                    return Err(Error::plugin(format!(
                        "{origin}: {} volumes match ({}); an attachment must find exactly one",
                        many.len(),
                        ids.join(", ")
                    )));
                }
            };
            let id = v.volume_id().unwrap_or_default().to_string();
            if matches!(
                v.state(),
                Some(
                    ec2::VolumeState::Deleting
                        | ec2::VolumeState::Deleted
                        | ec2::VolumeState::Error
                )
            ) {
                return Err(Error::plugin(format!(
                    "{origin}: volume {id} is {}",
                    v.state().map(|s| s.as_str()).unwrap_or("unusable")
                )));
            }
            for a in v.attachments() {
                if let Some(holder) = a.instance_id() {
                    holders.push((holder.to_string(), format!("{origin}: volume {id}")));
                }
            }
            if out.iter().any(|o| o.id == id) {
                return Err(Error::plugin(format!(
                    "{origin}: volume {id} is asked for twice"
                )));
            }
            out.push(Volume {
                id,
                device,
                zone: v.availability_zone().map(str::to_string),
                origin,
            });
        }
        if let Some((a, b)) = out
            .iter()
            .zip(out.iter().skip(1))
            .find(|(a, b)| a.zone != b.zone)
        {
            return Err(Error::plugin(format!(
                "{} is in {}, {} in {}: an instance can only attach volumes of its own zone",
                a.origin,
                a.zone.as_deref().unwrap_or("?"),
                b.origin,
                b.zone.as_deref().unwrap_or("?")
            )));
        }
        self.refuse_held(&holders).await?;
        Ok(out)
    }

    async fn volume_by_id(&self, id: &str) -> Result<Vec<ec2::Volume>> {
        match self.ec2.describe_volumes().volume_ids(id).send().await {
            Ok(out) => Ok(out.volumes.unwrap_or_default()),
            Err(e) if errors::code(&e) == Some(VOLUME_NOT_FOUND) => Ok(Vec::new()),
            Err(e) => Err(sdk_error("DescribeVolumes", e)),
        }
    }

    /// Fails if an instance holding one of the volumes still exists and is not terminating
    /// (its volumes are released when it is gone; a stopped instance keeps them).
    async fn refuse_held(&self, holders: &[(String, String)]) -> Result<()> {
        if holders.is_empty() {
            return Ok(());
        }
        let filter = ec2::Filter::builder()
            .name("instance-id")
            .set_values(Some(holders.iter().map(|(i, _)| i.clone()).collect()))
            .build();
        let reservations: Vec<ec2::Reservation> = self
            .ec2
            .describe_instances()
            .filters(filter)
            .into_paginator()
            .items()
            .send()
            .collect::<std::result::Result<_, _>>()
            .await
            .map_err(|e| sdk_error("DescribeInstances", e))?;
        for i in reservations.iter().flat_map(|r| r.instances()) {
            let state = describe::state_of(i);
            if !matches!(state, "shutting-down" | "terminated") {
                let id = i.instance_id().unwrap_or_default();
                let what = holders
                    .iter()
                    .find(|(h, _)| h == id)
                    .map(|(_, w)| w.as_str())
                    .unwrap_or("a volume");
                return Err(Error::plugin(format!(
                    "{what} is attached to {id}, which is {state}; a volume is attached to one \
                     instance at a time (terminate {id} to free it)"
                )));
            }
        }
        Ok(())
    }

    /// Waits for `id` to run, then for each volume to be available, and attaches it.
    async fn attach(&self, id: &str, volumes: &[Volume]) -> Result<()> {
        let timeout = self.options.wait_timeout;
        self.ec2
            .wait_until_instance_running()
            .instance_ids(id)
            .wait(timeout)
            .await
            .map_err(|e| errors::other(&format!("waiting for {id} to run"), &e))?;
        for v in volumes {
            self.ec2
                .wait_until_volume_available()
                .volume_ids(&v.id)
                .wait(timeout)
                .await
                .map_err(|e| {
                    errors::other(
                        &format!("{}: waiting for volume {} to be free", v.origin, v.id),
                        &e,
                    )
                })?;
            self.ec2
                .attach_volume()
                .volume_id(&v.id)
                .instance_id(id)
                .device(&v.device)
                .send()
                .await
                .map_err(|e| sdk_error(&format!("AttachVolume {} to {id}", v.id), e))?;
            tracing::info!(instance = id, volume = %v.id, device = %v.device, "attached");
        }
        Ok(())
    }

    async fn terminate(&self, id: &str) -> Result<()> {
        match self.ec2.terminate_instances().instance_ids(id).send().await {
            Ok(_) => Ok(()),
            Err(e) if errors::code(&e) == Some(INSTANCE_NOT_FOUND) => Ok(()),
            Err(e) => Err(sdk_error("TerminateInstances", e)),
        }
    }
}

#[async_trait]
impl Instance for AwsPlugin {
    async fn validate(&self, properties: &Value) -> Result<()> {
        AwsProperties::parse(properties).map(|_| ())
    }

    async fn provision(&self, spec: Spec) -> Result<String> {
        let props = AwsProperties::parse(&spec.properties)?;
        launch::instance_tags(&props, &spec)?;
        let volumes = self.volumes(&props, &spec).await?;
        let zone = volumes.first().and_then(|v| v.zone.as_deref());
        let input = launch::run_instances_input(&props, &spec, zone)?;
        let out = send_run_instances(&self.ec2, input)
            .await
            .map_err(|e| sdk_error("RunInstances", e))?;
        let instance = out
            .instances()
            .first()
            .ok_or_else(|| Error::plugin("RunInstances: EC2 returned no instance"))?;
        let id = instance
            .instance_id()
            .ok_or_else(|| Error::plugin("RunInstances: EC2 returned no instance ID"))?
            .to_string();
        tracing::info!(instance = %id, logical_id = ?spec.logical_id, "launched");
        let mut launched = describe::description(instance, false);
        if launched.tags.is_empty() {
            // Older EC2-compatible APIs leave the tags out of the answer.
            launched.tags = launch::instance_tags(&props, &spec)?;
            launched.logical_id = spec.logical_id.clone();
        }
        self.recent.launched(launched, Instant::now());
        if !volumes.is_empty() {
            if let Err(e) = self.attach(&id, &volumes).await {
                // An instance without its volumes must not count as the pet: the group
                // provisions again.
                tracing::warn!(instance = %id, error = %e, "cannot attach volumes; terminating");
                self.recent.forget(&id);
                if let Err(t) = self.terminate(&id).await {
                    return Err(Error::plugin(format!(
                        "{e}; and terminating {id} failed too: {t}"
                    )));
                }
                return Err(Error::plugin(format!("{e} ({id} was terminated)")));
            }
        }
        Ok(id)
    }

    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        check_tags("Labels", labels)?;
        if labels.is_empty() {
            return Ok(());
        }
        let tags: Vec<ec2::Tag> = labels
            .iter()
            .map(|(k, v)| ec2::Tag::builder().key(k).value(v).build())
            .collect();
        match self
            .ec2
            .create_tags()
            .resources(id)
            .set_tags(Some(tags))
            .send()
            .await
        {
            Ok(_) => {
                self.recent.labelled(id, labels);
                Ok(())
            }
            Err(e) if errors::code(&e) == Some(INSTANCE_NOT_FOUND) => {
                Err(Error::instance_not_found(id))
            }
            Err(e) => Err(sdk_error("CreateTags", e)),
        }
    }

    async fn destroy(&self, id: &str, context: &DestroyContext) -> Result<()> {
        self.recent.forget(id);
        self.terminate(id).await?;
        tracing::info!(instance = id, reason = %context.reason, "terminated");
        Ok(())
    }

    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        let reservations: Vec<ec2::Reservation> = self
            .ec2
            .describe_instances()
            .set_filters(Some(describe::filters(tags)))
            .into_paginator()
            .page_size(self.options.page_size)
            .items()
            .send()
            .collect::<std::result::Result<_, _>>()
            .await
            .map_err(|e| sdk_error("DescribeInstances", e))?;
        // EC2 reads `*` and `?` in filter values as wildcards: keep exact matches only.
        let mut out: Vec<Description> = reservations
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| describe::description(i, properties))
            .filter(|d| tags_match(&d.tags, tags))
            .collect();
        self.recent.merge(&mut out, tags, Instant::now());
        Ok(out)
    }
}

/// Sends a `RunInstances` request built by [`launch::run_instances_input`], field by field
/// (the SDK's request builder cannot take a whole input).
async fn send_run_instances(
    ec2: &Client,
    i: aws_sdk_ec2::operation::run_instances::RunInstancesInput,
) -> std::result::Result<
    aws_sdk_ec2::operation::run_instances::RunInstancesOutput,
    aws_sdk_ec2::error::SdkError<aws_sdk_ec2::operation::run_instances::RunInstancesError>,
> {
    ec2.run_instances()
        .set_block_device_mappings(i.block_device_mappings)
        .set_image_id(i.image_id)
        .set_instance_type(i.instance_type)
        .set_ipv6_address_count(i.ipv6_address_count)
        .set_kernel_id(i.kernel_id)
        .set_key_name(i.key_name)
        .set_max_count(i.max_count)
        .set_min_count(i.min_count)
        .set_monitoring(i.monitoring)
        .set_placement(i.placement)
        .set_ramdisk_id(i.ramdisk_id)
        .set_security_group_ids(i.security_group_ids)
        .set_security_groups(i.security_groups)
        .set_subnet_id(i.subnet_id)
        .set_user_data(i.user_data)
        .set_tag_specifications(i.tag_specifications)
        .set_launch_template(i.launch_template)
        .set_instance_market_options(i.instance_market_options)
        .set_credit_specification(i.credit_specification)
        .set_metadata_options(i.metadata_options)
        .set_disable_api_termination(i.disable_api_termination)
        .set_instance_initiated_shutdown_behavior(i.instance_initiated_shutdown_behavior)
        .set_private_ip_address(i.private_ip_address)
        .set_network_interfaces(i.network_interfaces)
        .set_iam_instance_profile(i.iam_instance_profile)
        .set_ebs_optimized(i.ebs_optimized)
        .send()
        .await
}
