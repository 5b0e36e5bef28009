//! Fencing: the controller acts only while it is allowed to.
//!
//! When several managers share a set of groups, exactly one leads. A [`Fence`] answers "may I act
//! now?" just before every mutating call (provision, destroy, drain): a manager whose lease has
//! expired, or that was paused past it, gets `Err` and does nothing, even if it has not yet
//! noticed that it lost leadership.

use std::fmt::Debug;

/// Permission to act.
pub trait Fence: Send + Sync + Debug {
    /// `Ok` while this controller may change infrastructure; otherwise why not.
    fn check(&self) -> Result<(), String>;
}

/// A fence that always allows (a single controller, no election).
#[derive(Debug, Default, Clone, Copy)]
pub struct Unfenced;

impl Fence for Unfenced {
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}
