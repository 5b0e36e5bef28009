//! What Prepare puts into an instance spec. Pure: the join tokens and manager addresses are
//! fetched by the caller ([`crate::engine`]) and passed in as a [`SwarmJoin`].
//!
//! Every instance gets the link tags ([`crate::link`]) and its attachments. Then, by `Join`:
//!
//! - **Init** (a machine whose engine runs as a service, the original flavor's way): a script
//!   is appended to `Init` that writes the engine labels to `DaemonConfig`
//!   (`{"labels": ["infrakit-link=...", ...]}`), runs `DockerRestartCommand`, waits for the
//!   engine to answer and runs `docker swarm join`.
//! - **Command** (the process instance plugin, whose command is a `dockerd`): the command
//!   becomes `/bin/sh -c <wrapper> infrakit-swarm-engine <Cmd> <Args...> --label k=v ...`.
//!   The wrapper ([`WRAPPER_PROLOGUE`] and its script) starts the engine with the labels and
//!   one more `-H unix://...` socket of its own, waits for it to answer there, joins, and then
//!   waits for the engine: it forwards SIGTERM to it and exits with its status, so the instance
//!   lives exactly as long as its engine. The token and addresses reach the wrapper in `Env` (not in the arguments, which
//!   any user can read with `ps`).
//!
//! Both run the same join ([`JOIN_FUNCTIONS`]): wait up to 120 s for the engine, do nothing if
//! it is already in a swarm, otherwise try each manager address in turn, every 2 s, for up to
//! 60 s. A manager joins with `--advertise-addr <logical ID>`. A join that fails stops the
//! engine (Command) or fails the script (Init).

use std::collections::BTreeMap;

use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::{Error, Result, Spec};
use serde_json::{json, Map, Value};

use crate::link::Link;
use crate::properties::{parse_address, JoinMode, SwarmProperties};
use crate::role::Role;

/// What joining the swarm takes, as read from a manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmJoin {
    /// The swarm's ID.
    pub swarm_id: String,
    /// The token workers join with.
    pub worker_token: String,
    /// The token managers join with.
    pub manager_token: String,
    /// Swarm addresses of the managers (`host:2377`), the one asked first.
    pub managers: Vec<String>,
}

impl SwarmJoin {
    /// The token for `role`.
    pub fn token(&self, role: Role) -> &str {
        match role {
            Role::Manager => &self.manager_token,
            Role::Worker => &self.worker_token,
        }
    }
}

/// `$0` of the wrapper shell (shown by `ps`).
pub const WRAPPER_NAME: &str = "infrakit-swarm-engine";
/// Environment variable: the Docker client the join runs.
pub const ENV_DOCKER: &str = "INFRAKIT_SWARM_DOCKER";
/// Environment variable: the join token.
pub const ENV_TOKEN: &str = "INFRAKIT_SWARM_TOKEN";
/// Environment variable: the manager addresses, separated by spaces.
pub const ENV_MANAGERS: &str = "INFRAKIT_SWARM_MANAGERS";
/// Environment variable: the advertise address (managers only).
pub const ENV_ADVERTISE_ADDR: &str = "INFRAKIT_SWARM_ADVERTISE_ADDR";
/// Heredoc delimiter of the engine configuration in the init script.
const CONFIG_EOF: &str = "INFRAKIT_SWARM_EOF";

