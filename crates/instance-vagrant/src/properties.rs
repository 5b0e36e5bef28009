//! Instance properties: which provider runs the machine, what it boots from, its size and
//! networks. Decoded with the path of every bad field (`Properties.CPUs`,
//! `Properties.Networks[1].Type`) and checked before anything is created.

use std::collections::BTreeMap;

use infrakit_spi::error::decode_at;
use infrakit_spi::{Error, Result};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The provider used when the properties name none.
pub const DEFAULT_PROVIDER: &str = "docker";
/// CPUs of a VM (any provider but docker) when the properties give none, as in InfraKit.
pub const DEFAULT_VM_CPUS: u32 = 2;
/// Memory of a VM, in MiB, when the properties give none, as in InfraKit.
pub const DEFAULT_VM_MEMORY: u64 = 512;
/// The network types Vagrant knows (`config.vm.network <type>, ...`).
pub const NETWORK_TYPES: &[&str] = &["private_network", "public_network", "forwarded_port"];

/// The `Properties` of an instance spec, as written by the user.
///
/// ```json
/// {"Provider": "docker", "Image": "busybox:latest", "Cmd": ["sleep", "3600"],
///  "CPUs": 1, "Memory": 64, "Env": {"MODE": "test"},
///  "Networks": [{"Type": "private_network", "Options": {"type": "dhcp"}}]}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VagrantProperties {
    /// The Vagrant provider: `docker` (default), `virtualbox`, `libvirt`, ...
    #[serde(rename = "Provider", default)]
    pub provider: Option<String>,
    /// The box a VM boots from (required with every provider but docker).
    #[serde(rename = "Box", default)]
    pub r#box: Option<String>,
    /// The image a docker machine runs (required with the docker provider; never pulled by
    /// the plugin, but `docker run` pulls a missing one if a registry is reachable).
    #[serde(rename = "Image", default)]
    pub image: Option<String>,
    /// The docker container's command; the spec's `Init` runs before it (docker provider only).
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    /// Number of CPUs (VMs default to [`DEFAULT_VM_CPUS`]; docker machines are not limited
    /// unless set).
    #[serde(rename = "CPUs", default)]
    pub cpus: Option<u32>,
    /// Memory in MiB (VMs default to [`DEFAULT_VM_MEMORY`]; docker machines are not limited
    /// unless set).
    #[serde(rename = "Memory", default)]
    pub memory: Option<u64>,
    /// Environment of the container (docker) or of the `Init` shell provisioner (VMs).
    #[serde(rename = "Env", default)]
    pub env: BTreeMap<String, String>,
    /// Networks, each one `config.vm.network` line.
    #[serde(rename = "Networks", default)]
    pub networks: Vec<Network>,
    /// Free-form values passed to the template as `vars`, for user templates.
    #[serde(rename = "Vars", default)]
    pub vars: Map<String, Value>,
}

/// One network of a machine: `config.vm.network <Type>, <Options as keyword arguments>`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// `private_network`, `public_network` or `forwarded_port`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// Vagrant's options for that network, e.g. `{"ip": "192.168.56.10"}`,
    /// `{"type": "dhcp"}`, `{"guest": 80, "host": 8080}`.
    #[serde(rename = "Options", default)]
    pub options: Map<String, Value>,
}

/// Properties checked and completed with the provider's defaults: what the template sees.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// The provider name.
    pub provider: String,
    /// The box (VM providers).
    pub r#box: Option<String>,
    /// The image (docker).
    pub image: Option<String>,
    /// The container command (docker).
    pub cmd: Option<Vec<String>>,
    /// CPUs, after defaults.
    pub cpus: Option<u32>,
    /// Memory in MiB, after defaults.
    pub memory: Option<u64>,
    /// Environment from the properties.
    pub env: BTreeMap<String, String>,
    /// Networks; a `private_network` without `ip` or `type` gets one from the logical ID when
    /// the spec is rendered (see [`crate::template`]).
    pub networks: Vec<Network>,
    /// Free-form template values.
    pub vars: Map<String, Value>,
}

