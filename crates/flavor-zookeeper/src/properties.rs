//! The flavor's properties: where members keep their data, which `zoo.cfg` settings they get,
//! how ZooKeeper is started and how health is judged.
//!
//! ```json
//! {
//!   "DataDir": "/var/lib/zookeeper",
//!   "Members": ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
//!   "Config": {"tickTime": 2000, "initLimit": 10, "syncLimit": 5},
//!   "Run": {"Java": "java", "Classpath": ["/usr/share/java/zookeeper.jar"], "JvmFlags": ["-Xmx256m"]},
//!   "Health": {"StartupGrace": "60s", "ElectionGrace": "30s", "Timeout": "2s"}
//! }
//! ```
//!
//! Only `DataDir` is required. Errors name the bad field, e.g. `Properties.Config.tickTime` or
//! `Properties.Members[2]`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use infrakit_spi::error::decode_at;
use infrakit_spi::{Allocation, Error, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::member::Ensemble;

/// Path prefix of every error reported while parsing properties.
const PREFIX: &str = "Properties";

/// The Debian/Ubuntu location of ZooKeeper's server jar (package `zookeeper`); its manifest
/// names the jars it needs.
pub const DEFAULT_CLASSPATH: &str = "/usr/share/java/zookeeper.jar";
/// The Java launcher used when `Run.Java` is not given, looked up in `PATH`.
pub const DEFAULT_JAVA: &str = "java";
/// ZooKeeper's server main class.
pub const MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";
/// The four-letter words allowed when `Config` does not say: the health check needs `srvr`.
pub const DEFAULT_FOUR_LETTER_WORDS: &str = "srvr,ruok,mntr,conf,stat,isro";

/// `zoo.cfg` settings the flavor writes from other properties; `Config` may not set them.
const RESERVED: &[(&str, &str)] = &[
    ("dataDir", "it is DataDir/<myid>/data"),
    ("clientPort", "it comes from the member's logical ID"),
];

/// The parsed, validated properties.
#[derive(Debug, Clone, PartialEq)]
pub struct ZooKeeperProperties {
    /// Root of the members' directories: member N keeps `zoo.cfg`, `data/` and `logs/` in
    /// `<DataDir>/<N>`.
    pub data_dir: PathBuf,
    /// The ensemble, when given explicitly (otherwise the allocation's logical IDs).
    pub members: Option<Vec<String>>,
    /// `zoo.cfg` settings: the defaults ([`ZooKeeperProperties::DEFAULT_CONFIG`]) overridden and
    /// extended by `Config`, values as written.
    pub config: BTreeMap<String, String>,
    /// How ZooKeeper is started.
    pub run: Launcher,
    /// How health is judged.
    pub health: HealthSettings,
}

/// How a member's ZooKeeper server is started, in the foreground.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launcher {
    /// `java <flags> -cp <classpath> QuorumPeerMain <zoo.cfg>`.
    Java {
        /// The Java launcher.
        java: String,
        /// Class path entries, joined with `:`.
        classpath: Vec<String>,
        /// JVM flags, e.g. `-Xmx128m`.
        jvm_flags: Vec<String>,
    },
    /// `<script> start-foreground <zoo.cfg>` (ZooKeeper's `zkServer.sh`), with `JVMFLAGS` and
    /// `ZOO_LOG_DIR` set.
    Script {
        /// Path of `zkServer.sh`.
        script: String,
        /// JVM flags, passed in `JVMFLAGS`.
        jvm_flags: Vec<String>,
    },
}

