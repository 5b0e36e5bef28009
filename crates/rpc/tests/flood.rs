//! A server under a flood of idle, half-sent and unauthenticated connections keeps answering
//! legitimate calls: a full listener closes the connection that has waited longest, new
//! connections get a short deadline for their first request head, and on TCP strangers have a
//! budget of their own and a cap per address. What happened shows in the connection metrics.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UnixStream};

use common::{read_head, read_until_closed, Pki, Recorder};
use infrakit_rpc::{
    Client, ClientTlsConfig, ConnectionMetrics, Handlers, InstanceClient, Limits, PluginServer,
    ServerOptions, TcpClientConfig, TcpListenerConfig, TlsConfig,
};
use infrakit_spi::{Instance, Method};

const PATIENCE: Duration = Duration::from_secs(30);

/// A request head promising 1000 bytes of body, and one byte of it.
const STUCK: &[u8] = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";

struct Fixture {
    _tmp: tempfile::TempDir,
    server: PluginServer,
    metrics: ConnectionMetrics,
    recorder: Arc<Recorder>,
}

async fn serve(limits: Limits, tcp: Option<TcpListenerConfig>) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let metrics = ConnectionMetrics::default();
    let mut options = ServerOptions::new().limits(limits).metrics(metrics.clone());
    if let Some(tcp) = tcp {
        options = options.tcp(tcp);
    }
    let server = PluginServer::start_with(
        &tmp.path().join("plugins"),
        "flooded",
        Handlers::new().instance("", recorder.clone()),
        options,
    )
    .await
    .unwrap();
    Fixture {
        _tmp: tmp,
        server,
        metrics,
        recorder,
    }
}

async fn hello(socket: &std::path::Path) -> Result<Value, infrakit_spi::Error> {
    Client::new("flooded", socket)
        .with_timeout(PATIENCE)
        .call(Method::HandshakeHello, &json!({}))
        .await
}

/// Whether the server closed `s` (reads end or fail), waiting at most `PATIENCE`.
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn stuck_connections_make_room_for_a_caller() {
    let max = 32;
    let f = serve(
        Limits {
            max_connections: max,
            ..Limits::default()
        },
        None,
    )
    .await;
    let socket = f.server.socket().to_path_buf();
    // Ten times the cap of connections with a half-sent request each, all kept open here.
    let mut stuck = Vec::new();
    for _ in 0..10 * max {
        let mut s = UnixStream::connect(&socket).await.unwrap();
        s.write_all(STUCK).await.unwrap();
        stuck.push(s);
    }
    for _ in 0..5 {
        let answer = hello(&socket).await.expect("answered during the flood");
        assert!(
            answer.get("Name").is_some() || answer.is_object(),
            "{answer}"
        );
    }
    // The first stuck connections were closed to make room, the last ones not yet.
    assert!(closed_by_server(&mut stuck[0]).await);
    let open = f.metrics.open("flooded", "unix");
    assert!(open <= max as i64, "{open} open, cap {max}");
    let evicted = f.metrics.closed("flooded", "unix", "evicted");
    assert!(
        evicted >= (10 * max - max) as u64,
        "{evicted} evicted of {}",
        10 * max
    );
    assert!(
        f.recorder.take().is_empty(),
        "no stuck request reached the plugin"
    );

    // A half-sent request that is answered in full while the flood sits there still works.
    let last = stuck.last_mut().unwrap();
    last.write_all(&[b' '; 999]).await.unwrap();
    let head = read_head(last, PATIENCE).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[tokio::test]
async fn a_connection_being_answered_is_never_closed_to_make_room() {
    let f = serve(
        Limits {
            max_connections: 2,
            ..Limits::default()
        },
        None,
    )
    .await;
    let socket = f.server.socket().to_path_buf();
    // One connection subscribes to events (streaming), one sits idle; a third gets in by
    // closing the idle one, and the stream survives.
    let mut idle = UnixStream::connect(&socket).await.unwrap();
    let mut stream = UnixStream::connect(&socket).await.unwrap();
    stream
        .write_all(b"GET /events?topic=/instance/ HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut stream, PATIENCE).await;
    assert!(
        head.starts_with("HTTP/1.1 404") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    hello(&socket).await.expect("answered");
    assert!(closed_by_server(&mut idle).await);
    assert_eq!(f.metrics.closed("flooded", "unix", "evicted"), 1);
}

#[tokio::test]
async fn a_new_connection_has_a_short_deadline_for_its_first_request() {
    let head_timeout = Duration::from_millis(300);
    let f = serve(
        Limits {
            head_timeout,
            ..Limits::default()
        },
        None,
    )
    .await;
    let socket = f.server.socket().to_path_buf();
    let started = std::time::Instant::now();
    let mut silent = UnixStream::connect(&socket).await.unwrap();
    let mut half = UnixStream::connect(&socket).await.unwrap();
    half.write_all(b"POST / HTTP/1.1\r\nHost: h\r\n")
        .await
        .unwrap();
    read_until_closed(&mut silent, PATIENCE).await;
    read_until_closed(&mut half, PATIENCE).await;
    assert!(started.elapsed() >= head_timeout);
    assert!(
        started.elapsed() < Limits::default().idle_timeout,
        "closed by the idle timeout, not the head deadline"
    );
    assert_eq!(f.metrics.closed("flooded", "unix", "idle"), 2);

    // A keep-alive connection that has sent a request may idle longer (up to the idle timeout).
    let mut s = UnixStream::connect(&socket).await.unwrap();
    let body =
        json!({"jsonrpc": "2.0", "method": "Handshake.Hello", "params": {}, "id": 1}).to_string();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut s, PATIENCE).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tokio::time::sleep(head_timeout * 3).await;
    s.write_all(request.as_bytes()).await.unwrap();
    // (What is read may start with the rest of the first answer.)
    let text = read_head(&mut s, PATIENCE).await;
    assert!(text.contains("HTTP/1.1 200"), "{text}");
}

/// A TCP connection from `ip` (any 127.0.0.0/8 address is local on Linux).
async fn connect_from(ip: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::from(ip), 0)).unwrap();
    socket.connect(to).await.unwrap()
}

