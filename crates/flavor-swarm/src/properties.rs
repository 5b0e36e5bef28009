//! The flavor's properties: which manager engine to ask, how an instance joins, which labels its
//! engine gets, and the timings of health and drain.
//!
//! ```json
//! {
//!   "Docker": {"Host": "tcp://10.200.1.1:2375"},
//!   "Join": "Command",
//!   "EngineLabels": {"zone": "a"},
//!   "Health": {"JoinGrace": "2m", "Timeout": "5s"},
//!   "Drain": {"Timeout": "20s", "RemoveDownAfter": "1m"}
//! }
//! ```
//!
//! Every field is optional except `DockerRestartCommand` with `Join: Init` (the default). Errors
//! name the bad field, e.g. `Properties.EngineLabels.zone` or `Properties.Health.JoinGrace`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use infrakit_spi::error::decode_at;
use infrakit_spi::{Allocation, Attachment, Error, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::link::RESERVED_LABELS;
use crate::role::Role;

/// Path prefix of every error reported while parsing properties.
const PREFIX: &str = "Properties";

/// The port of swarm's manager API (`docker swarm join <addr>:2377`).
pub const SWARM_PORT: u16 = 2377;
/// Where the Docker engine of a machine reads its configuration by default.
pub const DEFAULT_DAEMON_CONFIG: &str = "/etc/docker/daemon.json";
/// The Docker command line client the join runs, looked up in `PATH`.
pub const DEFAULT_DOCKER_CLI: &str = "docker";
/// The key under `Attachments` whose attachments every instance gets.
pub const ALL_INSTANCES: &str = "*";

/// The parsed, validated properties.
#[derive(Debug, Clone, PartialEq)]
pub struct SwarmProperties {
    /// The Docker API endpoint of a swarm manager (`unix:///path`, `tcp://host:port`), asked for
    /// the join tokens, the node list and node changes. `None`: `DOCKER_HOST`, else
    /// `unix:///var/run/docker.sock`.
    pub docker_host: Option<String>,
    /// Swarm addresses to join (`SwarmJoinIP`, with port 2377 added when missing); `None`: the
    /// managers the swarm reports.
    pub join_addresses: Option<Vec<String>>,
    /// How the join gets onto the instance.
    pub join: JoinMode,
    /// The Docker client the join runs on the instance.
    pub docker_cli: String,
    /// Extra labels of the instance's engine.
    pub engine_labels: BTreeMap<String, String>,
    /// Attachments by logical ID (`*`: every instance).
    pub attachments: BTreeMap<String, Vec<Attachment>>,
    /// How health is judged.
    pub health: HealthSettings,
    /// How nodes leave the swarm.
    pub drain: DrainSettings,
}

/// How the join gets onto the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinMode {
    /// A machine whose engine runs as a service: `Init` writes the engine's labels to its
    /// configuration file, restarts it and joins.
    Init {
        /// The shell command that restarts the engine (e.g. `systemctl restart docker`).
        restart_command: String,
        /// The engine's configuration file, rewritten with the labels.
        daemon_config: PathBuf,
    },
    /// The instance's command is a `dockerd` (the process instance plugin): the flavor appends
    /// the labels to its arguments and runs it under a shell that joins once it answers.
    Command,
}

/// How a node's state becomes a health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    /// An instance not (yet) a ready node of the swarm is Unknown this long after Prepare, then
    /// Unhealthy.
    pub join_grace: Duration,
    /// How long the manager may take to answer.
    pub timeout: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            join_grace: Duration::from_secs(120),
            timeout: Duration::from_secs(5),
        }
    }
}

/// How nodes leave the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainSettings {
    /// How long Drain waits for a manager's demotion and for the tasks of a drained node to
    /// stop, before it removes the node anyway.
    pub timeout: Duration,
    /// A node of the group that has been down this long is removed from the swarm (its instance
    /// is gone or will be replaced); zero never removes one.
    pub remove_down_after: Duration,
}

