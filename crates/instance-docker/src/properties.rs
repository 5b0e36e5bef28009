//! Instance properties: InfraKit's original shape or the short form, both normalised into
//! [`DockerProperties`].
//!
//! InfraKit's docker plugin took `{"Config": <container config>, "HostConfig": {...},
//! "NetworkAttachments": [{"Name", "Driver"}], "Tags": {...}}`, with the Docker API's own
//! PascalCase field names. The short form reads like `docker run`:
//! `{"image": "...", "command": [...], "env": {...}, "ports": ["8080:80"], ...}`. A properties
//! object uses one form or the other; mixing them, or any field neither knows, is an error naming
//! the field (`Properties.imgae`, `Properties.Config.Imgae`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bollard::models::{
    ContainerConfig, ContainerCreateBody, HealthConfig, HostConfig, Mount, MountType, PortBinding,
};
use infrakit_spi::error::decode_at;
use infrakit_spi::{Error, Result, Tags};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Top-level fields of InfraKit's original form.
pub const ORIGINAL_FIELDS: &[&str] = &["Config", "HostConfig", "NetworkAttachments", "Tags"];
/// Top-level fields of the short form.
pub const SHORT_FIELDS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "env",
    "ports",
    "volumes",
    "memory",
    "cpus",
    "network",
    "labels",
    "workdir",
    "user",
    "healthcheck",
];

/// A network the container is connected to, created (with `driver`, default `bridge`) if missing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkAttachment {
    /// Network name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Driver used if the network has to be created.
    #[serde(rename = "Driver", default)]
    pub driver: Option<String>,
}

/// Validated instance properties, in either form, ready to become a container.
#[derive(Debug, Clone)]
pub struct DockerProperties {
    /// Path of the image field, for error messages (`Properties.image` or
    /// `Properties.Config.Image`).
    image_path: &'static str,
    /// The container to create: config plus host config (labels and env still to be completed).
    body: ContainerCreateBody,
    /// Environment as key/value pairs, in order (turned into `Env` at provision time).
    env: Vec<(String, String)>,
    /// Labels from the properties (`labels`, `Config.Labels`, `Tags`).
    labels: Tags,
    /// Networks to connect the container to after creation.
    networks: Vec<NetworkAttachment>,
}

impl DockerProperties {
    /// Parses and checks `properties` (the value of `Spec.Properties`); errors name the field.
    pub fn parse(properties: &Value) -> Result<Self> {
        let obj = match properties {
            Value::Object(o) => o,
            Value::Null => {
                return Err(Error::invalid(
                    "Properties.image",
                    "missing: give the image to run, e.g. {\"image\": \"busybox:latest\"} \
                     (or InfraKit's {\"Config\": {\"Image\": ...}})",
                ))
            }
            other => {
                return Err(Error::invalid(
                    "Properties",
                    format!("expected an object, got {}", kind_of(other)),
                ))
            }
        };
        let original: Vec<&str> = obj
            .keys()
            .map(String::as_str)
            .filter(|k| ORIGINAL_FIELDS.contains(k))
            .collect();
        let short: Vec<&str> = obj
            .keys()
            .map(String::as_str)
            .filter(|k| SHORT_FIELDS.contains(k))
            .collect();
        if !original.is_empty() && !short.is_empty() {
            return Err(Error::invalid(
                "Properties",
                format!(
                    "mixes InfraKit's form ({}) with the short form ({}); use one or the other",
                    original.join(", "),
                    short.join(", ")
                ),
            ));
        }
        if original.is_empty() {
            parse_short(obj)
        } else {
            parse_original(obj)
        }
    }

    /// The image to run.
    pub fn image(&self) -> &str {
        self.body.image.as_deref().unwrap_or_default()
    }

