//! The AWS instance plugin on its own, against a real moto server.

mod common;

use std::collections::BTreeSet;

use aws_sdk_ec2::types as ec2;
use infrakit_instance_aws::{AwsOptions, AwsPlugin};
use infrakit_spi::instance::Attachment;
use infrakit_spi::{DestroyContext, Error, Instance, Tags};
use infrakit_testkit::instance::spec;
use infrakit_testkit::tags;
use serde_json::json;

use common::{ami, attached_to, describe_volume, live, sdk_config, tags_of, volume, Moto};

fn ebs(id: &str) -> Attachment {
    Attachment {
        id: id.to_string(),
        kind: "ebs".to_string(),
    }
}

#[tokio::test]
async fn provision_describe_label_and_destroy() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let plugin = moto.plugin();
    let ami = ami(&ec2).await;
    let properties = json!({
        "RunInstancesInput": {"ImageId": ami, "InstanceType": "t2.micro"},
        "Tags": {"tier": "web", "infrakit.group": "overridden"},
    });
    plugin.validate(&properties).await.unwrap();
    let group = tags(&[("infrakit.group", "web"), ("infrakit.config.hash", "abc")]);
    let mut s = spec(properties, group.clone());
    s.init = "#!/bin/sh\necho hello > /tmp/hello".into();
    let id = plugin.provision(s).await.unwrap();
    assert!(id.starts_with("i-"), "{id}");

    // Tagged at launch, user data from Init.
    let members = live(&ec2, "infrakit.group", "web").await;
    assert_eq!(common::ids(&members), BTreeSet::from([id.clone()]));
    let t = tags_of(&members[0]);
    assert_eq!(&t["tier"], "web");
    assert_eq!(&t["infrakit.group"], "web", "the spec's tags win");
    assert_eq!(&t["infrakit.config.hash"], "abc");
    let user_data = ec2
        .describe_instance_attribute()
        .instance_id(&id)
        .attribute(ec2::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap()
        .user_data
        .and_then(|u| u.value)
        .unwrap();
    assert_eq!(
        data_encoding::BASE64.decode(user_data.as_bytes()).unwrap(),
        b"#!/bin/sh\necho hello > /tmp/hello"
    );

    // Describe, with and without properties.
    let all = plugin.describe_instances(&group, false).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, id);
    assert_eq!(all[0].logical_id, None, "cattle have no logical ID");
    assert!(all[0].properties.is_none());
    let with = plugin.describe_instances(&group, true).await.unwrap();
    let p = with[0].properties.as_ref().unwrap().to_value();
    assert_eq!(p["State"], "running");
    assert_eq!(p["InstanceType"], "t2.micro");
    assert_eq!(p["ImageId"], ami.as_str());
    assert!(p["PrivateIpAddress"].as_str().is_some(), "{p}");
    assert!(p["LaunchTime"].as_str().unwrap().ends_with('Z'), "{p}");
    for other in ["other", "w*", "?eb"] {
        assert!(
            plugin
                .describe_instances(&tags(&[("infrakit.group", other)]), false)
                .await
                .unwrap()
                .is_empty(),
            "{other} is not web"
        );
    }

    // Label merges tags; `aws:` keys are refused.
    plugin
        .label(&id, &tags(&[("role", "db"), ("tier", "back")]))
        .await
        .unwrap();
    let labelled = plugin
        .describe_instances(&tags(&[("role", "db")]), false)
        .await
        .unwrap();
    assert_eq!(labelled.len(), 1);
    assert_eq!(&labelled[0].tags["tier"], "back");
    assert_eq!(&labelled[0].tags["infrakit.group"], "web");
    let e = plugin
        .label(&id, &tags(&[("aws:owner", "me")]))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Labels.aws:owner: tag keys starting with"),
        "{e}"
    );

    // Destroy terminates; a second destroy, or one of an unknown instance, succeeds.
    plugin
        .destroy(&id, &DestroyContext::reason("terminate"))
        .await
        .unwrap();
    assert!(plugin
        .describe_instances(&group, false)
        .await
        .unwrap()
        .is_empty());
    let state = ec2
        .describe_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap()
        .reservations()[0]
        .instances()[0]
        .state()
        .unwrap()
        .name()
        .unwrap()
        .clone();
    assert!(matches!(
        state,
        ec2::InstanceStateName::ShuttingDown | ec2::InstanceStateName::Terminated
    ));
    plugin
        .destroy(&id, &DestroyContext::default())
        .await
        .unwrap();
    plugin
        .destroy("i-0123456789abcdef0", &DestroyContext::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn describe_reads_every_page() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let plugin = AwsPlugin::new(
        &moto.sdk(),
        AwsOptions {
            page_size: 5,
            ..common::options()
        },
    );
    let ami = ami(&ec2).await;
    let group = tags(&[("infrakit.group", "many")]);
    let provisions =
        (0..12).map(|_| plugin.provision(spec(json!({"ImageId": ami}), group.clone())));
    let launched: BTreeSet<String> = provision_all(provisions).await;
    assert_eq!(launched.len(), 12);
    for _ in 0..2 {
        plugin
            .provision(spec(
                json!({"ImageId": ami}),
                tags(&[("infrakit.group", "few")]),
            ))
            .await
            .unwrap();
    }
    let listed: BTreeSet<String> = plugin
        .describe_instances(&group, false)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(listed, launched, "all 12 over 3 pages, and only those");
    assert_eq!(
        plugin
            .describe_instances(&Tags::new(), false)
            .await
            .unwrap()
            .len(),
        14
    );
}

