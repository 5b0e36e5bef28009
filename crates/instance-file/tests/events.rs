//! The file plugin on real files: the events it publishes for changes made by itself and by
//! hand, and describes that follow files edited behind its back.

use std::fs;
use std::time::Duration;

use infrakit_instance_file::{FilePlugin, CHANGED, CREATED, DESTROYED};
use infrakit_spi::event::{Event, Publisher};
use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::{DestroyContext, Instance, Spec, Tags};
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// How long an expected event may take.
const DEADLINE: Duration = Duration::from_secs(10);

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn spec(group: &str) -> Spec {
    Spec {
        properties: json!({"Note": "v1"}),
        tags: tags(&[(GROUP_TAG, group), ("tier", "web")]),
        init: "echo hello".into(),
        ..Spec::default()
    }
}

fn plugin() -> (tempfile::TempDir, FilePlugin) {
    let tmp = tempfile::tempdir().unwrap();
    let p = FilePlugin::new(tmp.path().join("instances")).unwrap();
    assert!(p.watching(), "inotify is available here");
    (tmp, p)
}

/// The next event, failing after [`DEADLINE`].
async fn next(rx: &mut broadcast::Receiver<Event>) -> Event {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("an event within the deadline")
        .expect("the channel is open and did not lag")
}

/// Events up to and including the first of `kind` about `id`.
async fn until(rx: &mut broadcast::Receiver<Event>, kind: &str, id: &str) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let e = next(rx).await;
        let last = e.kind == kind && e.id == id;
        seen.push(e);
        if last {
            return seen;
        }
    }
}

fn group_of(e: &Event) -> Option<&str> {
    e.data.get("Tags")?.get(GROUP_TAG)?.as_str()
}

fn kinds_and_ids(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| (e.kind.clone(), e.id.clone()))
        .collect()
}

