//! Behaviour of the vanilla flavor through the `Flavor` trait: prepare, validate, and health
//! probes against real processes, sockets and HTTP servers.

use std::convert::Infallible;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use infrakit_flavor_vanilla::{
    HealthProbe, ProbeCheck, ProbeError, VanillaFlavor, VanillaProperties,
};
use infrakit_spi::Health::{Healthy, Unhealthy, Unknown};
use infrakit_spi::{Allocation, Attachment, Description, Error, Flavor, Health, Index, Spec};
use infrakit_testkit::{is_running, until};
use serde_json::{json, Value};
use tokio::net::TcpListener;

fn instance(id: &str, tags: Value, properties: Option<Value>) -> Description {
    serde_json::from_value(json!({"ID": id, "Tags": tags, "Properties": properties})).unwrap()
}

async fn healthy(flavor: &VanillaFlavor, props: Value, inst: &Description) -> Health {
    flavor.healthy(&props, inst).await.unwrap()
}

/// An instance with no tags and no properties.
fn bare(id: &str) -> Description {
    instance(id, json!({}), None)
}

/// Judges each case, in order, with `flavor`: `(case, properties, instance, expected health)`.
/// A failure names the case.
async fn judged(flavor: &VanillaFlavor, cases: Vec<(&str, Value, Description, Health)>) {
    for (case, props, inst, want) in cases {
        assert_eq!(healthy(flavor, props, &inst).await, want, "{case}");
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Prepare

#[tokio::test]
async fn prepare_matches_the_infrakit_vector() {
    let flavor = VanillaFlavor::new();
    let spec = Spec {
        properties: json!({"Note": "v1"}),
        init: String::new(),
        ..Spec::default()
    };
    let out = flavor
        .prepare(
            &json!({"Init": ["echo hello"]}),
            spec.clone(),
            &Allocation::size(2),
            &Index::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.init, "echo hello");
    assert_eq!(out.properties, spec.properties);
    assert_eq!(out.logical_id, None);
    assert!(out.tags.is_empty() && out.attachments.is_empty());
}

fn pet_spec(logical_id: &str) -> Spec {
    serde_json::from_value(json!({
        "Properties": {"Cmd": "sleep"},
        "Tags": {"infrakit.group": "db"},
        "LogicalID": logical_id
    }))
    .unwrap()
}

#[tokio::test]
async fn prepare_renders_attachment_ids_and_tag_values() {
    let flavor = VanillaFlavor::new();
    let props = json!({
        "Init": ["echo {{ LogicalID }}"],
        "Tags": {"role": "member-{{ Index }}", "where": "{{ Group }}/{{ LogicalID }}", "plain": "{x}"},
        "Attachments": [
            {"ID": "data-{{ LogicalID }}", "Type": "volume"},
            {"ID": "shared", "Type": "volume"}
        ]
    });
    let pets = Allocation {
        size: 0,
        logical_ids: Some(vec!["db1".into(), "db2".into()]),
    };
    flavor.validate(&props, &pets).await.unwrap();
    let index = Index {
        group: "db".into(),
        sequence: 7,
    };
    let out = flavor
        .prepare(&props, pet_spec("db2"), &pets, &index)
        .await
        .unwrap();
    let attachment = |id: &str| Attachment {
        id: id.into(),
        kind: "volume".into(),
    };
    assert_eq!(
        out.attachments,
        [attachment("data-db2"), attachment("shared")]
    );
    assert_eq!(&out.tags["role"], "member-7");
    assert_eq!(&out.tags["where"], "db/db2");
    assert_eq!(&out.tags["plain"], "{x}");
    assert_eq!(&out.tags["infrakit.group"], "db");
    assert_eq!(
        out.init, "echo {{ LogicalID }}",
        "init lines are not templates"
    );
    assert_eq!(out.logical_id.as_deref(), Some("db2"));

    let other = flavor
        .prepare(&props, pet_spec("db1"), &pets, &index)
        .await
        .unwrap();
    assert_eq!(
        other.attachments[0].id, "data-db1",
        "each pet its own volume"
    );

    // Cattle have no logical ID: it renders empty.
    let cattle = flavor
        .prepare(
            &props,
            Spec::default(),
            &Allocation::size(2),
            &Index::default(),
        )
        .await
        .unwrap();
    assert_eq!(cattle.attachments[0].id, "data-");
    assert_eq!(&cattle.tags["role"], "member-0");
    assert_eq!(&cattle.tags["where"], "/");
}

#[tokio::test]
async fn prepare_reports_templates_that_cannot_render_at_their_field() {
    let flavor = VanillaFlavor::new();
    let prepare_err = |props: Value| {
        let flavor = &flavor;
        async move {
            match flavor
                .prepare(
                    &props,
                    pet_spec("db1"),
                    &Allocation::size(1),
                    &Index::default(),
                )
                .await
                .unwrap_err()
            {
                Error::Invalid { path, message } => (path, message),
                other => panic!("expected an Invalid error, got {other:?}"),
            }
        }
    };
    // Well-formed and naming known values, but undefined once rendered.
    let (path, message) =
        prepare_err(json!({"Attachments": [{"ID": "a"}, {"ID": "{{ LogicalID.nope }}"}]})).await;
    assert_eq!(path, "Properties.Attachments[1].ID");
    assert!(message.contains("undefined"), "{message}");
    let (path, _) = prepare_err(json!({"Tags": {"role": "{{ Group.nope }}"}})).await;
    assert_eq!(path, "Properties.Tags.role");
    // Unknown names and bad syntax are caught when the properties are parsed.
    let (path, message) = prepare_err(json!({"Tags": {"role": "{{ Tags.x }}"}})).await;
    assert_eq!(path, "Properties.Tags.role");
    assert!(message.contains("unknown placeholder Tags"), "{message}");
    let (path, _) = prepare_err(json!({"Attachments": [{"ID": "data-{{ LogicalID"}]})).await;
    assert_eq!(path, "Properties.Attachments[0].ID");
}

#[tokio::test]
async fn prepare_appends_init_merges_tags_and_appends_attachments() {
    let flavor = VanillaFlavor::new();
    let spec: Spec = serde_json::from_value(json!({
        "Properties": {"cmd": "run"},
        "Tags": {"infrakit.group": "web", "tier": "old", "keep": "me"},
        "Init": "first",
        "LogicalID": "db1",
        "Attachments": [{"ID": "a0", "Type": "volume"}]
    }))
    .unwrap();
    let props = json!({
        "Init": ["second", "third"],
        "Tags": {"tier": "web", "new": "x"},
        "Attachments": [{"ID": "a1", "Type": "ebs"}, {"ID": "a2"}]
    });
    let out = flavor
        .prepare(
            &props,
            spec.clone(),
            &Allocation::size(1),
            &Index::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.init, "first\nsecond\nthird");
    let tags: Vec<(&str, &str)> = out.tags.iter().collect();
    assert_eq!(
        tags,
        [
            ("infrakit.group", "web"),
            ("keep", "me"),
            ("new", "x"),
            ("tier", "web")
        ]
    );
    let attachment = |id: &str, kind: &str| Attachment {
        id: id.into(),
        kind: kind.into(),
    };
    assert_eq!(
        out.attachments,
        [
            attachment("a0", "volume"),
            attachment("a1", "ebs"),
            attachment("a2", "")
        ]
    );
    assert_eq!(out.properties, spec.properties);
    assert_eq!(out.logical_id.as_deref(), Some("db1"));
}

#[tokio::test]
async fn prepare_with_no_properties_changes_nothing() {
    let flavor = VanillaFlavor::new();
    let spec: Spec = serde_json::from_value(json!({"Init": "boot", "Tags": {"a": "b"}})).unwrap();
    for props in [Value::Null, json!({}), json!({"Init": null, "Tags": null})] {
        let out = flavor
            .prepare(
                &props,
                spec.clone(),
                &Allocation::size(1),
                &Index::default(),
            )
            .await
            .unwrap();
        assert_eq!(out, spec, "{props}");
    }
    let out = flavor
        .prepare(
            &json!({"Init": "single"}),
            spec.clone(),
            &Allocation::size(1),
            &Index::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.init, "boot\nsingle");
}

#[tokio::test]
async fn prepare_rejects_bad_properties() {
    let err = VanillaFlavor::new()
        .prepare(
            &json!({"Tags": ["x"]}),
            Spec::default(),
            &Allocation::size(1),
            &Index::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { ref path, .. } if path == "Properties.Tags"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Validate

async fn invalid_path(props: Value) -> String {
    match VanillaFlavor::new()
        .validate(&props, &Allocation::size(3))
        .await
        .unwrap_err()
    {
        Error::Invalid { path, .. } => path,
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[tokio::test]
async fn validate_accepts_good_properties_for_any_allocation() {
    let flavor = VanillaFlavor::new();
    let good = [
        Value::Null,
        json!({}),
        json!({"Init": "x", "Tags": {"a": "b"}, "Attachments": null}),
        json!({"Health": {"Exec": ["sh", "-c", "test {{ ID }}"], "Interval": "500ms"}}),
        json!({"Health": {"TCP": "127.0.0.1:{{ Tags.port }}", "Timeout": "2s"}}),
        json!({"Health": {"HTTP": {"URL": "http://{{ Properties.Host }}/", "Status": 204}}}),
    ];
    let pets = Allocation {
        size: 0,
        logical_ids: Some(vec!["a".into()]),
    };
    for props in good {
        flavor.validate(&props, &Allocation::size(0)).await.unwrap();
        flavor.validate(&props, &pets).await.unwrap();
    }
}

/// One test per case, named after it: validating the properties fails at the field.
macro_rules! invalid_at {
    ($($case:ident: $props:tt => $path:literal;)*) => {
        mod validate_errors_carry_field_paths {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    assert_eq!(invalid_path(json!($props)).await, $path);
                }
            )*
        }
    };
}

invalid_at! {
    init_a_number: {"Init": 5} => "Properties.Init";
    an_unknown_field: {"Color": "red"} => "Properties.Color";
    an_attachment_id_a_number: {"Attachments": [{"ID": "a"}, {"ID": 3}]}
        => "Properties.Attachments[1].ID";
    two_probes: {"Health": {"TCP": "a:1", "HTTP": {"URL": "http://x"}}} => "Properties.Health";
    tcp_a_number: {"Health": {"TCP": 8080}} => "Properties.Health.TCP";
    tcp_an_unclosed_template: {"Health": {"TCP": "127.0.0.1:{{ Tags.port"}}
        => "Properties.Health.TCP";
    exec_empty: {"Health": {"Exec": []}} => "Properties.Health.Exec";
    http_not_http: {"Health": {"HTTP": {"URL": "ftp://x/"}}} => "Properties.Health.HTTP.URL";
    interval_not_a_duration: {"Health": {"Exec": ["true"], "Interval": "1 fortnight"}}
        => "Properties.Health.Interval";
    timeout_not_a_duration: {"Health": {"Exec": ["true"], "Timeout": "fast"}}
        => "Properties.Health.Timeout";
    retries_unknown: {"Health": {"Exec": ["true"], "Retries": 3}}
        => "Properties.Health.Retries";
    attachment_template_half_closed: {"Attachments": [{"ID": "data-{{ LogicalID }"}]}
        => "Properties.Attachments[0].ID";
    attachment_template_naming_the_id: {"Attachments": [{"ID": "data-{{ ID }}"}]}
        => "Properties.Attachments[0].ID";
    tag_template_bad_syntax: {"Tags": {"a": "ok", "role": "{% for %}"}} => "Properties.Tags.role";
}

#[test]
fn parse_types_are_reusable() {
    let p = VanillaProperties::parse(&json!({
        "Health": {"Exec": ["true"], "Interval": "2s"}
    }))
    .unwrap();
    assert_eq!(
        p.health,
        Some(HealthProbe {
            check: ProbeCheck::Exec(vec!["true".into()]),
            interval: Duration::from_secs(2),
            timeout: HealthProbe::DEFAULT_TIMEOUT,
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Healthy: provider state and no probe

#[tokio::test]
async fn dead_states_are_unhealthy_and_skip_the_probe() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("probe.log");
    let probe = json!({"Health": {"Exec": ["sh", "-c", format!("echo run >> {}", log.display())]}});
    let flavor = VanillaFlavor::new();
    for state in ["exited", "dead", "stopped", "terminated", "Exited"] {
        let inst = instance("i-1", json!({}), Some(json!({"State": state})));
        assert_eq!(
            healthy(&flavor, Value::Null, &inst).await,
            Health::Unhealthy,
            "{state}"
        );
        assert_eq!(
            healthy(&flavor, probe.clone(), &inst).await,
            Health::Unhealthy,
            "{state}"
        );
    }
    assert_eq!(lines(&log), 0, "no probe runs for a dead instance");

    let running = instance("i-1", json!({}), Some(json!({"State": "running"})));
    assert_eq!(
        healthy(&flavor, Value::Null, &running).await,
        Health::Healthy
    );
    let no_props = instance("i-2", json!({}), None);
    assert_eq!(
        healthy(&flavor, json!({}), &no_props).await,
        Health::Healthy
    );
}

#[tokio::test]
async fn the_providers_own_health_check_is_honoured() {
    let flavor = VanillaFlavor::new();
    let with = |health: &str| {
        instance(
            "i-1",
            json!({}),
            Some(json!({"State": "running", "Health": health})),
        )
    };
    let probe = json!({"Health": {"Exec": ["true"]}});
    judged(
        &flavor,
        vec![
            ("unhealthy", Value::Null, with("unhealthy"), Unhealthy),
            ("starting", Value::Null, with("starting"), Unknown),
            ("healthy", Value::Null, with("healthy"), Healthy),
            ("none", Value::Null, with("none"), Healthy),
            // An unhealthy container stays unhealthy even if the flavor's own probe passes.
            ("probe passes", probe, with("unhealthy"), Unhealthy),
        ],
    )
    .await;
}

#[tokio::test]
async fn healthy_rejects_bad_properties() {
    let err = VanillaFlavor::new()
        .healthy(&json!({"Health": {}}), &instance("i-1", json!({}), None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { ref path, .. } if path == "Properties.Health"),
        "{err}"
    );
}

#[tokio::test]
async fn drain_is_a_no_op() {
    VanillaFlavor::new()
        .drain(&json!({"Init": ["x"]}), &instance("i-1", json!({}), None))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Exec probes

fn exec(script: &str) -> Value {
    json!({"Health": {"Exec": ["sh", "-c", script]}})
}

#[tokio::test]
async fn exec_probe_exit_status_decides() {
    let missing = json!({"Health": {"Exec": ["/nonexistent/probe"]}});
    // One instance each: results are cached per instance.
    judged(
        &VanillaFlavor::new(),
        vec![
            ("exit 0", exec("exit 0"), bare("i-1"), Healthy),
            ("exit 3", exec("exit 3"), bare("i-2"), Unhealthy),
            ("no such program", missing, bare("i-3"), Unhealthy),
        ],
    )
    .await;
}

#[tokio::test]
async fn exec_probe_sees_instance_environment_and_rendered_args() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let script = format!(
        "printf '%s|%s|%s|%s' \"$INFRAKIT_INSTANCE_ID\" \"$INFRAKIT_LOGICAL_ID\" \
         \"$INFRAKIT_GROUP\" \"$1\" > {}",
        out.display()
    );
    let props = json!({"Health": {"Exec": ["sh", "-c", script, "probe", "{{ Tags.port }}-{{ Properties.State }}"]}});
    let pet = instance(
        "i-7",
        json!({"infrakit.group": "db", "infrakit.logical_id": "db1", "port": "5432"}),
        Some(json!({"State": "running"})),
    );
    let flavor = VanillaFlavor::new();
    assert_eq!(healthy(&flavor, props.clone(), &pet).await, Health::Healthy);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "i-7|db1|db|5432-running"
    );

    let cattle = instance("i-8", json!({"port": "1"}), Some(json!({"State": "up"})));
    assert_eq!(healthy(&flavor, props, &cattle).await, Health::Healthy);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "i-8|||1-up");
}

#[tokio::test]
async fn exec_probe_with_unrenderable_args_is_unhealthy_without_running() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let props = json!({"Health": {"Exec": ["sh", "-c", format!("echo ran >> {}", log.display()), "{{ Tags.missing }}"]}});
    let inst = instance("i-1", json!({}), None);
    assert_eq!(
        healthy(&VanillaFlavor::new(), props, &inst).await,
        Health::Unhealthy
    );
    assert_eq!(lines(&log), 0);
}

#[tokio::test]
async fn exec_probe_timeout_is_unhealthy_and_kills_the_probe() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    // The shell forks `sleep` into the background and waits, so killing only the shell would
    // leave the sleep running.
    let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
    let props = json!({"Health": {"Exec": ["sh", "-c", script], "Timeout": "300ms"}});
    let inst = instance("i-1", json!({}), None);

    let started = Instant::now();
    assert_eq!(
        healthy(&VanillaFlavor::new(), props, &inst).await,
        Health::Unhealthy
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGKILL has been sent to the whole group; wait (bounded) for the kernel to finish it off.
    until(
        &format!("the probe's child {pid} ends with the probe"),
        Duration::from_secs(5),
        || async { !is_running(pid) },
    )
    .await;
}

#[tokio::test]
async fn probe_check_reports_why() {
    let probe = HealthProbe::new(ProbeCheck::Exec(vec![
        "sh".into(),
        "-c".into(),
        "exit 4".into(),
    ]));
    let err = probe
        .check(&instance("i-1", json!({}), None))
        .await
        .unwrap_err();
    match &err {
        ProbeError::Failed { command, status } => {
            assert_eq!(command, "sh");
            assert_eq!(status, "exit status: 4");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(err.to_string(), "'sh' exit status: 4");
}

// ---------------------------------------------------------------------------------------------
// Interval cache and concurrency

#[tokio::test]
async fn results_are_cached_for_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs");
    let props = json!({"Health": {
        "Exec": ["sh", "-c", format!("echo run >> {}", log.display())],
        "Interval": "10s"
    }});
    let flavor = VanillaFlavor::new();
    let a = instance("i-a", json!({}), None);
    assert_eq!(healthy(&flavor, props.clone(), &a).await, Health::Healthy);
    assert_eq!(healthy(&flavor, props.clone(), &a).await, Health::Healthy);
    assert_eq!(
        lines(&log),
        1,
        "second call within the interval must not probe"
    );

    // Another instance has its own entry.
    let b = instance("i-b", json!({}), None);
    assert_eq!(healthy(&flavor, props.clone(), &b).await, Health::Healthy);
    assert_eq!(lines(&log), 2);

    // Once the interval has passed, the next call probes again.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(11)).await;
    tokio::time::resume();
    assert_eq!(healthy(&flavor, props.clone(), &a).await, Health::Healthy);
    assert_eq!(lines(&log), 3);
    assert_eq!(healthy(&flavor, props.clone(), &a).await, Health::Healthy);
    assert_eq!(lines(&log), 3);
}

#[tokio::test]
async fn unhealthy_results_are_cached_too_and_a_changed_probe_runs_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs");
    let failing = json!({"Health": {
        "Exec": ["sh", "-c", format!("echo run >> {}; exit 1", log.display())],
        "Interval": "1h"
    }});
    let flavor = VanillaFlavor::new();
    let inst = instance("i-1", json!({}), None);
    assert_eq!(
        healthy(&flavor, failing.clone(), &inst).await,
        Health::Unhealthy
    );
    assert_eq!(healthy(&flavor, failing, &inst).await, Health::Unhealthy);
    assert_eq!(lines(&log), 1);

    let fixed = json!({"Health": {"Exec": ["true"], "Interval": "1h"}});
    assert_eq!(healthy(&flavor, fixed, &inst).await, Health::Healthy);
}

#[tokio::test]
async fn zero_interval_probes_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs");
    let props = json!({"Health": {
        "Exec": ["sh", "-c", format!("echo run >> {}", log.display())],
        "Interval": "0s"
    }});
    let flavor = VanillaFlavor::new();
    let inst = instance("i-1", json!({}), None);
    for _ in 0..3 {
        assert_eq!(
            healthy(&flavor, props.clone(), &inst).await,
            Health::Healthy
        );
    }
    assert_eq!(lines(&log), 3);
}

#[tokio::test]
async fn concurrent_calls_for_one_instance_share_one_probe() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs");
    let props = json!({"Health": {
        "Exec": ["sh", "-c", format!("echo run >> {}", log.display())],
        "Interval": "1h"
    }});
    let flavor = VanillaFlavor::new();
    let inst = instance("i-1", json!({}), None);
    let (a, b, c) = tokio::join!(
        flavor.healthy(&props, &inst),
        flavor.healthy(&props, &inst),
        flavor.healthy(&props, &inst),
    );
    assert_eq!([a.unwrap(), b.unwrap(), c.unwrap()], [Health::Healthy; 3]);
    assert_eq!(lines(&log), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_of_different_instances_run_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    // Each instance's probe marks itself and then waits for the other's mark: both can pass
    // only if the two probes run at the same time.
    let script = format!(
        "cd {}; touch \"$INFRAKIT_INSTANCE_ID\"; \
         while [ ! -e \"$1\" ]; do sleep 0.01; done",
        dir.path().display()
    );
    let props = json!({"Health": {
        "Exec": ["sh", "-c", script, "probe", "{{ Tags.peer }}"],
        "Timeout": "10s"
    }});
    let flavor = VanillaFlavor::new();
    let a = instance("a", json!({"peer": "b"}), None);
    let b = instance("b", json!({"peer": "a"}), None);
    let (ha, hb) = tokio::join!(flavor.healthy(&props, &a), flavor.healthy(&props, &b));
    assert_eq!(
        (ha.unwrap(), hb.unwrap()),
        (Health::Healthy, Health::Healthy)
    );
}

// ---------------------------------------------------------------------------------------------
// TCP probes

#[tokio::test]
async fn tcp_probe_needs_a_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let props = json!({"Health": {"TCP": "127.0.0.1:{{ Tags.port }}"}});
    let at = |id: &str, port: u16| instance(id, json!({"port": port.to_string()}), None);
    judged(
        &VanillaFlavor::new(),
        vec![
            ("listening", props.clone(), at("up", open), Healthy),
            ("closed", props.clone(), at("down", closed), Unhealthy),
            ("no port tag", props, bare("untagged"), Unhealthy),
        ],
    )
    .await;
    drop(listener);
}

// ---------------------------------------------------------------------------------------------
// HTTP probes

/// Serves `/ok` with 200, `/hang` never, and everything else with 500. Returns the port.
async fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let status = match req.uri().path() {
                        "/ok" => StatusCode::OK,
                        "/hang" => std::future::pending().await,
                        _ => StatusCode::INTERNAL_SERVER_ERROR,
                    };
                    let mut resp = Response::new(Full::new(Bytes::from_static(b"body")));
                    *resp.status_mut() = status;
                    Ok::<_, Infallible>(resp)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

fn http(path: &str, extra: Value) -> Value {
    let mut probe = json!({"HTTP": {"URL": format!("http://127.0.0.1:{{{{ Tags.port }}}}{path}")}});
    if let (Some(p), Some(e)) = (probe.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    json!({"Health": probe})
}

#[tokio::test]
async fn http_probe_checks_the_status() {
    let port = http_server().await;
    let inst = |id: &str| instance(id, json!({"port": port.to_string()}), None);
    let expect_500 = json!({"Health": {"HTTP": {
        "URL": "http://127.0.0.1:{{ Tags.port }}/fail",
        "Status": 500
    }}});
    judged(
        &VanillaFlavor::new(),
        vec![
            ("200", http("/ok", json!({})), inst("a"), Healthy),
            ("500", http("/fail", json!({})), inst("b"), Unhealthy),
            ("500 expected", expect_500, inst("c"), Healthy),
        ],
    )
    .await;
}

#[tokio::test]
async fn http_probe_against_a_closed_port_or_missing_tag_is_unhealthy() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let flavor = VanillaFlavor::new();
    let down = instance("down", json!({"port": closed.to_string()}), None);
    assert_eq!(
        healthy(&flavor, http("/ok", json!({})), &down).await,
        Health::Unhealthy
    );
    let untagged = instance("untagged", json!({}), None);
    assert_eq!(
        healthy(&flavor, http("/ok", json!({})), &untagged).await,
        Health::Unhealthy
    );
}

#[tokio::test]
async fn http_probe_timeout_is_unhealthy() {
    let port = http_server().await;
    let inst = instance("slow", json!({"port": port.to_string()}), None);
    let started = Instant::now();
    let props = http("/hang", json!({"Timeout": "200ms"}));
    assert_eq!(
        healthy(&VanillaFlavor::new(), props, &inst).await,
        Health::Unhealthy
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    let probe = VanillaProperties::parse(&http("/hang", json!({"Timeout": "200ms"})))
        .unwrap()
        .health
        .unwrap();
    assert_eq!(
        probe.check(&inst).await,
        Err(ProbeError::Timeout(Duration::from_millis(200)))
    );
}

// ---------------------------------------------------------------------------------------------
// Watch

/// The next health event within the deadline: (instance, verdict).
async fn next_verdict(
    rx: &mut tokio::sync::broadcast::Receiver<infrakit_spi::Event>,
) -> (String, Health) {
    let e = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a health event within 10 s")
        .expect("the event stream is open");
    assert_eq!(e.topic, "/flavor/health/web/0");
    (e.id.clone(), e.health_verdict().expect("a verdict"))
}

#[tokio::test]
async fn a_watch_publishes_first_verdicts_then_only_changes_and_ends_with_its_lease() {
    use infrakit_spi::Publisher;
    let flavor = VanillaFlavor::new();
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = up.local_addr().unwrap().port();
    let props = json!({"Health": {"TCP": "127.0.0.1:{{ Tags.port }}", "Interval": "50ms"}});
    let a = instance("a", json!({"port": port.to_string()}), None);
    let b = instance("b", json!({"port": "1"}), None);
    let mut rx = flavor.subscribe();

    let lease = Duration::from_millis(600);
    assert!(flavor
        .watch_health(&props, "web/0", &[&a, &b], lease)
        .await
        .unwrap());
    let mut first = vec![next_verdict(&mut rx).await, next_verdict(&mut rx).await];
    first.sort();
    assert_eq!(first, vec![("a".into(), Healthy), ("b".into(), Unhealthy)]);

    // a's port closes: one event, about a alone (b stays unhealthy and says nothing).
    drop(up);
    assert_eq!(next_verdict(&mut rx).await, ("a".into(), Unhealthy));

    // Renewed with b alone: nothing is said of b again, and a is no longer probed.
    let up = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    assert!(flavor
        .watch_health(&props, "web/0", &[&b], lease)
        .await
        .unwrap());
    let quiet = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
    assert!(quiet.is_err(), "no change, no event: {quiet:?}");
    drop(up);

    // Not renewed: the watch ends, and so does its probing.
    until(
        "the watch ends with its lease",
        Duration::from_secs(10),
        || async { flavor.watches() == 0 },
    )
    .await;
}

#[tokio::test]
async fn without_a_probe_there_is_nothing_to_watch() {
    let flavor = VanillaFlavor::new();
    let d = bare("a");
    assert!(!flavor
        .watch_health(&Value::Null, "web/0", &[&d], Duration::from_secs(60))
        .await
        .unwrap());
    assert_eq!(flavor.watches(), 0);
}
