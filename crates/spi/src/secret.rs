//! Secrets: tokens, credentials and user data that must never reach logs or describe output.
//!
//! [`Secret`] holds a string that prints as `***` (`Debug` and `Display`) and serialises as `***`
//! too, so putting one in a log line, an error or a describe result cannot leak it. Code that must
//! send the real value (an HTTP header, a field of a wire message) asks for it explicitly with
//! [`Secret::expose`], or with `#[serde(serialize_with = "infrakit_spi::secret::expose")]` on the
//! field.
//!
//! For free-form JSON (instance and flavor `Properties`, whole specs) [`redact`] masks the values
//! of keys that name a secret ([`is_secret_key`]), and [`redact_spec`] also masks an instance's
//! `Init`: user data routinely carries join tokens and keys (InfraKit's Swarm flavor put the
//! swarm join token there), so it is always treated as secret when shown.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::Spec;

/// What a secret is replaced with wherever it is shown.
pub const REDACTED: &str = "***";

/// A secret string: shown and serialised as `***`, readable only through [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The real value, for the one place that must send it (a header, a wire field).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// Serialises as `***`: a secret in a describe result or a saved report stays hidden. Fields that
/// must carry the real value use [`expose`] as their `serialize_with`.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// `serialize_with` for a wire field that must carry the real value of a [`Secret`].
pub fn expose<S: Serializer>(secret: &Secret, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&secret.0)
}

/// Fragments of key names that hold secrets, compared case-insensitively with `_`, `-`, `.` and
/// spaces removed (so `client_secret`, `X-Api-Key` and `SecretAccessKey` all match).
const SECRET_KEY_PARTS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "credential",
    "authorization",
    "userdata",
    "init",
];

/// Keys that contain one of [`SECRET_KEY_PARTS`] but hold no secret.
const NOT_SECRET_KEYS: &[&str] = &[
    // The group controller's idempotency token is an opaque ID, not a credential.
    "infrakitprovisiontoken",
];

/// Whether a JSON key names a secret: `Password`, `token`, `client_secret`, `X-Api-Key`,
/// `PrivateKey`, `Credentials`, `Authorization`, `UserData`, `Init`, ...
pub fn is_secret_key(key: &str) -> bool {
    let norm: String = key
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    if NOT_SECRET_KEYS.contains(&norm.as_str()) {
        return false;
    }
    // `Init` only as the whole key (or `InitScript`, `init_lines`, ...): not `Initial...`.
    if norm == "init" || norm.starts_with("initscript") || norm.starts_with("initlines") {
        return true;
    }
    SECRET_KEY_PARTS
        .iter()
        .filter(|p| **p != "init")
        .any(|p| norm.contains(p))
}

/// A copy of `value` with the value of every secret key (see [`is_secret_key`]) replaced by
/// `"***"`, at any depth. Empty strings and `null`s stay as they are, so "unset" remains visible.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) && !is_unset(v) {
                        Value::String(REDACTED.into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// An instance's provider properties with secret fields masked, as [`redact`] does.
pub fn redact_properties(properties: &crate::instance::Properties) -> crate::instance::Properties {
    crate::instance::Properties::new(&redact(&properties.to_value()))
}

/// A copy of `spec` fit to show: `Init` replaced by `***` (unless empty) and its `Properties`
/// passed through [`redact`]. Tags, logical ID and attachments are kept.
pub fn redact_spec(spec: &Spec) -> Spec {
    let mut out = spec.clone();
    if !out.init.is_empty() {
        out.init = REDACTED.into();
    }
    out.properties = redact(&spec.properties);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_print_and_serialise_masked() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2");

        #[derive(Serialize, Debug)]
        struct Wire {
            #[serde(serialize_with = "expose")]
            token: Secret,
            shown: Secret,
        }
        let w = Wire {
            token: "t-1".into(),
            shown: "t-2".into(),
        };
        assert_eq!(
            serde_json::to_value(&w).unwrap(),
            json!({"token": "t-1", "shown": "***"})
        );
        assert!(!format!("{w:?}").contains("t-1"));
        let back: Secret = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(back.expose(), "abc");
    }

    #[test]
    fn secret_keys_are_recognised() {
        for k in [
            "Password",
            "db_password",
            "token",
            "JoinToken",
            "client_secret",
            "SecretAccessKey",
            "X-Api-Key",
            "PrivateKey",
            "Credentials",
            "Authorization",
            "UserData",
            "Init",
            "InitScript",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "Image",
            "KeyName",
            "InitialSize",
            "infrakit.provision.token",
            "Tags",
            "AccessKeyID",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn redaction_reaches_every_depth_and_keeps_unset_values() {
        let v = json!({
            "Image": "nginx",
            "Env": [{"Name": "A", "Password": "p"}],
            "Auth": {"token": "t", "user": "u"},
            "Init": ["echo join --token abc"],
            "ApiKey": "",
            "Secret": null,
        });
        assert_eq!(
            redact(&v),
            json!({
                "Image": "nginx",
                "Env": [{"Name": "A", "Password": "***"}],
                "Auth": {"token": "***", "user": "u"},
                "Init": "***",
                "ApiKey": "",
                "Secret": null,
            })
        );
    }

    #[test]
    fn specs_lose_init_and_secret_properties() {
        let spec = Spec {
            properties: json!({"Cmd": "sleep", "Token": "abc"}),
            init: "docker swarm join --token SWMTKN-1".into(),
            ..Default::default()
        };
        let shown = redact_spec(&spec);
        assert_eq!(shown.init, "***");
        assert_eq!(shown.properties, json!({"Cmd": "sleep", "Token": "***"}));
        assert_eq!(redact_spec(&Spec::default()).init, "");
    }
}
