//! A flavor for ZooKeeper ensembles, run as a pet group whose logical IDs name the members.
//!
//! ```json
//! {
//!   "Allocation": {"LogicalIDs": ["127.0.0.1:2181:2888:3888", "127.0.0.1:2182:2889:3889", "127.0.0.1:2183:2890:3890"]},
//!   "Instance": {"Plugin": "instance-process", "Properties": {"Cmd": "zookeeper"}},
//!   "Flavor": {"Plugin": "flavor-zookeeper", "Properties": {
//!     "DataDir": "/var/lib/infrakit-zookeeper",
//!     "Config": {"tickTime": 2000},
//!     "Run": {"Classpath": ["/usr/share/java/zookeeper.jar"], "JvmFlags": ["-Xmx128m"]}
//!   }}
//! }
//! ```
//!
//! * **Prepare** works out the member's `myid` (its 1-based position in the ensemble: `Members`,
//!   or else the allocation's logical IDs), appends to `Init` a script that writes its `zoo.cfg`
//!   (every `server.N`, its own `clientPort`, the settings) and `myid` under
//!   `<DataDir>/<myid>`, and sets the process instance plugin's `Cmd`/`Args`/`Env` to run
//!   ZooKeeper in the foreground ([`prepare`]). The `zoo.cfg` settings are part of the flavor
//!   properties, so changing one (say `tickTime`) changes the group's configuration hash and
//!   rolls the ensemble one member at a time.
//! * **Healthy** asks the member itself with `srvr` on its client port and judges the answer
//!   with grace periods ([`health`]): Healthy while it serves as leader, follower, observer or
//!   standalone; Unknown while it starts; Unhealthy once it refuses or stays out of a quorum
//!   past its grace.
//! * **Drain** does nothing: a single member leaving is what an ensemble is built to survive.
//! * **Validate** checks the properties and that every logical ID of the group is a member
//!   address; errors name the field (`Properties.Config.tickTime`, `Properties.Members[1]`).

pub mod health;
pub mod member;
pub mod prepare;
pub mod properties;
pub mod srvr;

use async_trait::async_trait;
use infrakit_spi::{Allocation, Description, Error, Flavor, Health, Index, Result, Spec};
use serde_json::Value;

pub use member::{Ensemble, Member};
pub use prepare::MYID_TAG;
pub use properties::{HealthSettings, Launcher, ZooKeeperProperties};

/// The ZooKeeper flavor. Cheap to share behind an `Arc`; it remembers, per instance, when it
/// first saw it and when it last served (for the grace periods).
#[derive(Debug, Default)]
pub struct ZooKeeperFlavor {
    tracker: health::Tracker,
}

impl ZooKeeperFlavor {
    /// A flavor that has seen no instance yet.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Flavor for ZooKeeperFlavor {
    async fn validate(&self, properties: &Value, allocation: &Allocation) -> Result<()> {
        let props = ZooKeeperProperties::parse(properties)?;
        props.ensemble(allocation).map(drop)
    }

    async fn prepare(
        &self,
        properties: &Value,
        spec: Spec,
        allocation: &Allocation,
        _index: &Index,
    ) -> Result<Spec> {
        let props = ZooKeeperProperties::parse(properties)?;
        let ensemble = props.ensemble(allocation)?;
        let logical_id = spec.logical_id.as_deref().ok_or_else(|| {
            Error::plugin("a ZooKeeper member needs a logical ID naming its address")
        })?;
        let myid = ensemble.myid(logical_id).ok_or_else(|| {
            Error::plugin(format!(
                "logical ID {logical_id:?} is not a member of the ensemble {}",
                ensemble.connect_string()
            ))
        })?;
        prepare::prepare(&props, &ensemble, myid, spec)
    }

    async fn healthy(&self, properties: &Value, instance: &Description) -> Result<Health> {
        let props = ZooKeeperProperties::parse(properties)?;
        let logical_id = instance.logical_id().ok_or_else(|| {
            Error::plugin(format!(
                "instance {} has no logical ID naming its member address",
                instance.id
            ))
        })?;
        let member = Member::parse(logical_id).map_err(|e| {
            Error::plugin(format!(
                "instance {}: logical ID is not a member address: {e}",
                instance.id
            ))
        })?;
        let address = member.client_address();
        let probe = srvr::query(&address, props.health.timeout).await;
        let (health, why) = self.tracker.record(instance, &probe, &props.health);
        tracing::debug!(instance = %instance.id, %address, ?probe, %health, why, "zookeeper member health");
        Ok(health)
    }

    async fn drain(&self, _properties: &Value, _instance: &Description) -> Result<()> {
        Ok(())
    }
}