impl Default for DrainSettings {
    fn default() -> Self {
        DrainSettings {
            timeout: Duration::from_secs(20),
            remove_down_after: Duration::from_secs(60),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(rename = "Docker", default)]
    docker: Option<RawDocker>,
    #[serde(rename = "SwarmJoinIP", default)]
    swarm_join_ip: Option<OneOrMany>,
    #[serde(rename = "Join", default)]
    join: Option<RawJoin>,
    #[serde(rename = "DockerRestartCommand", default)]
    docker_restart_command: Option<String>,
    #[serde(rename = "DaemonConfig", default)]
    daemon_config: Option<PathBuf>,
    #[serde(rename = "DockerCLI", default)]
    docker_cli: Option<String>,
    #[serde(rename = "EngineLabels", default)]
    engine_labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "Attachments", default)]
    attachments: Option<BTreeMap<String, Vec<Attachment>>>,
    #[serde(rename = "Health", default)]
    health: Option<RawHealth>,
    #[serde(rename = "Drain", default)]
    drain: Option<RawDrain>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDocker {
    #[serde(rename = "Host", default)]
    host: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
enum RawJoin {
    Init,
    Command,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    #[serde(rename = "JoinGrace", default)]
    join_grace: Option<String>,
    #[serde(rename = "Timeout", default)]
    timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDrain {
    #[serde(rename = "Timeout", default)]
    timeout: Option<String>,
    #[serde(rename = "RemoveDownAfter", default)]
    remove_down_after: Option<String>,
}

/// Fails when `s` holds a line break or NUL, which would break a script or a label.
fn single_line(path: &str, s: &str) -> Result<()> {
    if s.contains(['\n', '\r', '\0']) {
        return Err(Error::invalid(path, "must be a single line without NUL"));
    }
    Ok(())
}

fn non_blank(path: &str, s: &str) -> Result<()> {
    if s.trim().is_empty() {
        return Err(Error::invalid(path, "must not be blank"));
    }
    single_line(path, s)
}

fn duration(path: &str, s: Option<String>, default: Duration) -> Result<Duration> {
    match s {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s.trim()).map_err(|e| {
            Error::invalid(
                path,
                format!("invalid duration {s:?}: {e} (use e.g. \"30s\", \"2m\")"),
            )
        }),
    }
}

/// The engine endpoint `host` written as bollard expects it: an absolute path becomes
/// `unix://<path>`. Fails unless it is `unix://`, `tcp://` or `http://`.
pub fn normalize_host(host: &str) -> std::result::Result<String, String> {
    let host = host.trim();
    if host.starts_with('/') {
        return Ok(format!("unix://{host}"));
    }
    for scheme in ["unix://", "tcp://", "http://"] {
        if let Some(rest) = host.strip_prefix(scheme) {
            if rest.is_empty() {
                return Err(format!("{host:?} names no address"));
            }
            return Ok(host.to_string());
        }
    }
    Err(format!(
        "{host:?} is not a Docker endpoint: use unix:///path/docker.sock or tcp://host:2375"
    ))
}

/// True for a host name or interface name: letters, digits, `-`, `_` and `.`.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A swarm address `host[:port]` (an IP address, a host or an interface name), with the port
/// checked; IPv6 addresses with a port are written `[addr]:port`.
pub fn parse_address(s: &str) -> std::result::Result<(String, Option<u16>), String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip.to_string(), None));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        if sa.port() == 0 {
            return Err(format!("{s:?}: the port must be a number from 1 to 65535"));
        }
        return Ok((sa.ip().to_string(), Some(sa.port())));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{s:?}: the port must be a number from 1 to 65535"))?;
            (h, Some(port))
        }
        None => (s, None),
    };
    if !is_host_name(host) {
        return Err(format!(
            "{s:?} is not an address: use an IP address, a host or an interface name, optionally with :port"
        ));
    }
    Ok((host.to_string(), port))
}

/// `addr` with port 2377 added when it has none.
pub fn with_swarm_port(addr: &str) -> std::result::Result<String, String> {
    let (host, port) = parse_address(addr)?;
    let port = port.unwrap_or(SWARM_PORT);
    Ok(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

fn check_label(path: &str, key: &str, value: &str) -> Result<()> {
    if key.is_empty() || key.contains(|c: char| c == '=' || c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            path,
            "a label name must be non-empty, without '=', spaces or control characters",
        ));
    }
    if value.contains(|c: char| c.is_control()) {
        return Err(Error::invalid(path, "must not contain control characters"));
    }
    Ok(())
}

impl RawDocker {
    /// `Docker.Host`, normalised ([`normalize_host`]).
    fn host(self) -> Result<Option<String>> {
        self.host
            .map(|h| {
                normalize_host(&h).map_err(|e| Error::invalid(format!("{PREFIX}.Docker.Host"), e))
            })
            .transpose()
    }
}