    /// The path of the image field in error messages.
    pub fn image_path(&self) -> &'static str {
        self.image_path
    }

    /// Networks the container joins after creation.
    pub fn networks(&self) -> &[NetworkAttachment] {
        &self.networks
    }

    /// The network named in the host config's `NetworkMode`, if it is a user network (not
    /// `bridge`, `host`, `none`, `default` or `container:...`).
    pub fn user_network_mode(&self) -> Option<&str> {
        let mode = self.body.host_config.as_ref()?.network_mode.as_deref()?;
        let builtin = ["", "bridge", "host", "none", "default"];
        (!builtin.contains(&mode) && !mode.starts_with("container:")).then_some(mode)
    }

    /// Labels given in the properties.
    pub fn labels(&self) -> &Tags {
        &self.labels
    }

    /// Volume names that the properties already mount somewhere (mounts of type volume and
    /// `name:/path` binds), with their targets.
    pub fn mounted_volumes(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(hc) = &self.body.host_config else {
            return out;
        };
        for m in hc.mounts.iter().flatten() {
            if matches!(m.typ, Some(MountType::VOLUME) | None) {
                if let (Some(src), Some(dst)) = (&m.source, &m.target) {
                    if !src.is_empty() {
                        out.insert(src.clone(), dst.clone());
                    }
                }
            }
        }
        for b in hc.binds.iter().flatten() {
            let mut parts = b.splitn(3, ':');
            if let (Some(src), Some(dst)) = (parts.next(), parts.next()) {
                if !src.starts_with('/') {
                    out.insert(src.to_string(), dst.to_string());
                }
            }
        }
        out
    }

    /// The container body to create: the properties plus `labels`, `env` (set after the
    /// properties' own, replacing variables of the same name) and extra volume `mounts`.
    pub fn container_body(
        &self,
        labels: Tags,
        env: &[(String, String)],
        mounts: Vec<Mount>,
    ) -> ContainerCreateBody {
        let mut body = self.body.clone();
        let mut vars: Vec<(String, String)> = self
            .env
            .iter()
            .filter(|(k, _)| !env.iter().any(|(e, _)| e == k))
            .cloned()
            .collect();
        vars.extend(env.iter().cloned());
        body.env = Some(vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect());
        body.labels = Some(labels.into_iter().collect());
        if !mounts.is_empty() {
            let hc = body.host_config.get_or_insert_with(HostConfig::default);
            hc.mounts.get_or_insert_with(Vec::new).extend(mounts);
        }
        body
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Rejects keys of `obj` not in `known`, naming the first at `path.<key>`.
fn check_fields(path: &str, obj: &Map<String, Value>, known: &[&str], form: &str) -> Result<()> {
    if let Some(bad) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(Error::invalid(
            format!("{path}.{bad}"),
            format!("unknown field; {form} accepts {}", known.join(", ")),
        ));
    }
    Ok(())
}