/// Runs the provisions one after another and collects the IDs.
async fn provision_all<F>(provisions: impl Iterator<Item = F>) -> BTreeSet<String>
where
    F: std::future::Future<Output = infrakit_spi::Result<String>>,
{
    let mut out = BTreeSet::new();
    for p in provisions {
        out.insert(p.await.unwrap());
    }
    out
}

#[tokio::test]
async fn bad_properties_are_refused_with_their_path_and_launch_nothing() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let plugin = moto.plugin();
    let ami = ami(&ec2).await;
    let cases = [
        (
            json!({"InstanceType": "t2.micro"}),
            "Properties.ImageId: missing",
        ),
        (
            json!({"ImageId": ami, "InstanceTpye": "t2.micro"}),
            "Properties.InstanceTpye: unknown field",
        ),
        (
            json!({"RunInstancesInput": {"ImageId": ami, "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": "big"}}]}}),
            "Properties.RunInstancesInput.BlockDeviceMappings[0].Ebs.VolumeSize: invalid type",
        ),
        (
            json!({"ImageId": ami, "Tags": {"aws:x": "1"}}),
            "Properties.Tags.aws:x: tag keys starting with",
        ),
    ];
    for (properties, expected) in cases {
        let e = plugin.validate(&properties).await.unwrap_err();
        assert!(
            matches!(e, Error::Invalid { .. }) && e.to_string().starts_with(expected),
            "{e}"
        );
        let e = plugin
            .provision(spec(properties, Tags::new()))
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with(expected), "{e}");
    }
    let mut pet = spec(
        json!({"ImageId": ami, "LogicalIdIs": "PrivateIp"}),
        Tags::new(),
    );
    pet.logical_id = Some("db1".into());
    let e = plugin.provision(pet).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("LogicalID: \"db1\" is not an IP address"),
        "{e}"
    );
    let mut volume = spec(json!({"ImageId": ami}), Tags::new());
    volume.attachments = vec![Attachment {
        id: "data".into(),
        kind: "volume".into(),
    }];
    let e = plugin.provision(volume).await.unwrap_err();
    assert!(e.to_string().starts_with("Attachments[0].Type"), "{e}");
    assert!(common::all_instances(&ec2).await.is_empty());
}

