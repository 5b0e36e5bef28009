//! Checks shared by the resource handlers: names, locations, tags, zones, enumerations, base64
//! and SSH keys.

use data_encoding::{BASE64, BASE64_NOPAD};

use crate::model::Tags;
use crate::reply::ArmError;
use crate::util::normalize_location;

/// The location of a PUT body: required (ARM's `LocationRequired`), answered normalized.
pub(crate) fn location(location: Option<&str>) -> Result<String, ArmError> {
    let normalized = location.map(normalize_location).unwrap_or_default();
    if normalized.is_empty() {
        return Err(ArmError::bad(
            "LocationRequired",
            "The location property is required for this definition.",
        ));
    }
    if !normalized.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ArmError::bad(
            "LocationNotAvailableForResourceType",
            format!(
                "The provided location '{}' is not available for resource type. List of available regions is available from the provider's resource types.",
                location.unwrap_or_default()
            ),
        ));
    }
    Ok(normalized)
}

/// ARM's limits on tags: at most 50, names up to 512 characters without `<>%&\?/` or control
/// characters, values up to 256 characters.
pub(crate) fn tags(tags: &Option<Tags>) -> Result<(), ArmError> {
    let Some(tags) = tags else { return Ok(()) };
    if tags.len() > 50 {
        return Err(ArmError::bad(
            "InvalidTag",
            format!(
                "The number of tags ({}) exceeds the limit of 50 tags per resource.",
                tags.len()
            ),
        ));
    }
    for (name, value) in tags {
        if name.is_empty()
            || name
                .chars()
                .any(|c| "<>%&\\?/".contains(c) || c.is_control())
        {
            return Err(ArmError::bad(
                "InvalidTagNameCharacters",
                format!(
                    "The tag names '{name}' have reserved characters '<,>,%,&,\\,?,/' or control characters."
                ),
            ));
        }
        if name.chars().count() > 512 {
            return Err(ArmError::bad(
                "InvalidTag",
                format!("The tag name '{name}' exceeds the maximum length of 512 characters."),
            ));
        }
        if value.chars().count() > 256 {
            return Err(ArmError::bad(
                "InvalidTag",
                format!("The value of tag '{name}' exceeds the maximum length of 256 characters."),
            ));
        }
    }
    Ok(())
}

/// Availability zones: each "1", "2" or "3", no repeats, at most `max`.
pub(crate) fn zones(zones: &Option<Vec<String>>, max: usize) -> Result<(), ArmError> {
    let Some(zones) = zones else { return Ok(()) };
    let bad = zones.len() > max
        || zones.iter().any(|z| !matches!(z.as_str(), "1" | "2" | "3"))
        || (1..zones.len()).any(|i| zones[..i].contains(&zones[i]));
    if bad {
        return Err(ArmError::invalid_parameter(
            "zones",
            format!(
                "The zones '{}' are not valid. Specify {} of the availability zones '1', '2' or '3'.",
                zones.join(","),
                if max == 1 { "one" } else { "up to three" }
            ),
        ));
    }
    Ok(())
}

