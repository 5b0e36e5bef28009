//! The role of a group's instances in the swarm, which is also the plugin type.

/// What the instances of a group are in the swarm: the plugin type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Managers (`flavor-swarm/manager`): pets whose logical IDs are their advertise addresses.
    Manager,
    /// Workers (`flavor-swarm/worker`).
    Worker,
}

impl Role {
    /// `manager` or `worker`: the plugin type and the swarm's name for the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
