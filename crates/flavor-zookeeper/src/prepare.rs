//! What Prepare puts into a member's instance spec. Pure: no file is written here; the init
//! script writes them on the instance.
//!
//! Member N of the ensemble lives in `<DataDir>/<N>`:
//! - `zoo.cfg`: `dataDir`, `clientPort`, the settings, and one `server.K` line per member;
//! - `data/myid`: `N`, plus ZooKeeper's snapshots and transaction logs (kept across
//!   replacements, as a restarted member expects);
//! - `logs/`: `ZOO_LOG_DIR` for `zkServer.sh`.
//!
//! The init script (appended to the spec's `Init`) creates the directories and writes both
//! files; the instance properties get the command that runs ZooKeeper in the foreground, in the
//! process instance plugin's form (`Cmd`, `Args`, `Env`).

use std::path::{Path, PathBuf};

use infrakit_spi::{Error, Result, Spec};
use serde_json::{Map, Value};

use crate::member::Ensemble;
use crate::properties::{Launcher, ZooKeeperProperties, MAIN_CLASS};

/// Tag holding the member's `myid`.
pub const MYID_TAG: &str = "zookeeper.myid";
/// Heredoc delimiter of `zoo.cfg` in the init script (no `zoo.cfg` line can equal it).
const CFG_EOF: &str = "INFRAKIT_ZOO_CFG";

/// Where member `myid` keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDirs {
    /// `<DataDir>/<myid>`.
    pub root: PathBuf,
}

impl MemberDirs {
    /// The directories of member `myid` under `data_dir`.
    pub fn new(data_dir: &Path, myid: u32) -> Self {
        MemberDirs {
            root: data_dir.join(myid.to_string()),
        }
    }

    /// The member's configuration file.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("zoo.cfg")
    }

    /// ZooKeeper's `dataDir`, holding `myid`.
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The member's `myid` file.
    pub fn myid_file(&self) -> PathBuf {
        self.data().join("myid")
    }

    /// Log directory (`ZOO_LOG_DIR`).
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
}

/// The `zoo.cfg` of member `myid`: the data dir and client port first, then the settings by
/// name, then one `server.K=host:peer:election` line per member. The same inputs always give the
/// same text.
pub fn zoo_cfg(props: &ZooKeeperProperties, ensemble: &Ensemble, myid: u32) -> String {
    let dirs = MemberDirs::new(&props.data_dir, myid);
    let me = &ensemble.members()[myid as usize - 1];
    let mut out = format!(
        "# Member {myid} of {}, written by infrakit's zookeeper flavor.\n",
        ensemble.members().len()
    );
    out.push_str(&format!("dataDir={}\n", dirs.data().display()));
    out.push_str(&format!("clientPort={}\n", me.client_port));
    for (k, v) in &props.config {
        out.push_str(&format!("{k}={v}\n"));
    }
    for (i, m) in ensemble.members().iter().enumerate() {
        out.push_str(&format!("server.{}={}\n", i + 1, m.server_entry()));
    }
    out
}

/// `s` quoted for a POSIX shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn quote_path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

/// The shell lines that write member `myid`'s files; any failure exits the init script.
pub fn init_script(props: &ZooKeeperProperties, ensemble: &Ensemble, myid: u32) -> String {
    let dirs = MemberDirs::new(&props.data_dir, myid);
    let cfg = zoo_cfg(props, ensemble, myid);
    format!(
        "mkdir -p {data} {logs} || exit 1\n\
         cat > {cfg_file} <<'{CFG_EOF}' || exit 1\n\
         {cfg}{CFG_EOF}\n\
         echo {myid} > {myid_file} || exit 1",
        data = quote_path(&dirs.data()),
        logs = quote_path(&dirs.logs()),
        cfg_file = quote_path(&dirs.config_file()),
        myid_file = quote_path(&dirs.myid_file()),
    )
}