/// A value of a case-insensitive enumeration, answered as the specification spells it.
pub(crate) fn one_of(value: &str, allowed: &[&'static str]) -> Option<&'static str> {
    allowed
        .iter()
        .copied()
        .find(|a| a.eq_ignore_ascii_case(value))
}

/// Compute's answer to a value outside an enumeration.
pub(crate) fn compute_enum(
    target: &str,
    value: &str,
    allowed: &[&'static str],
) -> Result<&'static str, ArmError> {
    one_of(value, allowed).ok_or_else(|| {
        ArmError::invalid_parameter(
            target,
            format!(
                "The value '{value}' of parameter '{target}' is not valid. Allowed values are '{}'.",
                allowed.join("', '")
            ),
        )
    })
}

/// Network's answer to a value outside an enumeration (a JSON conversion error).
pub(crate) fn network_enum(
    path: &str,
    type_name: &str,
    value: &str,
    allowed: &[&'static str],
) -> Result<&'static str, ArmError> {
    one_of(value, allowed).ok_or_else(|| {
        ArmError::bad("InvalidRequestFormat", "Cannot parse the request.").with_detail(
            "InvalidJson",
            format!("Error converting value \"{value}\" to type '{type_name}'. Path '{path}'."),
        )
    })
}

/// Network's answer to a missing required member.
pub(crate) fn network_missing(path: &str) -> ArmError {
    ArmError::bad("InvalidRequestFormat", "Cannot parse the request.").with_detail(
        "MissingJsonProperty",
        format!("Required property '{path}' is missing from the request."),
    )
}

/// A virtual machine name (Linux): 1 to 64 letters, digits, hyphens, periods and underscores,
/// not starting with a hyphen, period or underscore, not ending with a hyphen or period.
pub(crate) fn vm_name(name: &str) -> Result<(), ArmError> {
    let ok = (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        && !name.starts_with(['-', '.', '_'])
        && !name.ends_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(ArmError::bad(
            "InvalidResourceName",
            format!(
                "The resource name '{name}' is invalid. A virtual machine name must be 1 to 64 characters of letters, digits, hyphens, periods and underscores; it cannot start with a hyphen, period or underscore, nor end with a hyphen or period."
            ),
        ))
    }
}

/// Whether `name` fits the pattern Network and disks use:
/// `^[A-Za-z0-9][A-Za-z0-9_.-]*[A-Za-z0-9_]$`, 1 to 80 characters.
pub(crate) fn word_name(name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    if chars.is_empty() || chars.len() > 80 {
        return false;
    }
    chars[0].is_ascii_alphanumeric()
        && chars
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
        && (chars[chars.len() - 1].is_ascii_alphanumeric() || chars[chars.len() - 1] == '_')
}

/// A network resource name.
pub(crate) fn network_name(name: &str) -> Result<(), ArmError> {
    if word_name(name) {
        Ok(())
    } else {
        Err(ArmError::bad(
            "InvalidResourceName",
            format!(
                "Resource name {name} is invalid. The name can be up to 80 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'."
            ),
        ))
    }
}

/// A managed disk name.
pub(crate) fn disk_name(name: &str) -> Result<(), ArmError> {
    if word_name(name) {
        Ok(())
    } else {
        Err(ArmError::bad(
            "InvalidResourceName",
            format!(
                "The resource name '{name}' is invalid. A disk name can be up to 80 characters long; it must begin with a letter or digit, end with a letter, digit or underscore, and may contain only letters, digits, underscores, periods and hyphens."
            ),
        ))
    }
}

/// Decodes standard base64 (with padding).
pub(crate) fn base64(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text.as_bytes()).ok()
}

/// Whether `key` looks like an OpenSSH public key Azure accepts: `ssh-rsa` or `ssh-ed25519`,
/// then base64 whose embedded key type is the same. The key material itself is not checked.
pub(crate) fn ssh_public_key(key: &str) -> bool {
    let mut parts = key.split_whitespace();
    let (Some(kind), Some(data)) = (parts.next(), parts.next()) else {
        return false;
    };
    if kind != "ssh-rsa" && kind != "ssh-ed25519" {
        return false;
    }
    // Padding is optional, as OpenSSH reads keys.
    let Ok(blob) = BASE64_NOPAD.decode(data.trim_end_matches('=').as_bytes()) else {
        return false;
    };
    if blob.len() < 4 {
        return false;
    }
    let len = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
    blob.get(4..4 + len) == Some(kind.as_bytes())
}

/// User names Azure refuses for Linux VMs.
const DISALLOWED_USERS: &[&str] = &[
    "administrator",
    "admin",
    "user",
    "user1",
    "test",
    "user2",
    "test1",
    "user3",
    "admin1",
    "1",
    "123",
    "a",
    "actuser",
    "adm",
    "admin2",
    "aspnet",
    "backup",
    "console",
    "david",
    "guest",
    "john",
    "owner",
    "root",
    "server",
    "sql",
    "support",
    "support_388945a0",
    "sys",
    "test2",
    "test3",
    "user4",
    "user5",
];

/// A Linux admin user name.
pub(crate) fn admin_username(name: &str) -> Result<(), ArmError> {
    if DISALLOWED_USERS.contains(&name.to_lowercase().as_str()) {
        return Err(ArmError::invalid_parameter(
            "adminUsername",
            "The Admin Username specified is not allowed.",
        ));
    }
    let ok = (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        && !name.starts_with(['-', '.'])
        && !name.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(ArmError::invalid_parameter(
            "adminUsername",
            "Linux admin user name cannot be longer than 64 characters, end with a period(.), or contain the following characters: \\ / \" [ ] : | < > + = ; , ? * @ or whitespace.",
        ))
    }
}

/// A Linux computer (host) name.
pub(crate) fn computer_name(name: &str) -> Result<(), ArmError> {
    let ok = (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.'])
        && !name.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ArmError::invalid_parameter(
            "computerName",
            "Linux host name cannot exceed 64 characters in length or contain the following characters: ` ~ ! @ # $ % ^ & * ( ) = + _ [ ] { } \\ | ; : ' \" , < > / ?.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(location(Some("West Europe")).unwrap(), "westeurope");
        assert_eq!(location(None).unwrap_err().code, "LocationRequired");
        assert_eq!(location(Some(" ")).unwrap_err().code, "LocationRequired");
        assert_eq!(
            location(Some("west/europe")).unwrap_err().code,
            "LocationNotAvailableForResourceType"
        );
    }

    #[test]
    fn tag_rules() {
        let mut t = Tags::new();
        t.insert("infrakit.group".into(), "workers".into());
        assert!(tags(&Some(t.clone())).is_ok());
        t.insert("a/b".into(), "x".into());
        assert_eq!(tags(&Some(t)).unwrap_err().code, "InvalidTagNameCharacters");
        let mut t = Tags::new();
        t.insert("k".into(), "v".repeat(257));
        assert_eq!(tags(&Some(t)).unwrap_err().code, "InvalidTag");
        let many: Tags = (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(tags(&Some(many)).is_err());
    }

    #[test]
    fn zone_rules() {
        assert!(zones(&Some(vec!["1".into()]), 1).is_ok());
        assert!(zones(&Some(vec!["4".into()]), 1).is_err());
        assert!(zones(&Some(vec!["1".into(), "2".into()]), 1).is_err());
        assert!(zones(&Some(vec!["1".into(), "2".into()]), 3).is_ok());
        assert!(zones(&Some(vec!["1".into(), "1".into()]), 3).is_err());
        assert_eq!(
            zones(&Some(vec!["x".into()]), 1)
                .unwrap_err()
                .target
                .as_deref(),
            Some("zones")
        );
    }

    #[test]
    fn names() {
        for good in ["vm-1", "a", "VM_1.x", &"a".repeat(64)] {
            assert!(vm_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-vm",
            "vm-",
            "vm.",
            ".vm",
            "_vm",
            "vm 1",
            "vm/1",
            &"a".repeat(65),
        ] {
            assert_eq!(
                vm_name(bad).unwrap_err().code,
                "InvalidResourceName",
                "{bad}"
            );
        }
        for good in ["nic-1", "n", "nic_", "a.b-c_d"] {
            assert!(network_name(good).is_ok(), "{good}");
        }
        for bad in ["-nic", "nic-", "nic.", "", "n!c", &"a".repeat(81)] {
            assert!(network_name(bad).is_err(), "{bad}");
            assert!(disk_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enumerations() {
        assert_eq!(one_of("static", &["Dynamic", "Static"]), Some("Static"));
        let e =
            compute_enum("caching", "Sometimes", &["None", "ReadOnly", "ReadWrite"]).unwrap_err();
        assert_eq!(e.code, "InvalidParameter");
        let e =
            network_enum("sku.name", "PublicIPAddressSkuName", "Gold", &["Standard"]).unwrap_err();
        assert_eq!(e.code, "InvalidRequestFormat");
    }

    #[test]
    fn ssh_keys() {
        // "ssh-ed25519" followed by a 32-byte key, as OpenSSH encodes it.
        let mut blob = Vec::new();
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend_from_slice(&[7u8; 32]);
        let key = format!("ssh-ed25519 {} me@host", BASE64.encode(&blob));
        assert!(ssh_public_key(&key));
        assert!(ssh_public_key(
            key.trim_end_matches(" me@host").trim_end_matches('=')
        ));
        assert!(!ssh_public_key(&key.replace("ssh-ed25519 ", "ssh-rsa ")));
        // Without padding, and with a comment.
        assert!(ssh_public_key(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHd0bHZ0ZXN0a2V5Zm9ydGVzdGluZ29ubHk test"
        ));
        assert!(!ssh_public_key("ssh-rsa notbase64!"));
        assert!(!ssh_public_key("ssh-dss AAAA"));
        assert!(!ssh_public_key(""));
    }

    #[test]
    fn users_and_hosts() {
        assert!(admin_username("azureuser").is_ok());
        assert_eq!(
            admin_username("root").unwrap_err().message,
            "The Admin Username specified is not allowed."
        );
        assert!(admin_username("bad user").is_err());
        assert!(computer_name("web-1").is_ok());
        assert!(computer_name("123").is_err());
        assert!(computer_name("a_b").is_err());
        assert_eq!(base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert!(base64("aGVsbG8").is_none());
    }
}