#[tokio::test]
async fn ec2_errors_keep_their_code_and_message() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let plugin = moto.plugin();
    let ami = ami(&ec2).await;
    let e = plugin
        .provision(spec(json!({"ImageId": "ami-12345678"}), Tags::new()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("RunInstances: InvalidAMIID.NotFound: "),
        "{e}"
    );
    let e = plugin
        .provision(spec(
            json!({"ImageId": ami, "SubnetId": "subnet-12345678"}),
            Tags::new(),
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("RunInstances: InvalidSubnetID.NotFound: ") && e.contains("subnet-12345678"),
        "{e}"
    );
    assert!(common::all_instances(&ec2).await.is_empty());
}

#[tokio::test]
async fn permission_errors_name_the_code_and_the_missing_permission() {
    // moto checks permissions after the first three calls, which create a user who may only
    // describe.
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "3")]);
    common::iam_call(
        &moto.endpoint,
        &[("Action", "CreateUser"), ("UserName", "reader")],
    );
    let key = common::iam_call(
        &moto.endpoint,
        &[("Action", "CreateAccessKey"), ("UserName", "reader")],
    );
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["ec2:Describe*"], "Resource": "*"}
    ]});
    common::iam_call(
        &moto.endpoint,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", "reader"),
            ("PolicyName", "describe-only"),
            ("PolicyDocument", &policy.to_string()),
        ],
    );
    let sdk = sdk_config(
        &moto.endpoint,
        &common::xml_text(&key, "AccessKeyId"),
        &common::xml_text(&key, "SecretAccessKey"),
    );
    let plugin = AwsPlugin::new(&sdk, common::options());
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let ami = ami(&ec2).await;
    assert!(plugin
        .describe_instances(&Tags::new(), true)
        .await
        .unwrap()
        .is_empty());
    let e = plugin
        .provision(spec(json!({"ImageId": ami}), Tags::new()))
        .await
        .unwrap_err()
        .to_string();
    // Real EC2 says UnauthorizedOperation; moto says AccessDenied. Either way: code, then the
    // service's message.
    assert!(
        e.starts_with("RunInstances: AccessDenied: ") && e.contains("ec2:RunInstances"),
        "{e}"
    );
    let e = plugin
        .destroy("i-0123456789abcdef0", &DestroyContext::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("TerminateInstances: AccessDenied: "), "{e}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_clear_error() {
    let endpoint = format!("http://127.0.0.1:{}", common::free_port());
    let sdk = sdk_config(&endpoint, "testing", "testing")
        .into_builder()
        .retry_config(infrakit_instance_aws::config::retry_config(1))
        .build();
    let plugin = AwsPlugin::new(&sdk, common::options());
    let e = plugin
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("DescribeInstances: cannot reach EC2: "),
        "{e}"
    );
}

