//! The CLI's templates: the global `--var`s, kept for every spec this process renders;
//! rendering itself is [`infrakit_template`].

use std::sync::OnceLock;

pub use infrakit_template::*;

static GLOBAL_VARS: OnceLock<Vars> = OnceLock::new();

/// Sets the variables of every spec this process renders (from the global `--var` flags).
/// Only the first call counts.
pub fn set_global_vars(vars: Vars) {
    let _ = GLOBAL_VARS.set(vars);
}

/// The variables set by [`set_global_vars`] (none if it was not called).
pub fn global_vars() -> &'static Vars {
    GLOBAL_VARS.get_or_init(Vars::new)
}
