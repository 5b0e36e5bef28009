//! Connection limits over a real Unix socket: body and header sizes, idle and slow connections,
//! and the number of connections served at once.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::broadcast;

use common::{read_head, read_until_closed, Recorder};
use infrakit_rpc::{Handlers, Limits, PluginServer, ServerOptions};
use infrakit_spi::event::Publisher;
use infrakit_spi::Event;

const PATIENCE: Duration = Duration::from_secs(30);

struct Fixture {
    _tmp: tempfile::TempDir,
    server: PluginServer,
    recorder: Arc<Recorder>,
}

async fn serve(limits: Limits, handlers: impl FnOnce(Handlers) -> Handlers) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let server = PluginServer::start_with(
        &tmp.path().join("plugins"),
        "limited",
        handlers(Handlers::new().instance("", recorder.clone())),
        ServerOptions::new().limits(limits),
    )
    .await
    .unwrap();
    Fixture {
        _tmp: tmp,
        server,
        recorder,
    }
}

fn request(body: &str) -> Vec<u8> {
    format!(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn validate_body(padding: usize) -> String {
    json!({
        "jsonrpc": "2.0",
        "method": "Instance.Validate",
        "params": {"Properties": {"Pad": "x".repeat(padding)}},
        "id": 1
    })
    .to_string()
}

#[tokio::test]
async fn the_body_limit_is_configurable() {
    let f = serve(Limits::default().with_max_body_bytes(1024), |h| h).await;
    let mut s = UnixStream::connect(f.server.socket()).await.unwrap();
    s.write_all(&request(&validate_body(100))).await.unwrap();
    let head = read_head(&mut s, PATIENCE).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(f.recorder.take(), vec!["Instance.Validate"]);

    let mut s = UnixStream::connect(f.server.socket()).await.unwrap();
    s.write_all(&request(&validate_body(2000))).await.unwrap();
    let text = read_until_closed(&mut s, PATIENCE).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("limit 1024 bytes"), "{text}");
    assert!(f.recorder.take().is_empty());

    // A chunked body is cut off at the limit too.
    let mut s = UnixStream::connect(f.server.socket()).await.unwrap();
    let body = validate_body(2000);
    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    s.write_all(chunked.as_bytes()).await.unwrap();
    let text = read_until_closed(&mut s, PATIENCE).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(f.recorder.take().is_empty());
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let f = serve(Limits::default(), |h| h).await;
    let body = validate_body(0);
    // One huge header.
    let mut s = UnixStream::connect(f.server.socket()).await.unwrap();
    let big = format!(
        "POST / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\nContent-Length: {}\r\n\r\n{body}",
        "a".repeat(200 * 1024),
        body.len()
    );
    let _ = s.write_all(big.as_bytes()).await;
    let text = read_until_closed(&mut s, PATIENCE).await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    // Too many headers.
    let mut s = UnixStream::connect(f.server.socket()).await.unwrap();
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: h\r\n{many}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(req.as_bytes()).await;
    let text = read_until_closed(&mut s, PATIENCE).await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert!(f.recorder.take().is_empty());
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed() {
    let idle = Duration::from_millis(400);
    let f = serve(
        Limits::default()
            .with_idle_timeout(idle)
            .with_body_timeout(idle),
        |h| h,
    )
    .await;

    // A connection that never sends anything.
    let started = Instant::now();
    let mut s = UnixStream::connect(f.server.socket()).await.unwrap();
    read_until_closed(&mut s, PATIENCE).await;
    assert!(
        started.elapsed() >= idle,
        "closed after {:?}",
        started.elapsed()
    );

    // A keep-alive connection, idle after its first request.
    let mut s = UnixStream::connect(f.server.socket()).await.unwrap();
    s.write_all(&request(&validate_body(0))).await.unwrap();
    let head = read_head(&mut s, PATIENCE).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    read_until_closed(&mut s, PATIENCE).await;
    assert_eq!(f.recorder.take(), vec!["Instance.Validate"]);

    // Slow loris: a header line every 100 ms, for 30 s (75 idle timeouts), never completes the
    // head in time: the server hangs up while the head still trickles in (a write to a Unix
    // socket whose peer has closed fails).
    let started = Instant::now();
    let mut s = UnixStream::connect(f.server.socket()).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: h\r\n")
        .await
        .unwrap();
    let mut trickle = tokio::time::interval(Duration::from_millis(100));
    let mut closed = false;
    for i in 0..300 {
        trickle.tick().await;
        if s.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a trickling head kept the connection for {:?}",
        started.elapsed()
    );

    // A body that stops arriving gets 408.
    let mut s = UnixStream::connect(f.server.socket()).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"")
        .await
        .unwrap();
    let text = read_until_closed(&mut s, PATIENCE).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(f.recorder.take().is_empty());
}

/// An instance plugin that also publishes events.
struct Events(broadcast::Sender<Event>);

impl Publisher for Events {
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.subscribe()
    }
}

#[tokio::test]
async fn event_streams_outlive_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let (tx, _) = broadcast::channel(8);
    let publisher = Arc::new(Events(tx.clone()));
    let f = serve(Limits::default().with_idle_timeout(idle), |h| {
        h.publisher(publisher)
    })
    .await;
    let stream = infrakit_rpc::events::subscribe(f.server.socket(), "/instance/", PATIENCE)
        .await
        .unwrap();
    futures::pin_mut!(stream);
    // Stay quiet for well over the idle timeout: a stream being answered is not idle.
    tokio::time::sleep(idle * 4).await;
    tx.send(Event::instance("exited", "i-1", "gone", json!({})))
        .unwrap();
    let e = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .unwrap()
        .expect("the stream is still open");
    assert_eq!(e.id, "i-1");
}

#[tokio::test]
async fn a_full_listener_closes_the_longest_idle_connection_for_a_newcomer() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let f = serve(limits, |h| h).await;
    let socket = f.server.socket().to_path_buf();
    let mut oldest = UnixStream::connect(&socket).await.unwrap();
    let mut newer = UnixStream::connect(&socket).await.unwrap();
    let client = infrakit_rpc::Client::new("limited", &socket);
    let answer = client
        .call::<_, serde_json::Value>(infrakit_spi::Method::HandshakeHello, &json!({}))
        .await;
    assert!(answer.is_ok(), "{answer:?}");
    let text = read_until_closed(&mut oldest, PATIENCE).await;
    assert!(text.is_empty(), "{text}");
    // `newer` is still open: a request on it is answered.
    newer.write_all(&request(&validate_body(0))).await.unwrap();
    let head = read_head(&mut newer, PATIENCE).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}