fn parse_original(obj: &Map<String, Value>) -> Result<DockerProperties> {
    check_fields("Properties", obj, ORIGINAL_FIELDS, "InfraKit's form")?;
    let config = match obj.get("Config") {
        Some(Value::Object(c)) => c,
        Some(Value::Null) | None => {
            return Err(Error::invalid(
                "Properties.Config.Image",
                "missing: InfraKit's form needs at least {\"Config\": {\"Image\": ...}}",
            ))
        }
        Some(other) => {
            return Err(Error::invalid(
                "Properties.Config",
                format!("expected an object, got {}", kind_of(other)),
            ))
        }
    };
    check_fields(
        "Properties.Config",
        config,
        struct_fields::<ContainerConfig>(),
        "a container config",
    )?;
    let mut body: ContainerCreateBody =
        decode_at("Properties.Config", &Value::Object(config.clone()))?;
    match body.image.as_deref() {
        Some(i) if !i.trim().is_empty() => {}
        _ => {
            return Err(Error::invalid(
                "Properties.Config.Image",
                "missing: name the image to run",
            ))
        }
    }
    if let Some(hc) = obj.get("HostConfig").filter(|v| !v.is_null()) {
        let Value::Object(map) = hc else {
            return Err(Error::invalid(
                "Properties.HostConfig",
                format!("expected an object, got {}", kind_of(hc)),
            ));
        };
        check_fields(
            "Properties.HostConfig",
            map,
            struct_fields::<HostConfig>(),
            "a host config",
        )?;
        body.host_config = Some(decode_at("Properties.HostConfig", hc)?);
    }
    let networks: Vec<NetworkAttachment> = match obj.get("NetworkAttachments") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => decode_at("Properties.NetworkAttachments", v)?,
    };
    for (i, n) in networks.iter().enumerate() {
        if n.name.trim().is_empty() {
            return Err(Error::invalid(
                format!("Properties.NetworkAttachments[{i}].Name"),
                "must not be empty",
            ));
        }
    }
    let tags: Tags = match obj.get("Tags") {
        None | Some(Value::Null) => Tags::new(),
        Some(v) => decode_at("Properties.Tags", v)?,
    };
    let mut labels: Tags = body.labels.take().unwrap_or_default().into_iter().collect();
    labels.extend(tags);
    let env = body
        .env
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv, String::new()),
        })
        .collect();
    Ok(DockerProperties {
        image_path: "Properties.Config.Image",
        body,
        env,
        labels,
        networks,
    })
}

/// The short form, as written by users.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Short {
    image: String,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    ports: Vec<String>,
    #[serde(default)]
    volumes: Vec<String>,
    #[serde(default)]
    memory: Option<Value>,
    #[serde(default)]
    cpus: Option<f64>,
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    labels: Tags,
    #[serde(default)]
    workdir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    healthcheck: Option<ShortHealthcheck>,
}

/// `healthcheck` of the short form: a shell command and Docker's timings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShortHealthcheck {
    cmd: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    start_period: Option<String>,
}

fn parse_short(obj: &Map<String, Value>) -> Result<DockerProperties> {
    check_fields("Properties", obj, SHORT_FIELDS, "the short form")?;
    if !obj.contains_key("image") {
        return Err(Error::invalid(
            "Properties.image",
            "missing: give the image to run, e.g. \"busybox:latest\"",
        ));
    }
    let s: Short = decode_at("Properties", &Value::Object(obj.clone()))?;
    if s.image.trim().is_empty() {
        return Err(Error::invalid("Properties.image", "must not be empty"));
    }
    let mut hc = HostConfig::default();
    let mut body = ContainerCreateBody {
        image: Some(s.image.clone()),
        cmd: s.command,
        entrypoint: s.entrypoint,
        working_dir: s.workdir,
        user: s.user,
        ..Default::default()
    };

    if !s.ports.is_empty() {
        let mut exposed = BTreeSet::new();
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for (i, p) in s.ports.iter().enumerate() {
            let port =
                parse_port(p).map_err(|m| Error::invalid(format!("Properties.ports[{i}]"), m))?;
            exposed.insert(port.container.clone());
            if let Some(b) = port.binding {
                bindings
                    .entry(port.container)
                    .or_insert_with(|| Some(Vec::new()))
                    .get_or_insert_with(Vec::new)
                    .push(b);
            }
        }
        body.exposed_ports = Some(exposed.into_iter().collect());
        if !bindings.is_empty() {
            hc.port_bindings = Some(bindings);
        }
    }

    let mut mounts = Vec::new();
    for (i, v) in s.volumes.iter().enumerate() {
        mounts.push(
            parse_volume(v).map_err(|m| Error::invalid(format!("Properties.volumes[{i}]"), m))?,
        );
    }
    if !mounts.is_empty() {
        hc.mounts = Some(mounts);
    }

    if let Some(m) = &s.memory {
        hc.memory = Some(parse_memory(m).map_err(|m| Error::invalid("Properties.memory", m))?);
    }
    if let Some(c) = s.cpus {
        if !(c.is_finite() && c > 0.0) {
            return Err(Error::invalid(
                "Properties.cpus",
                format!("must be a positive number of CPUs, got {c}"),
            ));
        }
        hc.nano_cpus = Some((c * 1e9).round() as i64);
    }
    if let Some(n) = &s.network {
        if n.trim().is_empty() {
            return Err(Error::invalid("Properties.network", "must not be empty"));
        }
        hc.network_mode = Some(n.clone());
    }
    if let Some(h) = s.healthcheck {
        body.healthcheck = Some(HealthConfig {
            test: Some(vec!["CMD-SHELL".into(), h.cmd]),
            interval: duration_ns("Properties.healthcheck.interval", h.interval)?,
            timeout: duration_ns("Properties.healthcheck.timeout", h.timeout)?,
            retries: h.retries.map(i64::from),
            start_period: duration_ns("Properties.healthcheck.start_period", h.start_period)?,
            ..Default::default()
        });
    }
    body.host_config = Some(hc);
    Ok(DockerProperties {
        image_path: "Properties.image",
        body,
        env: s.env.into_iter().collect(),
        labels: s.labels,
        networks: Vec::new(),
    })
}

