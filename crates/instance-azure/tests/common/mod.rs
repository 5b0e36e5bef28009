//! What the plugin's tests share: where Azure is.
//!
//! By default a contract server of our own (`infrakit-arm-contract`), started per test over
//! HTTPS with a certificate the plugin is told to trust. With `INFRAKIT_AZURE_TEST=azure`, and
//! only then, the same tests run against Azure itself, in the resource group and subnet named by
//! `INFRAKIT_AZURE_RESOURCE_GROUP`, `INFRAKIT_AZURE_LOCATION` and `INFRAKIT_AZURE_SUBNET`, with
//! the service principal of `AZURE_SUBSCRIPTION_ID`, `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and
//! `AZURE_CLIENT_SECRET` (see docs/plugins/azure.md). Tests of what only the contract server can
//! stage (throttling, a failing operation) say so and pass there.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::{json, Value};

use infrakit_arm_contract::{ArmOptions, ArmServer};
use infrakit_instance_azure::arm::{Arm, Polling};
use infrakit_instance_azure::config::{self, AzureConfig, CredentialKind};
use infrakit_instance_azure::{AzureOptions, AzurePlugin};

/// Where the tests' VMs go.
pub struct Azure {
    /// The contract server, unless the tests run against Azure.
    pub server: Option<ArmServer>,
    /// The plugin's configuration.
    pub config: AzureConfig,
    /// The resource group.
    pub resource_group: String,
    /// Its location.
    pub location: String,
    /// A subnet's resource ID.
    pub subnet: String,
    /// An image the VMs can use.
    pub image: Value,
    /// A client of ARM as the plugin's, made once (each one fetches its own token).
    arm: Arm,
    /// Holds the contract server's certificate file.
    _ca: Option<tempfile::TempDir>,
}

/// Whether the tests were asked to run against Azure itself.
pub fn against_azure() -> bool {
    std::env::var("INFRAKIT_AZURE_TEST").as_deref() == Ok("azure")
}

fn required(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("INFRAKIT_AZURE_TEST=azure needs {name}"))
}

impl Azure {
    /// The contract server with `options`, or Azure when asked for.
    pub async fn start(options: ArmOptions) -> Azure {
        if against_azure() {
            let mut config = AzureConfig::new(&required("AZURE_SUBSCRIPTION_ID"));
            config.tenant_id = Some(required("AZURE_TENANT_ID"));
            config.client_id = Some(required("AZURE_CLIENT_ID"));
            config.client_secret = Some(required("AZURE_CLIENT_SECRET"));
            config.credential = CredentialKind::ClientSecret;
            return Azure {
                server: None,
                arm: config::connect(&config).expect("the configuration connects"),
                config,
                resource_group: required("INFRAKIT_AZURE_RESOURCE_GROUP"),
                location: required("INFRAKIT_AZURE_LOCATION"),
                subnet: required("INFRAKIT_AZURE_SUBNET"),
                image: json!({"Publisher": "Canonical", "Offer": "ubuntu-24_04-lts", "Sku": "server"}),
                _ca: None,
            };
        }
        let server = ArmServer::start(options).await.expect("contract server");
        let ca = tempfile::tempdir().unwrap();
        let ca_file = ca.path().join("ca.pem");
        std::fs::write(&ca_file, server.ca_pem()).unwrap();
        let o = server.options();
        let mut config = AzureConfig::new(&o.subscription);
        config.endpoint = server.endpoint();
        config.authority_host = server.authority_host();
        config.tenant_id = Some(o.tenant.clone());
        config.client_id = Some(o.client_id.clone());
        config.client_secret = Some(o.client_secret.clone());
        config.credential = CredentialKind::ClientSecret;
        config.ca_file = Some(ca_file);
        config.polling = Polling {
            interval: Duration::from_secs(1),
            min_interval: Duration::from_millis(10),
            max_interval: Duration::from_secs(5),
        };
        let group = &o.resource_groups[0];
        let image = &o.images[0];
        Azure {
            resource_group: group.name.clone(),
            location: group.location.clone(),
            subnet: o.subnets[0].id(&o.subscription),
            image: json!({"Publisher": image.publisher, "Offer": image.offer, "Sku": image.sku}),
            arm: config::connect(&config).expect("the configuration connects"),
            config,
            _ca: Some(ca),
            server: Some(server),
        }
    }

    /// The contract server with its defaults.
    pub async fn default() -> Azure {
        Azure::start(ArmOptions::default()).await
    }

    /// A client of ARM as the plugin's.
    pub fn arm(&self) -> Arm {
        self.arm.clone()
    }

    /// The plugin.
    pub fn plugin(&self) -> AzurePlugin {
        AzurePlugin::new(
            self.arm(),
            AzureOptions {
                wait_timeout: Duration::from_secs(if against_azure() { 900 } else { 60 }),
                resource_groups: vec![self.resource_group.clone()],
                ..AzureOptions::default()
            },
        )
    }

    /// Properties that create a small VM, with `extra` merged in.
    pub fn properties(&self, extra: Value) -> Value {
        let mut p = json!({
            "ResourceGroup": self.resource_group,
            "Location": self.location,
            "VMSize": self.vm_size(),
            "Image": self.image,
            "AdminUsername": "azureuser",
            "SSHPublicKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f infrakit-test"],
            "Subnet": self.subnet,
        });
        if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                p.insert(k.clone(), v.clone());
            }
        }
        p
    }

    /// A VM size the backend has.
    pub fn vm_size(&self) -> String {
        match &self.server {
            Some(s) => s.options().vm_sizes[0].clone(),
            None => "Standard_B1s".into(),
        }
    }

    /// Another VM size the backend has (for rollouts).
    pub fn other_vm_size(&self) -> String {
        match &self.server {
            Some(s) => s.options().vm_sizes[1].clone(),
            None => "Standard_B2s".into(),
        }
    }

    /// The resource ID of `name` of `kind` (e.g. `Microsoft.Network/networkInterfaces`) in the
    /// tests' resource group.
    pub fn resource_id(&self, kind: &str, name: &str) -> String {
        self.arm.resource_id(&self.resource_group, kind, name)
    }
}

/// A unique name for what a test creates, so tests against Azure do not collide.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}
