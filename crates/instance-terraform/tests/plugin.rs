//! The plugin on its own, against the real `terraform`: batching, errors, labels, destroy,
//! drift, import and validation.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use infrakit_instance_terraform::{ImportRequest, ImportSource, TerraformOptions, TerraformPlugin};
use infrakit_spi::{DestroyContext, Instance, Spec, Tags};
use infrakit_testkit::{instance, tags};
use serde_json::{json, Value};

use common::{eventually, instance_files, instance_resources, plugin, resources, state_rm, tf};

/// A spec with these properties and tags.
fn spec(properties: Value, pairs: &[(&str, &str)]) -> Spec {
    instance::spec(properties, tags(pairs))
}

fn data(input: Value) -> Value {
    json!({"resource": {"terraform_data": {"vm": {"input": input}}}})
}

#[tokio::test]
async fn twenty_provisions_at_once_share_a_few_applies_and_never_collide() {
    let (p, dir) = plugin().await;
    assert_eq!(p.stats().applies, 0);
    let provisions = (0..20).map(|i| {
        let p = p.clone();
        async move {
            p.provision(spec(data(json!({"n": i})), &[("batch", "b1")]))
                .await
        }
    });
    let ids: Vec<String> = futures::future::join_all(provisions)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(distinct.len(), 20, "{ids:?}");
    let stats = p.stats();
    assert!(
        (1..=3).contains(&stats.applies),
        "20 provisions took {} applies",
        stats.applies
    );
    assert_eq!(
        instance_files(dir.path()),
        distinct,
        "one file per instance"
    );
    assert_eq!(
        instance_resources(dir.path()),
        distinct,
        "one resource each"
    );
    let described = p
        .describe_instances(&[("batch".to_string(), "b1".to_string())].into(), false)
        .await
        .unwrap();
    assert_eq!(
        described
            .iter()
            .map(|d| d.id.clone())
            .collect::<BTreeSet<_>>(),
        distinct
    );

    // And 20 destroys at once, likewise.
    let before = p.stats().applies;
    let destroys = ids.iter().map(|id| {
        let p = p.clone();
        async move { p.destroy(id, &DestroyContext::reason("terminate")).await }
    });
    for r in futures::future::join_all(destroys).await {
        r.unwrap();
    }
    assert!(p.stats().applies - before <= 3);
    assert!(instance_resources(dir.path()).is_empty());
    assert!(instance_files(dir.path()).is_empty());
}