#[tokio::test]
async fn strangers_on_tcp_never_take_an_authenticated_operators_place() {
    let token = "operator-token";
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(pki_dir.path());
    let tcp = TcpListenerConfig::tls(
        "127.0.0.1:0",
        TlsConfig {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca: None,
        },
    )
    .with_token(token.into());
    let f = serve(
        Limits {
            max_connections: 64,
            max_connections_per_peer: 16,
            max_unauthenticated: 8,
            ..Limits::default()
        },
        Some(tcp),
    )
    .await;
    let addr = f.server.tcp_addr().unwrap();
    let operator = InstanceClient::new(
        Client::tcp(
            "flooded",
            &TcpClientConfig::tls(
                addr.to_string(),
                ClientTlsConfig {
                    ca: pki.ca.clone(),
                    cert: None,
                    key: None,
                    server_name: None,
                },
            )
            .with_token(token.into()),
        )
        .unwrap()
        .with_timeout(PATIENCE),
        "",
    );
    // The operator's pooled connection is authenticated by its first call.
    operator.validate(&json!({})).await.unwrap();

    // 200 strangers from ten addresses open connections and never start TLS.
    let mut strangers = Vec::new();
    for i in 0..200u8 {
        strangers.push(connect_from([127, 0, 0, 10 + i % 10], addr).await);
    }
    // A stranger at its address's cap pushes out its own connections.
    let mut greedy = Vec::new();
    for _ in 0..40 {
        greedy.push(connect_from([127, 0, 0, 99], addr).await);
    }
    assert!(closed_by_server(&mut greedy[0]).await);
    // The operator's connection survived all that: its calls need no new connection.
    let accepted = f.metrics.accepted("flooded", "tcp");
    for _ in 0..3 {
        operator
            .validate(&json!({}))
            .await
            .expect("the operator is served");
    }
    assert_eq!(
        f.recorder.take(),
        vec!["Instance.Validate"; 4],
        "only the operator's calls reached the plugin"
    );
    let evicted = f.metrics.closed("flooded", "tcp", "evicted");
    assert!(evicted >= 200 + 40 - 8, "{evicted} evicted");
    assert_eq!(f.metrics.accepted("flooded", "tcp"), accepted);
    let open = f.metrics.open("flooded", "tcp");
    assert!(
        open <= 8 + 1,
        "{open} open: 8 strangers and the operator at most"
    );
}
