//! Tests of the process plugin with real processes (`sleep`, `sh`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use infrakit_instance_process::{ProcessPlugin, STDOUT_LOG};
use infrakit_spi::event::{Event, Publisher};
use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::{Attachment, DestroyContext, Error, Instance, Spec, Tags};
use infrakit_testkit::{instance, is_running, tags, until, ProcessDir};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio::time::Instant;

/// How long to wait for something the plugin or its processes do: generous, for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// A spec with these properties for a member of `group`.
fn spec(props: Value, group: &str) -> Spec {
    instance::spec(props, tags(&[(GROUP_TAG, group)]))
}

fn sleeper(group: &str) -> Spec {
    spec(json!({"Cmd": "sleep", "Args": ["3600"]}), group)
}

fn open(dir: &Path) -> ProcessPlugin {
    ProcessPlugin::open(dir.to_path_buf())
        .unwrap()
        .with_grace_period(Duration::from_secs(2))
}

async fn next_event(events: &mut broadcast::Receiver<Event>) -> Event {
    tokio::time::timeout(DEADLINE, events.recv())
        .await
        .expect("an event in time")
        .expect("an open channel")
}

async fn ids(p: &ProcessPlugin, want: &Tags) -> Vec<String> {
    p.describe_instances(want, false)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect()
}