impl OneOrMany {
    /// `SwarmJoinIP`: at least one address, each with the swarm port added when it has none.
    fn addresses(self) -> Result<Vec<String>> {
        let (list, single) = match self {
            OneOrMany::One(s) => (vec![s], true),
            OneOrMany::Many(v) => (v, false),
        };
        if list.is_empty() {
            return Err(Error::invalid(
                format!("{PREFIX}.SwarmJoinIP"),
                "must name at least one manager address",
            ));
        }
        let mut out = Vec::new();
        for (i, a) in list.iter().enumerate() {
            let path = if single {
                format!("{PREFIX}.SwarmJoinIP")
            } else {
                format!("{PREFIX}.SwarmJoinIP[{i}]")
            };
            out.push(with_swarm_port(a).map_err(|e| Error::invalid(path, e))?);
        }
        Ok(out)
    }
}

impl RawJoin {
    /// The join mode, with `DockerRestartCommand` and `DaemonConfig`: required (the first) and
    /// checked with `Join: Init`, refused with `Join: Command`.
    fn mode(
        self,
        restart_command: Option<String>,
        daemon_config: Option<PathBuf>,
    ) -> Result<JoinMode> {
        match self {
            RawJoin::Init => init_join(restart_command, daemon_config),
            RawJoin::Command => {
                for (given, field) in [
                    (restart_command.is_some(), "DockerRestartCommand"),
                    (daemon_config.is_some(), "DaemonConfig"),
                ] {
                    if given {
                        return Err(Error::invalid(
                            format!("{PREFIX}.{field}"),
                            "only used with Join: Init; with Join: Command the engine is the instance's own command",
                        ));
                    }
                }
                Ok(JoinMode::Command)
            }
        }
    }
}

/// `Join: Init`: the command that restarts the engine (required) and its configuration file.
fn init_join(restart_command: Option<String>, daemon_config: Option<PathBuf>) -> Result<JoinMode> {
    let path = format!("{PREFIX}.DockerRestartCommand");
    let restart_command = restart_command.ok_or_else(|| {
        Error::invalid(
            &path,
            "required with Join: Init (the default): the command that restarts the \
             instance's Docker engine so it picks up its labels, e.g. \
             \"systemctl restart docker\"; or use Join: Command when the instance's \
             command is a dockerd (the process plugin)",
        )
    })?;
    if restart_command.trim().is_empty() || restart_command.contains('\0') {
        return Err(Error::invalid(path, "must be a non-blank shell command"));
    }
    let path = format!("{PREFIX}.DaemonConfig");
    let daemon_config = daemon_config.unwrap_or_else(|| PathBuf::from(DEFAULT_DAEMON_CONFIG));
    single_line(&path, &daemon_config.to_string_lossy())?;
    if !daemon_config.is_absolute() || daemon_config.parent().is_none() {
        return Err(Error::invalid(path, "must be an absolute path to a file"));
    }
    Ok(JoinMode::Init {
        restart_command,
        daemon_config,
    })
}

/// Checks `EngineLabels`: label syntax, and none of the labels the flavor sets itself.
fn check_engine_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in labels {
        let path = format!("{PREFIX}.EngineLabels.{k}");
        check_label(&path, k, v)?;
        if RESERVED_LABELS.contains(&k.as_str()) {
            return Err(Error::invalid(
                path,
                "set by the flavor: it ties the node to its instance and group",
            ));
        }
    }
    Ok(())
}

/// Checks `Attachments`: every attachment has an ID.
fn check_attachments(attachments: &BTreeMap<String, Vec<Attachment>>) -> Result<()> {
    for (key, list) in attachments {
        for (i, a) in list.iter().enumerate() {
            if a.id.trim().is_empty() {
                return Err(Error::invalid(
                    format!("{PREFIX}.Attachments.{key}[{i}].ID"),
                    "must not be blank",
                ));
            }
        }
    }
    Ok(())
}

impl RawHealth {
    /// `Health`, with the defaults for what is not given; `Timeout` must be more than 0.
    fn settings(self) -> Result<HealthSettings> {
        let hd = HealthSettings::default();
        let health = HealthSettings {
            join_grace: duration(
                &format!("{PREFIX}.Health.JoinGrace"),
                self.join_grace,
                hd.join_grace,
            )?,
            timeout: duration(
                &format!("{PREFIX}.Health.Timeout"),
                self.timeout,
                hd.timeout,
            )?,
        };
        if health.timeout.is_zero() {
            return Err(Error::invalid(
                format!("{PREFIX}.Health.Timeout"),
                "must be more than 0",
            ));
        }
        Ok(health)
    }
}

