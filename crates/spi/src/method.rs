//! The methods of the plugin protocol, by their JSON-RPC wire names (`Instance.Provision`).
//!
//! [`Method`] is the one list of them: the server dispatches on it, the client sends it, the
//! audit log and the metrics name calls by it. Each method is declared once, in the table at
//! the bottom of this module, with its wire name, its [`Interface`] and whether it changes
//! something (such calls are audited). A new method, such as the keyed objects of InfraKit's
//! last version (`Controller.*`, `Updatable.*`, `Metadata.*`), is a new row there, plus an
//! [`Interface`] variant for a new service.

use std::fmt;
use std::str::FromStr;

/// A service of the protocol: the part of a method's name before the dot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interface {
    /// The first generation's handshake (`Plugin.Implements`).
    Plugin,
    /// The handshake of later generations (`Handshake.Hello`).
    Handshake,
    /// Instance plugins.
    Instance,
    /// Flavor plugins.
    Flavor,
    /// The health extension of flavor plugins (ours; see [`crate::flavor::HEALTH_EXTENSION`]).
    FlavorHealth,
    /// The batch extension of flavor plugins (ours; see [`crate::flavor::BATCH_EXTENSION`]).
    FlavorBatch,
    /// The batch extension of instance plugins (ours; see [`crate::instance::BATCH_EXTENSION`]).
    InstanceBatch,
    /// Group plugins.
    Group,
    /// Managers: leadership, and the stack of specs of InfraKit's last version (whose
    /// handshake calls this interface `Stack`).
    Manager,
    /// Controllers of InfraKit's last version: a group as an object with a spec and a state.
    Controller,
    /// Updatable metadata of InfraKit's last version (a manager's `status` and `vars`).
    Updatable,
    /// Event publishers (their subscriptions are not JSON-RPC calls).
    Event,
}

impl Interface {
    /// Every interface.
    pub const ALL: &'static [Interface] = &[
        Interface::Plugin,
        Interface::Handshake,
        Interface::Instance,
        Interface::Flavor,
        Interface::FlavorHealth,
        Interface::FlavorBatch,
        Interface::InstanceBatch,
        Interface::Group,
        Interface::Manager,
        Interface::Controller,
        Interface::Updatable,
        Interface::Event,
    ];

    /// The service name, the prefix of its methods' wire names (`Instance`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Interface::Plugin => "Plugin",
            Interface::Handshake => "Handshake",
            Interface::Instance => "Instance",
            Interface::Flavor => "Flavor",
            Interface::FlavorHealth => "FlavorHealth",
            Interface::FlavorBatch => "FlavorBatch",
            Interface::InstanceBatch => "InstanceBatch",
            Interface::Group => "Group",
            Interface::Manager => "Manager",
            Interface::Controller => "Controller",
            Interface::Updatable => "Updatable",
            Interface::Event => "Event",
        }
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Interface {
    type Err = Unknown;

    /// The interface of a service name; exact, case included.
    fn from_str(s: &str) -> Result<Self, Unknown> {
        Interface::ALL
            .iter()
            .copied()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| Unknown(s.to_string()))
    }
}

/// A name that is not one of the protocol's (the name, as given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown method or interface \"{0}\"")]
pub struct Unknown(pub String);

/// Whether a method changes infrastructure or a group (`Mutates`) or only reads (`Reads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Reads,
    Mutates,
}

