//! Dropping the plugin stops its watcher. A test binary of its own: it counts the threads of
//! the process, which other tests running beside it would change.

use std::time::{Duration, Instant};

use infrakit_instance_file::FilePlugin;
use infrakit_spi::event::Publisher;
use tokio::sync::broadcast::error::TryRecvError;

/// Threads of this process named like `notify`'s inotify thread (`comm` keeps 15 bytes).
fn watcher_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("notify-rs inoti"))
        .count()
}

/// Polls `f` until it holds, failing after ten seconds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn dropping_the_last_clone_stops_the_watcher_thread_and_closes_the_events() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(watcher_threads(), 0);
    let p = FilePlugin::new(tmp.path().join("instances")).unwrap();
    let clone = p.clone();
    let mut rx = p.subscribe();
    eventually("one watcher thread", || watcher_threads() == 1);

    drop(p);
    std::fs::write(clone.dir().join("instance-1"), "{}").unwrap();
    eventually(
        "the clone still watches",
        || matches!(rx.try_recv(), Ok(e) if e.id == "instance-1"),
    );

    drop(clone);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Closed)));
    eventually("the watcher thread ended", || watcher_threads() == 0);
}
