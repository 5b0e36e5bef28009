//! Chaos testing for infrakit: inject faults while groups run, and check invariants throughout
//! and afterwards. The fault tests live in `tests/`; this library holds what they share. See
//! `docs/reliability.md` for what is tested, the results, and the guarantees.
//!
//! # The invariants
//! 1. Never more instances than desired + MaxSurge: counted after every provision by the
//!    [`tap::Tap`] and continuously by the [`sampler::Sampler`] from the plugin's own listing
//!    (and, for process instances, from the processes that really run).
//! 2. No healthy instance destroyed outside a rollout or a scale-in: the tap records every
//!    `Destroy` with its reason and the instance's health at that moment, judged by the real
//!    flavor ([`rules`]).
//! 3. Every group converges once the faults stop, within a bound ([`check::converged`]).
//! 4. No spec or rollout state lost: `InspectGroups` and the store hold what was committed
//!    ([`check::specs_kept`], [`check::record_kept`]).
//!
//! # Layout
//! - [`rules`]: the invariants as pure functions;
//! - [`ledger`]: what a test saw (limit, policy, destroys, counts, violations);
//! - [`tap`]: a recording Instance plugin in front of the real one;
//! - [`proxy`]: the tap served on a socket, for controllers in other processes;
//! - [`faults`]: Instance and Flavor plugins with switchable faults (late, failing, hanging);
//! - [`sampler`]: continuous counts of a group's instances;
//! - [`procs`]: the `infrakit` binary run as plugins and managers, killed and restarted; a
//!   census of real processes;
//! - [`mount`]: a tmpfs remounted read-only for a moment;
//! - [`check`]: convergence and durability checks;
//! - [`specs`]: the specs the tests commit;
//! - [`report`]: what each test prints and asserts.

pub mod check;
pub mod faults;
pub mod ledger;
pub mod mount;
pub mod procs;
pub mod proxy;
pub mod report;
pub mod rules;
pub mod sampler;
pub mod specs;
pub mod tap;

pub use faults::{Fault, FaultyFlavor, FaultyInstance, Switch};
pub use ledger::Ledger;
pub use report::FaultReport;
pub use rules::Policy;
pub use tap::{Census, Tap};
