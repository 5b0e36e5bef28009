//! Objects addressed by name, as InfraKit's last version addresses them: a call's `Name` param is
//! `<socket>/<object>` (`mystack/cattle`), and `Handshake.Hello` lists the objects each interface
//! has, so its CLI knows what a user can type.
//!
//! A group server has, under `Group/0.1.1`, the collection `groups` (where new groups are
//! committed) and one object per group; under `Controller/0.1.1` the same plus `""`. A manager
//! also has `.` under `Stack/0.1.1` and `status` and `vars` under `Updatable/0.1.1`. Names
//! without an object (`group`, the v0.5 style), and the objects `.` and `""`, address the
//! server as a whole, as they always have.

use crate::failure::{failure, Failure};
use crate::jsonrpc;

/// The object under which new groups are committed and all groups are listed.
pub(crate) const GROUPS: &str = "groups";

/// The metadata object with this server's status (read-only).
pub(crate) const STATUS: &str = "status";

/// The metadata object with the operator's variables.
pub(crate) const VARS: &str = "vars";

/// The object part of a `Name` (`mystack/cattle` gives `cattle`; `a/b/c` gives `b/c`); `None`
/// for a name without one (`mystack`, `mystack/`, `mystack/.`, or no name).
pub(crate) fn object(name: &str) -> Option<&str> {
    name.split_once('/')
        .map(|(_, obj)| obj)
        .filter(|obj| !obj.is_empty() && *obj != ".")
}

/// What a `Name` addresses among groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Addressed<'a> {
    /// The server as a whole, or its collection `groups`: the call says which group.
    All,
    /// One group, by ID.
    Group(&'a str),
}

/// The groups `name` addresses.
pub(crate) fn group(name: &str) -> Addressed<'_> {
    match object(name) {
        None | Some(GROUPS) => Addressed::All,
        Some(id) => Addressed::Group(id),
    }
}

/// An object that is not here: the original's text (`not found: mystack/nope (key=nope)`).
pub(crate) fn not_found(name: &str) -> Failure {
    failure(
        jsonrpc::SERVER_ERROR,
        format!("not found: {name} (key={})", object(name).unwrap_or("")),
    )
}

/// The objects of `Group/0.1.1` on a server with groups `ids`.
pub(crate) fn group_objects(ids: &[String]) -> Vec<String> {
    let mut out = vec![GROUPS.to_string()];
    out.extend(ids.iter().filter(|id| *id != GROUPS).cloned());
    out
}

/// The objects of `Controller/0.1.1` on a server with groups `ids`.
pub(crate) fn controller_objects(ids: &[String]) -> Vec<String> {
    let mut out = vec![String::new()];
    out.extend(group_objects(ids));
    out
}

/// The objects of `Updatable/0.1.1` on a manager.
pub(crate) fn metadata_objects() -> Vec<String> {
    vec![STATUS.to_string(), VARS.to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_is_what_follows_the_socket() {
        assert_eq!(object("mystack/cattle"), Some("cattle"));
        assert_eq!(object("mystack/a/b"), Some("a/b"));
        for whole in ["mystack", "mystack/", "mystack/.", "", "/"] {
            assert_eq!(object(whole), None, "{whole:?}");
        }
    }

    #[test]
    fn groups_and_the_whole_server_address_all_groups() {
        for all in ["group", "mystack/groups", "mystack/.", "mystack/", ""] {
            assert_eq!(group(all), Addressed::All, "{all:?}");
        }
        assert_eq!(group("mystack/cattle"), Addressed::Group("cattle"));
        // IDs that look like paths stay whole: group IDs never hold a '/', so such an object
        // is never found rather than mistaken for another group.
        assert_eq!(group("mystack/a/cattle"), Addressed::Group("a/cattle"));
    }

    #[test]
    fn hello_lists_the_collection_then_each_group_once() {
        let ids = vec![
            "cattle".to_string(),
            "groups".to_string(),
            "web".to_string(),
        ];
        assert_eq!(group_objects(&ids), ["groups", "cattle", "web"]);
        assert_eq!(controller_objects(&ids), ["", "groups", "cattle", "web"]);
        assert_eq!(group_objects(&[]), ["groups"]);
    }

    #[test]
    fn a_missing_object_is_named_as_the_original_names_it() {
        let f = not_found("mystack/nope");
        assert_eq!(f.message, "not found: mystack/nope (key=nope)");
        assert_eq!(f.code, jsonrpc::SERVER_ERROR);
        assert_eq!(not_found("mystack").message, "not found: mystack (key=)");
    }
}