fn instance_dirs(state: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(state.join("instances"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn provision_starts_a_process_with_the_infrakit_environment() {
    let state = ProcessDir::new();
    let p = open(state.path());
    let mut s = spec(
        json!({
            "Cmd": "sh",
            "Args": ["-c", "echo \"$INFRAKIT_INSTANCE_ID|$INFRAKIT_GROUP|$INFRAKIT_LOGICAL_ID|$FOO\" > out; exec sleep 3600"],
            "Env": {"FOO": "bar"}
        }),
        "workers",
    );
    s.logical_id = Some("db1".into());
    let id = p.provision(s).await.unwrap();
    assert!(id.starts_with("proc-"), "{id}");

    let dir = p.instance_dir(&id).unwrap();
    assert_eq!(dir, state.path().join("instances").join(&id));
    let out = dir.join("out");
    until("the instance to write its environment", DEADLINE, || {
        let out = out.clone();
        async move { std::fs::read_to_string(&out).is_ok_and(|s| s.ends_with('\n')) }
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("{id}|workers|db1|bar\n")
    );

    let pid = p.pid(&id).unwrap();
    assert!(is_running(pid as i32));
    let d = p.describe_instances(&Tags::new(), true).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].id, id);
    assert_eq!(d[0].logical_id.as_deref(), Some("db1"));
    let props = d[0].properties.as_ref().unwrap().to_value();
    assert_eq!(props["State"], json!("running"));
    assert_eq!(props["PID"], json!(pid));
    assert_eq!(props["Cmd"], json!("sh"));
    assert_eq!(props["Dir"], json!(dir));
    assert!(humantime::parse_rfc3339(props["StartedAt"].as_str().unwrap()).is_ok());

    // The state file holds what a restarted plugin needs.
    let record: Value =
        serde_json::from_slice(&std::fs::read(dir.join("instance.json")).unwrap()).unwrap();
    assert_eq!(record["PID"], json!(pid));
    assert_eq!(record["Tags"][GROUP_TAG], json!("workers"));
    assert!(record["StartTime"].as_u64().unwrap() > 0);

    // Its own process group: a terminal's Ctrl-C does not reach it.
    let pgid = nix::unistd::getpgid(Some(Pid::from_raw(pid as i32))).unwrap();
    assert_eq!(pgid.as_raw(), pid as i32);

    p.destroy(&id, &DestroyContext::default()).await.unwrap();
}

#[tokio::test]
async fn init_runs_first_in_dir_and_its_failure_leaves_nothing() {
    let state = ProcessDir::new();
    let work = ProcessDir::new();
    let p = open(state.path());

    let mut ok = spec(
        json!({"Cmd": "sleep", "Args": ["3600"], "Dir": work.path()}),
        "g",
    );
    ok.init = "echo init-out; echo \"$INFRAKIT_INSTANCE_ID\" > init-ran".into();
    let id = p.provision(ok).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(work.path().join("init-ran")).unwrap(),
        format!("{id}\n"),
        "Init ran synchronously, in Dir, with the instance's environment"
    );
    let log = p.instance_dir(&id).unwrap().join(STDOUT_LOG);
    assert_eq!(std::fs::read_to_string(log).unwrap(), "init-out\n");
    p.destroy(&id, &DestroyContext::default()).await.unwrap();

    let mut bad = sleeper("g");
    bad.init = "echo progress; echo 'disk full' >&2; exit 3".into();
    let err = p.provision(bad).await.unwrap_err().to_string();
    assert!(err.starts_with("Init failed (exit status: 3); "), "{err}");
    assert!(
        err.contains("disk full") && err.contains("progress"),
        "{err}"
    );
    assert!(
        instance_dirs(state.path()).is_empty(),
        "nothing is left behind"
    );
    assert!(ids(&p, &Tags::new()).await.is_empty());
}

#[tokio::test]
async fn init_that_hangs_times_out() {
    let state = ProcessDir::new();
    let p = open(state.path()).with_init_timeout(Duration::from_millis(300));
    let mut s = sleeper("g");
    s.init = "echo started; sleep 3600".into();
    let started = Instant::now();
    let err = p.provision(s).await.unwrap_err().to_string();
    assert!(
        err.contains("timed out") && err.contains("started"),
        "{err}"
    );
    // Not the hour the script would take.
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(instance_dirs(state.path()).is_empty());
    assert!(ids(&p, &Tags::new()).await.is_empty());
}

#[tokio::test]
async fn a_command_that_cannot_start_leaves_nothing() {
    let state = ProcessDir::new();
    let p = open(state.path());
    let err = p
        .provision(spec(json!({"Cmd": "/nonexistent/program"}), "g"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/program"), "{err}");
    let err = p
        .provision(spec(
            json!({"Cmd": "sleep", "Args": ["1"], "Dir": "/nonexistent/dir"}),
            "g",
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/dir"), "{err}");
    assert!(instance_dirs(state.path()).is_empty());
}

#[tokio::test]
async fn validate_and_provision_reject_bad_properties_by_path() {
    let state = ProcessDir::new();
    let p = open(state.path());
    p.validate(&json!({"Cmd": "sleep", "Args": ["1"]}))
        .await
        .unwrap();
    for (props, path) in [
        (json!({"Cmd": "sleep", "Args": "1"}), "Properties.Args"),
        (json!({"Cmd": ""}), "Properties.Cmd"),
        (json!({"Cmd": "x", "Extra": true}), "Properties.Extra"),
        (json!({"Args": []}), "Properties"),
    ] {
        match p.validate(&props).await.unwrap_err() {
            Error::Invalid { path: got, .. } => assert_eq!(got, path, "{props}"),
            other => panic!("unexpected error {other}"),
        }
        assert!(p.provision(spec(props, "g")).await.is_err());
    }
    assert!(instance_dirs(state.path()).is_empty());
}

#[tokio::test]
async fn describe_filters_by_tags_and_label_merges_and_persists() {
    let state = ProcessDir::new();
    let p = open(state.path());
    let a = p.provision(sleeper("a")).await.unwrap();
    let b = p.provision(sleeper("b")).await.unwrap();

    let mut all = vec![a.clone(), b.clone()];
    all.sort();
    assert_eq!(ids(&p, &Tags::new()).await, all);
    assert_eq!(ids(&p, &tags(&[(GROUP_TAG, "a")])).await, vec![a.clone()]);
    assert!(ids(&p, &tags(&[(GROUP_TAG, "c")])).await.is_empty());

    p.label(&a, &tags(&[("tier", "web")])).await.unwrap();
    assert_eq!(
        ids(&p, &tags(&[(GROUP_TAG, "a"), ("tier", "web")])).await,
        vec![a.clone()]
    );
    assert!(ids(&p, &tags(&[(GROUP_TAG, "b"), ("tier", "web")]))
        .await
        .is_empty());
    let record: Value = serde_json::from_slice(
        &std::fs::read(p.instance_dir(&a).unwrap().join("instance.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["Tags"], json!({GROUP_TAG: "a", "tier": "web"}));

    assert!(matches!(
        p.label("proc-missing", &Tags::new()).await,
        Err(Error::NotFound { .. })
    ));

    for id in [&a, &b] {
        p.destroy(id, &DestroyContext::default()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_is_reported_at_once() {
    let state = ProcessDir::new();
    let p = open(state.path());
    let mut events = p.subscribe();
    let id = p.provision(sleeper("g")).await.unwrap();
    let keep = p.provision(sleeper("g")).await.unwrap();
    let pid = p.pid(&id).unwrap();

    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let e = next_event(&mut events).await;
    assert_eq!(e.topic, "/instance/exited");
    assert_eq!(e.id, id);
    assert_eq!(
        e.message,
        format!("process {pid} exited: signal: 9 (SIGKILL)")
    );
    assert_eq!(e.data, json!({"Tags": {GROUP_TAG: "g"}}));

    assert_eq!(ids(&p, &Tags::new()).await, vec![keep.clone()]);
    assert_eq!(p.pid(&id), None);
    let dir = p.instance_dir(&id).unwrap();
    assert!(
        !dir.join("instance.json").exists(),
        "a restart will not adopt it"
    );
    p.destroy(&id, &DestroyContext::default()).await.unwrap();
    assert!(!dir.exists());
    p.destroy(&keep, &DestroyContext::default()).await.unwrap();
}

#[tokio::test]
async fn an_instance_that_finishes_keeps_its_logs() {
    let state = ProcessDir::new();
    let p = open(state.path());
    let mut events = p.subscribe();
    let id = p
        .provision(spec(
            json!({"Cmd": "sh", "Args": ["-c", "echo done; exit 4"]}),
            "g",
        ))
        .await
        .unwrap();
    let e = next_event(&mut events).await;
    assert_eq!(e.id, id);
    let pid = e
        .message
        .strip_prefix("process ")
        .and_then(|m| m.strip_suffix(" exited: exit status: 4"));
    assert!(
        pid.is_some_and(|pid| pid.parse::<u32>().is_ok()),
        "{}",
        e.message
    );
    assert!(ids(&p, &Tags::new()).await.is_empty());
    let log = p.instance_dir(&id).unwrap().join(STDOUT_LOG);
    assert_eq!(std::fs::read_to_string(log).unwrap(), "done\n");
}

#[tokio::test]
async fn destroy_kills_the_group_and_is_idempotent() {
    let state = ProcessDir::new();
    let p = open(state.path());
    let mut events = p.subscribe();
    // A shell with a child: destroying the instance must reach both.
    let id = p
        .provision(spec(
            json!({"Cmd": "sh", "Args": ["-c", "sleep 3600 & echo $! > child; wait"]}),
            "g",
        ))
        .await
        .unwrap();
    let pid = p.pid(&id).unwrap();
    let child_file = p.instance_dir(&id).unwrap().join("child");
    until("the background child to start", DEADLINE, || {
        let f = child_file.clone();
        async move { std::fs::read_to_string(&f).is_ok_and(|s| s.ends_with('\n')) }
    })
    .await;
    let child: u32 = std::fs::read_to_string(&child_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(is_running(child as i32));

    let ctx = DestroyContext::reason("terminate");
    p.destroy(&id, &ctx).await.unwrap();
    assert!(!is_running(pid as i32), "the leader is dead");
    until("the group member to die", DEADLINE, || async move {
        !is_running(child as i32)
    })
    .await;
    assert!(!p.instance_dir(&id).unwrap().exists(), "its state is gone");
    assert!(ids(&p, &Tags::new()).await.is_empty());

    p.destroy(&id, &ctx).await.unwrap();
    p.destroy("proc-unknown", &ctx).await.unwrap();
    p.destroy("../escape", &ctx).await.unwrap();
    assert!(
        matches!(
            events.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ),
        "a destroyed instance did not exit by itself"
    );
}

#[tokio::test]
async fn destroy_escalates_to_sigkill_after_the_grace_period() {
    let state = ProcessDir::new();
    let p = open(state.path()).with_grace_period(Duration::from_millis(300));
    let id = p
        .provision(spec(
            json!({"Cmd": "sh", "Args": ["-c", "trap '' TERM; echo ready > ready; while :; do sleep 1; done"]}),
            "g",
        ))
        .await
        .unwrap();
    let pid = p.pid(&id).unwrap();
    let ready = p.instance_dir(&id).unwrap().join("ready");
    until("the TERM trap to be set", DEADLINE, || {
        let f = ready.clone();
        async move { f.exists() }
    })
    .await;
    let started = Instant::now();
    p.destroy(&id, &DestroyContext::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!is_running(pid as i32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_adopts_running_processes_and_drops_dead_ones() {
    let state = ProcessDir::new();
    let (alive, alive_pid, dead, dead_pid) = {
        let p = open(state.path());
        let alive = p.provision(sleeper("g")).await.unwrap();
        let dead = p.provision(sleeper("g")).await.unwrap();
        p.label(&alive, &tags(&[("tier", "web")])).await.unwrap();
        let pids = (p.pid(&alive).unwrap(), p.pid(&dead).unwrap());
        (alive, pids.0, dead, pids.1)
    }; // the plugin is dropped; its processes run on

    assert!(is_running(alive_pid as i32) && is_running(dead_pid as i32));
    kill(Pid::from_raw(dead_pid as i32), Signal::SIGKILL).unwrap();
    until("the killed process to die", DEADLINE, || async move {
        !is_running(dead_pid as i32)
    })
    .await;

    let p = open(state.path());
    let d = p.describe_instances(&Tags::new(), true).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].id, alive);
    assert_eq!(d[0].tags, tags(&[(GROUP_TAG, "g"), ("tier", "web")]));
    assert_eq!(
        d[0].properties.as_ref().unwrap().to_value()["PID"],
        json!(alive_pid)
    );
    assert_eq!(p.pid(&alive), Some(alive_pid));
    assert!(
        !p.instance_dir(&dead).unwrap().exists(),
        "the dead one's state is deleted"
    );

    // An adopted process is not a child of the plugin, yet its death is noticed.
    let mut events = p.subscribe();
    kill(Pid::from_raw(alive_pid as i32), Signal::SIGKILL).unwrap();
    let e = next_event(&mut events).await;
    assert_eq!(e.id, alive);
    assert_eq!(e.kind, "exited");
    assert!(e.message.contains(&alive_pid.to_string()), "{}", e.message);
    assert!(ids(&p, &Tags::new()).await.is_empty());
}

#[tokio::test]
async fn an_adopted_process_can_be_destroyed() {
    let state = ProcessDir::new();
    let (id, pid) = {
        let p = open(state.path());
        let id = p.provision(sleeper("g")).await.unwrap();
        let pid = p.pid(&id).unwrap();
        (id, pid)
    };
    let p = open(state.path());
    let mut events = p.subscribe();
    assert_eq!(p.pid(&id), Some(pid));
    p.destroy(&id, &DestroyContext::default()).await.unwrap();
    assert!(!is_running(pid as i32));
    assert!(instance_dirs(state.path()).is_empty());
    assert!(ids(&p, &Tags::new()).await.is_empty());
    // Give the poller more than one period to (wrongly) report an exit.
    let quiet = tokio::time::timeout(Duration::from_millis(300), events.recv()).await;
    assert!(quiet.is_err(), "no exited event for a destroyed instance");
}

#[tokio::test]
async fn a_recycled_pid_is_not_adopted() {
    let state = ProcessDir::new();
    let id = {
        let p = open(state.path());
        let id = p.provision(sleeper("g")).await.unwrap();
        // Pretend the process started at another time: its pid now belongs to someone else.
        let file = p.instance_dir(&id).unwrap().join("instance.json");
        let mut record: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        record["StartTime"] = json!(record["StartTime"].as_u64().unwrap() + 1);
        std::fs::write(&file, serde_json::to_vec(&record).unwrap()).unwrap();
        let pid = p.pid(&id).unwrap();
        p.destroy(&id, &DestroyContext::default()).await.unwrap();
        assert!(!is_running(pid as i32));
        // Write the record back as a dead plugin would have left it, with a live foreign pid.
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        record["PID"] = json!(std::process::id());
        std::fs::write(&file, serde_json::to_vec(&record).unwrap()).unwrap();
        id
    };
    let p = open(state.path());
    assert!(ids(&p, &Tags::new()).await.is_empty());
    assert!(!p.instance_dir(&id).unwrap().exists());
}

fn with_volume(props: Value, volume: &str) -> Spec {
    let mut s = spec(props, "db");
    s.logical_id = Some("db1".into());
    s.attachments = vec![
        Attachment {
            id: volume.into(),
            kind: "volume".into(),
        },
        Attachment {
            id: "../not-a-volume".into(),
            kind: "ebs".into(),
        },
    ];
    s
}

#[tokio::test]
async fn a_volume_outlives_its_instance_and_is_found_by_the_next() {
    let state = ProcessDir::new();
    let p = open(state.path());
    let volume = p.volume_dir("data-db1").unwrap();
    assert_eq!(volume, state.path().join("volumes").join("data-db1"));

    let mut first = with_volume(
        json!({"Cmd": "sh", "Args": ["-c", "echo hello > $INFRAKIT_VOLUME_DATA_DB1/f; sleep 300"]}),
        "data-db1",
    );
    first.init = "echo \"$INFRAKIT_VOLUME_DATA_DB1\" > init-saw".into();
    let id = p.provision(first).await.unwrap();
    let dir = p.instance_dir(&id).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("init-saw")).unwrap(),
        format!("{}\n", volume.display()),
        "Init sees the volume too"
    );
    assert_eq!(
        std::fs::read_link(dir.join("volumes").join("data-db1")).unwrap(),
        volume
    );
    let linked: Vec<_> = std::fs::read_dir(dir.join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(linked, ["data-db1"], "other attachment types are ignored");
    assert!(!state.path().join("not-a-volume").exists());
    let written = volume.join("f");
    until(
        "the first instance to write into its volume",
        DEADLINE,
        || {
            let f = written.clone();
            async move { std::fs::read_to_string(&f).is_ok_and(|s| s == "hello\n") }
        },
    )
    .await;
    let record: Value =
        serde_json::from_slice(&std::fs::read(dir.join("instance.json")).unwrap()).unwrap();
    assert_eq!(
        record["Attachments"][0],
        json!({"ID": "data-db1", "Type": "volume"})
    );
    assert_eq!(record["Attachments"][1]["Type"], json!("ebs"));

    p.destroy(&id, &DestroyContext::reason("unhealthy"))
        .await
        .unwrap();
    assert!(!dir.exists(), "the instance is gone");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "hello\n",
        "its volume is not"
    );

    let second = with_volume(
        json!({"Cmd": "sh", "Args": ["-c", "cat $INFRAKIT_VOLUMES/data-db1/f > seen; echo \"$INFRAKIT_VOLUMES\" > where; sleep 300"]}),
        "data-db1",
    );
    let id2 = p.provision(second).await.unwrap();
    assert_ne!(id, id2);
    let dir2 = p.instance_dir(&id2).unwrap();
    let where_file = dir2.join("where");
    until("the second instance to read the volume", DEADLINE, || {
        let f = where_file.clone();
        async move { std::fs::read_to_string(&f).is_ok_and(|s| s.ends_with('\n')) }
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(dir2.join("seen")).unwrap(),
        "hello\n"
    );
    let links = std::fs::read_to_string(&where_file).unwrap();
    assert_eq!(Path::new(links.trim()), dir2.join("volumes"));
    assert!(Path::new(links.trim()).is_absolute());

    p.destroy(&id2, &DestroyContext::default()).await.unwrap();
    assert!(volume.join("f").exists());
}

#[tokio::test]
async fn a_bad_volume_id_is_rejected_and_leaves_nothing() {
    let state = ProcessDir::new();
    let p = open(state.path());
    for bad in ["", "..", "a/b", "../escape"] {
        let s = with_volume(json!({"Cmd": "sleep", "Args": ["3600"]}), bad);
        match p.provision(s).await.unwrap_err() {
            Error::Invalid { path, .. } => assert_eq!(path, "Spec.Attachments[0].ID", "{bad:?}"),
            other => panic!("unexpected error {other} for {bad:?}"),
        }
    }
    assert!(instance_dirs(state.path()).is_empty());
    assert!(!state.path().join("volumes").exists());
    assert!(!state.path().join("escape").exists());
    assert!(p.volume_dir("..").is_none() && p.volume_dir("a/b").is_none());
    assert!(ids(&p, &Tags::new()).await.is_empty());
}