fn duration_ns(path: &str, d: Option<String>) -> Result<Option<i64>> {
    let Some(d) = d else { return Ok(None) };
    let parsed: Duration = humantime::parse_duration(&d)
        .map_err(|e| Error::invalid(path, format!("not a duration like \"5s\": {e}")))?;
    if parsed < Duration::from_millis(1) {
        return Err(Error::invalid(path, "must be at least 1ms"));
    }
    Ok(Some(parsed.as_nanos().min(i64::MAX as u128) as i64))
}

/// One `ports` entry.
#[derive(Debug, PartialEq)]
struct Port {
    /// `80/tcp`.
    container: String,
    binding: Option<PortBinding>,
}

/// `[ip:][host:]container[/proto]`, as `docker run -p` takes it.
fn parse_port(spec: &str) -> std::result::Result<Port, String> {
    let (addr, proto) = match spec.rsplit_once('/') {
        Some((a, p)) => (a, p),
        None => (spec, "tcp"),
    };
    if !["tcp", "udp", "sctp"].contains(&proto) {
        return Err(format!(
            "{spec:?}: protocol must be tcp, udp or sctp, got {proto:?}"
        ));
    }
    let parts: Vec<&str> = addr.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), Some(*h), *c),
        _ => {
            return Err(format!(
                "{spec:?}: expected [ip:][host port:]container port[/protocol], e.g. \"8080:80\""
            ))
        }
    };
    let port_number = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0);
    if port_number(container).is_none() {
        return Err(format!(
            "{spec:?}: container port {container:?} is not a port number (1-65535)"
        ));
    }
    if let Some(h) = host.filter(|h| !h.is_empty()) {
        if port_number(h).is_none() {
            return Err(format!(
                "{spec:?}: host port {h:?} is not a port number (1-65535)"
            ));
        }
    }
    let binding = host.map(|h| PortBinding {
        host_ip: ip.filter(|i| !i.is_empty()).map(str::to_string),
        host_port: Some(h.to_string()),
    });
    Ok(Port {
        container: format!("{container}/{proto}"),
        binding,
    })
}

/// `name:/path[:ro]` (a named volume) or `/host/path:/path[:ro]` (a bind mount).
fn parse_volume(spec: &str) -> std::result::Result<Mount, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [s, d] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        [s, d, "rw"] => (*s, *d, false),
        _ => {
            return Err(format!(
                "{spec:?}: expected name:/path or /host/path:/path, optionally followed by :ro"
            ))
        }
    };
    if !dst.starts_with('/') {
        return Err(format!(
            "{spec:?}: the mount point {dst:?} must be absolute"
        ));
    }
    let typ = if src.starts_with('/') {
        MountType::BIND
    } else if valid_volume_name(src) {
        MountType::VOLUME
    } else {
        return Err(format!(
            "{spec:?}: {src:?} is neither an absolute host path nor a volume name \
             ([a-zA-Z0-9][a-zA-Z0-9_.-]+)"
        ));
    };
    Ok(Mount {
        target: Some(dst.to_string()),
        source: Some(src.to_string()),
        typ: Some(typ),
        read_only: Some(ro),
        ..Default::default()
    })
}