/// Shell functions that join the engine to the swarm. They read `INFRAKIT_SWARM_DOCKER`,
/// `INFRAKIT_SWARM_TOKEN`, `INFRAKIT_SWARM_MANAGERS`, and optionally
/// `INFRAKIT_SWARM_ADVERTISE_ADDR`, `INFRAKIT_SWARM_HOST` (the engine's endpoint; otherwise the
/// client's default, e.g. `DOCKER_HOST`) and `INFRAKIT_SWARM_ENGINE_PID` (stop waiting when
/// that process is gone). `infrakit_swarm_join` returns 0 once the engine is in the swarm.
pub const JOIN_FUNCTIONS: &str = r#"infrakit_swarm_docker() {
  if [ -n "${INFRAKIT_SWARM_HOST:-}" ]; then
    "$INFRAKIT_SWARM_DOCKER" -H "$INFRAKIT_SWARM_HOST" "$@"
  else
    "$INFRAKIT_SWARM_DOCKER" "$@"
  fi
}
infrakit_swarm_alive() {
  [ -z "${INFRAKIT_SWARM_ENGINE_PID:-}" ] || kill -0 "$INFRAKIT_SWARM_ENGINE_PID" 2>/dev/null
}
infrakit_swarm_state() {
  infrakit_swarm_docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null
}
infrakit_swarm_join() {
  n=0
  until infrakit_swarm_docker version >/dev/null 2>&1; do
    infrakit_swarm_alive || { echo "infrakit swarm: the engine exited before it answered" >&2; return 1; }
    n=$((n + 1))
    if [ "$n" -gt 600 ]; then
      echo "infrakit swarm: the engine did not answer within 120 s" >&2
      return 1
    fi
    sleep 0.2
  done
  case "$(infrakit_swarm_state)" in
    active|pending) echo "infrakit swarm: the engine is already in a swarm" >&2; return 0 ;;
  esac
  n=0
  while :; do
    for m in $INFRAKIT_SWARM_MANAGERS; do
      if [ -n "${INFRAKIT_SWARM_ADVERTISE_ADDR:-}" ]; then
        infrakit_swarm_docker swarm join --token "$INFRAKIT_SWARM_TOKEN" --advertise-addr "$INFRAKIT_SWARM_ADVERTISE_ADDR" "$m" && return 0
      else
        infrakit_swarm_docker swarm join --token "$INFRAKIT_SWARM_TOKEN" "$m" && return 0
      fi
      case "$(infrakit_swarm_state)" in
        active|pending) return 0 ;;
      esac
    done
    infrakit_swarm_alive || return 1
    n=$((n + 1))
    if [ "$n" -ge 30 ]; then
      echo "infrakit swarm: could not join the swarm at $INFRAKIT_SWARM_MANAGERS within 60 s" >&2
      return 1
    fi
    sleep 2
  done
}
"#;

/// The body of the shell that runs a `dockerd` command (its arguments) and joins it (Command).
/// The engine gets one more API socket, `swarm-<instance ID>.sock` in the working directory (a
/// temporary directory when that path is too long for a socket), which the join uses.
pub const WRAPPER_PROLOGUE: &str = r#"set -u
INFRAKIT_SWARM_SOCKET="$PWD/swarm-${INFRAKIT_INSTANCE_ID:-$$}.sock"
if [ "${#INFRAKIT_SWARM_SOCKET}" -gt 100 ]; then
  INFRAKIT_SWARM_SOCKET="$(mktemp -d "${TMPDIR:-/tmp}/infrakit-swarm.XXXXXX")/docker.sock" || exit 1
fi
INFRAKIT_SWARM_HOST="unix://$INFRAKIT_SWARM_SOCKET"
rm -f "$INFRAKIT_SWARM_SOCKET"
"$@" -H "$INFRAKIT_SWARM_HOST" &
INFRAKIT_SWARM_ENGINE_PID=$!
trap 'kill -TERM "$INFRAKIT_SWARM_ENGINE_PID" 2>/dev/null' TERM INT HUP
"#;

/// The end of the wrapper: join (stopping the engine if that fails), then wait for the engine
/// and exit with its status (1 when the join failed).
pub const WRAPPER_EPILOGUE: &str = r#"status=0
if ! infrakit_swarm_join; then
  status=1
  kill -TERM "$INFRAKIT_SWARM_ENGINE_PID" 2>/dev/null
fi
while :; do
  wait "$INFRAKIT_SWARM_ENGINE_PID"
  engine=$?
  if ! kill -0 "$INFRAKIT_SWARM_ENGINE_PID" 2>/dev/null; then
    [ "$status" -ne 0 ] || status=$engine
    exit "$status"
  fi
done
"#;

/// The whole wrapper script (`sh -c <WRAPPER> infrakit-swarm-engine <engine command...>`).
pub fn wrapper() -> String {
    format!("{WRAPPER_PROLOGUE}{JOIN_FUNCTIONS}{WRAPPER_EPILOGUE}")
}

/// `s` quoted for a POSIX shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `dockerd` arguments that set `labels`: `--label k=v` for each.
pub fn label_args(labels: &BTreeMap<String, String>) -> Vec<String> {
    labels
        .iter()
        .flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")])
        .collect()
}

