//! The Docker instance plugin on its own, against the real engine.

mod common;

use std::time::Duration;

use bollard::query_parameters::InspectContainerOptions;
use infrakit_instance_docker::{DockerOptions, DockerPlugin, PLUGIN_LABEL};
use infrakit_spi::event::Publisher;
use infrakit_spi::{DestroyContext, Error, Instance, Spec, Tags};
use infrakit_testkit::instance::spec;
use infrakit_testkit::{eventually, tags, unique_name};
use serde_json::{json, Value};

use common::{exec, image, kill, Cleanup};

fn sleeper(image: &str) -> Value {
    json!({"image": image, "command": ["sleep", "3600"]})
}

#[tokio::test]
async fn provision_describe_label_and_destroy() {
    let name = unique_name("plugin-basic");
    let _cleanup = Cleanup::new(format!("{PLUGIN_LABEL}={name}"));
    let state = tempfile::tempdir().unwrap();
    let image = image().await;
    let docker = common::docker().await;
    let plugin = DockerPlugin::connect(DockerOptions {
        stop_timeout: Duration::from_secs(1),
        state_dir: Some(state.path().to_path_buf()),
        ..DockerOptions::named(&name)
    })
    .await
    .unwrap();
    plugin.validate(&sleeper(image)).await.unwrap();

    let group = tags(&[("infrakit.group", "web"), ("tier", "front")]);
    let mut s = spec(
        json!({"image": image, "command": ["sleep", "3600"], "env": {"GREETING": "hi"}, "labels": {"team": "a"}}),
        group.clone(),
    );
    s.init = "echo \"$INFRAKIT_INSTANCE_ID/$INFRAKIT_GROUP/$GREETING\" > /init-ran".into();
    let id = plugin.provision(s).await.unwrap();
    assert!(
        id.starts_with("web-") && id.len() == "web-".len() + 8,
        "{id}"
    );

    // Init ran inside the container, with the instance's environment.
    let (code, out) = exec(&docker, &id, &["cat", "/init-ran"]).await;
    assert_eq!((code, out.trim()), (0, format!("{id}/web/hi").as_str()));

    let all = plugin
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let d = &all[0];
    assert_eq!(d.id, id);
    assert_eq!(d.logical_id, None, "cattle have no logical ID");
    assert_eq!(&d.tags["infrakit.group"], "web");
    assert_eq!(&d.tags["tier"], "front");
    assert_eq!(&d.tags["team"], "a");
    assert_eq!(d.tags[PLUGIN_LABEL], name);
    assert!(d.properties.is_none());

    let with_props = plugin.describe_instances(&group, true).await.unwrap();
    let p = with_props[0].properties.clone().unwrap().to_value();
    assert_eq!(p["State"], "running");
    assert_eq!(p["Health"], "none");
    assert_eq!(p["Image"], image);
    assert_eq!(p["Name"], id.as_str());
    let ip: std::net::Ipv4Addr = p["IP"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .unwrap_or_else(|| panic!("an IPv4 address: {p}"));
    assert!(!ip.is_unspecified(), "{p}");
    assert!(
        p["StartedAt"].as_str().is_some_and(|t| t.starts_with("20")),
        "{p}"
    );

    // Filters are ANDed; a tag nobody has matches nothing.
    let none = plugin
        .describe_instances(&tags(&[("tier", "back")]), false)
        .await
        .unwrap();
    assert!(none.is_empty());

    // Label merges, is reported, and can be filtered on; it survives a restart of the plugin.
    plugin
        .label(&id, &tags(&[("tier", "back"), ("owner", "me")]))
        .await
        .unwrap();
    let d = plugin
        .describe_instances(&tags(&[("tier", "back")]), false)
        .await
        .unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(&d[0].tags["owner"], "me");
    assert_eq!(&d[0].tags["infrakit.group"], "web");
    drop(plugin);
    let plugin = DockerPlugin::connect(DockerOptions {
        stop_timeout: Duration::from_secs(1),
        state_dir: Some(state.path().to_path_buf()),
        ..DockerOptions::named(&name)
    })
    .await
    .unwrap();
    let d = plugin
        .describe_instances(&tags(&[("owner", "me")]), false)
        .await
        .unwrap();
    assert_eq!(d.len(), 1, "labels are kept in the state directory");
    assert!(matches!(
        plugin
            .label("no-such-container", &tags(&[("a", "b")]))
            .await,
        Err(Error::NotFound { .. })
    ));
    assert!(plugin
        .label(&id, &tags(&[(PLUGIN_LABEL, "someone-else")]))
        .await
        .is_err());

    // Another plugin on the same engine does not see (nor destroy) these containers.
    let other = common::plugin(&unique_name("plugin-other")).await;
    assert!(other
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap()
        .is_empty());
    other
        .destroy(&id, &DestroyContext::default())
        .await
        .unwrap();
    assert_eq!(
        plugin
            .describe_instances(&Tags::new(), false)
            .await
            .unwrap()
            .len(),
        1
    );

    plugin
        .destroy(&id, &DestroyContext::reason("terminate"))
        .await
        .unwrap();
    assert!(plugin
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap()
        .is_empty());
    let gone = docker
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await;
    assert!(gone.is_err(), "the container is removed");
    // Destroying what is gone succeeds.
    plugin
        .destroy(&id, &DestroyContext::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let name = unique_name("plugin-validate");
    let plugin = common::plugin(&name).await;
    let image = image().await;
    let err = |v: Value| {
        let plugin = plugin.clone();
        async move { plugin.validate(&v).await.unwrap_err().to_string() }
    };
    assert!(err(json!({"command": ["true"]}))
        .await
        .starts_with("Properties.image: missing"));
    assert!(err(json!({"image": image, "comand": ["true"]}))
        .await
        .starts_with("Properties.comand: unknown field"));
    assert!(err(json!({"Config": {"Cmd": ["true"]}}))
        .await
        .starts_with("Properties.Config.Image: missing"));
    assert!(err(json!({"Config": {"Image": image, "Cmdd": ["true"]}}))
        .await
        .starts_with("Properties.Config.Cmdd: unknown field"));
    assert!(err(json!({"image": image, "Config": {"Image": image}}))
        .await
        .starts_with("Properties: mixes"));
    assert!(err(json!({"image": image, "ports": ["http"]}))
        .await
        .starts_with("Properties.ports[0]"));
    assert_eq!(
        err(json!({"image": "infrakit-test/not-built:never"})).await,
        "Properties.image: image 'infrakit-test/not-built:never' is not present locally; \
         build or load it first (no registry is used)"
    );
    assert!(err(json!({"Config": {"Image": "infrakit-test/not-built:never"}}))
        .await
        .starts_with("Properties.Config.Image: image 'infrakit-test/not-built:never' is not present locally"));
    plugin
        .validate(&json!({"Config": {"Image": image, "Cmd": ["true"]}, "HostConfig": {"Memory": 67108864}}))
        .await
        .unwrap();

    // Provision rejects the same way, and leaves nothing behind.
    let e = plugin
        .provision(spec(
            json!({"image": "infrakit-test/not-built:never"}),
            Tags::new(),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Invalid { ref path, .. } if path == "Properties.image"),
        "{e}"
    );
    let docker = common::docker().await;
    assert!(
        common::containers(&docker, &format!("{PLUGIN_LABEL}={name}"), true)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn an_unreachable_engine_is_reported_with_its_endpoint() {
    let e = DockerPlugin::connect(DockerOptions {
        host: Some("unix:///nonexistent/docker.sock".into()),
        ..DockerOptions::named("plugin-nowhere")
    })
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("unix:///nonexistent/docker.sock"), "{msg}");
    assert!(msg.contains("start dockerd"), "{msg}");
}

#[tokio::test]
async fn a_failing_init_removes_the_container_and_quotes_its_output() {
    let name = unique_name("plugin-init");
    let label = format!("{PLUGIN_LABEL}={name}");
    let _cleanup = Cleanup::new(&label);
    let plugin = common::plugin(&name).await;
    let mut s = spec(
        sleeper(image().await),
        tags(&[("infrakit.group", "initfail")]),
    );
    s.init = "echo to-stdout; echo to-stderr >&2; exit 3".into();
    let e = plugin.provision(s).await.unwrap_err().to_string();
    assert!(e.contains("Init failed"), "{e}");
    assert!(e.contains("exit code 3"), "{e}");
    assert!(
        e.contains("to-stdout") && e.contains("to-stderr"),
        "the error quotes the output: {e}"
    );
    let docker = common::docker().await;
    assert!(
        common::containers(&docker, &label, true).await.is_empty(),
        "the container is removed"
    );
    assert!(plugin
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn pets_keep_their_names_and_their_volumes() {
    let name = unique_name("plugin-pets");
    let volume = unique_name("vol");
    let mut cleanup = Cleanup::new(format!("{PLUGIN_LABEL}={name}"));
    cleanup.volumes.push(volume.clone());
    let plugin = common::plugin(&name).await;
    let docker = common::docker().await;
    let group = unique_name("db");
    let script = format!(
        "echo \"$HOSTNAME $INFRAKIT_LOGICAL_ID\" >> \"$INFRAKIT_VOLUME_{}/history\"; exec sleep 3600",
        infrakit_instance_docker::volume_env_name(&volume).trim_start_matches("INFRAKIT_VOLUME_")
    );
    let image = image().await;
    let pet = || Spec {
        properties: json!({"image": image, "command": ["sh", "-c", script]}),
        tags: tags(&[("infrakit.group", &group)]),
        logical_id: Some("db1".into()),
        attachments: vec![infrakit_spi::Attachment {
            id: volume.clone(),
            kind: "volume".into(),
        }],
        ..Spec::default()
    };
    let history_path = format!("/data/{volume}/history");
    let history = |id: String| {
        let docker = docker.clone();
        let path = history_path.clone();
        async move {
            let (code, out) = exec(&docker, &id, &["cat", &path]).await;
            (code == 0).then(|| out.lines().map(str::to_string).collect::<Vec<_>>())
        }
    };

    let first = plugin.provision(pet()).await.unwrap();
    assert_eq!(
        first,
        format!("{group}-db1"),
        "a pet is named after its logical ID"
    );
    let d = plugin
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap();
    assert_eq!(d[0].logical_id.as_deref(), Some("db1"));
    let lines = eventually(
        "the pet wrote to its volume",
        Duration::from_secs(10),
        || {
            let h = history(first.clone());
            async move { h.await.filter(|l| l.len() == 1) }
        },
    )
    .await;
    assert!(lines[0].ends_with(" db1"), "{lines:?}");

    // Destroyed and provisioned again: same name, same volume, the old data is there.
    plugin
        .destroy(&first, &DestroyContext::default())
        .await
        .unwrap();
    let second = plugin.provision(pet()).await.unwrap();
    assert_eq!(second, first);
    let lines = eventually("the new pet appended", Duration::from_secs(10), || {
        let h = history(second.clone());
        async move { h.await.filter(|l| l.len() == 2) }
    })
    .await;
    assert_ne!(lines[0], lines[1], "two different containers wrote");

    // Killed (not destroyed): the dead container holding the name is replaced.
    kill(&docker, &second).await;
    eventually(
        "the killed pet is no longer listed",
        Duration::from_secs(10),
        || async {
            plugin
                .describe_instances(&Tags::new(), false)
                .await
                .unwrap()
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let third = plugin.provision(pet()).await.unwrap();
    assert_eq!(third, first);
    eventually("the third pet appended", Duration::from_secs(10), || {
        let h = history(third.clone());
        async move { h.await.filter(|l| l.len() == 3) }
    })
    .await;

    // While the name is held by a live container (a surge), the new pet gets a suffix.
    let fourth = plugin.provision(pet()).await.unwrap();
    assert!(fourth.starts_with(&format!("{first}-")), "{fourth}");
    let d = plugin
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap();
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|i| i.logical_id.as_deref() == Some("db1")));

    for i in d {
        plugin
            .destroy(&i.id, &DestroyContext::default())
            .await
            .unwrap();
    }
    // The volume is never removed by the plugin.
    docker.inspect_volume(&volume).await.unwrap();
}

#[tokio::test]
async fn a_killed_container_is_reported_at_once() {
    let name = unique_name("plugin-events");
    let _cleanup = Cleanup::new(format!("{PLUGIN_LABEL}={name}"));
    let plugin = common::plugin(&name).await;
    let docker = common::docker().await;
    let mut events = plugin.subscribe();
    let group = tags(&[("infrakit.group", "evt")]);
    let id = plugin
        .provision(spec(sleeper(image().await), group.clone()))
        .await
        .unwrap();
    kill(&docker, &id).await;
    // The engine's event stream is the only way the plugin learns of the death: an `exited`
    // event at all is the point (the bound is generous, for a loaded machine).
    let event = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let e = events.recv().await.unwrap();
            if e.kind == "exited" && e.id == id {
                return e;
            }
        }
    })
    .await
    .expect("an exited event within 30s");
    assert_eq!(event.topic, "/instance/exited");
    assert_eq!(event.data["Tags"]["infrakit.group"], "evt");
    assert_eq!(event.data["Tags"][PLUGIN_LABEL], name.as_str());
    assert!(event.data["Tags"].get("exitCode").is_none());
    assert_eq!(
        event.message,
        format!("container {id} exited with code 137")
    );
    // A subscriber re-listing right away no longer sees it.
    assert!(plugin
        .describe_instances(&group, true)
        .await
        .unwrap()
        .is_empty());

    // Destroy publishes `destroyed`, but no `exited` for the container it stops itself.
    let id2 = plugin
        .provision(spec(sleeper(image().await), group.clone()))
        .await
        .unwrap();
    plugin
        .destroy(&id2, &DestroyContext::default())
        .await
        .unwrap();
    let kinds = tokio::time::timeout(Duration::from_secs(30), async {
        let mut kinds = Vec::new();
        loop {
            let e = events.recv().await.unwrap();
            // Its start is announced too; what matters is how its end is.
            if e.id == id2 && e.kind != "started" {
                kinds.push(e.kind.clone());
                if e.kind == "destroyed" {
                    return kinds;
                }
            }
        }
    })
    .await
    .expect("a destroyed event within 30s");
    assert_eq!(kinds, vec!["destroyed".to_string()]);
}

#[tokio::test]
async fn the_original_form_and_networks() {
    let name = unique_name("plugin-original");
    let network = unique_name("net");
    let _cleanup = Cleanup::new(format!("{PLUGIN_LABEL}={name}"));
    let plugin = common::plugin(&name).await;
    let docker = common::docker().await;
    let image = image().await;
    let id = plugin
        .provision(spec(
            json!({
                "Config": {"Image": image, "Cmd": ["sleep", "3600"], "Env": ["MODE=original"], "Labels": {"form": "original"}},
                "HostConfig": {"Memory": 67108864},
                "NetworkAttachments": [{"Name": network, "Driver": "bridge"}],
                "Tags": {"extra": "yes"}
            }),
            tags(&[("infrakit.group", "orig")]),
        ))
        .await
        .unwrap();
    let c = docker
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let labels = c.config.as_ref().unwrap().labels.clone().unwrap();
    assert_eq!(labels["form"], "original");
    assert_eq!(labels["extra"], "yes");
    assert_eq!(c.host_config.as_ref().unwrap().memory, Some(67108864));
    let env = c.config.unwrap().env.unwrap();
    assert!(env.contains(&"MODE=original".to_string()));
    assert!(env.contains(&format!("INFRAKIT_INSTANCE_ID={id}")));
    let networks = c.network_settings.unwrap().networks.unwrap();
    assert!(networks.contains_key(&network), "{networks:?}");
    plugin
        .destroy(&id, &DestroyContext::default())
        .await
        .unwrap();
    docker.remove_network(&network).await.unwrap();
}
