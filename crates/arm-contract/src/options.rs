//! What a server serves: its subscription, tenant, client, resource groups, subnets, images and
//! VM sizes, how it pages and how long its operations take; and what it logs of each request.

/// The Microsoft.Compute api-version served for virtual machines and compute operations.
pub const COMPUTE_API: &str = "2025-04-01";
/// The Microsoft.Network api-version served.
pub const NETWORK_API: &str = "2025-05-01";
/// The Microsoft.Compute api-version served for managed disks (DiskRP).
pub const DISK_API: &str = "2025-01-02";

/// What the server holds and how it behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArmOptions {
    /// The subscription id.
    pub subscription: String,
    /// The tenant (directory) id of the token endpoint.
    pub tenant: String,
    /// The client (application) id the token endpoint accepts.
    pub client_id: String,
    /// The client secret the token endpoint accepts.
    pub client_secret: String,
    /// The resource groups that exist.
    pub resource_groups: Vec<ResourceGroup>,
    /// The subnets that exist (NICs are created in them).
    pub subnets: Vec<Subnet>,
    /// The platform images VMs can be created from.
    pub images: Vec<Image>,
    /// The VM sizes available.
    pub vm_sizes: Vec<String>,
    /// VMs (and disks, NICs, public IPs) per list page.
    pub page_size: usize,
    /// Status GETs answered `InProgress` before an operation's terminal status.
    pub operation_polls: u32,
    /// `Retry-After` (seconds) on long-running-operation answers (201/202 and `InProgress`).
    pub retry_after_secs: u32,
}

impl Default for ArmOptions {
    fn default() -> ArmOptions {
        ArmOptions {
            subscription: "00000000-0000-0000-0000-000000000001".into(),
            tenant: "00000000-0000-0000-0000-0000000000aa".into(),
            client_id: "infrakit-test-client".into(),
            client_secret: "infrakit-test-secret".into(),
            resource_groups: vec![ResourceGroup {
                name: "infrakit-test".into(),
                location: "westeurope".into(),
            }],
            subnets: vec![Subnet {
                resource_group: "infrakit-test".into(),
                vnet: "vnet".into(),
                name: "default".into(),
                prefix: "10.0.1.0/24".into(),
            }],
            images: vec![
                Image {
                    publisher: "Canonical".into(),
                    offer: "ubuntu-24_04-lts".into(),
                    sku: "server".into(),
                },
                Image {
                    publisher: "Debian".into(),
                    offer: "debian-12".into(),
                    sku: "12".into(),
                },
            ],
            vm_sizes: vec![
                "Standard_B1s".into(),
                "Standard_B2s".into(),
                "Standard_D2s_v5".into(),
            ],
            page_size: 2,
            operation_polls: 1,
            retry_after_secs: 0,
        }
    }
}

/// A resource group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceGroup {
    /// Its name.
    pub name: String,
    /// Its location, e.g. `westeurope`.
    pub location: String,
}

/// A subnet of a virtual network (the virtual network is in the resource group's location).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    /// The resource group of the virtual network.
    pub resource_group: String,
    /// The virtual network's name.
    pub vnet: String,
    /// The subnet's name.
    pub name: String,
    /// The address prefix, e.g. `10.0.1.0/24`.
    pub prefix: String,
}

impl Subnet {
    /// The subnet's full ARM id in `subscription`.
    pub fn id(&self, subscription: &str) -> String {
        format!(
            "/subscriptions/{subscription}/resourceGroups/{}/providers/Microsoft.Network/virtualNetworks/{}/subnets/{}",
            self.resource_group, self.vnet, self.name
        )
    }
}

/// A platform (marketplace) image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The publisher, e.g. `Canonical`.
    pub publisher: String,
    /// The offer, e.g. `ubuntu-24_04-lts`.
    pub offer: String,
    /// The SKU, e.g. `server`.
    pub sku: String,
}

/// One request the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    /// The method.
    pub method: String,
    /// The path, as sent.
    pub path: String,
    /// The query string, as sent (empty when there is none).
    pub query: String,
    /// The status answered.
    pub status: u16,
}