/// How a member's answers to `srvr` become a health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    /// A member that has not served yet is Unknown for this long after it was first seen (or
    /// started), then Unhealthy.
    pub startup_grace: Duration,
    /// A member that served and stopped (a leader election) still counts as Healthy for this
    /// long, then Unhealthy.
    pub election_grace: Duration,
    /// How long one `srvr` may take.
    pub timeout: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            startup_grace: Duration::from_secs(60),
            election_grace: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(rename = "DataDir")]
    data_dir: PathBuf,
    #[serde(rename = "Members", default)]
    members: Option<Vec<String>>,
    #[serde(rename = "Config", default)]
    config: Option<BTreeMap<String, Value>>,
    #[serde(rename = "Run", default)]
    run: Option<RawRun>,
    #[serde(rename = "Health", default)]
    health: Option<RawHealth>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRun {
    #[serde(rename = "Java", default)]
    java: Option<String>,
    #[serde(rename = "Classpath", default)]
    classpath: Option<Vec<String>>,
    #[serde(rename = "Script", default)]
    script: Option<String>,
    #[serde(rename = "JvmFlags", default)]
    jvm_flags: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    #[serde(rename = "StartupGrace", default)]
    startup_grace: Option<String>,
    #[serde(rename = "ElectionGrace", default)]
    election_grace: Option<String>,
    #[serde(rename = "Timeout", default)]
    timeout: Option<String>,
}

/// Fails when `s` holds a line break or NUL, which would break `zoo.cfg` or the init script.
fn single_line(path: &str, s: &str) -> Result<()> {
    if s.contains(['\n', '\r', '\0']) {
        return Err(Error::invalid(path, "must be a single line without NUL"));
    }
    Ok(())
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

impl ZooKeeperProperties {
    /// Settings every member gets unless `Config` says otherwise.
    pub const DEFAULT_CONFIG: &'static [(&'static str, &'static str)] = &[
        ("tickTime", "2000"),
        ("initLimit", "10"),
        ("syncLimit", "5"),
        ("4lw.commands.whitelist", DEFAULT_FOUR_LETTER_WORDS),
        ("admin.enableServer", "false"),
    ];

    /// Decodes and checks the properties; errors name the bad field under `Properties`.
    pub fn parse(properties: &Value) -> Result<ZooKeeperProperties> {
        if !properties.is_object() {
            return Err(Error::invalid(
                PREFIX,
                "must be an object with at least DataDir",
            ));
        }
        let raw: Raw = decode_at(PREFIX, properties)?;

        let data_dir_path = format!("{PREFIX}.DataDir");
        single_line(&data_dir_path, &raw.data_dir.to_string_lossy())?;
        if !raw.data_dir.is_absolute() {
            return Err(Error::invalid(data_dir_path, "must be an absolute path"));
        }

        if let Some(members) = &raw.members {
            Ensemble::parse(members).map_err(|e| {
                let path = if members.is_empty() {
                    format!("{PREFIX}.Members")
                } else {
                    format!("{PREFIX}.Members[{}]", e.index)
                };
                Error::invalid(path, e.message)
            })?;
        }

        let mut config: BTreeMap<String, String> = Self::DEFAULT_CONFIG
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (key, value) in raw.config.unwrap_or_default() {
            let path = format!("{PREFIX}.Config.{key}");
            check_key(&path, &key)?;
            let value = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(Error::invalid(
                        path,
                        format!("must be a string, number or boolean, got {other}"),
                    ))
                }
            };
            single_line(&path, &value)?;
            if key == "4lw.commands.whitelist" {
                let words: Vec<&str> = value.split(',').map(str::trim).collect();
                if !words.contains(&"*") && !words.contains(&"srvr") {
                    return Err(Error::invalid(
                        path,
                        "must allow srvr (or *): the health check asks each member with srvr",
                    ));
                }
            }
            config.insert(key, value);
        }

        let run = launcher(raw.run.unwrap_or_default())?;

        let h = raw.health.unwrap_or_default();
        let d = HealthSettings::default();
        let health = HealthSettings {
            startup_grace: duration(
                &format!("{PREFIX}.Health.StartupGrace"),
                h.startup_grace,
                d.startup_grace,
            )?,
            election_grace: duration(
                &format!("{PREFIX}.Health.ElectionGrace"),
                h.election_grace,
                d.election_grace,
            )?,
            timeout: duration(&format!("{PREFIX}.Health.Timeout"), h.timeout, d.timeout)?,
        };
        if health.timeout.is_zero() {
            return Err(Error::invalid(
                format!("{PREFIX}.Health.Timeout"),
                "must be more than 0",
            ));
        }

        Ok(ZooKeeperProperties {
            data_dir: raw.data_dir,
            members: raw.members,
            config,
            run,
            health,
        })
    }

    /// The ensemble of a group with `allocation`: `Members` if given, else the allocation's
    /// logical IDs. Every logical ID of the allocation must be a member.
    pub fn ensemble(&self, allocation: &Allocation) -> Result<Ensemble> {
        let ids = allocation
            .logical_ids
            .as_deref()
            .filter(|ids| !ids.is_empty());
        match (&self.members, ids) {
            (Some(members), ids) => {
                let ensemble = Ensemble::parse(members).map_err(|e| {
                    Error::invalid(format!("{PREFIX}.Members[{}]", e.index), e.message)
                })?;
                match ids {
                    None if allocation.size > 0 => Err(Error::invalid(
                        PREFIX,
                        "the group must allocate by logical IDs (one per member it runs), not by size: a member's myid comes from its logical ID",
                    )),
                    None => Ok(ensemble),
                    Some(ids) => {
                        if let Some(id) = ids.iter().find(|id| ensemble.myid(id).is_none()) {
                            return Err(Error::invalid(
                                format!("{PREFIX}.Members"),
                                format!("the group's logical ID {id:?} is not one of the Members"),
                            ));
                        }
                        Ok(ensemble)
                    }
                }
            }
            (None, Some(ids)) => Ensemble::parse(ids).map_err(|e| {
                Error::invalid(
                    PREFIX,
                    format!(
                        "without Members, the group's logical IDs are the ensemble, but LogicalIDs[{}] is not a member address: {}",
                        e.index, e.message
                    ),
                )
            }),
            (None, None) => Err(Error::invalid(
                PREFIX,
                "the group must allocate by logical IDs naming the members (e.g. \"10.0.0.1\" or \"127.0.0.1:2181:2888:3888\"), or give Members",
            )),
        }
    }
}