#[tokio::test]
async fn deleting_a_file_by_hand_publishes_destroyed_with_its_group() {
    let (_tmp, p) = plugin();
    let mut rx = p.subscribe();
    let id = p.provision(spec("cattle")).await.unwrap();
    until(&mut rx, CREATED, &id).await;

    fs::remove_file(p.dir().join(&id)).unwrap();
    let events = until(&mut rx, DESTROYED, &id).await;
    assert_eq!(kinds_and_ids(&events), [(DESTROYED.into(), id.clone())]);
    let e = &events[0];
    assert_eq!(e.topic, "/instance/destroyed");
    assert!(e.matches(infrakit_spi::event::INSTANCE_TOPIC));
    assert_eq!(group_of(e), Some("cattle"), "the tags the file last had");
    assert_eq!(e.data["Tags"]["tier"], "web");
    assert!(!e.timestamp.is_empty());
    assert!(p
        .describe_instances(&Tags::new(), false)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn provisioning_publishes_one_created_event_and_none_for_temporary_files() {
    let (_tmp, p) = plugin();
    let mut rx = p.subscribe();
    let a = p.provision(spec("a")).await.unwrap();
    let b = p.provision(spec("b")).await.unwrap();
    // The watcher reports in order: whatever `a` caused comes before `b`'s creation.
    let events = until(&mut rx, CREATED, &b).await;
    assert_eq!(
        kinds_and_ids(&events),
        [(CREATED.into(), a.clone()), (CREATED.into(), b.clone())]
    );
    assert_eq!(group_of(&events[0]), Some("a"));
    assert_eq!(group_of(&events[1]), Some("b"));
    assert_eq!(events[0].topic, "/instance/created");
}

#[tokio::test]
async fn label_and_destroy_publish_changed_and_destroyed() {
    let (_tmp, p) = plugin();
    let mut rx = p.subscribe();
    let id = p.provision(spec("g")).await.unwrap();
    // The watcher reads the files as they are when it gets to them: waiting for each event
    // before the next change keeps a quick succession of changes from showing as one.
    let mut events = until(&mut rx, CREATED, &id).await;
    p.label(&id, &tags(&[("infrakit.config.hash", "abc")]))
        .await
        .unwrap();
    events.extend(until(&mut rx, CHANGED, &id).await);
    p.destroy(&id, &DestroyContext::reason("terminate"))
        .await
        .unwrap();
    events.extend(until(&mut rx, DESTROYED, &id).await);
    assert_eq!(
        kinds_and_ids(&events),
        [
            (CREATED.into(), id.clone()),
            (CHANGED.into(), id.clone()),
            (DESTROYED.into(), id.clone())
        ]
    );
    assert_eq!(events[1].data["Tags"]["infrakit.config.hash"], "abc");
    assert_eq!(events[2].data["Tags"]["infrakit.config.hash"], "abc");
    assert_eq!(group_of(&events[2]), Some("g"));
}

#[tokio::test]
async fn files_written_and_moved_by_hand_publish_events() {
    let (_tmp, p) = plugin();
    let mut rx = p.subscribe();
    let id = p.provision(spec("g")).await.unwrap();
    until(&mut rx, CREATED, &id).await;
    let path = p.dir().join(&id);

    // Rewritten in place (`>`), with a tag changed: one `changed`, once the writer closed it.
    let mut content: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    content["Tags"]["tier"] = json!("db");
    fs::write(&path, serde_json::to_vec(&content).unwrap()).unwrap();
    let events = until(&mut rx, CHANGED, &id).await;
    assert_eq!(kinds_and_ids(&events), [(CHANGED.into(), id.clone())]);
    assert_eq!(events[0].data["Tags"]["tier"], "db");

    // Copied: a new instance. Renamed: one gone, one new.
    fs::copy(&path, p.dir().join("instance-copy")).unwrap();
    until(&mut rx, CREATED, "instance-copy").await;
    fs::rename(&path, p.dir().join("instance-moved")).unwrap();
    let events = until(&mut rx, CREATED, "instance-moved").await;
    assert_eq!(
        kinds_and_ids(&events),
        [
            (DESTROYED.into(), id.clone()),
            (CREATED.into(), "instance-moved".into())
        ]
    );
    assert_eq!(events[0].data["Tags"]["tier"], "db");

    // Garbage is not an instance: the instance it replaced is gone. Then hidden and other files
    // come and go without events; the next event is about the instance file after them.
    fs::write(p.dir().join("instance-copy"), "not json").unwrap();
    let e = next(&mut rx).await;
    assert_eq!(
        (e.kind.as_str(), e.id.as_str()),
        (DESTROYED, "instance-copy")
    );
    fs::write(p.dir().join(".hidden"), "x").unwrap();
    fs::remove_file(p.dir().join(".hidden")).unwrap();
    fs::create_dir(p.dir().join("instance-dir")).unwrap();
    fs::remove_file(p.dir().join("instance-copy")).unwrap();
    fs::remove_file(p.dir().join("instance-moved")).unwrap();
    let e = next(&mut rx).await;
    assert_eq!(
        (e.kind.as_str(), e.id.as_str()),
        (DESTROYED, "instance-moved")
    );
}

#[tokio::test]
async fn files_already_there_make_no_events() {
    let (tmp, first) = plugin();
    first.provision(spec("g")).await.unwrap();
    first.provision(spec("g")).await.unwrap();
    drop(first);

    let p = FilePlugin::new(tmp.path().join("instances")).unwrap();
    let mut rx = p.subscribe();
    assert_eq!(
        p.describe_instances(&Tags::new(), true)
            .await
            .unwrap()
            .len(),
        2
    );
    let id = p.provision(spec("g")).await.unwrap();
    let events = until(&mut rx, CREATED, &id).await;
    assert_eq!(kinds_and_ids(&events), [(CREATED.into(), id)]);
}

#[tokio::test]
async fn describe_of_a_thousand_files_follows_edits_made_behind_its_back() {
    let (_tmp, p) = plugin();
    let mut ids = Vec::new();
    for i in 0..1000 {
        let mut s = spec(if i % 2 == 0 { "even" } else { "odd" });
        s.tags.insert("n", i.to_string());
        ids.push(p.provision(s).await.unwrap());
    }
    let all = p.describe_instances(&Tags::new(), true).await.unwrap();
    assert_eq!(all.len(), 1000);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        all.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        sorted,
        "sorted by ID"
    );
    let even = p
        .describe_instances(&tags(&[(GROUP_TAG, "even")]), false)
        .await
        .unwrap();
    assert_eq!(even.len(), 500);
    assert!(even.iter().all(|d| d.properties.is_none()));

    let dir = p.dir().to_path_buf();
    let read =
        |id: &str| -> Value { serde_json::from_slice(&fs::read(dir.join(id)).unwrap()).unwrap() };
    // Edits that change each file's size or inode: a describe right after sees them all.
    // 1. Rewritten in place with another group (and so another size).
    let mut c = read(&ids[0]);
    c["Tags"][GROUP_TAG] = json!("moved-away");
    fs::write(dir.join(&ids[0]), serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    // 2. Replaced by a rename, as `sed -i` does, with a new spec.
    let mut c = read(&ids[1]);
    c["Spec"]["Properties"]["Note"] = json!("v2");
    fs::write(dir.join(".edit"), serde_json::to_vec(&c).unwrap()).unwrap();
    fs::rename(dir.join(".edit"), dir.join(&ids[1])).unwrap();
    // 3. Ten deleted.
    for id in &ids[10..20] {
        fs::remove_file(dir.join(id)).unwrap();
    }
    // 4. One copied under a new name, one turned into garbage.
    fs::copy(dir.join(&ids[2]), dir.join("instance-copy")).unwrap();
    fs::write(dir.join(&ids[3]), "{").unwrap();

    let all = p.describe_instances(&Tags::new(), true).await.unwrap();
    assert_eq!(all.len(), 1000 - 10 - 1 + 1);
    let get = |id: &str| all.iter().find(|d| d.id == id);
    assert_eq!(
        get(&ids[0]).unwrap().tags.get(GROUP_TAG),
        Some("moved-away")
    );
    assert_eq!(
        get(&ids[1])
            .unwrap()
            .properties
            .as_ref()
            .unwrap()
            .to_value()["Properties"]["Note"],
        json!("v2")
    );
    assert!(ids[10..20].iter().all(|id| get(id).is_none()));
    assert!(get(&ids[3]).is_none());
    let copy = get("instance-copy").unwrap();
    assert_eq!(copy.tags, get(&ids[2]).unwrap().tags);
    assert_eq!(copy.properties, get(&ids[2]).unwrap().properties);
    let even = p
        .describe_instances(&tags(&[(GROUP_TAG, "even")]), false)
        .await
        .unwrap();
    // ids[0] left the group; of ids[10..20], five were even; the copy of ids[2] is even.
    assert_eq!(even.len(), 500 - 1 - 5 + 1);

    // 5. An in-place edit of the same size, which may keep the file's times if it falls in the
    // same tick of the kernel's clock as the last write: the watcher notices it.
    let mut c = read(&ids[4]);
    assert_eq!(c["Tags"]["tier"], json!("web"));
    c["Tags"]["tier"] = json!("db!");
    let mut text = serde_json::to_vec_pretty(&c).unwrap();
    text.push(b'\n');
    let before = fs::metadata(dir.join(&ids[4])).unwrap().len();
    assert_eq!(text.len() as u64, before, "the same size");
    fs::write(dir.join(&ids[4]), &text).unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let all = p.describe_instances(&Tags::new(), false).await.unwrap();
        let d = all.iter().find(|d| d.id == ids[4]).unwrap();
        if d.tags.get("tier") == Some("db!") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edit never showed"
        );
        tokio::task::yield_now().await;
    }
}
