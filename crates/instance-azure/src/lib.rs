//! The Azure instance plugin: every instance is an Azure virtual machine, created and watched
//! through Azure Resource Manager's REST API.
//!
//! Requests go through `azure_core`'s HTTP pipeline with a credential of `azure_identity`
//! ([`config`]); the resources are typed after the published REST specification ([`model`])
//! and long-running operations are followed to their end ([`arm`]). Properties are checked
//! field by field ([`properties`]).
//!
//! # Provision
//!
//! A VM named `<NamePrefix>-<8 random characters>` (a pet: its logical ID) with, created first,
//! its network interface `<vm>-nic` (and a Standard static public IP `<vm>-ip` with `PublicIP`),
//! all tagged with the properties' and the spec's tags. The NIC, the OS disk, new data disks and
//! the public IP are deleted with the VM (`deleteOption: Delete`). The spec's `Init` is the VM's
//! custom data (cloud-init runs it). Each step waits for its operation; if one fails, what the
//! provision created is deleted and the error carries ARM's code and message.
//!
//! A pet whose logical ID is an IPv4 address gets it as a static private IP, so its replacement
//! has the same address. Attachments of type `disk` are existing managed disks found by the
//! tag `infrakit.disk=<attachment ID>` (`DiskTag` changes the key) in the resource group: each
//! is attached to the new VM and detached (not deleted) with it, ready for the next one.
//!
//! # Describe, label, destroy
//!
//! `DescribeInstances` lists the subscription's VMs (or those of the resource groups the plugin
//! is told to watch), page by page, keeps those carrying every tag asked for, and with
//! `Properties: true` reads each one's instance view for its power state. Instance IDs are
//! `<resource group>/<VM name>`. `Label` merges tags into the VM's; `Destroy` deletes the VM
//! (its NIC, OS disk and public IP with it) and waits until it is gone; a VM that does not exist
//! is already destroyed.

pub mod arm;
pub mod config;
pub mod model;
mod plugin;
pub mod properties;

pub use plugin::{
    AzureOptions, AzurePlugin, InstanceId, COMPUTE_API, DEFAULT_NAME, DEFAULT_WAIT_TIMEOUT,
    DISK_API, DISK_ATTACHMENT_TYPES, NETWORK_API,
};
pub use properties::AzureProperties;
