//! Names no other test uses, in this run or an earlier one: for groups, containers, volumes
//! and plugins that outlive a test's process (on an engine, in EC2, in a Vagrant home).

use std::sync::atomic::{AtomicUsize, Ordering};

/// `<prefix>-<pid>-<n><x>`: `n` counts the names this test process made, `x` is one to three
/// hex digits of the clock, so that a later run which happens to get the same pid still does not
/// meet names an earlier run left behind.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 4096
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_and_keep_their_prefix() {
        let a = unique_name("web");
        let b = unique_name("web");
        assert_ne!(a, b);
        let pid = format!("web-{}-", std::process::id());
        assert!(a.starts_with(&pid) && b.starts_with(&pid), "{a} {b}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{a}: a name Docker, EC2 tags and Vagrant all take"
        );
    }
}