/// True for names Docker accepts for volumes (and containers): `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Bytes from `67108864` or `"64m"` (suffixes b, k, m, g, t, optionally followed by `b`;
/// powers of 1024, as Docker reads them).
fn parse_memory(v: &Value) -> std::result::Result<i64, String> {
    let bytes = match v {
        Value::Number(n) => n
            .as_i64()
            .filter(|b| *b > 0)
            .ok_or_else(|| format!("{n} is not a positive number of bytes"))?,
        Value::String(s) => {
            let lower = s.trim().to_ascii_lowercase();
            let digits_end = lower
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(lower.len());
            let (num, unit) = lower.split_at(digits_end);
            let unit = unit.trim();
            let unit = if unit.len() == 2 {
                unit.strip_suffix('b').unwrap_or(unit)
            } else {
                unit
            };
            let shift = match unit {
                "" | "b" => 0,
                "k" => 10,
                "m" => 20,
                "g" => 30,
                "t" => 40,
                _ => return Err(format!("{s:?}: expected a size like \"64m\" or \"1g\"")),
            };
            let n: i64 = num
                .parse()
                .map_err(|_| format!("{s:?}: expected a size like \"64m\" or \"1g\""))?;
            n.checked_mul(1i64 << shift)
                .filter(|b| *b > 0)
                .ok_or_else(|| format!("{s:?} is not a positive size"))?
        }
        other => {
            return Err(format!(
                "expected a size like \"64m\", got {}",
                kind_of(other)
            ))
        }
    };
    Ok(bytes)
}