impl Machine {
    /// True for Vagrant's docker provider.
    pub fn is_docker(&self) -> bool {
        self.provider == DEFAULT_PROVIDER
    }
}

/// A provider name as Vagrant spells them: lower-case letters, digits, `_` and `-`.
fn valid_provider(p: &str) -> bool {
    let mut chars = p.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn non_empty(path: &str, value: &Option<String>) -> Result<()> {
    match value {
        Some(v) if v.trim().is_empty() => Err(Error::invalid(path, "must not be empty")),
        _ => Ok(()),
    }
}

/// Decodes and checks `properties` (the value of `Spec.Properties`); errors name the field.
pub fn parse(properties: &Value) -> Result<Machine> {
    let props: VagrantProperties = match properties {
        Value::Null => VagrantProperties::default(),
        Value::Object(_) => decode_at("Properties", properties)?,
        _ => {
            return Err(Error::invalid(
                "Properties",
                "expected an object such as {\"Image\": \"busybox:latest\"}",
            ))
        }
    };
    check(props)
}

fn check(p: VagrantProperties) -> Result<Machine> {
    let provider = p.provider.unwrap_or_else(|| DEFAULT_PROVIDER.to_string());
    if !valid_provider(&provider) {
        return Err(Error::invalid(
            "Properties.Provider",
            format!(
                "{provider:?} is not a Vagrant provider name (docker, virtualbox, libvirt, ...)"
            ),
        ));
    }
    non_empty("Properties.Box", &p.r#box)?;
    non_empty("Properties.Image", &p.image)?;
    let docker = provider == DEFAULT_PROVIDER;
    if docker {
        if p.image.is_none() {
            return Err(Error::invalid(
                "Properties.Image",
                "missing: the docker provider runs an image, e.g. \"Image\": \"busybox:latest\"",
            ));
        }
        if p.r#box.is_some() {
            return Err(Error::invalid(
                "Properties.Box",
                "the docker provider runs an Image, not a Box",
            ));
        }
    } else {
        if p.r#box.is_none() {
            return Err(Error::invalid(
                "Properties.Box",
                format!("missing: the {provider} provider boots a box, e.g. \"Box\": \"debian/bookworm64\""),
            ));
        }
        if p.image.is_some() {
            return Err(Error::invalid(
                "Properties.Image",
                format!("only the docker provider runs an image; {provider} boots a Box"),
            ));
        }
        if p.cmd.is_some() {
            return Err(Error::invalid(
                "Properties.Cmd",
                format!("only the docker provider has a command; with {provider} use Init"),
            ));
        }
    }
    if let Some(cmd) = &p.cmd {
        if cmd.is_empty() {
            return Err(Error::invalid("Properties.Cmd", "must not be empty"));
        }
    }
    if p.cpus == Some(0) {
        return Err(Error::invalid("Properties.CPUs", "must be at least 1"));
    }
    if p.memory == Some(0) {
        return Err(Error::invalid(
            "Properties.Memory",
            "must be at least 1 (MiB)",
        ));
    }
    for k in p.env.keys() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(Error::invalid(
                format!("Properties.Env.{k}"),
                "is not an environment variable name",
            ));
        }
    }
    for (i, n) in p.networks.iter().enumerate() {
        if !NETWORK_TYPES.contains(&n.kind.as_str()) {
            return Err(Error::invalid(
                format!("Properties.Networks[{i}].Type"),
                format!("{:?} is not one of {}", n.kind, NETWORK_TYPES.join(", ")),
            ));
        }
        for (k, v) in &n.options {
            if k.is_empty() {
                return Err(Error::invalid(
                    format!("Properties.Networks[{i}].Options"),
                    "an option name must not be empty",
                ));
            }
            if v.is_object() {
                return Err(Error::invalid(
                    format!("Properties.Networks[{i}].Options.{k}"),
                    "must be a string, number, boolean or list",
                ));
            }
        }
    }
    let (cpus, memory) = if docker {
        (p.cpus, p.memory)
    } else {
        (
            Some(p.cpus.unwrap_or(DEFAULT_VM_CPUS)),
            Some(p.memory.unwrap_or(DEFAULT_VM_MEMORY)),
        )
    };
    Ok(Machine {
        provider,
        r#box: p.r#box,
        image: p.image,
        cmd: p.cmd,
        cpus,
        memory,
        env: p.env,
        networks: p.networks,
        vars: p.vars,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        parse(&v).unwrap_err().to_string()
    }

    #[test]
    fn docker_is_the_default_and_needs_an_image() {
        let m = parse(&json!({"Image": "busybox", "Cmd": ["sleep", "1"]})).unwrap();
        assert!(m.is_docker());
        assert_eq!(m.cpus, None);
        assert_eq!(m.memory, None);
        assert!(err(json!({})).starts_with("Properties.Image: missing"));
        assert!(err(Value::Null).starts_with("Properties.Image: missing"));
        assert!(err(json!({"Image": "x", "Box": "y"})).starts_with("Properties.Box:"));
    }

    #[test]
    fn vms_need_a_box_and_get_the_defaults() {
        let m = parse(&json!({"Provider": "virtualbox", "Box": "debian/bookworm64"})).unwrap();
        assert_eq!((m.cpus, m.memory), (Some(2), Some(512)));
        let m =
            parse(&json!({"Provider": "libvirt", "Box": "b", "CPUs": 4, "Memory": 2048})).unwrap();
        assert_eq!((m.cpus, m.memory), (Some(4), Some(2048)));
        assert!(err(json!({"Provider": "libvirt"})).starts_with("Properties.Box: missing"));
        assert!(
            err(json!({"Provider": "libvirt", "Box": "b", "Image": "i"}))
                .starts_with("Properties.Image:")
        );
        assert!(
            err(json!({"Provider": "libvirt", "Box": "b", "Cmd": ["x"]}))
                .starts_with("Properties.Cmd:")
        );
    }

    #[test]
    fn bad_fields_are_named() {
        assert!(
            err(json!({"Image": "x", "CPUs": "two"})).starts_with("Properties.CPUs: invalid type"),
            "{}",
            err(json!({"Image": "x", "CPUs": "two"}))
        );
        let unknown = err(json!({"Image": "x", "Imgae": "y"}));
        assert!(
            unknown.starts_with("Properties.Imgae: unknown field"),
            "{unknown}"
        );
        assert!(err(json!({"Image": "x", "CPUs": 0})).starts_with("Properties.CPUs:"));
        assert!(err(json!({"Image": "x", "Memory": 0})).starts_with("Properties.Memory:"));
        assert!(err(json!({"Image": "x", "Cmd": []})).starts_with("Properties.Cmd:"));
        assert!(err(json!({"Image": " "})).starts_with("Properties.Image: must not be empty"));
        assert!(
            err(json!({"Provider": "Virtual Box", "Box": "b"})).starts_with("Properties.Provider:")
        );
        assert!(err(json!({"Image": "x", "Env": {"A=B": "c"}})).starts_with("Properties.Env.A=B:"));
        assert!(err(json!("busybox")).starts_with("Properties: expected an object"));
    }

    #[test]
    fn networks_are_checked() {
        let m = parse(&json!({"Image": "x", "Networks": [
            {"Type": "private_network", "Options": {"ip": "10.0.0.2"}},
            {"Type": "forwarded_port", "Options": {"guest": 80, "host": 8080}}
        ]}))
        .unwrap();
        assert_eq!(m.networks.len(), 2);
        let e =
            err(json!({"Image": "x", "Networks": [{"Type": "private_network"}, {"Type": "lan"}]}));
        assert!(
            e.starts_with("Properties.Networks[1].Type: \"lan\" is not one of"),
            "{e}"
        );
        let e = err(
            json!({"Image": "x", "Networks": [{"Type": "private_network", "Options": {"a": {"b": 1}}}]}),
        );
        assert!(e.starts_with("Properties.Networks[0].Options.a:"), "{e}");
        let e = err(json!({"Image": "x", "Networks": [{"Options": {}}]}));
        assert!(
            e.starts_with("Properties.Networks[0]: missing field `Type`"),
            "{e}"
        );
    }
}
