//! The instance properties of the process plugin: what to run, with which arguments, environment
//! and working directory.

use std::collections::BTreeMap;
use std::path::PathBuf;

use infrakit_spi::error::decode_at;
use infrakit_spi::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `Properties` of an instance spec, e.g.
/// `{"Cmd": "sleep", "Args": ["3600"], "Env": {"K": "V"}, "Dir": "/path"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessProperties {
    /// The program to run, looked up in `PATH` when it has no slash.
    #[serde(rename = "Cmd")]
    pub cmd: String,
    /// Its arguments.
    #[serde(rename = "Args", default, deserialize_with = "null_as_default")]
    pub args: Vec<String>,
    /// Extra environment variables, on top of the plugin's own environment.
    #[serde(rename = "Env", default, deserialize_with = "null_as_default")]
    pub env: BTreeMap<String, String>,
    /// Working directory (absolute); defaults to the instance's own state directory.
    #[serde(rename = "Dir", default)]
    pub dir: Option<PathBuf>,
}

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl ProcessProperties {
    /// Decodes and checks `properties`; errors name the bad field, e.g. `Properties.Args`.
    pub fn parse(properties: &Value) -> Result<Self> {
        let p: ProcessProperties = decode_at("Properties", properties)?;
        if p.cmd.trim().is_empty() {
            return Err(Error::invalid("Properties.Cmd", "must not be empty"));
        }
        if p.cmd.contains('\0') {
            return Err(Error::invalid("Properties.Cmd", "must not contain NUL"));
        }
        if let Some(i) = p.args.iter().position(|a| a.contains('\0')) {
            return Err(Error::invalid(
                format!("Properties.Args[{i}]"),
                "must not contain NUL",
            ));
        }
        for (k, v) in &p.env {
            if k.is_empty() || k.contains(['=', '\0']) {
                return Err(Error::invalid(
                    format!("Properties.Env.{k}"),
                    "a variable name must be non-empty, without '=' or NUL",
                ));
            }
            if v.contains('\0') {
                return Err(Error::invalid(
                    format!("Properties.Env.{k}"),
                    "must not contain NUL",
                ));
            }
        }
        if let Some(dir) = &p.dir {
            if !dir.is_absolute() {
                return Err(Error::invalid(
                    "Properties.Dir",
                    format!(
                        "must be an absolute path, got {:?}",
                        dir.display().to_string()
                    ),
                ));
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err_path(v: Value) -> String {
        match ProcessProperties::parse(&v).unwrap_err() {
            Error::Invalid { path, .. } => path,
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn parses_full_and_minimal_properties() {
        let p = ProcessProperties::parse(
            &json!({"Cmd": "sleep", "Args": ["3600"], "Env": {"K": "V"}, "Dir": "/tmp"}),
        )
        .unwrap();
        assert_eq!(p.cmd, "sleep");
        assert_eq!(p.args, vec!["3600"]);
        assert_eq!(p.env.get("K").map(String::as_str), Some("V"));
        assert_eq!(p.dir, Some(PathBuf::from("/tmp")));

        let p =
            ProcessProperties::parse(&json!({"Cmd": "true", "Args": null, "Env": null})).unwrap();
        assert!(p.args.is_empty() && p.env.is_empty() && p.dir.is_none());
    }

    #[test]
    fn bad_fields_are_reported_with_their_path() {
        assert_eq!(
            err_path(json!({"Cmd": "x", "Args": "3600"})),
            "Properties.Args"
        );
        assert_eq!(
            err_path(json!({"Cmd": "x", "Args": [1]})),
            "Properties.Args[0]"
        );
        assert_eq!(
            err_path(json!({"Cmd": "x", "Env": {"K": 1}})),
            "Properties.Env.K"
        );
        assert_eq!(
            err_path(json!({"Cmd": "x", "Env": {"A=B": "1"}})),
            "Properties.Env.A=B"
        );
        assert_eq!(
            err_path(json!({"Cmd": "x", "Bogus": 1})),
            "Properties.Bogus"
        );
        assert_eq!(err_path(json!({"Cmd": ""})), "Properties.Cmd");
        assert_eq!(err_path(json!({"Cmd": "  "})), "Properties.Cmd");
        assert_eq!(err_path(json!({"Cmd": 3})), "Properties.Cmd");
        assert_eq!(
            err_path(json!({"Cmd": "x", "Dir": "relative"})),
            "Properties.Dir"
        );
        assert_eq!(err_path(json!({"Args": []})), "Properties");
        assert_eq!(err_path(Value::Null), "Properties");
        let msg = ProcessProperties::parse(&json!({"Args": []}))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("Cmd"), "{msg}");
    }
}
