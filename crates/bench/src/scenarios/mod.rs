//! The benchmark scenarios, one module each. Every `run` returns its measurements; progress goes
//! to stderr.

pub mod cli;
pub mod converge;
pub mod deployed;
pub mod flood;
pub mod heal;
pub mod protocol;
pub mod rollout;
pub mod steady;
