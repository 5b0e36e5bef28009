//! The dashboard page: one HTML file with its CSS and JavaScript, built into the binary.

/// The page. With `actions`, it shows scale, pause and resume controls.
pub(crate) fn dashboard(actions: bool) -> String {
    include_str!("../assets/dashboard.html")
        .replace("__ACTIONS__", if actions { "true" } else { "false" })
}