fn check_key(path: &str, key: &str) -> Result<()> {
    if key.is_empty()
        || key.starts_with('#')
        || key.contains(|c: char| c.is_whitespace() || c.is_control() || c == '=')
    {
        return Err(Error::invalid(
            path,
            "not a zoo.cfg key (no spaces, '=' or leading '#')",
        ));
    }
    if let Some((_, why)) = RESERVED.iter().find(|(k, _)| *k == key) {
        return Err(Error::invalid(path, format!("set by the flavor: {why}")));
    }
    if key.starts_with("server.") {
        return Err(Error::invalid(
            path,
            "set by the flavor: the server.N lines come from the ensemble",
        ));
    }
    Ok(())
}

fn launcher(run: RawRun) -> Result<Launcher> {
    let flags = run.jvm_flags.unwrap_or_default();
    for (i, f) in flags.iter().enumerate() {
        single_line(&format!("{PREFIX}.Run.JvmFlags[{i}]"), f)?;
    }
    let non_blank = |path: &str, s: &str| -> Result<()> {
        if s.trim().is_empty() {
            return Err(Error::invalid(path, "must not be blank"));
        }
        single_line(path, s)
    };
    match run.script {
        Some(script) => {
            if run.java.is_some() || run.classpath.is_some() {
                return Err(Error::invalid(
                    format!("{PREFIX}.Run.Script"),
                    "give either Script, or Java and Classpath, not both",
                ));
            }
            non_blank(&format!("{PREFIX}.Run.Script"), &script)?;
            Ok(Launcher::Script {
                script,
                jvm_flags: flags,
            })
        }
        None => {
            let java = run.java.unwrap_or_else(|| DEFAULT_JAVA.to_string());
            non_blank(&format!("{PREFIX}.Run.Java"), &java)?;
            let classpath = run
                .classpath
                .unwrap_or_else(|| vec![DEFAULT_CLASSPATH.to_string()]);
            if classpath.is_empty() {
                return Err(Error::invalid(
                    format!("{PREFIX}.Run.Classpath"),
                    "must name at least one jar",
                ));
            }
            for (i, c) in classpath.iter().enumerate() {
                let path = format!("{PREFIX}.Run.Classpath[{i}]");
                non_blank(&path, c)?;
                if c.contains(':') {
                    return Err(Error::invalid(
                        path,
                        "one entry per jar or directory, without ':'",
                    ));
                }
            }
            Ok(Launcher::Java {
                java,
                classpath,
                jvm_flags: flags,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> (String, String) {
        match ZooKeeperProperties::parse(&v).unwrap_err() {
            Error::Invalid { path, message } => (path, message),
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn minimal_properties_get_the_defaults() {
        let p = ZooKeeperProperties::parse(&json!({"DataDir": "/var/lib/zk"})).unwrap();
        assert_eq!(p.data_dir, PathBuf::from("/var/lib/zk"));
        assert_eq!(p.config["tickTime"], "2000");
        assert_eq!(
            p.config["4lw.commands.whitelist"],
            DEFAULT_FOUR_LETTER_WORDS
        );
        assert_eq!(p.config["admin.enableServer"], "false");
        assert_eq!(
            p.run,
            Launcher::Java {
                java: "java".into(),
                classpath: vec![DEFAULT_CLASSPATH.into()],
                jvm_flags: vec![],
            }
        );
        assert_eq!(p.health, HealthSettings::default());
    }

    #[test]
    fn config_overrides_and_extends_the_defaults() {
        let p = ZooKeeperProperties::parse(&json!({
            "DataDir": "/zk",
            "Config": {"tickTime": 1500, "autopurge.purgeInterval": "1", "standaloneEnabled": false},
            "Run": {"Script": "/usr/share/zookeeper/bin/zkServer.sh", "JvmFlags": ["-Xmx128m"]},
            "Health": {"StartupGrace": "20s", "ElectionGrace": "5s", "Timeout": "500ms"},
        }))
        .unwrap();
        assert_eq!(p.config["tickTime"], "1500");
        assert_eq!(p.config["autopurge.purgeInterval"], "1");
        assert_eq!(p.config["standaloneEnabled"], "false");
        assert_eq!(p.config["syncLimit"], "5");
        assert_eq!(
            p.run,
            Launcher::Script {
                script: "/usr/share/zookeeper/bin/zkServer.sh".into(),
                jvm_flags: vec!["-Xmx128m".into()],
            }
        );
        assert_eq!(p.health.startup_grace, Duration::from_secs(20));
        assert_eq!(p.health.election_grace, Duration::from_secs(5));
        assert_eq!(p.health.timeout, Duration::from_millis(500));
    }

    #[test]
    fn bad_fields_are_reported_with_their_path() {
        for (v, want) in [
            (json!(null), "Properties"),
            (json!({}), "Properties"),
            (json!({"DataDir": "relative"}), "Properties.DataDir"),
            (json!({"DataDir": "/a\nb"}), "Properties.DataDir"),
            (json!({"DataDir": "/zk", "Extra": 1}), "Properties.Extra"),
            (
                json!({"DataDir": "/zk", "Members": []}),
                "Properties.Members",
            ),
            (
                json!({"DataDir": "/zk", "Members": ["zk1", "zk1:x"]}),
                "Properties.Members[1]",
            ),
            (
                json!({"DataDir": "/zk", "Members": "zk1"}),
                "Properties.Members",
            ),
            (
                json!({"DataDir": "/zk", "Config": {"tickTime": [1]}}),
                "Properties.Config.tickTime",
            ),
            (
                json!({"DataDir": "/zk", "Config": {"dataDir": "/x"}}),
                "Properties.Config.dataDir",
            ),
            (
                json!({"DataDir": "/zk", "Config": {"clientPort": 1}}),
                "Properties.Config.clientPort",
            ),
            (
                json!({"DataDir": "/zk", "Config": {"server.1": "h:1:2"}}),
                "Properties.Config.server.1",
            ),
            (
                json!({"DataDir": "/zk", "Config": {"a b": 1}}),
                "Properties.Config.a b",
            ),
            (
                json!({"DataDir": "/zk", "Config": {"x": "1\n2"}}),
                "Properties.Config.x",
            ),
            (
                json!({"DataDir": "/zk", "Config": {"4lw.commands.whitelist": "ruok"}}),
                "Properties.Config.4lw.commands.whitelist",
            ),
            (
                json!({"DataDir": "/zk", "Run": {"Script": "/s", "Java": "java"}}),
                "Properties.Run.Script",
            ),
            (
                json!({"DataDir": "/zk", "Run": {"Java": " "}}),
                "Properties.Run.Java",
            ),
            (
                json!({"DataDir": "/zk", "Run": {"Classpath": []}}),
                "Properties.Run.Classpath",
            ),
            (
                json!({"DataDir": "/zk", "Run": {"Classpath": ["a:b"]}}),
                "Properties.Run.Classpath[0]",
            ),
            (
                json!({"DataDir": "/zk", "Run": {"Jvm": []}}),
                "Properties.Run.Jvm",
            ),
            (
                json!({"DataDir": "/zk", "Health": {"Timeout": "soon"}}),
                "Properties.Health.Timeout",
            ),
            (
                json!({"DataDir": "/zk", "Health": {"Timeout": "0s"}}),
                "Properties.Health.Timeout",
            ),
            (
                json!({"DataDir": "/zk", "Health": {"ElectionGrace": 3}}),
                "Properties.Health.ElectionGrace",
            ),
        ] {
            assert_eq!(err(v.clone()).0, want, "{v}");
        }
        assert!(
            err(json!({"DataDir": "/zk", "Config": {"4lw.commands.whitelist": "ruok"}}))
                .1
                .contains("srvr")
        );
        ZooKeeperProperties::parse(
            &json!({"DataDir": "/zk", "Config": {"4lw.commands.whitelist": "*"}}),
        )
        .unwrap();
    }

    #[test]
    fn the_ensemble_comes_from_members_or_the_logical_ids() {
        let plain = ZooKeeperProperties::parse(&json!({"DataDir": "/zk"})).unwrap();
        let e = plain
            .ensemble(&Allocation::pets(&["zk1", "zk2", "zk3"]))
            .unwrap();
        assert_eq!(e.myid("zk2"), Some(2));
        let invalid = |r: Result<Ensemble>| match r.unwrap_err() {
            Error::Invalid { path, message } => (path, message),
            other => panic!("unexpected error {other}"),
        };
        let (path, msg) = invalid(plain.ensemble(&Allocation::size(3)));
        assert_eq!(path, "Properties");
        assert!(msg.contains("logical IDs"), "{msg}");
        let (path, msg) = invalid(plain.ensemble(&Allocation::pets(&["zk1", "zk1"])));
        assert_eq!(path, "Properties");
        assert!(msg.contains("LogicalIDs[1]"), "{msg}");

        let listed = ZooKeeperProperties::parse(
            &json!({"DataDir": "/zk", "Members": ["zk1", "zk2", "zk3", "elsewhere"]}),
        )
        .unwrap();
        let e = listed
            .ensemble(&Allocation::pets(&["zk1", "zk2:2181"]))
            .unwrap();
        assert_eq!(e.members().len(), 4);
        assert_eq!(e.myid("elsewhere"), Some(4));
        let (path, msg) = invalid(listed.ensemble(&Allocation::pets(&["zk1", "zk9"])));
        assert_eq!(path, "Properties.Members");
        assert!(msg.contains("zk9"), "{msg}");
        let (_, msg) = invalid(listed.ensemble(&Allocation::size(2)));
        assert!(msg.contains("not by size"), "{msg}");
    }
}
