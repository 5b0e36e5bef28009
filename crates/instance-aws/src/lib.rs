//! The AWS instance plugin: every instance is an EC2 instance.
//!
//! Instance properties are a `RunInstances` input with the EC2 API's field names, either at the
//! top of the properties or, as in InfraKit's original AWS plugin, under `RunInstancesInput`,
//! plus the plugin's own `Tags`, `LogicalIdIs`, `VolumeTag`, `VolumeDevice` and
//! `AttachVolumeInputs` ([`properties`]). They are checked field by field: a bad one is an
//! error that names its path, and nothing is launched.
//!
//! # Provision
//!
//! One `RunInstances` call launches one instance with its tags (the properties' `Tags` and the
//! spec's) applied at launch through `TagSpecifications`, so it is never seen untagged, and the
//! spec's `Init` as its user data. A pet's logical ID is tagged `infrakit.logical_id`; when it
//! is an IP address (or `LogicalIdIs: PrivateIp` says it must be), it also becomes the
//! instance's primary private IP, so a replaced pet keeps its address ([`launch`]).
//!
//! Attachments of type `ebs` are existing EBS volumes, found by volume ID (`vol-...`) or by the
//! tag `infrakit.volume=<attachment ID>` (`VolumeTag` changes the key). Once the instance runs,
//! each is attached (at `/dev/sdf`, `/dev/sdg`, ... from `VolumeDevice`) as soon as it is free;
//! if that fails, the new instance is terminated and `Provision` fails, so a pet never runs
//! without its data. Volumes are never deleted: `Destroy` terminates the instance and EC2
//! detaches them, ready for the replacement.
//!
//! # Describe, label, destroy
//!
//! `DescribeInstances` asks EC2 for `pending` and `running` instances carrying every tag
//! (server-side `tag:<key>` filters), all pages; with `Properties: true` each description
//! carries the state, addresses, type and launch time ([`describe`]). Instances launched moments
//! ago are reported even before EC2 lists them ([`recent`]). `Label` merges tags with
//! `CreateTags` (keys starting with `aws:` are refused). `Destroy` terminates; an instance that
//! does not exist is already destroyed.
//!
//! # Configuration
//!
//! Region, credentials and endpoint come from the standard AWS configuration chain; requests
//! are retried in the SDK's standard mode ([`config`]). EC2 errors keep their code and message
//! ([`errors`]).

pub mod config;
pub mod describe;
pub mod errors;
pub mod launch;
mod plugin;
pub mod properties;
pub mod recent;

pub use plugin::{AwsOptions, AwsPlugin, DEFAULT_NAME, DEFAULT_PAGE_SIZE, DEFAULT_WAIT_TIMEOUT};
pub use properties::{AwsProperties, LogicalIdIs};