/// The field names serde knows for struct `T`, read from its `Deserialize` implementation.
fn struct_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};

    struct Probe(Option<&'static [&'static str]>);

    impl<'de> de::Deserializer<'de> for &mut Probe {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(de::Error::custom("probed"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut probe = Probe(None);
    let _ = T::deserialize(&mut probe);
    probe.0.unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        DockerProperties::parse(&v).unwrap_err().to_string()
    }

    #[test]
    fn field_lists_come_from_the_models() {
        let config = struct_fields::<ContainerConfig>();
        assert!(config.contains(&"Image") && config.contains(&"Env"));
        assert!(!config.contains(&"HostConfig"));
        let hc = struct_fields::<HostConfig>();
        assert!(hc.contains(&"Memory") && hc.contains(&"PortBindings") && hc.contains(&"Binds"));
    }

    #[test]
    fn short_form_becomes_a_container() {
        let p = DockerProperties::parse(&json!({
            "image": "busybox:latest",
            "command": ["sh", "-c", "sleep 1"],
            "env": {"A": "1"},
            "ports": ["8080:80", "127.0.0.1::53/udp", "9000"],
            "volumes": ["data:/data", "/tmp:/host-tmp:ro"],
            "memory": "64m",
            "cpus": 0.5,
            "network": "backend",
            "labels": {"tier": "web"},
            "healthcheck": {"cmd": "true", "interval": "1s", "retries": 2}
        }))
        .unwrap();
        assert_eq!(p.image(), "busybox:latest");
        assert_eq!(p.user_network_mode(), Some("backend"));
        assert_eq!(&p.labels()["tier"], "web");
        assert_eq!(p.mounted_volumes()["data"], "/data");
        let body = p.container_body(
            Tags::from([("infrakit.group", "g")]),
            &[("A".into(), "2".into()), ("B".into(), "3".into())],
            vec![],
        );
        assert_eq!(body.env.unwrap(), vec!["A=2", "B=3"]);
        let hc = body.host_config.unwrap();
        assert_eq!(hc.memory, Some(64 << 20));
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        let pb = hc.port_bindings.unwrap();
        assert_eq!(
            pb["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("8080")
        );
        assert_eq!(
            pb["53/udp"].as_ref().unwrap()[0].host_ip.as_deref(),
            Some("127.0.0.1")
        );
        assert!(!pb.contains_key("9000/tcp"));
        assert_eq!(body.exposed_ports.unwrap().len(), 3);
        assert_eq!(
            body.healthcheck.unwrap().interval,
            Some(Duration::from_secs(1).as_nanos() as i64)
        );
    }

    #[test]
    fn original_form_keeps_docker_field_names() {
        let p = DockerProperties::parse(&json!({
            "Config": {"Image": "busybox", "Env": ["A=1"], "Labels": {"x": "1"}},
            "HostConfig": {"Memory": 1048576, "Binds": ["vol:/v"]},
            "NetworkAttachments": [{"Name": "n1", "Driver": "bridge"}],
            "Tags": {"y": "2"}
        }))
        .unwrap();
        assert_eq!(p.image(), "busybox");
        assert_eq!(p.networks()[0].name, "n1");
        assert_eq!(p.labels().len(), 2);
        assert_eq!(p.mounted_volumes()["vol"], "/v");
        let body = p.container_body(Tags::new(), &[], vec![]);
        assert_eq!(body.env.unwrap(), vec!["A=1"]);
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err(json!({})).starts_with("Properties.image: missing"));
        assert!(err(Value::Null).starts_with("Properties.image: missing"));
        assert!(
            err(json!({"image": "x", "imgae": "y"})).starts_with("Properties.imgae: unknown field")
        );
        assert!(err(json!({"image": "x", "Config": {}})).starts_with("Properties: mixes"));
        assert!(
            err(json!({"Config": {"Cmd": ["x"]}})).starts_with("Properties.Config.Image: missing")
        );
        assert!(err(json!({"Config": {"Image": "x", "Imgae": 1}}))
            .starts_with("Properties.Config.Imgae: unknown field"));
        assert!(
            err(json!({"Config": {"Image": "x"}, "HostConfig": {"Memroy": 1}}))
                .starts_with("Properties.HostConfig.Memroy: unknown field")
        );
        assert!(err(json!({"Config": {"Image": "x", "Env": "A=1"}}))
            .starts_with("Properties.Config.Env"));
        assert!(err(json!({"image": "x", "memory": "lots"})).starts_with("Properties.memory"));
        assert!(err(json!({"image": "x", "cpus": 0})).starts_with("Properties.cpus"));
        assert!(
            err(json!({"image": "x", "ports": ["80", "a:b"]})).starts_with("Properties.ports[1]")
        );
        assert!(err(json!({"image": "x", "volumes": ["rel:path"]}))
            .starts_with("Properties.volumes[0]"));
        assert!(err(json!({"image": "x", "env": {"A": 1}})).starts_with("Properties.env.A"));
        assert!(err(json!({"image": ""})).starts_with("Properties.image: must not be empty"));
        assert!(err(json!("busybox")).starts_with("Properties: expected an object"));
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory(&json!("64m")), Ok(64 << 20));
        assert_eq!(parse_memory(&json!("1GB")), Ok(1 << 30));
        assert_eq!(parse_memory(&json!("512k")), Ok(512 << 10));
        assert_eq!(parse_memory(&json!(1000)), Ok(1000));
        assert!(parse_memory(&json!("-1m")).is_err());
        assert!(parse_memory(&json!("m")).is_err());
    }

    #[test]
    fn volume_names() {
        assert!(valid_volume_name("data-db1"));
        assert!(valid_volume_name("data-"));
        assert!(!valid_volume_name("d"));
        assert!(!valid_volume_name("-data"));
        assert!(!valid_volume_name("a/b"));
    }
}
