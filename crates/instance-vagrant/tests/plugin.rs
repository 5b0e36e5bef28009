//! The Vagrant plugin on its own, with the real `vagrant` and its docker provider.

mod common;

use std::time::Duration;

use infrakit_instance_vagrant::{VagrantOptions, VagrantPlugin};
use infrakit_spi::{DestroyContext, Error, Instance, Spec, Tags};
use infrakit_testkit::{eventually, tags, unique_name};
use serde_json::json;

use common::{container_running, containers, exec, inspect, kill, sleeper, TestPlugin};

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_label_describe_and_destroy() {
    let t = TestPlugin::new("vg-basic").await;
    let p = &t.plugin;
    p.validate(&sleeper(t.image)).await.unwrap();

    let mut properties = sleeper(t.image);
    properties["Env"] = json!({"GREETING": "hi"});
    properties["Memory"] = json!(64);
    let spec = Spec {
        properties,
        tags: tags(&[("infrakit.group", "web"), ("tier", "front")]),
        init: "echo \"$INFRAKIT_INSTANCE_ID/$INFRAKIT_GROUP/$INFRAKIT_LOGICAL_ID/$GREETING\" > /init-ran"
            .into(),
        logical_id: Some("db1".into()),
        ..Spec::default()
    };
    let id = p.provision(spec).await.unwrap();
    assert!(
        id.starts_with("web-") && id.len() == "web-".len() + 8,
        "{id}"
    );

    // Up when Provision returns: the directory, the tags, a running container.
    let dir = p.instance_dir(&id);
    assert!(dir.join("Vagrantfile").is_file());
    let stored: Tags =
        serde_json::from_slice(&std::fs::read(dir.join("tags.json")).unwrap()).unwrap();
    assert_eq!(&stored["tier"], "front");
    assert_eq!(&stored["infrakit.logical_id"], "db1");
    assert!(container_running(&id), "container {id} runs");
    assert_eq!(t.vagrant_state(&id).await.as_deref(), Some("running"));
    assert_eq!(
        inspect(&id, "{{.HostConfig.Memory}}").as_deref(),
        Some("67108864")
    );
    assert_eq!(
        inspect(&id, "{{index .Config.Labels \"tier\"}}").as_deref(),
        Some("front")
    );
    // Init ran before the command, with the instance's environment.
    let ran = eventually("Init wrote /init-ran", Duration::from_secs(10), || async {
        exec(&id, &["cat", "/init-ran"]).ok()
    })
    .await;
    assert_eq!(ran.trim(), format!("{id}/web/db1/hi"));

    // Describe, filtered by tags.
    let all = p.describe_instances(&Tags::new(), false).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, id);
    assert_eq!(all[0].logical_id.as_deref(), Some("db1"));
    assert_eq!(&all[0].tags["infrakit.group"], "web");
    assert!(all[0].properties.is_none());
    let front = p
        .describe_instances(&tags(&[("tier", "front")]), true)
        .await
        .unwrap();
    assert_eq!(front.len(), 1);
    let props = front[0].properties.as_ref().unwrap().to_value();
    assert_eq!(props["State"], "running");
    assert_eq!(props["Provider"], "docker");
    assert_eq!(props["Dir"], dir.display().to_string());
    assert!(p
        .describe_instances(&tags(&[("tier", "back")]), false)
        .await
        .unwrap()
        .is_empty());

    // Label merges.
    p.label(&id, &tags(&[("tier", "back"), ("extra", "1")]))
        .await
        .unwrap();
    let back = p
        .describe_instances(&tags(&[("tier", "back")]), false)
        .await
        .unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(&back[0].tags["extra"], "1");
    assert_eq!(&back[0].tags["infrakit.group"], "web");
    let missing = p.label("web-nothere1", &tags(&[("a", "b")])).await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
    let bad = p.label("../x", &tags(&[("a", "b")])).await.unwrap_err();
    assert!(bad.to_string().starts_with("ID:"), "{bad}");

    // Destroy removes the machine and the directory; again, or of nothing, succeeds.
    p.destroy(&id, &DestroyContext::reason("terminate"))
        .await
        .unwrap();
    assert!(!dir.exists());
    assert!(
        inspect(&id, "{{.State.Status}}").is_none(),
        "container removed"
    );
    assert!(p
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap()
        .is_empty());
    p.destroy(&id, &DestroyContext::default()).await.unwrap();
    p.destroy("web-neverwas", &DestroyContext::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_properties_name_the_field_and_create_nothing() {
    let t = TestPlugin::new("vg-bad").await;
    let p = &t.plugin;
    let cases = [
        (
            json!({"Image": t.image, "CPUs": "two"}),
            "Properties.CPUs: invalid type",
        ),
        (json!({"Imgae": t.image}), "Properties.Imgae: unknown field"),
        (json!({"Cmd": ["sleep", "1"]}), "Properties.Image: missing"),
        (
            json!({"Provider": "virtualbox", "Image": t.image}),
            "Properties.Box: missing",
        ),
        (
            json!({"Image": t.image, "Networks": [{"Type": "lan"}]}),
            "Properties.Networks[0].Type:",
        ),
    ];
    for (properties, expected) in cases {
        let e = p.validate(&properties).await.unwrap_err();
        assert!(
            matches!(e, Error::Invalid { .. }) && e.to_string().starts_with(expected),
            "validate {properties}: {e}"
        );
        let e = p
            .provision(Spec {
                properties: properties.clone(),
                ..Spec::default()
            })
            .await
            .unwrap_err();
        assert!(
            e.to_string().starts_with(expected),
            "provision {properties}: {e}"
        );
    }
    assert!(entries(&t.plugin.options().dir).is_empty());
    assert!(containers(&t.label()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_up_returns_vagrants_message_and_leaves_nothing_behind() {
    let t = TestPlugin::new("vg-fail").await;
    let e = t
        .plugin
        .provision(Spec {
            properties: json!({"Image": "infrakit-test/no-such-image:never", "Cmd": ["sleep", "1"]}),
            tags: tags(&[("infrakit.group", "broken")]),
            ..Spec::default()
        })
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("vagrant up --provider=docker"), "{text}");
    assert!(
        text.contains("A Docker command executed by Vagrant didn't complete successfully"),
        "Vagrant's own message: {text}"
    );
    assert!(text.contains("infrakit-test/no-such-image:never"), "{text}");
    assert!(entries(&t.plugin.options().dir).is_empty());
    assert!(containers(&t.label()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_machine_is_listed_by_at_most_one_more_describe_then_cleaned_up() {
    let t = TestPlugin::new("vg-kill").await;
    let p = &t.plugin;
    let spec = Spec {
        properties: sleeper(t.image),
        tags: tags(&[("infrakit.group", "k")]),
        ..Spec::default()
    };
    let (a, b) = tokio::join!(p.provision(spec.clone()), p.provision(spec));
    let (a, b) = (a.unwrap(), b.unwrap());
    let listed = p.describe_instances(&Tags::new(), false).await.unwrap();
    assert_eq!(listed.len(), 2);

    kill(&a);
    assert_eq!(t.vagrant_state(&a).await.as_deref(), Some("stopped"));
    // The first describe after the death may answer from the status run the previous describe
    // started; the next one may not.
    let first = p.describe_instances(&Tags::new(), false).await.unwrap();
    assert!(first.iter().any(|d| d.id == b), "{first:?}");
    let listed = p.describe_instances(&Tags::new(), true).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, vec![b.as_str()], "the killed machine is not listed");
    assert_eq!(
        listed[0].properties.as_ref().unwrap().to_value()["State"],
        "running"
    );

    // The dead machine is destroyed in the background; the live one is untouched.
    eventually(
        "the dead machine's directory and container are removed",
        Duration::from_secs(60),
        || async {
            (!p.instance_dir(&a).exists() && inspect(&a, "{{.Id}}").is_none()).then_some(())
        },
    )
    .await;
    assert!(container_running(&b));
    p.destroy(&b, &DestroyContext::default()).await.unwrap();
    assert!(entries(&t.plugin.options().dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_template_replaces_the_built_in_one() {
    let image = common::ready().await;
    let root = tempfile::tempdir().unwrap();
    let name = unique_name("vg-tmpl");
    let template = root.path().join("Vagrantfile.j2");
    std::fs::write(
        &template,
        r#"Vagrant.configure("2") do |config|
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provider "docker" do |d|
    d.name = {{ id | ruby }}
    d.image = {{ image | ruby }}
    d.has_ssh = false
    d.env = { "GREETING" => {{ vars.greeting | ruby }} }
    d.cmd = ["sh", "-c", "echo \"$GREETING\" > /greeting; exec sleep 3600"]
    d.create_args = ["--label", {{ ("infrakit.plugin=" ~ plugin) | ruby }}]
  end
end
"#,
    )
    .unwrap();
    let options = VagrantOptions {
        template: Some(template.clone()),
        vagrant_home: Some(root.path().join("vagrant.d")),
        ..VagrantOptions::new(&name, root.path().join("instances"))
    };
    let _cleanup = Cleanup(format!("infrakit.plugin={name}"));
    let p = VagrantPlugin::open(options.clone()).unwrap();
    let id = p
        .provision(Spec {
            properties: json!({"Image": image, "Vars": {"greeting": "it's \\ \"#{x}\""}}),
            ..Spec::default()
        })
        .await
        .unwrap();
    assert!(id.starts_with(&format!("{name}-")), "{id}");
    let greeting = eventually(
        "the template's command ran",
        Duration::from_secs(10),
        || async { exec(&id, &["cat", "/greeting"]).ok() },
    )
    .await;
    // Neither the template nor Ruby (quotes, backslash, `#{}`) changed the value.
    assert_eq!(greeting.trim(), "it's \\ \"#{x}\"");
    // A template missing a value the properties do not give fails before anything is made.
    let e = p
        .provision(Spec {
            properties: json!({"Image": image}),
            ..Spec::default()
        })
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with("rendering the Vagrantfile"),
        "{e}"
    );
    p.destroy(&id, &DestroyContext::default()).await.unwrap();
    assert!(entries(&options.dir).is_empty());

    // A template using an unknown variable is refused when the plugin opens.
    std::fs::write(&template, "{{ imgae }}").unwrap();
    let e = VagrantPlugin::open(options).unwrap_err().to_string();
    assert!(e.contains("unknown variable imgae"), "{e}");
}

/// Removes the containers with a label when dropped.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let script = format!(
            "ids=$(docker ps -aq --filter label={}); [ -z \"$ids\" ] || docker rm -f -v $ids >/dev/null; true",
            self.0
        );
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .status();
    }
}
