//! The etcd backend of the manager: several managers share an etcd cluster, exactly one leads.
//!
//! - [`EtcdLeadership`] implements [`infrakit_manager::Leadership`] with etcd's election API on
//!   a lease that is kept alive from a background task. A [`Term`](infrakit_manager::Term)'s fence
//!   holds only while the lease is *known* valid: until the time the last acknowledged keepalive
//!   was sent, plus the TTL, minus a safety margin, on the monotonic clock. A manager that was
//!   paused (SIGSTOP), partitioned away, or cut off from a quorum therefore stops acting before
//!   etcd can hand leadership to another manager.
//! - [`EtcdStore`] implements [`infrakit_store::Store`] with one JSON record per group under
//!   `<cluster>/groups/<id>`. Its writes are transactions conditional on this manager's election
//!   key still existing unchanged, so a former leader's late writes fail once it has lost its
//!   lease, whatever it believes.
//!
//! Key layout, for a cluster prefix `infrakit`:
//!
//! | key | what |
//! | --- | --- |
//! | `infrakit/leader/<lease>` | the election's candidates; the oldest leads, its value is its location |
//! | `infrakit/groups/<id>` | a group's committed spec and rollout progress (JSON) |

mod call;
mod leadership;
mod session;
mod store;

pub use leadership::{EtcdLeadership, DEFAULT_TTL};
pub use store::EtcdStore;

/// Renders endpoints for error messages.
pub(crate) fn endpoints_list(endpoints: &[String]) -> String {
    endpoints.join(",")
}
