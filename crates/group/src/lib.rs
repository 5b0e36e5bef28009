//! The group controller: keeps each group's instances matching its spec.
//!
//! The work is split the way a controller should be:
//! - [`settings`] turns a committed spec into validated settings (pure);
//! - [`planner`] decides what to do from settings and an observation (pure, property-tested);
//! - [`preview`] simulates a change step by step for a pretend commit (pure);
//! - [`explain`] words a commit's effect as InfraKit does (pure);
//! - [`rollout`] keeps a configuration change's progress, persisted, and decides when it fails;
//! - [`history`] remembers instances between observations and detects crash loops;
//! - `decide` makes every decision of a pass from what it observed (pure, unit-tested);
//! - `context` holds what a group plugin's supervisors share (knobs, plugins, store, fence);
//! - `observe` lists a group's instances and checks their health;
//! - `view` keeps what a pass saw, as `DescribeGroup` reports it;
//! - `state` holds a group's shared state, and is the only place its record is stored;
//! - `executor` runs a plan's actions, fenced (see [`fence`]);
//! - `follow` wakes a supervisor on instance events;
//! - [`supervisor`] runs one group: observe, decide, apply, on a timer and on instance events;
//! - [`plugin`] implements the Group plugin API on top of the supervisors;
//! - [`telemetry`] carries lifecycle events and metrics to operators.

mod context;
mod decide;
mod executor;
pub mod explain;
pub mod fence;
mod follow;
mod health;
pub mod history;
mod instrumented;
mod listing;
mod observe;
pub mod planner;
pub mod plugin;
pub mod preview;
mod pushed;
pub mod rollout;
pub mod settings;
mod state;
pub mod supervisor;
pub mod telemetry;
mod view;

pub use fence::{Fence, Unfenced};
pub use plugin::{ControllerConfig, GroupPlugin};
pub use settings::Settings;
pub use telemetry::Telemetry;
