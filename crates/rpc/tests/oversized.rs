//! 100 MB request bodies over a real Unix socket are refused early, and the server's memory does
//! not grow with them. Alone in its test binary, so the memory measured is the server's.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use common::{read_head, Recorder};
use infrakit_rpc::{Handlers, PluginServer};

const HUNDRED_MB: usize = 100 * 1024 * 1024;

/// Resident set size of this process (the server runs in it), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// Samples [`rss`] every few milliseconds on its own thread until dropped; keeps the peak.
struct PeakRss {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakRss {
    fn start() -> Self {
        let peak = Arc::new(AtomicU64::new(rss()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss(), Ordering::Relaxed);
                    std::thread::park_timeout(Duration::from_millis(5));
                }
            })
        };
        PeakRss {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            t.join().unwrap();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabyte_bodies_are_refused_without_being_buffered() {
    let tmp = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let server = PluginServer::start(
        &tmp.path().join("plugins"),
        "instance-big",
        Handlers::new().instance("", recorder.clone()),
    )
    .await
    .unwrap();
    let baseline = rss();
    let peak = PeakRss::start();

    // Declared with Content-Length: answered 413 before a byte of the body is sent (an answer
    // at all shows the server did not wait for the body).
    let mut s = UnixStream::connect(server.socket()).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {HUNDRED_MB}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = read_head(&mut s, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Streamed in chunks: cut off after the 16 MiB limit, long before 100 MB arrive.
    let s = UnixStream::connect(server.socket()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b' '; 1024 * 1024];
        let mut sent = 0usize;
        let head = "POST / HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        if wr.write_all(head.as_bytes()).await.is_err() {
            return sent;
        }
        while sent < HUNDRED_MB {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if wr.write_all(&framed).await.is_err() {
                return sent;
            }
            sent += chunk.len();
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
        sent
    });
    let answer = read_head(&mut rd, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    drop(rd);
    let sent = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the writer stops once the server hangs up")
        .unwrap();
    assert!(
        sent < HUNDRED_MB / 2,
        "the server took {sent} bytes of a body it had refused"
    );

    let grew = peak.finish().saturating_sub(baseline);
    eprintln!(
        "refused after {} MiB of the streamed body; memory grew by {} MiB",
        sent >> 20,
        grew >> 20
    );
    assert!(
        grew < 64 * 1024 * 1024,
        "the server's memory grew by {} MiB while refusing 100 MB bodies",
        grew >> 20
    );
    assert!(recorder.take().is_empty());
    server.stop().await;
}