/// Declares [`Method`] from its table: one row per method.
macro_rules! methods {
    ($($(#[$meta:meta])* $variant:ident = $wire:literal, $interface:ident, $effect:ident;)*) => {
        /// A method of the protocol.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Method {
            $($(#[$meta])* $variant,)*
        }

        impl Method {
            /// Every method, in the order of the table.
            pub const ALL: &'static [Method] = &[$(Method::$variant,)*];

            /// The wire name (`Instance.Provision`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Method::$variant => $wire,)*
                }
            }

            /// The interface the method belongs to.
            pub const fn interface(self) -> Interface {
                match self {
                    $(Method::$variant => Interface::$interface,)*
                }
            }

            const fn effect(self) -> Effect {
                match self {
                    $(Method::$variant => Effect::$effect,)*
                }
            }
        }

        impl FromStr for Method {
            type Err = Unknown;

            /// The method of a wire name; exact, case included.
            fn from_str(s: &str) -> Result<Self, Unknown> {
                match s {
                    $($wire => Ok(Method::$variant),)*
                    _ => Err(Unknown(s.to_string())),
                }
            }
        }
    };
}

impl Method {
    /// Whether the method changes infrastructure or a group: each such call is written to the
    /// audit log.
    pub const fn mutates(self) -> bool {
        matches!(self.effect(), Effect::Mutates)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for Method {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

methods! {
    /// The interfaces a plugin implements (first generation).
    PluginImplements = "Plugin.Implements", Plugin, Reads;
    /// The subtypes served under each interface (first generation).
    PluginTypes = "Plugin.Types", Plugin, Reads;
    /// The objects served under each interface (first generation).
    PluginHello = "Plugin.Hello", Plugin, Reads;
    /// The interfaces a plugin implements.
    HandshakeImplements = "Handshake.Implements", Handshake, Reads;
    /// The subtypes served under each interface.
    HandshakeTypes = "Handshake.Types", Handshake, Reads;
    /// The objects served under each interface.
    HandshakeHello = "Handshake.Hello", Handshake, Reads;

    /// Checks an instance plugin's properties.
    InstanceValidate = "Instance.Validate", Instance, Reads;
    /// Creates an instance.
    InstanceProvision = "Instance.Provision", Instance, Mutates;
    /// Sets an instance's tags.
    InstanceLabel = "Instance.Label", Instance, Mutates;
    /// Destroys an instance.
    InstanceDestroy = "Instance.Destroy", Instance, Mutates;
    /// Lists the instances with some tags.
    InstanceDescribeInstances = "Instance.DescribeInstances", Instance, Reads;
    /// Creates several instances in one call (extension).
    InstanceBatchProvision = "InstanceBatch.Provision", InstanceBatch, Mutates;

    /// Checks a flavor plugin's properties and allocation.
    FlavorValidate = "Flavor.Validate", Flavor, Reads;
    /// Adds a flavor to an instance spec.
    FlavorPrepare = "Flavor.Prepare", Flavor, Reads;
    /// Whether an instance is healthy.
    FlavorHealthy = "Flavor.Healthy", Flavor, Reads;
    /// Takes an instance out of service before it is destroyed.
    FlavorDrain = "Flavor.Drain", Flavor, Mutates;
    /// How often a flavor's verdict can change, for some properties (extension).
    FlavorHealthCadence = "FlavorHealth.Cadence", FlavorHealth, Reads;
    /// The health of many instances in one call (extension).
    FlavorHealthCheck = "FlavorHealth.Check", FlavorHealth, Reads;
    /// Keeps judging some instances and publishes changes of verdict as events (extension).
    FlavorHealthWatch = "FlavorHealth.Watch", FlavorHealth, Reads;
    /// Adds a flavor to several instance specs in one call (extension).
    FlavorBatchPrepare = "FlavorBatch.Prepare", FlavorBatch, Reads;

    /// Commits a group's spec (or, with `Pretend`, says what committing would do).
    GroupCommitGroup = "Group.CommitGroup", Group, Mutates;
    /// Stops watching a group, leaving its instances.
    GroupFreeGroup = "Group.FreeGroup", Group, Mutates;
    /// A group's instances and state.
    GroupDescribeGroup = "Group.DescribeGroup", Group, Reads;
    /// Destroys a group and its instances.
    GroupDestroyGroup = "Group.DestroyGroup", Group, Mutates;
    /// The specs of every group.
    GroupInspectGroups = "Group.InspectGroups", Group, Reads;
    /// Destroys some of a group's instances.
    GroupDestroyInstances = "Group.DestroyInstances", Group, Mutates;
    /// A group's target size.
    GroupSize = "Group.Size", Group, Reads;
    /// Sets a group's target size.
    GroupSetSize = "Group.SetSize", Group, Mutates;
    /// What committing a spec would do, step by step (infrakit extension).
    GroupPlanGroup = "Group.PlanGroup", Group, Reads;
    /// Pauses a group's rollout (infrakit extension).
    GroupPauseRollout = "Group.PauseRollout", Group, Mutates;
    /// Resumes a group's rollout (infrakit extension).
    GroupResumeRollout = "Group.ResumeRollout", Group, Mutates;
    /// Goes back to a group's previous configuration (infrakit extension).
    GroupUndoRollout = "Group.UndoRollout", Group, Mutates;

    /// Whether the manager leads.
    ManagerIsLeader = "Manager.IsLeader", Manager, Reads;
    /// Where the leader can be reached.
    ManagerLeaderLocation = "Manager.LeaderLocation", Manager, Reads;
    /// Everything `manager status` shows (infrakit extension).
    ManagerStatus = "Manager.Status", Manager, Reads;
    /// Commits a list of specs (InfraKit's last version, `Stack`).
    ManagerEnforce = "Manager.Enforce", Manager, Mutates;
    /// The specs committed (InfraKit's last version, `Stack`).
    ManagerSpecs = "Manager.Specs", Manager, Reads;
    /// The objects committed, with their state (InfraKit's last version, `Stack`).
    ManagerInspect = "Manager.Inspect", Manager, Reads;
    /// Destroys what a list of specs names (InfraKit's last version, `Stack`).
    ManagerTerminate = "Manager.Terminate", Manager, Mutates;

    /// What committing a spec to a controller would do.
    ControllerPlan = "Controller.Plan", Controller, Reads;
    /// Commits (or destroys) the object a spec describes.
    ControllerCommit = "Controller.Commit", Controller, Mutates;
    /// The objects a controller manages, with their state.
    ControllerDescribe = "Controller.Describe", Controller, Reads;
    /// Stops managing objects, leaving what they made.
    ControllerFree = "Controller.Free", Controller, Mutates;

    /// The child keys at a path of a metadata tree.
    UpdatableKeys = "Updatable.Keys", Updatable, Reads;
    /// The value at a path of a metadata tree.
    UpdatableGet = "Updatable.Get", Updatable, Reads;
    /// What a set of changes would make of the tree, and the hash that commits it.
    UpdatableChanges = "Updatable.Changes", Updatable, Reads;
    /// Replaces the tree with a proposal, if nothing changed since it was made.
    UpdatableCommit = "Updatable.Commit", Updatable, Mutates;

    /// The topics a publisher has.
    EventList = "Event.List", Event, Reads;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_round_trips_through_its_name() {
        for &m in Method::ALL {
            assert_eq!(m.as_str().parse::<Method>(), Ok(m));
            assert_eq!(m.to_string(), m.as_str());
        }
        let mut names: Vec<_> = Method::ALL.iter().map(|m| m.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            Method::ALL.len(),
            "a wire name is declared twice"
        );
    }

    #[test]
    fn a_method_is_named_after_its_interface() {
        for &m in Method::ALL {
            let (service, name) = m.as_str().split_once('.').unwrap();
            assert_eq!(service.parse::<Interface>(), Ok(m.interface()), "{m}");
            assert!(!name.is_empty() && !name.contains('.'), "{m}");
        }
        for &i in Interface::ALL {
            assert_eq!(i.as_str().parse::<Interface>(), Ok(i));
        }
    }

    #[test]
    fn the_mutating_methods_are_the_audited_ones() {
        let mutating: Vec<_> = Method::ALL
            .iter()
            .copied()
            .filter(|m| m.mutates())
            .collect();
        assert_eq!(
            mutating,
            [
                Method::InstanceProvision,
                Method::InstanceLabel,
                Method::InstanceDestroy,
                Method::InstanceBatchProvision,
                Method::FlavorDrain,
                Method::GroupCommitGroup,
                Method::GroupFreeGroup,
                Method::GroupDestroyGroup,
                Method::GroupDestroyInstances,
                Method::GroupSetSize,
                Method::GroupPauseRollout,
                Method::GroupResumeRollout,
                Method::GroupUndoRollout,
                Method::ManagerEnforce,
                Method::ManagerTerminate,
                Method::ControllerCommit,
                Method::ControllerFree,
                Method::UpdatableCommit,
            ]
        );
    }

    #[test]
    fn unknown_names_are_rejected() {
        let provision = Method::InstanceProvision.as_str();
        for name in [
            String::new(),
            ".".into(),
            "Instance".into(),
            "Instance.".into(),
            "Instance.Bogus".into(),
            provision.to_lowercase(),
            format!("{provision} "),
            format!(" {provision}"),
            format!("{provision}.x"),
            "L4.Publish".into(),
        ] {
            assert_eq!(name.parse::<Method>(), Err(Unknown(name.clone())));
        }
        for name in ["", "instance", "Instance.", "L4"] {
            assert!(name.parse::<Interface>().is_err(), "{name}");
        }
    }
}