/// The process plugin's `Cmd`, `Args` and extra `Env` that run member `myid` in the foreground.
pub fn command(
    launcher: &Launcher,
    dirs: &MemberDirs,
) -> (String, Vec<String>, Vec<(String, String)>) {
    let cfg = dirs.config_file().to_string_lossy().into_owned();
    match launcher {
        Launcher::Java {
            java,
            classpath,
            jvm_flags,
        } => {
            let mut args = jvm_flags.clone();
            args.extend([
                "-cp".to_string(),
                classpath.join(":"),
                MAIN_CLASS.to_string(),
                cfg,
            ]);
            (java.clone(), args, vec![])
        }
        Launcher::Script { script, jvm_flags } => {
            let mut env = vec![(
                "ZOO_LOG_DIR".to_string(),
                dirs.logs().to_string_lossy().into_owned(),
            )];
            if !jvm_flags.is_empty() {
                env.push(("JVMFLAGS".to_string(), jvm_flags.join(" ")));
            }
            (
                script.clone(),
                vec!["start-foreground".to_string(), cfg],
                env,
            )
        }
    }
}

/// Adds member `myid`'s configuration and command to `spec`: the init script is appended to
/// `Init`, `Cmd` and `Args` of the instance properties are replaced, the flavor's variables are
/// added to `Env` (other properties and variables are kept), and the `zookeeper.myid` tag is
/// set.
pub fn prepare(
    props: &ZooKeeperProperties,
    ensemble: &Ensemble,
    myid: u32,
    mut spec: Spec,
) -> Result<Spec> {
    let dirs = MemberDirs::new(&props.data_dir, myid);
    let mut properties = match std::mem::take(&mut spec.properties) {
        Value::Null => Map::new(),
        Value::Object(m) => m,
        other => {
            return Err(Error::plugin(format!(
                "the instance properties must be an object (the process plugin's Cmd, Args, Env) to carry the ZooKeeper command, got {other}"
            )))
        }
    };
    let (cmd, args, env) = command(&props.run, &dirs);
    properties.insert("Cmd".into(), Value::String(cmd));
    properties.insert(
        "Args".into(),
        Value::Array(args.into_iter().map(Value::String).collect()),
    );
    if !env.is_empty() {
        let mut vars = match properties.remove("Env") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        for (k, v) in env {
            vars.insert(k, Value::String(v));
        }
        properties.insert("Env".into(), Value::Object(vars));
    }
    spec.properties = Value::Object(properties);

    let script = init_script(props, ensemble, myid);
    spec.init = if spec.init.trim().is_empty() {
        script
    } else {
        format!("{}\n{script}", spec.init)
    };
    spec.tags.insert(MYID_TAG, myid.to_string());
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(v: Value) -> ZooKeeperProperties {
        ZooKeeperProperties::parse(&v).unwrap()
    }

    fn three() -> Ensemble {
        Ensemble::parse(&[
            "127.0.0.1:2181:2888:3888",
            "127.0.0.1:2182:2889:3889",
            "127.0.0.1:2183:2890:3890",
        ])
        .unwrap()
    }

    #[test]
    fn zoo_cfg_names_every_server_and_the_members_own_port() {
        let p = props(
            json!({"DataDir": "/var/lib/zk", "Config": {"tickTime": 1500, "autopurge.snapRetainCount": 3}}),
        );
        let cfg = zoo_cfg(&p, &three(), 2);
        let lines: Vec<&str> = cfg.lines().collect();
        assert_eq!(
            lines,
            [
                "# Member 2 of 3, written by infrakit's zookeeper flavor.",
                "dataDir=/var/lib/zk/2/data",
                "clientPort=2182",
                "4lw.commands.whitelist=srvr,ruok,mntr,conf,stat,isro",
                "admin.enableServer=false",
                "autopurge.snapRetainCount=3",
                "initLimit=10",
                "syncLimit=5",
                "tickTime=1500",
                "server.1=127.0.0.1:2888:3888",
                "server.2=127.0.0.1:2889:3889",
                "server.3=127.0.0.1:2890:3890",
            ]
        );
        assert_eq!(cfg, zoo_cfg(&p, &three(), 2), "stable");
        let other = zoo_cfg(&p, &three(), 3);
        assert!(
            other.contains("clientPort=2183\n") && other.contains("dataDir=/var/lib/zk/3/data\n")
        );
    }

    #[test]
    fn java_command_runs_the_main_class_on_the_members_config() {
        let p = props(
            json!({"DataDir": "/zk", "Run": {"Classpath": ["/a.jar", "/b.jar"], "JvmFlags": ["-Xmx128m"]}}),
        );
        let (cmd, args, env) = command(&p.run, &MemberDirs::new(&p.data_dir, 1));
        assert_eq!(cmd, "java");
        assert_eq!(
            args,
            [
                "-Xmx128m",
                "-cp",
                "/a.jar:/b.jar",
                MAIN_CLASS,
                "/zk/1/zoo.cfg"
            ]
        );
        assert!(env.is_empty());
    }

    #[test]
    fn script_command_runs_zkserver_in_the_foreground() {
        let p = props(
            json!({"DataDir": "/zk", "Run": {"Script": "/usr/share/zookeeper/bin/zkServer.sh", "JvmFlags": ["-Xmx128m", "-Xms64m"]}}),
        );
        let (cmd, args, env) = command(&p.run, &MemberDirs::new(&p.data_dir, 3));
        assert_eq!(cmd, "/usr/share/zookeeper/bin/zkServer.sh");
        assert_eq!(args, ["start-foreground", "/zk/3/zoo.cfg"]);
        assert_eq!(
            env,
            [
                ("ZOO_LOG_DIR".to_string(), "/zk/3/logs".to_string()),
                ("JVMFLAGS".to_string(), "-Xmx128m -Xms64m".to_string())
            ]
        );
    }

    #[test]
    fn prepare_fills_in_the_process_properties_init_and_tag() {
        let p = props(json!({"DataDir": "/zk", "Run": {"Script": "/zkServer.sh"}}));
        let spec = Spec {
            properties: json!({"Cmd": "placeholder", "Args": ["x"], "Env": {"KEEP": "1"}, "Dir": "/tmp"}),
            init: "echo before".into(),
            logical_id: Some("127.0.0.1:2182:2889:3889".into()),
            ..Default::default()
        };
        let out = prepare(&p, &three(), 2, spec).unwrap();
        assert_eq!(
            out.properties,
            json!({
                "Cmd": "/zkServer.sh",
                "Args": ["start-foreground", "/zk/2/zoo.cfg"],
                "Env": {"KEEP": "1", "ZOO_LOG_DIR": "/zk/2/logs"},
                "Dir": "/tmp",
            })
        );
        assert!(
            out.init
                .starts_with("echo before\nmkdir -p '/zk/2/data' '/zk/2/logs' || exit 1\n"),
            "{}",
            out.init
        );
        assert!(out
            .init
            .contains("cat > '/zk/2/zoo.cfg' <<'INFRAKIT_ZOO_CFG' || exit 1\n# Member 2 of 3"));
        assert!(out
            .init
            .contains("server.3=127.0.0.1:2890:3890\nINFRAKIT_ZOO_CFG\n"));
        assert!(out.init.ends_with("echo 2 > '/zk/2/data/myid' || exit 1"));
        assert_eq!(&out.tags[MYID_TAG], "2");
        assert_eq!(out.logical_id.as_deref(), Some("127.0.0.1:2182:2889:3889"));

        let bare = prepare(&p, &three(), 1, Spec::default()).unwrap();
        assert_eq!(bare.properties["Cmd"], "/zkServer.sh");
        assert!(bare.init.starts_with("mkdir -p"));
        let bad = Spec {
            properties: json!(["not", "an", "object"]),
            ..Default::default()
        };
        assert!(prepare(&p, &three(), 1, bad).is_err());
    }

    #[test]
    fn paths_are_quoted_for_the_shell() {
        assert_eq!(quote("/a b/it's"), r"'/a b/it'\''s'");
        let p = props(json!({"DataDir": "/data dir/it's"}));
        let script = init_script(&p, &three(), 1);
        assert!(
            script.starts_with(r"mkdir -p '/data dir/it'\''s/1/data'"),
            "{script}"
        );
    }
}