impl RawDrain {
    /// `Drain`, with the defaults for what is not given.
    fn settings(self) -> Result<DrainSettings> {
        let dd = DrainSettings::default();
        Ok(DrainSettings {
            timeout: duration(&format!("{PREFIX}.Drain.Timeout"), self.timeout, dd.timeout)?,
            remove_down_after: duration(
                &format!("{PREFIX}.Drain.RemoveDownAfter"),
                self.remove_down_after,
                dd.remove_down_after,
            )?,
        })
    }
}

impl SwarmProperties {
    /// Decodes and checks the properties; errors name the bad field under `Properties`.
    /// `null` (no properties) gives the defaults, which need a `DockerRestartCommand` to join
    /// with `Init`, so it fails.
    pub fn parse(properties: &Value) -> Result<SwarmProperties> {
        let empty = Value::Object(Default::default());
        let properties = if properties.is_null() {
            &empty
        } else {
            properties
        };
        if !properties.is_object() {
            return Err(Error::invalid(PREFIX, "must be an object"));
        }
        let raw: Raw = decode_at(PREFIX, properties)?;
        let docker_host = raw.docker.unwrap_or_default().host()?;
        let join_addresses = raw.swarm_join_ip.map(OneOrMany::addresses).transpose()?;
        let join = raw
            .join
            .unwrap_or(RawJoin::Init)
            .mode(raw.docker_restart_command, raw.daemon_config)?;
        let docker_cli = raw
            .docker_cli
            .unwrap_or_else(|| DEFAULT_DOCKER_CLI.to_string());
        non_blank(&format!("{PREFIX}.DockerCLI"), &docker_cli)?;
        let engine_labels = raw.engine_labels.unwrap_or_default();
        check_engine_labels(&engine_labels)?;
        let attachments = raw.attachments.unwrap_or_default();
        check_attachments(&attachments)?;
        let health = raw.health.unwrap_or_default().settings()?;
        let drain = raw.drain.unwrap_or_default().settings()?;
        Ok(SwarmProperties {
            docker_host,
            join_addresses,
            join,
            docker_cli,
            engine_labels,
            attachments,
            health,
            drain,
        })
    }

    /// Checks the properties against the group's allocation for `role`: managers need logical
    /// IDs that are their advertise addresses; `Attachments` may only name logical IDs of the
    /// group (or `*`).
    pub fn check_allocation(&self, role: Role, allocation: &Allocation) -> Result<()> {
        let ids: &[String] = match &allocation.logical_ids {
            Some(ids) if !ids.is_empty() => ids,
            _ => &[],
        };
        if role == Role::Manager {
            if ids.is_empty() {
                return Err(Error::invalid(
                    PREFIX,
                    "a manager group must allocate by logical IDs, each the manager's advertise \
                     address (e.g. LogicalIDs: [10.0.0.11, 10.0.0.12]), not by size",
                ));
            }
            for (i, id) in ids.iter().enumerate() {
                parse_address(id).map_err(|e| {
                    Error::invalid(
                        PREFIX,
                        format!("a manager's logical ID is its advertise address, but LogicalIDs[{i}] is not one: {e}"),
                    )
                })?;
                if ids[..i].contains(id) {
                    return Err(Error::invalid(
                        PREFIX,
                        format!("LogicalIDs[{i}] ({id:?}) is listed twice"),
                    ));
                }
            }
        }
        for key in self.attachments.keys() {
            if key != ALL_INSTANCES && !ids.contains(key) {
                return Err(Error::invalid(
                    format!("{PREFIX}.Attachments.{key}"),
                    "not a logical ID of the group: attachments are keyed by logical ID, or \"*\" for every instance",
                ));
            }
        }
        Ok(())
    }

