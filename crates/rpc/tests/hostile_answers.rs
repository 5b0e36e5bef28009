//! A plugin that answers with an endless body, a huge declared length or a huge error body, over
//! a real Unix socket: the client reads no more than its limit for the call, fails with an error
//! naming the plugin and the method, and quotes only a few hundred bytes of the error. Alone in
//! its test binary, so the memory measured is the client's.

use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use infrakit_rpc::client::{max_response_bytes, DEFAULT_MAX_LISTING_BYTES};
use infrakit_rpc::{Client, InstanceClient};
use infrakit_spi::{Instance, Method, Tags};

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What the hostile plugin answers.
#[derive(Clone, Copy)]
enum Answer {
    /// HTTP 200, chunked, 64 KiB chunks for ever.
    Endless,
    /// HTTP 200 declaring a 1 GiB body, of which it sends nothing (within the call's timeout,
    /// so only a check of the length before reading makes the call fail at once).
    Declared,
    /// HTTP 500 with a 1 MiB body.
    HugeError,
    /// A well-formed answer to another request.
    WrongId,
    /// Not JSON.
    Malformed,
    /// The right request's answer, of the wrong shape.
    WrongShape,
}

/// Serves `answer` to every request on a socket in `dir`.
fn serve(dir: &Path, answer: Answer) -> std::path::PathBuf {
    let socket = dir.join("hostile");
    let listener = UnixListener::bind(&socket).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            if let Answer::Declared = answer {
                // Written by hand: a server library would correct the length to the body's.
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut stream = stream;
                    let mut buf = vec![0u8; 64 * 1024];
                    let _ = stream.read(&mut buf).await;
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 1u64 << 30);
                    let _ = stream.write_all(head.as_bytes()).await;
                    // Then nothing: the body never comes.
                    let _ = stream.read(&mut buf).await;
                });
                continue;
            }
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        Ok::<_, Infallible>(respond(answer, &request["id"]))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    socket
}

fn respond(answer: Answer, id: &serde_json::Value) -> hyper::Response<Body> {
    let text = |t: String| hyper::Response::new(Full::new(Bytes::from(t)).boxed());
    match answer {
        Answer::WrongId => text(
            serde_json::json!({"jsonrpc": "2.0", "result": {"Descriptions": []}, "id": 7})
                .to_string(),
        ),
        Answer::Malformed => text("{\"jsonrpc\": \"2.0\", \"result\": [".into()),
        Answer::WrongShape => text(
            serde_json::json!({"jsonrpc": "2.0", "result": {"Descriptions": "none"}, "id": id})
                .to_string(),
        ),
        Answer::Endless => {
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            let frames = futures::stream::repeat_with(move || Ok(Frame::data(chunk.clone())));
            hyper::Response::new(BodyExt::boxed(StreamBody::new(frames)))
        }
        Answer::Declared => unreachable!("answered by hand"),
        Answer::HugeError => hyper::Response::builder()
            .status(500)
            .body(Full::new(Bytes::from("x".repeat(1 << 20))).boxed())
            .unwrap(),
    }
}

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// The peak of [`rss`] while `f` runs, sampled every few milliseconds on a thread.
async fn peak_rss_during<T>(f: impl std::future::Future<Output = T>) -> (T, u64) {
    let peak = Arc::new(AtomicU64::new(rss()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(rss(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let out = f.await;
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    (out, peak.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_answers_are_bounded_and_named() {
    assert_eq!(
        max_response_bytes(Method::InstanceDescribeInstances),
        DEFAULT_MAX_LISTING_BYTES
    );
    let dir = tempfile::tempdir().unwrap();

    // An endless listing: the call fails once the limit is read, well within its timeout,
    // and the client holds no more than the limit meanwhile.
    let endless = serve(dir.path(), Answer::Endless);
    let plugin = InstanceClient::new(
        Client::new("hostile", &endless).with_timeout(Duration::from_secs(60)),
        "",
    );
    let before = rss();
    let started = Instant::now();
    let (result, peak) = peak_rss_during(plugin.describe_instances(&Tags::default(), true)).await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("plugin 'hostile' answered Instance.DescribeInstances with more than"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{err}");
    let grew = peak.saturating_sub(before);
    assert!(
        grew < 100 << 20,
        "the client grew by {} MiB reading an endless answer",
        grew >> 20
    );

    // A declared length over the limit is refused before anything is read.
    std::fs::remove_file(&endless).unwrap();
    let declared = serve(dir.path(), Answer::Declared);
    let plugin = InstanceClient::new(
        Client::new("hostile", &declared).with_timeout(Duration::from_secs(60)),
        "",
    );
    let started = Instant::now();
    let err = plugin
        .describe_instances(&Tags::default(), true)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("with more than"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused only after {:?}",
        started.elapsed()
    );

    // A huge error body is quoted, not copied.
    std::fs::remove_file(&declared).unwrap();
    let huge = serve(dir.path(), Answer::HugeError);
    let plugin = InstanceClient::new(Client::new("hostile", &huge), "");
    let err = plugin
        .validate(&serde_json::json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("plugin 'hostile' answered Instance.Validate with HTTP 500"),
        "{err}"
    );
    assert!(err.len() < 500, "{} bytes quoted", err.len());
    assert!(err.ends_with("(1048576 bytes in all)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confused_answers_fail_the_call_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    for (answer, expected) in [
        (
            Answer::WrongId,
            "answered Instance.DescribeInstances for request id 7, not ",
        ),
        (
            Answer::Malformed,
            "sent an invalid Instance.DescribeInstances response",
        ),
        (
            Answer::WrongShape,
            "sent an unexpected Instance.DescribeInstances result",
        ),
    ] {
        let socket = serve(dir.path(), answer);
        let plugin = InstanceClient::new(Client::new("confused", &socket), "");
        let err = plugin
            .describe_instances(&Tags::default(), false)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("plugin 'confused' "), "{err}");
        assert!(err.contains(expected), "{err}");
        std::fs::remove_file(&socket).unwrap();
    }
}