#[tokio::test]
async fn describe_reads_the_state_with_tags_logical_ids_and_attributes() {
    let (p, dir) = plugin().await;
    let mut s = spec(
        json!({"resource": {"terraform_data": {
            "vm": {"input": {"me": "{{ var \"/self/instId\" }}", "disk": "${terraform_data.disk.id}"}},
            "disk": {"input": "{{ var \"/self/logicalId\" }}"}
        }}, "primary": "terraform_data.vm"}),
        &[("infrakit.group", "g1"), ("tier", "${literally}")],
    );
    s.logical_id = Some("db1".into());
    let id = p.provision(s).await.unwrap();

    let all = p.describe_instances(&Tags::new(), true).await.unwrap();
    assert_eq!(all.len(), 1);
    let d = &all[0];
    assert_eq!(d.id, id);
    assert_eq!(d.logical_id.as_deref(), Some("db1"));
    assert_eq!(&d.tags["tier"], "${literally}", "tags are not templates");
    assert_eq!(&d.tags["infrakit.logical_id"], "db1");
    let props = d.properties.as_ref().unwrap().to_value();
    assert_eq!(props["input"]["me"], json!(id));

    // The extra resource is namespaced and referenced under its new name.
    let state = resources(dir.path());
    let disk = state
        .iter()
        .find(|(a, _)| *a == format!("terraform_data.{id}-disk"))
        .expect("the extra resource is named after the instance");
    assert_eq!(disk.1["input"], "db1");
    assert_eq!(props["input"]["disk"], disk.1["id"]);

    // Tag filters are ANDed.
    assert_eq!(
        p.describe_instances(&tags(&[("infrakit.group", "g1")]), false)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(p
        .describe_instances(&tags(&[("infrakit.group", "g1"), ("tier", "x")]), false)
        .await
        .unwrap()
        .is_empty());

    // Label merges tags and reaches the state.
    p.label(&id, &tags(&[("tier", "db"), ("owner", "ops")]))
        .await
        .unwrap();
    let d = &p.describe_instances(&Tags::new(), false).await.unwrap()[0];
    assert_eq!(&d.tags["tier"], "db");
    assert_eq!(&d.tags["owner"], "ops");
    assert_eq!(&d.tags["infrakit.group"], "g1");
    let outputs = common::show(dir.path())["values"]["outputs"].clone();
    assert_eq!(
        outputs[format!("infrakit_{id}")]["value"]["Tags"]["owner"],
        "ops"
    );
    // Labels asked for together all count (and usually share an apply).
    let applies = p.stats().applies;
    let (lx, ly) = (tags(&[("x", "1")]), tags(&[("y", "2")]));
    let (x, y) = tokio::join!(p.label(&id, &lx), p.label(&id, &ly));
    x.unwrap();
    y.unwrap();
    let d = &p.describe_instances(&Tags::new(), false).await.unwrap()[0];
    assert_eq!((&d.tags["x"], &d.tags["y"]), ("1", "2"));
    assert!(p.stats().applies <= applies + 2);
    let err = p
        .label("instance-1-aaaaaa", &tags(&[("a", "b")]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not found"), "{err}");

    // Destroy removes everything of the instance; destroying again, or an unknown ID, is fine.
    p.destroy(&id, &DestroyContext::default()).await.unwrap();
    assert!(resources(dir.path()).is_empty());
    assert!(p
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap()
        .is_empty());
    p.destroy(&id, &DestroyContext::default()).await.unwrap();
    p.destroy("no-such-thing", &DestroyContext::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn drift_shows_at_once_and_is_not_brought_back() {
    let (p, dir) = plugin().await;
    let a = p.provision(spec(data(json!("a")), &[])).await.unwrap();
    let b = p.provision(spec(data(json!("b")), &[])).await.unwrap();
    let c = p.provision(spec(data(json!("c")), &[])).await.unwrap();
    let ids = |list: Vec<infrakit_spi::Description>| -> BTreeSet<String> {
        list.into_iter().map(|d| d.id).collect()
    };
    assert_eq!(
        ids(p.describe_instances(&Tags::new(), false).await.unwrap()),
        [a.clone(), b.clone(), c.clone()].into()
    );

    // Removed from the state and its file deleted.
    state_rm(dir.path(), &a);
    // Destroyed by a targeted destroy, its file left in place.
    tf(
        dir.path(),
        &[
            "destroy",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-lock-timeout=60s",
            &format!("-target=terraform_data.{b}"),
        ],
    );
    assert_eq!(
        ids(p.describe_instances(&Tags::new(), false).await.unwrap()),
        [c.clone()].into(),
        "the state is read again once it changed"
    );

    // The next apply does not resurrect b from its file.
    let d = p.provision(spec(data(json!("d")), &[])).await.unwrap();
    assert_eq!(
        ids(p.describe_instances(&Tags::new(), false).await.unwrap()),
        [c.clone(), d.clone()].into()
    );
    assert_eq!(
        instance_resources(dir.path()),
        [c.clone(), d.clone()].into()
    );
    assert_eq!(instance_files(dir.path()), [c, d].into());
}

#[tokio::test]
async fn a_failing_instance_fails_alone_and_leaves_nothing_behind() {
    let (p, dir) = plugin().await;
    // A shared resource of the user's own, next to the instances.
    std::fs::write(
        dir.path().join("main.tf.json"),
        r#"{"resource": {"terraform_data": {"shared": {"input": "keep me"}}}}"#,
    )
    .unwrap();
    let keep = p.provision(spec(data(json!("keep")), &[])).await.unwrap();
    let shared_id = |dir: &std::path::Path| {
        resources(dir)
            .into_iter()
            .find(|(a, _)| a == "terraform_data.shared")
            .map(|(_, v)| v["id"].clone())
    };
    let shared_before = shared_id(dir.path()).expect("the user's resource was applied too");
    let keep_before = resources(dir.path())
        .into_iter()
        .find(|(a, _)| *a == format!("terraform_data.{keep}"))
        .unwrap()
        .1["id"]
        .clone();

    // In one batch: two good instances, one with an attribute Terraform rejects, one whose
    // provisioner fails.
    let good = || spec(data(json!("good")), &[("kind", "good")]);
    let invalid = spec(
        json!({"resource": {"terraform_data": {"vm": {"bogus_attr": 1}}}}),
        &[],
    );
    let failing = spec(
        json!({"resource": {"terraform_data": {"vm": {
            "provisioner": {"local-exec": {"command": "echo it broke >&2; exit 3"}}
        }}}}),
        &[],
    );
    let (g1, bad1, bad2, g2) = tokio::join!(
        p.provision(good()),
        p.provision(invalid),
        p.provision(failing),
        p.provision(good())
    );
    let bad1 = bad1.unwrap_err().to_string();
    assert!(
        bad1.contains(r#"No argument or block type is named "bogus_attr""#),
        "{bad1}"
    );
    let bad2 = bad2.unwrap_err().to_string();
    assert!(
        bad2.contains("local-exec provisioner error") && bad2.contains("exit status 3"),
        "{bad2}"
    );
    let (g1, g2) = (g1.unwrap(), g2.unwrap());

    // The failed ones are not reported, and what Terraform created of them (the tainted
    // resource) is destroyed by a later apply; nothing else was touched.
    let described: BTreeSet<String> = p
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(described, [keep.clone(), g1.clone(), g2.clone()].into());
    let want: BTreeSet<String> = [keep.clone(), g1, g2].into();
    eventually(
        "only the good instances remain in the state",
        Duration::from_secs(30),
        || async { (instance_resources(dir.path()) == want).then_some(()) },
    )
    .await;
    assert_eq!(instance_files(dir.path()), want);
    assert_eq!(shared_id(dir.path()), Some(shared_before));
    let keep_after = resources(dir.path())
        .into_iter()
        .find(|(a, _)| *a == format!("terraform_data.{keep}"))
        .unwrap()
        .1["id"]
        .clone();
    assert_eq!(keep_after, keep_before, "not replaced");
    assert!(p.stats().failed >= 1);
}

#[tokio::test]
async fn init_runs_as_a_local_exec_provisioner_of_terraform_data() {
    let (p, dir) = plugin().await;
    let out = dir.path().join("init-ran");
    let mut s = spec(data(json!(1)), &[("infrakit.group", "web")]);
    s.init = format!(
        "echo \"${{INFRAKIT_INSTANCE_ID}} $INFRAKIT_GROUP\" > {}",
        out.display()
    );
    let id = p.provision(s).await.unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.trim(), format!("{id} web"));

    // A type without a boot script field cannot take Init: nothing is written.
    let mut s = spec(json!({"resource": {"null_resource": {"vm": {}}}}), &[]);
    s.init = "echo hi".into();
    let err = p.provision(s).await.unwrap_err().to_string();
    assert!(
        err.starts_with("Spec.Init: resource type null_resource"),
        "{err}"
    );
    assert_eq!(instance_files(dir.path()), [id].into());
}

#[tokio::test]
async fn validate_names_the_bad_field() {
    let (p, _dir) = plugin().await;
    p.validate(&data(json!(1))).await.unwrap();
    p.validate(&json!({"type": "terraform_data", "value": {}}))
        .await
        .unwrap();
    let cases = [
        (json!([]), "Properties:"),
        (
            json!({"resource": {"terraform_data": {"vm": 3}}}),
            "Properties.resource.terraform_data.vm:",
        ),
        (
            json!({"resource": {"terraform_data": {"a": {}, "b": {}}}}),
            "Properties.primary: missing",
        ),
        (
            json!({"resource": {"terraform_data": {"vm": {}}}, "variable": {}}),
            "Properties.variable: unknown field",
        ),
        (
            json!({"resource": {"terraform_data": {"vm": {"for_each": {}}}}}),
            "Properties.resource.terraform_data.vm.for_each:",
        ),
        (
            json!({"type": "terraform_data", "value": []}),
            "Properties.value:",
        ),
    ];
    for (props, want) in cases {
        let err = p.validate(&props).await.unwrap_err().to_string();
        assert!(err.starts_with(want), "{props}: {err}");
        let err = p.provision(spec(props, &[])).await.unwrap_err().to_string();
        assert!(err.starts_with(want), "{err}");
    }
    assert_eq!(p.stats().applies, 0, "bad input changes nothing");
}

#[tokio::test]
async fn import_adopts_existing_resources_without_recreating_them() {
    let (p, dir) = plugin().await;
    // A resource the user created with their own file...
    std::fs::write(
        dir.path().join("legacy.tf.json"),
        r#"{"resource": {"terraform_data": {"legacy": {"input": "v1"}}}}"#,
    )
    .unwrap();
    tf(
        dir.path(),
        &[
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-lock-timeout=60s",
        ],
    );
    let legacy_id = resources(dir.path())[0].1["id"].clone();
    // ... and whose declaration they then hand over to the plugin.
    std::fs::remove_file(dir.path().join("legacy.tf.json")).unwrap();
    let tags: Tags = [("infrakit.group".to_string(), "db".to_string())].into();
    let id = p
        .import(ImportRequest {
            properties: data(json!("v1")),
            source: ImportSource::Address("terraform_data.legacy".into()),
            tags: tags.clone(),
            logical_id: Some("db1".into()),
        })
        .await
        .unwrap();
    let d = p.describe_instances(&tags, true).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].id, id);
    assert_eq!(d[0].logical_id.as_deref(), Some("db1"));
    assert_eq!(
        d[0].properties.as_ref().unwrap().to_value()["id"],
        legacy_id,
        "moved, not recreated"
    );
    let file = std::fs::read_to_string(p.instance_file(&id)).unwrap();
    assert!(!file.contains("\"moved\""), "the move is done: {file}");

    // A resource known by its provider ID (terraform_data takes any ID on import).
    let id2 = p
        .import(ImportRequest {
            properties: data(json!("v2")),
            source: ImportSource::Id("0f1e2d3c-aaaa-bbbb-cccc-000000000001".into()),
            tags: tags.clone(),
            logical_id: None,
        })
        .await
        .unwrap();
    let d = p.describe_instances(&tags, true).await.unwrap();
    let imported = d.iter().find(|d| d.id == id2).unwrap();
    assert_eq!(
        imported.properties.as_ref().unwrap().to_value()["id"],
        "0f1e2d3c-aaaa-bbbb-cccc-000000000001"
    );
    assert_eq!(
        imported.properties.as_ref().unwrap().to_value()["input"],
        "v2"
    );

    // Terraform refuses to move a resource that is still declared: nothing changes.
    std::fs::write(
        dir.path().join("mine.tf.json"),
        r#"{"resource": {"terraform_data": {"mine": {"input": "stays"}}}}"#,
    )
    .unwrap();
    tf(
        dir.path(),
        &[
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-lock-timeout=60s",
        ],
    );
    let err = p
        .import(ImportRequest {
            properties: data(json!("stays")),
            source: ImportSource::Address("terraform_data.mine".into()),
            tags: tags.clone(),
            logical_id: None,
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Moved object still exists"), "{err}");
    assert!(resources(dir.path())
        .iter()
        .any(|(a, _)| a == "terraform_data.mine"));
    assert_eq!(instance_files(dir.path()), [id.clone(), id2.clone()].into());
    // The apply that follows a failure (to clean up) succeeds.
    eventually("a clean apply", Duration::from_secs(10), || async {
        p.stats().last_error.is_none().then_some(())
    })
    .await;

    // Bad sources are refused with the field named, and change nothing.
    let applies = p.stats().applies;
    let bad = |source| ImportRequest {
        properties: data(json!(1)),
        source,
        tags: Tags::new(),
        logical_id: None,
    };
    for (source, want) in [
        (
            ImportSource::Address("terraform_data.nothing".into()),
            "Source.Address: no resource",
        ),
        (
            ImportSource::Address("aws_instance.x".into()),
            "Source.Address: aws_instance.x is a aws_instance",
        ),
        (
            ImportSource::Address(format!("terraform_data.{id}")),
            "Source.Address: terraform_data.",
        ),
        (ImportSource::Id(" ".into()), "Source.ID: must not be blank"),
    ] {
        let err = p.import(bad(source)).await.unwrap_err().to_string();
        assert!(err.starts_with(want), "{err}");
    }
    assert_eq!(p.stats().applies, applies);
    assert_eq!(instance_files(dir.path()), [id, id2].into());
}

#[tokio::test]
async fn a_missing_terraform_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = TerraformPlugin::start(TerraformOptions {
        terraform: "/nonexistent/terraform".into(),
        ..TerraformOptions::new(dir.path())
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("cannot run terraform (/nonexistent/terraform)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_restarted_plugin_knows_its_instances_and_finishes_destroys() {
    let (p, dir) = plugin().await;
    let marker = dir.path().join("destroyed");
    let props = json!({"resource": {"terraform_data": {"vm": {"provisioner": [
        {"local-exec": {"when": "destroy", "command": format!("echo $INFRAKIT_INSTANCE_ID >> {}", marker.display())}}
    ]}}}});
    let a = p
        .provision(spec(props.clone(), &[("k", "v")]))
        .await
        .unwrap();
    let b = p.provision(spec(props, &[("k", "v")])).await.unwrap();
    drop(p);

    // A destroy cut short by a stop: the file is a tombstone, the resources still exist.
    let file: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(format!("{b}.tf.json"))).unwrap())
            .unwrap();
    std::fs::write(
        dir.path().join(format!("{b}.tf.json")),
        serde_json::to_vec(&infrakit_instance_terraform::render::tombstone(&file)).unwrap(),
    )
    .unwrap();

    let p = TerraformPlugin::start(common::options(dir.path()))
        .await
        .unwrap();
    eventually(
        "the interrupted destroy is finished",
        Duration::from_secs(30),
        || async { (instance_resources(dir.path()) == BTreeSet::from([a.clone()])).then_some(()) },
    )
    .await;
    // Describe answers from the state before an apply while one runs: wait for it to end.
    let d = eventually("describe shows one", Duration::from_secs(10), || async {
        let d = p.describe_instances(&Tags::new(), false).await.ok()?;
        (d.len() == 1).then_some(d)
    })
    .await;
    assert_eq!(d[0].id, a);
    assert_eq!(&d[0].tags["k"], "v");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        b,
        "its destroy-time provisioner ran"
    );
    eventually("the tombstone is gone", Duration::from_secs(10), || async {
        (instance_files(dir.path()) == BTreeSet::from([a.clone()])).then_some(())
    })
    .await;
    p.destroy(&a, &DestroyContext::default()).await.unwrap();
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 2);
}

#[tokio::test]
async fn an_apply_waits_for_terraform_state_lock() {
    let (p, dir) = plugin().await;
    // Someone else's apply holds the state lock until this test says "go" (for a minute at
    // most), and marks the end of its work while it still holds the lock.
    let go = dir.path().join("go");
    let finished = dir.path().join("other-apply-finished");
    let command = format!(
        "n=0; until [ -e '{go}' ]; do n=$((n + 1)); [ $n -lt 600 ] || exit 1; sleep 0.1; done; \
         touch '{finished}'",
        go = go.display(),
        finished = finished.display()
    );
    std::fs::write(
        dir.path().join("slow.tf.json"),
        json!({"resource": {"terraform_data": {"slow": {"provisioner": {"local-exec": {"command": command}}}}}})
            .to_string(),
    )
    .unwrap();
    // Killed with what it started if the test fails.
    let mut other = infrakit_testkit::ProcessGroup::spawn(
        std::process::Command::new("terraform")
            .args(["apply", "-auto-approve", "-input=false", "-no-color"])
            .current_dir(dir.path())
            .env("CHECKPOINT_DISABLE", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
    .unwrap();
    let lock_info = dir.path().join(".terraform.tfstate.lock.info");
    eventually(
        "the other apply holds the lock",
        Duration::from_secs(30),
        || async { lock_info.exists().then_some(()) },
    )
    .await;

    let provision = tokio::spawn({
        let p = p.clone();
        async move { p.provision(spec(data(json!(1)), &[])).await }
    });
    // The plugin's own apply (the one given a lock timeout) runs, waiting for the lock.
    eventually(
        "the plugin's apply waits for the lock",
        Duration::from_secs(30),
        || async {
            infrakit_testkit::process::processes_in(dir.path())
                .iter()
                .any(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                        c.split(|b| *b == 0)
                            .any(|arg| arg.starts_with(b"-lock-timeout="))
                    })
                })
                .then_some(())
        },
    )
    .await;
    assert!(!provision.is_finished(), "the provision waits");
    assert!(!finished.exists());
    std::fs::write(&go, "").unwrap();
    let id = provision.await.unwrap().unwrap();
    // The provision applied only once the other apply was done with the lock.
    assert!(
        finished.exists(),
        "the provision applied while the other apply held the lock"
    );
    assert!(other.child().wait().unwrap().success());
    assert!(instance_resources(dir.path()).contains(&id));
    assert_eq!(p.stats().failed, 0, "waiting for the lock is no failure");
}