#[tokio::test]
async fn volumes_are_found_attached_and_kept() {
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let plugin = moto.plugin();
    let ami = ami(&ec2).await;
    let by_tag = volume(&ec2, "infrakit.volume", "data-db1").await;
    let by_id = volume(&ec2, "purpose", "logs").await;
    let fixed = volume(&ec2, "purpose", "shared").await;

    let mut s = spec(
        json!({"ImageId": ami, "AttachVolumeInputs": [{"Device": "/dev/sdk", "VolumeId": fixed}]}),
        tags(&[("infrakit.group", "db")]),
    );
    s.logical_id = Some("db1".into());
    s.attachments = vec![ebs("data-db1"), ebs(&by_id)];
    let id = plugin.provision(s.clone()).await.unwrap();
    for (v, device) in [
        (&by_tag, "/dev/sdf"),
        (&by_id, "/dev/sdg"),
        (&fixed, "/dev/sdk"),
    ] {
        let vol = describe_volume(&ec2, v).await;
        let a = &vol.attachments()[0];
        assert_eq!(a.instance_id(), Some(id.as_str()), "{v}");
        assert_eq!(a.device(), Some(device), "{v}");
    }
    let d = &plugin
        .describe_instances(&tags(&[("infrakit.group", "db")]), true)
        .await
        .unwrap()[0];
    assert_eq!(d.logical_id.as_deref(), Some("db1"));
    let props = d.properties.as_ref().unwrap().to_value();
    let attached: Vec<&str> = props["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["VolumeId"].as_str())
        .collect();
    assert!(attached.contains(&by_tag.as_str()), "{attached:?}");

    // While it runs, another instance cannot have its volumes: refused before launching.
    let e = plugin.provision(s.clone()).await.unwrap_err().to_string();
    assert!(
        e.contains(&format!("is attached to {id}, which is running")),
        "{e}"
    );
    // A volume that does not exist: refused before launching.
    let mut missing = s.clone();
    missing.attachments = vec![ebs("data-db9")];
    missing.properties = json!({"ImageId": ami});
    let e = plugin.provision(missing).await.unwrap_err().to_string();
    assert!(
        e.starts_with("Attachments[0] (infrakit.volume=data-db9): no such EBS volume"),
        "{e}"
    );
    assert_eq!(common::all_instances(&ec2).await.len(), 1);

    // Destroy keeps the volumes; the next instance gets them.
    plugin
        .destroy(&id, &DestroyContext::reason("terminate"))
        .await
        .unwrap();
    let next = plugin.provision(s).await.unwrap();
    assert_ne!(next, id);
    for v in [&by_tag, &by_id, &fixed] {
        assert_eq!(attached_to(&ec2, v).await.as_deref(), Some(next.as_str()));
    }
    plugin
        .destroy(&next, &DestroyContext::default())
        .await
        .unwrap();
    for v in [&by_tag, &by_id, &fixed] {
        let vol = describe_volume(&ec2, v).await;
        assert_eq!(vol.state(), Some(&ec2::VolumeState::Available), "{v}");
    }
}

/// A stand-in for an EC2 endpoint that throttles: answers the first `throttled` requests with
/// `RequestLimitExceeded` (HTTP 503) and the others with an empty `DescribeInstances` result.
/// Returns its endpoint and a counter of the requests it answered.
fn throttling_endpoint(
    throttled: usize,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let (status, xml) = if n < throttled {
                (
                    "503 Service Unavailable",
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error>\
                     <Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>\
                     </Error></Errors><RequestID>r</RequestID></Response>",
                )
            } else {
                (
                    "200 OK",
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeInstancesResponse \
                     xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId>\
                     <reservationSet/></DescribeInstancesResponse>",
                )
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{xml}",
                xml.len()
            );
        }
    });
    (endpoint, seen)
}

#[tokio::test]
async fn throttled_requests_are_retried_then_reported() {
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    let retries = infrakit_instance_aws::config::retry_config(
        infrakit_instance_aws::config::DEFAULT_MAX_ATTEMPTS,
    )
    .with_initial_backoff(Duration::from_millis(10));

    // Throttled twice, then answered: the caller sees the answer.
    let (endpoint, seen) = throttling_endpoint(2);
    let sdk = sdk_config(&endpoint, "testing", "testing")
        .into_builder()
        .retry_config(retries.clone())
        .build();
    let plugin = AwsPlugin::new(&sdk, common::options());
    assert!(plugin
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(seen.load(Ordering::SeqCst), 3);

    // Throttled every time: the error after the last attempt, with its code.
    let (endpoint, seen) = throttling_endpoint(usize::MAX);
    let sdk = sdk_config(&endpoint, "testing", "testing")
        .into_builder()
        .retry_config(retries)
        .build();
    let plugin = AwsPlugin::new(&sdk, common::options());
    let e = plugin
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "DescribeInstances: RequestLimitExceeded: Request limit exceeded."
    );
    assert_eq!(
        seen.load(Ordering::SeqCst),
        infrakit_instance_aws::config::DEFAULT_MAX_ATTEMPTS as usize
    );
}