    /// The attachments of the instance with `logical_id`: those under `*`, then its own.
    pub fn attachments_for(&self, logical_id: Option<&str>) -> Vec<Attachment> {
        let mut out: Vec<Attachment> = self
            .attachments
            .get(ALL_INSTANCES)
            .cloned()
            .unwrap_or_default();
        if let Some(own) = logical_id.and_then(|id| self.attachments.get(id)) {
            out.extend(own.iter().cloned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> (String, String) {
        match SwarmProperties::parse(&v).unwrap_err() {
            Error::Invalid { path, message } => (path, message),
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn command_properties_get_the_defaults() {
        let p = SwarmProperties::parse(&json!({"Join": "Command"})).unwrap();
        assert_eq!(p.join, JoinMode::Command);
        assert_eq!(p.docker_host, None);
        assert_eq!(p.join_addresses, None);
        assert_eq!(p.docker_cli, "docker");
        assert!(p.engine_labels.is_empty() && p.attachments.is_empty());
        assert_eq!(p.health, HealthSettings::default());
        assert_eq!(p.drain, DrainSettings::default());
    }

    #[test]
    fn init_properties_in_full() {
        let p = SwarmProperties::parse(&json!({
            "Docker": {"Host": "/run/docker.sock"},
            "SwarmJoinIP": ["10.0.0.1", "10.0.0.2:4000", "::1", "[fe80::1]:2377", "mgr.local"],
            "DockerRestartCommand": "systemctl restart docker",
            "DaemonConfig": "/etc/docker/infrakit.json",
            "DockerCLI": "/usr/bin/docker",
            "EngineLabels": {"zone": "a", "com.example.tier": "web"},
            "Attachments": {"*": [{"ID": "logs", "Type": "volume"}]},
            "Health": {"JoinGrace": "30s", "Timeout": "2s"},
            "Drain": {"Timeout": "5s", "RemoveDownAfter": "0s"},
        }))
        .unwrap();
        assert_eq!(p.docker_host.as_deref(), Some("unix:///run/docker.sock"));
        assert_eq!(
            p.join_addresses.unwrap(),
            [
                "10.0.0.1:2377",
                "10.0.0.2:4000",
                "[::1]:2377",
                "[fe80::1]:2377",
                "mgr.local:2377"
            ]
        );
        assert_eq!(
            p.join,
            JoinMode::Init {
                restart_command: "systemctl restart docker".into(),
                daemon_config: "/etc/docker/infrakit.json".into(),
            }
        );
        assert_eq!(p.engine_labels["zone"], "a");
        assert_eq!(p.health.join_grace, Duration::from_secs(30));
        assert_eq!(p.drain.remove_down_after, Duration::ZERO);
        let one =
            SwarmProperties::parse(&json!({"Join": "Command", "SwarmJoinIP": "10.0.0.9"})).unwrap();
        assert_eq!(one.join_addresses.unwrap(), ["10.0.0.9:2377"]);
        let tcp = SwarmProperties::parse(
            &json!({"Join": "Command", "Docker": {"Host": "tcp://10.200.1.1:2375"}}),
        )
        .unwrap();
        assert_eq!(tcp.docker_host.as_deref(), Some("tcp://10.200.1.1:2375"));
    }

    #[test]
    fn bad_fields_are_reported_with_their_path() {
        let cmd = |extra: Value| {
            let mut v = json!({"Join": "Command"});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        for (v, want) in [
            (json!([]), "Properties"),
            (json!({}), "Properties.DockerRestartCommand"),
            (json!(null), "Properties.DockerRestartCommand"),
            (
                json!({"DockerRestartCommand": " "}),
                "Properties.DockerRestartCommand",
            ),
            (
                json!({"DockerRestartCommand": "x", "DaemonConfig": "daemon.json"}),
                "Properties.DaemonConfig",
            ),
            (json!({"Join": "Ssh"}), "Properties.Join"),
            (cmd(json!({"Extra": 1})), "Properties.Extra"),
            (
                cmd(json!({"DockerRestartCommand": "x"})),
                "Properties.DockerRestartCommand",
            ),
            (
                cmd(json!({"DaemonConfig": "/etc/docker/daemon.json"})),
                "Properties.DaemonConfig",
            ),
            (
                cmd(json!({"Docker": {"Host": "10.0.0.1:2375"}})),
                "Properties.Docker.Host",
            ),
            (cmd(json!({"Docker": {"TLS": {}}})), "Properties.Docker.TLS"),
            (cmd(json!({"SwarmJoinIP": []})), "Properties.SwarmJoinIP"),
            (
                cmd(json!({"SwarmJoinIP": "10.0.0.1:x"})),
                "Properties.SwarmJoinIP",
            ),
            (
                cmd(json!({"SwarmJoinIP": ["10.0.0.1", "a b"]})),
                "Properties.SwarmJoinIP[1]",
            ),
            (cmd(json!({"DockerCLI": ""})), "Properties.DockerCLI"),
            (
                cmd(json!({"EngineLabels": {"a=b": "1"}})),
                "Properties.EngineLabels.a=b",
            ),
            (
                cmd(json!({"EngineLabels": {"x": "1\n2"}})),
                "Properties.EngineLabels.x",
            ),
            (
                cmd(json!({"EngineLabels": {"x": 1}})),
                "Properties.EngineLabels.x",
            ),
            (
                cmd(json!({"EngineLabels": {"infrakit-link": "mine"}})),
                "Properties.EngineLabels.infrakit-link",
            ),
            (
                cmd(json!({"Attachments": {"*": [{"ID": " "}]}})),
                "Properties.Attachments.*[0].ID",
            ),
            (
                cmd(json!({"Health": {"JoinGrace": "soon"}})),
                "Properties.Health.JoinGrace",
            ),
            (
                cmd(json!({"Health": {"Timeout": "0s"}})),
                "Properties.Health.Timeout",
            ),
            (
                cmd(json!({"Drain": {"RemoveDownAfter": 5}})),
                "Properties.Drain.RemoveDownAfter",
            ),
        ] {
            assert_eq!(err(v.clone()).0, want, "{v}");
        }
        assert!(err(json!({})).1.contains("systemctl restart docker"));
    }

    #[test]
    fn managers_need_address_logical_ids() {
        let p = SwarmProperties::parse(&json!({"Join": "Command"})).unwrap();
        let invalid = |r: Result<()>| match r.unwrap_err() {
            Error::Invalid { path, message } => (path, message),
            other => panic!("unexpected error {other}"),
        };
        p.check_allocation(
            Role::Manager,
            &Allocation::pets(&["10.0.0.1", "10.0.0.2:2377", "eth0"]),
        )
        .unwrap();
        p.check_allocation(Role::Worker, &Allocation::size(3))
            .unwrap();
        p.check_allocation(Role::Worker, &Allocation::pets(&["any name", "b"]))
            .unwrap();
        let (path, msg) = invalid(p.check_allocation(Role::Manager, &Allocation::size(3)));
        assert_eq!(path, "Properties");
        assert!(msg.contains("logical IDs"), "{msg}");
        let (_, msg) =
            invalid(p.check_allocation(Role::Manager, &Allocation::pets(&["10.0.0.1", "a b"])));
        assert!(msg.contains("LogicalIDs[1]"), "{msg}");
        let (_, msg) = invalid(
            p.check_allocation(Role::Manager, &Allocation::pets(&["10.0.0.1", "10.0.0.1"])),
        );
        assert!(msg.contains("twice"), "{msg}");

        let with = SwarmProperties::parse(&json!({
            "Join": "Command",
            "Attachments": {"*": [{"ID": "all"}], "10.0.0.1": [{"ID": "mine", "Type": "ebs"}]},
        }))
        .unwrap();
        with.check_allocation(Role::Manager, &Allocation::pets(&["10.0.0.1"]))
            .unwrap();
        let (path, _) =
            invalid(with.check_allocation(Role::Manager, &Allocation::pets(&["10.0.0.2"])));
        assert_eq!(path, "Properties.Attachments.10.0.0.1");
        let (path, _) = invalid(with.check_allocation(Role::Worker, &Allocation::size(2)));
        assert_eq!(path, "Properties.Attachments.10.0.0.1");
        let ids = |a: Vec<Attachment>| a.into_iter().map(|a| a.id).collect::<Vec<_>>();
        assert_eq!(ids(with.attachments_for(Some("10.0.0.1"))), ["all", "mine"]);
        assert_eq!(ids(with.attachments_for(Some("10.0.0.3"))), ["all"]);
        assert_eq!(ids(with.attachments_for(None)), ["all"]);
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("10.0.0.1").unwrap(),
            ("10.0.0.1".into(), None)
        );
        assert_eq!(
            parse_address("10.0.0.1:4000").unwrap(),
            ("10.0.0.1".into(), Some(4000))
        );
        assert_eq!(
            parse_address("eth0:2377").unwrap(),
            ("eth0".into(), Some(2377))
        );
        assert!(parse_address("10.0.0.1:0").is_err());
        assert!(parse_address("").is_err());
        assert!(parse_address("a;b").is_err());
        assert_eq!(with_swarm_port("::1").unwrap(), "[::1]:2377");
        assert_eq!(normalize_host("unix:///x.sock").unwrap(), "unix:///x.sock");
        assert!(normalize_host("tcp://").is_err());
    }
}