/// The engine configuration holding `labels` (`{"labels": ["k=v", ...]}`).
pub fn daemon_config(labels: &BTreeMap<String, String>) -> String {
    let list: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    serde_json::to_string_pretty(&json!({ "labels": list })).unwrap_or_default()
}

/// The join's settings for `role`, as `(variable, value)` pairs.
fn join_env(
    role: Role,
    props: &SwarmProperties,
    swarm: &SwarmJoin,
    managers: &[String],
    advertise: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        (ENV_DOCKER, props.docker_cli.clone()),
        (ENV_TOKEN, swarm.token(role).to_string()),
        (ENV_MANAGERS, managers.join(" ")),
    ];
    if let Some(a) = advertise {
        env.push((ENV_ADVERTISE_ADDR, a.to_string()));
    }
    env
}

/// The script appended to `Init` with `Join: Init`.
pub fn init_script(
    role: Role,
    swarm_id: &str,
    env: &[(&'static str, String)],
    restart_command: &str,
    config_file: &std::path::Path,
    labels: &BTreeMap<String, String>,
) -> String {
    let mut out = format!(
        "# infrakit swarm flavor: join swarm {swarm_id} as a {}\n",
        role.as_str()
    );
    for (k, v) in env {
        out.push_str(&format!("{k}={}\n", quote(v)));
    }
    let dir = config_file
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    out.push_str(&format!(
        "mkdir -p {dir} || exit 1\n\
         cat > {file} <<'{CONFIG_EOF}' || exit 1\n\
         {config}\n\
         {CONFIG_EOF}\n\
         (\n{restart_command}\n) || {{ echo \"infrakit swarm: DockerRestartCommand failed\" >&2; exit 1; }}\n",
        dir = quote(&dir),
        file = quote(&config_file.to_string_lossy()),
        config = daemon_config(labels),
    ));
    out.push_str(JOIN_FUNCTIONS);
    out.push_str("infrakit_swarm_join || exit 1\n");
    out
}

/// Rewrites the process plugin's properties so the instance's command (a `dockerd`) runs under
/// the join [`wrapper`] with `labels`, and the join settings are in `Env`.
pub fn wrap_command(
    properties: Value,
    env: &[(&'static str, String)],
    labels: &BTreeMap<String, String>,
) -> Result<Value> {
    let mut properties = match properties {
        Value::Object(m) => m,
        other => {
            return Err(Error::plugin(format!(
                "with Join: Command the instance properties must be the process plugin's, with a Cmd running dockerd, got {other}"
            )))
        }
    };
    let cmd = match properties.get("Cmd") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => {
            return Err(Error::plugin(
                "with Join: Command the instance properties need a Cmd that runs dockerd (the process plugin's Cmd and Args)",
            ))
        }
    };
    let args: Vec<String> = match properties.get("Args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(String::from))
            .collect::<Option<_>>()
            .ok_or_else(|| Error::plugin("the instance properties' Args must be strings"))?,
        Some(other) => {
            return Err(Error::plugin(format!(
                "the instance properties' Args must be a list of strings, got {other}"
            )))
        }
    };
    let mut new_args = vec!["-c".to_string(), wrapper(), WRAPPER_NAME.to_string(), cmd];
    new_args.extend(args);
    new_args.extend(label_args(labels));
    properties.insert("Cmd".into(), Value::String("/bin/sh".into()));
    properties.insert(
        "Args".into(),
        Value::Array(new_args.into_iter().map(Value::String).collect()),
    );
    let mut vars = match properties.remove("Env") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for (k, v) in env {
        vars.insert(k.to_string(), Value::String(v.clone()));
    }
    properties.insert("Env".into(), Value::Object(vars));
    Ok(Value::Object(properties))
}

/// Adds the link, attachments and join of an instance of `role` to `spec`.
pub fn prepare(
    role: Role,
    props: &SwarmProperties,
    swarm: &SwarmJoin,
    link: &Link,
    mut spec: Spec,
) -> Result<Spec> {
    let advertise = match role {
        Role::Manager => {
            let id = spec.logical_id.as_deref().ok_or_else(|| {
                Error::plugin(
                    "a swarm manager needs a logical ID: its advertise address (allocate the group by LogicalIDs)",
                )
            })?;
            parse_address(id).map_err(|e| {
                Error::plugin(format!(
                    "a manager's logical ID is its advertise address: {e}"
                ))
            })?;
            Some(id.to_string())
        }
        Role::Worker => None,
    };
    let managers = props
        .join_addresses
        .clone()
        .unwrap_or_else(|| swarm.managers.clone());
    if managers.is_empty() {
        return Err(Error::plugin(
            "the swarm reports no manager address to join; set SwarmJoinIP",
        ));
    }
    let group = spec.tags.get(GROUP_TAG).map(str::to_string);
    let labels = link.engine_labels(group.as_deref(), &props.engine_labels);
    let env = join_env(role, props, swarm, &managers, advertise.as_deref());

    spec.tags.extend(link.tags(&swarm.swarm_id, role));
    spec.attachments
        .extend(props.attachments_for(spec.logical_id.as_deref()));
    match &props.join {
        JoinMode::Init {
            restart_command,
            daemon_config,
        } => {
            let script = init_script(
                role,
                &swarm.swarm_id,
                &env,
                restart_command,
                daemon_config,
                &labels,
            );
            spec.init = if spec.init.trim().is_empty() {
                script
            } else {
                format!("{}\n{script}", spec.init)
            };
        }
        JoinMode::Command => {
            spec.properties = wrap_command(std::mem::take(&mut spec.properties), &env, &labels)?;
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{LINK_CONTEXT_TAG, LINK_CREATED_TAG, LINK_TAG, SWARM_ID_TAG};
    use infrakit_spi::{Attachment, Tags};

    fn swarm() -> SwarmJoin {
        SwarmJoin {
            swarm_id: "swarm1".into(),
            worker_token: "SWMTKN-worker".into(),
            manager_token: "SWMTKN-manager".into(),
            managers: vec!["10.0.0.1:2377".into(), "10.0.0.2:2377".into()],
        }
    }

    fn link() -> Link {
        Link {
            value: "link0123456789ab".into(),
            created: humantime::parse_rfc3339("2024-05-01T10:00:00Z").unwrap(),
        }
    }

    fn props(v: Value) -> SwarmProperties {
        SwarmProperties::parse(&v).unwrap()
    }

    fn group_spec(properties: Value, logical_id: Option<&str>) -> Spec {
        Spec {
            properties,
            tags: Tags::from([(GROUP_TAG.to_string(), "workers".to_string())]),
            logical_id: logical_id.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn command_mode_wraps_the_engine_with_labels_and_join_settings() {
        let p = props(json!({"Join": "Command", "EngineLabels": {"zone": "a"}}));
        let spec = group_spec(
            json!({"Cmd": "/launch-engine", "Args": ["--debug"], "Env": {"KEEP": "1"}, "Dir": "/srv"}),
            None,
        );
        let out = prepare(Role::Worker, &p, &swarm(), &link(), spec).unwrap();
        assert_eq!(out.properties["Cmd"], "/bin/sh");
        let args: Vec<&str> = out.properties["Args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(args[0], "-c");
        assert_eq!(args[1], wrapper());
        assert_eq!(
            &args[2..],
            [
                WRAPPER_NAME,
                "/launch-engine",
                "--debug",
                "--label",
                "infrakit-link=link0123456789ab",
                "--label",
                "infrakit.group=workers",
                "--label",
                "zone=a",
            ]
        );
        assert_eq!(
            out.properties["Env"],
            json!({
                "KEEP": "1",
                "INFRAKIT_SWARM_DOCKER": "docker",
                "INFRAKIT_SWARM_TOKEN": "SWMTKN-worker",
                "INFRAKIT_SWARM_MANAGERS": "10.0.0.1:2377 10.0.0.2:2377",
            })
        );
        assert_eq!(out.properties["Dir"], "/srv");
        assert!(
            !args.iter().any(|a| a.contains("SWMTKN")),
            "no token in argv"
        );
        assert_eq!(&out.tags[LINK_TAG], "link0123456789ab");
        assert_eq!(&out.tags[LINK_CONTEXT_TAG], "swarm::swarm1::worker");
        assert_eq!(&out.tags[LINK_CREATED_TAG], "2024-05-01T10:00:00Z");
        assert_eq!(&out.tags[SWARM_ID_TAG], "swarm1");
        assert_eq!(&out.tags[GROUP_TAG], "workers");
        assert!(out.init.is_empty());
    }

    #[test]
    fn managers_join_with_their_logical_id_as_advertise_address() {
        let p = props(json!({
            "Join": "Command",
            "SwarmJoinIP": "10.0.0.9",
            "Attachments": {"*": [{"ID": "logs", "Type": "volume"}], "10.0.0.5": [{"ID": "raft-5", "Type": "volume"}]},
        }));
        let spec = group_spec(json!({"Cmd": "dockerd"}), Some("10.0.0.5"));
        let out = prepare(Role::Manager, &p, &swarm(), &link(), spec).unwrap();
        assert_eq!(
            out.properties["Env"],
            json!({
                "INFRAKIT_SWARM_DOCKER": "docker",
                "INFRAKIT_SWARM_TOKEN": "SWMTKN-manager",
                "INFRAKIT_SWARM_MANAGERS": "10.0.0.9:2377",
                "INFRAKIT_SWARM_ADVERTISE_ADDR": "10.0.0.5",
            })
        );
        assert_eq!(&out.tags[LINK_CONTEXT_TAG], "swarm::swarm1::manager");
        assert_eq!(
            out.attachments,
            [
                Attachment {
                    id: "logs".into(),
                    kind: "volume".into()
                },
                Attachment {
                    id: "raft-5".into(),
                    kind: "volume".into()
                }
            ]
        );
        assert_eq!(out.logical_id.as_deref(), Some("10.0.0.5"));

        let e = prepare(
            Role::Manager,
            &p,
            &swarm(),
            &link(),
            group_spec(json!({"Cmd": "dockerd"}), None),
        )
        .unwrap_err();
        assert!(e.to_string().contains("logical ID"), "{e}");
    }

    #[test]
    fn init_mode_writes_labels_restarts_and_joins() {
        let p = props(json!({
            "DockerRestartCommand": "systemctl restart docker",
            "DaemonConfig": "/etc/docker/daemon.json",
        }));
        let mut spec = group_spec(json!({"instance_type": "m5.large"}), None);
        spec.init = "echo before".into();
        let out = prepare(Role::Worker, &p, &swarm(), &link(), spec).unwrap();
        assert_eq!(out.properties, json!({"instance_type": "m5.large"}));
        let init = out.init;
        assert!(
            init.starts_with(
                "echo before\n# infrakit swarm flavor: join swarm swarm1 as a worker\n\
                 INFRAKIT_SWARM_DOCKER='docker'\n\
                 INFRAKIT_SWARM_TOKEN='SWMTKN-worker'\n\
                 INFRAKIT_SWARM_MANAGERS='10.0.0.1:2377 10.0.0.2:2377'\n\
                 mkdir -p '/etc/docker' || exit 1\n\
                 cat > '/etc/docker/daemon.json' <<'INFRAKIT_SWARM_EOF' || exit 1\n"
            ),
            "{init}"
        );
        assert!(init.contains(
            "{\n  \"labels\": [\n    \"infrakit-link=link0123456789ab\",\n    \"infrakit.group=workers\"\n  ]\n}\nINFRAKIT_SWARM_EOF\n(\nsystemctl restart docker\n) || "
        ), "{init}");
        assert!(init.contains(JOIN_FUNCTIONS));
        assert!(init.ends_with("infrakit_swarm_join || exit 1\n"));
    }

    #[test]
    fn bad_instance_properties_for_command_mode() {
        let p = props(json!({"Join": "Command"}));
        for bad in [
            json!(null),
            json!("dockerd"),
            json!({"Args": ["x"]}),
            json!({"Cmd": "dockerd", "Args": "x"}),
            json!({"Cmd": "dockerd", "Args": [1]}),
        ] {
            let e = prepare(
                Role::Worker,
                &p,
                &swarm(),
                &link(),
                group_spec(bad.clone(), None),
            )
            .unwrap_err();
            assert!(
                e.to_string().contains("Cmd") || e.to_string().contains("Args"),
                "{bad}: {e}"
            );
        }
        let mut no_managers = swarm();
        no_managers.managers.clear();
        let e = prepare(
            Role::Worker,
            &p,
            &no_managers,
            &link(),
            group_spec(json!({"Cmd": "dockerd"}), None),
        )
        .unwrap_err();
        assert!(e.to_string().contains("SwarmJoinIP"), "{e}");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(
            label_args(&BTreeMap::from([("a".into(), "b c".into())])),
            ["--label", "a=b c"]
        );
    }
}
