//! The group controller managing Terraform resources through the plugin, in-process, with the
//! vanilla flavor and the real `terraform`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use infrakit_spi::{Group, Instance, Spec, Tags};
use infrakit_testkit::{group, is_running, until};
use serde_json::json;

use common::{
    eventually, fixture, fixture_with, instance_files, instance_resources, resources, state_rm, tf,
};

#[tokio::test]
async fn a_cattle_group_heals_resources_removed_outside_terraform_runs() {
    let f = fixture().await;
    let instance = json!({"resource": {"terraform_data": {"vm": {"input": {"version": "1"}}}}});
    f.group
        .commit_group(
            f.spec(
                "web",
                json!({"Size": 3}),
                instance,
                json!({"Tags": {"tier": "web"}}),
            ),
            false,
        )
        .await
        .unwrap();
    let d = f.converged("web", 3).await;
    let first = group::ids(&d);
    assert_eq!(
        instance_resources(&f.dir),
        first,
        "3 terraform_data resources exist"
    );
    for i in &d.instances {
        assert_eq!(&i.tags["infrakit.group"], "web");
        assert_eq!(&i.tags["tier"], "web");
        assert!(i.tags.contains_key("infrakit.config.hash"));
    }

    // One removed from the state (and its file deleted): the group makes a new one.
    let victim = first.iter().next().unwrap().clone();
    state_rm(&f.dir, &victim);
    let healed = group::ids(
        &group::converged_where(
            &f.group,
            "web",
            3,
            Duration::from_secs(60),
            "the removed resource replaced",
            |d| !group::ids(d).contains(&victim),
        )
        .await,
    );
    assert_eq!(first.intersection(&healed).count(), 2, "the others stay");
    assert_eq!(instance_resources(&f.dir), healed);

    // One destroyed by a targeted destroy (its file left behind): replaced, not resurrected.
    let victim2 = healed.iter().next().unwrap().clone();
    tf(
        &f.dir,
        &[
            "destroy",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-lock-timeout=60s",
            &format!("-target=terraform_data.{victim2}"),
        ],
    );
    let healed2 = group::ids(
        &group::converged_where(
            &f.group,
            "web",
            3,
            Duration::from_secs(60),
            "the destroyed resource replaced",
            |d| !group::ids(d).contains(&victim2),
        )
        .await,
    );
    assert_eq!(instance_resources(&f.dir), healed2);
    assert_eq!(
        instance_files(&f.dir),
        healed2,
        "the stale file was removed"
    );

    f.group.destroy_group("web").await.unwrap();
    eventually("all destroyed", Duration::from_secs(60), || async {
        instance_resources(&f.dir).is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn pets_keep_their_logical_ids_through_a_rolling_update() {
    let f = fixture().await;
    let instance = |version: &str| {
        json!({"resource": {"terraform_data": {"vm": {
            "input": {"version": version, "name": "{{ var \"/self/logicalId\" }}"}
        }}}})
    };
    let pets = json!({"LogicalIDs": ["db1", "db2"]});
    f.group
        .commit_group(f.spec("db", pets.clone(), instance("1"), json!({})), false)
        .await
        .unwrap();
    let d = f.converged("db", 2).await;
    let before = group::ids(&d);
    let logical: BTreeSet<Option<String>> =
        d.instances.iter().map(|i| i.logical_id.clone()).collect();
    assert_eq!(
        logical,
        [Some("db1".to_string()), Some("db2".to_string())].into()
    );

    f.group
        .commit_group(f.spec("db", pets, instance("2"), json!({})), false)
        .await
        .unwrap();
    let after = group::converged_where(
        &f.group,
        "db",
        2,
        Duration::from_secs(90),
        "the rolling update replaced both pets",
        |d| group::ids(d).is_disjoint(&before),
    )
    .await;
    let mut seen = BTreeSet::new();
    let state = resources(&f.dir);
    for i in &after.instances {
        let lid = i.logical_id.clone().expect("logical IDs are reported");
        assert_eq!(i.tags["infrakit.logical_id"], lid);
        let values = &state
            .iter()
            .find(|(a, _)| *a == format!("terraform_data.{}", i.id))
            .unwrap()
            .1;
        assert_eq!(values["input"]["version"], "2");
        assert_eq!(
            values["input"]["name"],
            lid.as_str(),
            "the logical ID is applied"
        );
        seen.insert(lid);
    }
    assert_eq!(seen, ["db1".to_string(), "db2".to_string()].into());
    // The plugin itself reports them too.
    let own = f
        .plugin
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap();
    assert_eq!(
        own.iter()
            .filter_map(|d| d.logical_id.clone())
            .collect::<BTreeSet<_>>(),
        seen
    );
    f.group.destroy_group("db").await.unwrap();
}

/// The pid in `path`, if the file is there and the process runs.
fn running_pid(path: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    is_running(pid).then_some(pid)
}

/// Kills the processes whose pid files are in `dir` when dropped.
struct KillAll(std::path::PathBuf);

impl Drop for KillAll {
    fn drop(&mut self) {
        for e in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            if let Some(pid) = running_pid(&e.path()) {
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
}

#[tokio::test]
async fn local_exec_processes_follow_the_group() {
    let f = fixture().await;
    let pids = f.dir.join("pids");
    std::fs::create_dir(&pids).unwrap();
    let _kill = KillAll(pids.clone());
    let pidfile = format!("{}/$INFRAKIT_INSTANCE_ID.pid", pids.display());
    let instance = json!({"resource": {"terraform_data": {"vm": {"provisioner": [
        {"local-exec": {"command": format!("nohup sleep 300 >/dev/null 2>&1 & echo $! > {pidfile}")}},
        {"local-exec": {"when": "destroy", "command": format!("kill $(cat {pidfile})")}}
    ]}}}});
    f.group
        .commit_group(
            f.spec("procs", json!({"Size": 2}), instance, json!({})),
            false,
        )
        .await
        .unwrap();
    let members = f.converged("procs", 2).await;
    let alive = |id: &str| running_pid(&pids.join(format!("{id}.pid")));
    let mut first_pids = Vec::new();
    for i in &members.instances {
        first_pids.push(alive(&i.id).unwrap_or_else(|| panic!("{} runs its process", i.id)));
    }

    // The resource is forgotten by Terraform: the group makes a new instance, which starts a
    // new process (the forgotten one keeps running: Terraform no longer knows it).
    let victim = members.instances[0].id.clone();
    state_rm(&f.dir, &victim);
    let replacement = eventually("a replacement runs", Duration::from_secs(60), || async {
        let ids = f.members("procs").await;
        let new: Vec<String> = ids
            .into_iter()
            .filter(|id| !members.instances.iter().any(|i| &i.id == id))
            .collect();
        match new.as_slice() {
            [one] => alive(one).map(|pid| (one.clone(), pid)),
            _ => None,
        }
    })
    .await;
    assert!(!first_pids.contains(&replacement.1));
    assert!(
        alive(&members.instances[1].id).is_some(),
        "the other is untouched"
    );

    // Destroying the group runs the destroy-time provisioners: the processes stop.
    let stays = [members.instances[1].id.clone(), replacement.0.clone()];
    f.group.destroy_group("procs").await.unwrap();
    eventually("the processes stopped", Duration::from_secs(60), || async {
        stays.iter().all(|id| alive(id).is_none()).then_some(())
    })
    .await;
    assert!(instance_resources(&f.dir).is_empty());
}

#[tokio::test]
async fn a_terraform_error_reaches_provision_and_the_group_status() {
    let f = fixture().await;
    // A healthy group shares the directory.
    f.group
        .commit_group(
            f.spec(
                "good",
                json!({"Size": 1}),
                json!({"resource": {"terraform_data": {"vm": {"input": "ok"}}}}),
                json!({}),
            ),
            false,
        )
        .await
        .unwrap();
    let good = f.converged("good", 1).await.instances[0].id.clone();
    let uuid = |dir: &Path| {
        resources(dir)
            .into_iter()
            .find(|(a, _)| *a == format!("terraform_data.{good}"))
            .map(|(_, v)| v["id"].clone())
    };
    let good_uuid = uuid(&f.dir).unwrap();

    let bad = json!({"resource": {"terraform_data": {"vm": {"bogus_attr": 1}}}});
    const MESSAGE: &str = r#"No argument or block type is named "bogus_attr""#;
    let err = f
        .plugin
        .provision(Spec {
            properties: bad.clone(),
            ..Spec::default()
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(MESSAGE), "{err}");

    f.group
        .commit_group(f.spec("bad", json!({"Size": 2}), bad, json!({})), false)
        .await
        .unwrap();
    let status = eventually(
        "the group reports Terraform's error",
        Duration::from_secs(60),
        || async {
            let d = f.group.describe_group("bad").await.ok()?;
            let message = d.status?.message;
            message.contains(MESSAGE).then_some(message)
        },
    )
    .await;
    assert!(status.contains("Instance.Provision"), "{status}");
    let d = f.group.describe_group("bad").await.unwrap();
    assert!(!d.converged);
    assert!(d.instances.is_empty());

    // Nothing else was destroyed or replaced, and no failed instance is reported.
    f.group.free_group("bad").await.unwrap();
    let all = f
        .plugin
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        vec![good.clone()]
    );
    assert_eq!(uuid(&f.dir), Some(good_uuid));
    assert_eq!(f.converged("good", 1).await.instances[0].id, good);
    eventually(
        "no file of a failed instance is left",
        Duration::from_secs(30),
        || async { (instance_files(&f.dir) == BTreeSet::from([good.clone()])).then_some(()) },
    )
    .await;
    f.group.destroy_group("good").await.unwrap();
}

/// The JSON code block of `docs/plugins/terraform.md` that contains `marker`.
fn doc_block(marker: &str) -> serde_json::Value {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/plugins/terraform.md"
    ))
    .expect("docs/plugins/terraform.md");
    let block = doc
        .split("```json\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("no JSON block with {marker} in the doc"));
    serde_json::from_str(block).unwrap_or_else(|e| panic!("the doc's {marker} block: {e}"))
}

#[tokio::test]
async fn the_documented_example_runs() {
    let f = fixture().await;
    let run = f.dir.join("run");
    let _kill = KillAll(run.clone());
    std::fs::write(
        f.dir.join("main.tf.json"),
        serde_json::to_vec_pretty(&doc_block("\"network\": {\"input\"")).unwrap(),
    )
    .unwrap();
    let spec: infrakit_spi::GroupSpec =
        serde_json::from_value(doc_block("\"Allocation\"")).unwrap();
    let id = spec.id.clone();
    f.group.commit_group(spec, false).await.unwrap();
    let d = f.converged(&id, 3).await;
    let state = resources(&f.dir);
    let mut pids = Vec::new();
    for i in &d.instances {
        assert_eq!(&i.tags["tier"], "web");
        let pid = running_pid(&run.join(format!("{}.pid", i.id)));
        pids.push(pid.unwrap_or_else(|| panic!("{} runs its process", i.id)));
        let server = &state
            .iter()
            .find(|(a, _)| *a == format!("terraform_data.{}", i.id))
            .unwrap()
            .1;
        assert_eq!(server["input"]["name"], i.id.as_str());
        assert_eq!(server["input"]["network"], "10.0.0.0/24");
        let disk = &state
            .iter()
            .find(|(a, _)| *a == format!("terraform_data.{}-disk", i.id))
            .expect("each instance has its own disk")
            .1;
        assert_eq!(server["input"]["disk"], disk["id"]);
    }
    let joined = std::fs::read_to_string(run.join("joined.log")).unwrap();
    assert_eq!(
        joined.lines().count(),
        3,
        "Init ran once per instance: {joined}"
    );

    f.group.destroy_group(&id).await.unwrap();
    eventually(
        "only the shared network is left",
        Duration::from_secs(60),
        || async {
            let left: Vec<String> = resources(&f.dir).into_iter().map(|(a, _)| a).collect();
            (left == ["terraform_data.network"]).then_some(())
        },
    )
    .await;
    until(
        "the destroy-time provisioners stopped the processes",
        Duration::from_secs(30),
        || async { pids.iter().all(|p| !is_running(*p)) },
    )
    .await;
}

#[tokio::test]
async fn drift_is_replaced_at_once_through_events_not_at_the_next_poll() {
    // The controller polls once a minute: only the plugin's events can make it act sooner.
    let f = fixture_with(Duration::from_secs(60)).await;
    let mut events = infrakit_spi::Publisher::subscribe(&f.plugin);
    f.group
        .commit_group(
            f.spec(
                "evented",
                json!({"Size": 2}),
                json!({"resource": {"terraform_data": {"vm": {"input": 1}}}}),
                json!({}),
            ),
            false,
        )
        .await
        .unwrap();
    let d = f.converged("evented", 2).await;
    let victim = d.instances[0].id.clone();
    let mut next = |kind: &'static str, id: String| {
        let got = loop {
            match events.try_recv() {
                Ok(e) if e.kind == kind && e.id == id => break Some(e),
                Ok(_) => continue,
                Err(_) => break None,
            }
        };
        async move { got }
    };
    let created = eventually("a created event", Duration::from_secs(30), || {
        next("created", victim.clone())
    })
    .await;
    assert_eq!(created.data["Tags"]["infrakit.group"], "evented");
    // Healed before the 60 s poll could have found it: the bound is several times what the
    // watch (1 s) and a `terraform apply` take on an idle machine, and still below the poll.
    let bound = Duration::from_secs(40);
    state_rm(&f.dir, &victim);
    let removed_at = std::time::Instant::now();
    let event = eventually("a destroyed event", bound, || {
        next("destroyed", victim.clone())
    })
    .await;
    assert_eq!(event.topic, "/instance/destroyed");
    assert_eq!(event.data["Tags"]["infrakit.group"], "evented");
    eventually(
        "the group replaced it within 40 s of its removal",
        bound.saturating_sub(removed_at.elapsed()),
        || async {
            let d = f.group.describe_group("evented").await.ok()?;
            let ids: BTreeSet<String> = d.instances.iter().map(|i| i.id.clone()).collect();
            (ids.len() == 2 && !ids.contains(&victim)).then_some(())
        },
    )
    .await;
    f.group.destroy_group("evented").await.unwrap();
}
