//! Dropping the plugin stops its threads: the watcher and the file-system threads. A test binary
//! of its own: it counts the threads of the process, which other tests running beside it would
//! change.

use std::time::{Duration, Instant};

use infrakit_instance_file::{FilePlugin, IO_THREADS};
use infrakit_spi::event::Publisher;
use tokio::sync::broadcast::error::TryRecvError;

/// Threads of this process whose name starts with `prefix` (`comm` keeps 15 bytes of it).
fn threads(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with(prefix))
        .count()
}

/// `notify`'s inotify thread.
fn watcher_threads() -> usize {
    threads("notify-rs inoti")
}

/// The plugin's file-system threads.
fn io_threads() -> usize {
    threads("instance-file-i")
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
fn dropping_the_last_clone_stops_the_threads_and_closes_the_events() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!((watcher_threads(), io_threads()), (0, 0));
    let p = FilePlugin::new(tmp.path().join("instances")).unwrap();
    let clone = p.clone();
    let mut rx = p.subscribe();
    // A thread names itself once it runs: wait for the names too.
    eventually("one watcher thread", || watcher_threads() == 1);
    eventually("the file-system threads", || io_threads() == IO_THREADS);

    drop(p);
    std::fs::write(clone.dir().join("instance-1"), "{}").unwrap();
    eventually(
        "the clone still watches",
        || matches!(rx.try_recv(), Ok(e) if e.id == "instance-1"),
    );

    // The watcher's thread may still be looking at the file, holding the plugin for as long.
    drop(clone);
    eventually("the events closed", || {
        matches!(rx.try_recv(), Err(TryRecvError::Closed))
    });
    eventually("the watcher thread ended", || watcher_threads() == 0);
    eventually("the file-system threads ended", || io_threads() == 0);
}
