//! Who may talk to a plugin server: owner-only sockets, and a TCP listener that takes only clients
//! with a certificate from the configured CA or the right bearer token. Secrets given to the
//! server or sent in requests never show up in its logs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use common::{Pki, Recorder};
use infrakit_rpc::{
    Client, ClientTlsConfig, Handlers, InstanceClient, PluginServer, ServerOptions,
    TcpClientConfig, TcpListenerConfig, TlsConfig,
};
use infrakit_spi::{Instance, Spec};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn sockets_are_private_to_their_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home/plugins");
    let server = PluginServer::start(&dir, "instance-x", Handlers::new())
        .await
        .unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(server.socket()), 0o600);
    server.stop().await;
}

#[tokio::test]
async fn directories_other_users_can_write_or_own_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for m in [0o777, 0o775, 0o1777] {
        let dir = tmp.path().join(format!("shared-{m:o}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m)).unwrap();
        let err = PluginServer::start(&dir, "instance-x", Handlers::new())
            .await
            .err()
            .expect("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("writable by other users"), "{err}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "nothing created"
        );
    }

    // A directory owned by someone else: as root, one given to `nobody`; as anyone else, `/`.
    let foreign = if nix::unistd::geteuid().is_root() {
        let dir = tmp.path().join("nobodys");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        dir
    } else {
        Path::new("/").to_path_buf()
    };
    let err = PluginServer::start(&foreign, "instance-x", Handlers::new())
        .await
        .err()
        .expect("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("not by us"), "{err}");
    assert!(!foreign.join("instance-x").exists());
}

#[tokio::test]
async fn a_bad_tcp_listener_config_starts_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    let pki = Pki::generate(tmp.path());
    let bad = [
        TcpListenerConfig::plaintext("127.0.0.1:0"),
        TcpListenerConfig::tls(
            "127.0.0.1:0",
            TlsConfig {
                cert: pki.server_cert.clone(),
                key: pki.server_key.clone(),
                client_ca: None,
            },
        ),
        TcpListenerConfig::tls(
            "127.0.0.1:0",
            TlsConfig {
                cert: pki.server_cert.clone(),
                key: pki.client_key.clone(),
                client_ca: Some(pki.ca.clone()),
            },
        ),
        TcpListenerConfig::tls(
            "127.0.0.1:0",
            TlsConfig {
                cert: tmp.path().join("missing.pem"),
                key: pki.server_key.clone(),
                client_ca: Some(pki.ca.clone()),
            },
        ),
    ];
    let expected = [
        "insecure_plaintext",
        "client_ca",
        "do not go together",
        "missing.pem",
    ];
    for (cfg, want) in bad.into_iter().zip(expected) {
        let err = PluginServer::start_with(
            &dir,
            "instance-x",
            Handlers::new(),
            ServerOptions::new().tcp(cfg),
        )
        .await
        .err()
        .expect("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains(want), "{want}: {err}");
        assert!(!dir.join("instance-x").exists(), "no socket after: {err}");
    }
}

struct Tls {
    _tmp: tempfile::TempDir,
    pki: Pki,
    server: PluginServer,
    recorder: Arc<Recorder>,
}

async fn tls_server(client_ca: bool, token: Option<&str>) -> Tls {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::generate(tmp.path());
    let recorder = Arc::new(Recorder::default());
    let mut tcp = TcpListenerConfig::tls(
        "127.0.0.1:0",
        TlsConfig {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca: client_ca.then(|| pki.ca.clone()),
        },
    );
    if let Some(t) = token {
        tcp = tcp.with_token(t.into());
    }
    let server = PluginServer::start_with(
        &tmp.path().join("plugins"),
        "instance-remote",
        Handlers::new().instance("", recorder.clone()),
        ServerOptions::new().tcp(tcp),
    )
    .await
    .unwrap();
    Tls {
        _tmp: tmp,
        pki,
        server,
        recorder,
    }
}

fn tls_client(t: &Tls, cert: Option<(&Path, &Path)>, token: Option<&str>) -> InstanceClient {
    let mut cfg = TcpClientConfig::tls(
        t.server.tcp_addr().unwrap().to_string(),
        ClientTlsConfig {
            ca: t.pki.ca.clone(),
            cert: cert.map(|(c, _)| c.to_path_buf()),
            key: cert.map(|(_, k)| k.to_path_buf()),
            server_name: None,
        },
    );
    if let Some(tok) = token {
        cfg = cfg.with_token(tok.into());
    }
    let client = Client::tcp("instance-remote", &cfg)
        .unwrap()
        .with_timeout(Duration::from_secs(10));
    InstanceClient::new(client, "")
}

#[tokio::test]
async fn tls_listeners_take_only_certificates_from_their_ca() {
    let t = tls_server(true, None).await;
    let pki = &t.pki;
    let refused = [
        ("no certificate", None, "CertificateRequired"),
        (
            "a certificate from another CA",
            Some((pki.stranger_cert.as_path(), pki.stranger_key.as_path())),
            "UnknownCA",
        ),
        (
            "an expired certificate",
            Some((pki.expired_cert.as_path(), pki.expired_key.as_path())),
            "CertificateExpired",
        ),
    ];
    for (what, cert, alert) in refused {
        let err = tls_client(&t, cert, None)
            .validate(&json!({}))
            .await
            .expect_err(what);
        assert!(
            matches!(err, infrakit_spi::Error::Unavailable { .. }),
            "{what}: {err}"
        );
        assert!(err.to_string().contains(alert), "{what}: {err}");
        assert!(t.recorder.take().is_empty(), "{what} reached the plugin");
    }

    let good = tls_client(
        &t,
        Some((pki.client_cert.as_path(), pki.client_key.as_path())),
        None,
    );
    good.validate(&json!({})).await.unwrap();
    assert_eq!(good.provision(Spec::default()).await.unwrap(), "i-1");
    assert_eq!(
        t.recorder.take(),
        vec!["Instance.Validate", "Instance.Provision"]
    );

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut s = TcpStream::connect(t.server.tcp_addr().unwrap())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut s,
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await
    .unwrap();
    let text = common::read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(!text.contains("HTTP/1.1 200"), "{text}");

    // The Unix socket keeps working next to the TCP listener.
    let local = InstanceClient::new(Client::new("instance-remote", t.server.socket()), "");
    local.validate(&json!({})).await.unwrap();
}

#[tokio::test]
async fn tls_with_a_token_needs_the_right_token() {
    let t = tls_server(false, Some("correct-horse-battery")).await;
    for (what, token) in [("no token", None), ("a wrong token", Some("correct-horse"))] {
        let err = tls_client(&t, None, token)
            .validate(&json!({}))
            .await
            .expect_err(what);
        assert!(err.to_string().contains("HTTP 401"), "{what}: {err}");
        assert!(t.recorder.take().is_empty(), "{what} reached the plugin");
    }
    tls_client(&t, None, Some("correct-horse-battery"))
        .validate(&json!({}))
        .await
        .unwrap();
    assert_eq!(t.recorder.take(), vec!["Instance.Validate"]);
}

/// Posts `body` over plain TCP with an optional `Authorization` header: (status, headers, body).
async fn post_tcp(
    addr: std::net::SocketAddr,
    authorization: Option<&str>,
    body: &str,
) -> (u16, hyper::HeaderMap, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::post("/")
        .header("Host", "h")
        .header("Content-Type", "application/json");
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// A writer that appends everything to a shared buffer, for capturing logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn bearer_tokens_are_checked_and_secrets_never_logged() {
    const TOKEN: &str = "tok-5f1d0c0ffee";
    const INIT_SECRET: &str = "SWMTKN-init-secret-9b8c";
    const PASSWORD: &str = "pw-property-secret-77";
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let tmp = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let server = PluginServer::start_with(
        &tmp.path().join("plugins"),
        "instance-remote",
        Handlers::new().instance("", recorder.clone()),
        ServerOptions::new().tcp(
            TcpListenerConfig::plaintext("127.0.0.1:0")
                .insecure_plaintext(true)
                .with_token(TOKEN.into()),
        ),
    )
    .await
    .unwrap();
    let addr = server.tcp_addr().unwrap();
    let provision = json!({
        "jsonrpc": "2.0",
        "method": "Instance.Provision",
        "params": {"Spec": {"Init": INIT_SECRET, "Properties": {"Password": PASSWORD}}},
        "id": 1
    })
    .to_string();

    for auth in [
        None,
        Some("Bearer wrong-token".to_string()),
        Some(format!("Basic {TOKEN}")),
        Some(format!("Bearer {TOKEN}x")),
    ] {
        let (status, headers, _) = post_tcp(addr, auth.as_deref(), &provision).await;
        assert_eq!(status, 401, "{auth:?}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{headers:?}"
        );
        assert!(recorder.take().is_empty(), "{auth:?} reached the plugin");
    }
    let (status, _, body) = post_tcp(addr, Some(&format!("Bearer {TOKEN}")), &provision).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["ID"], "i-1");
    assert_eq!(recorder.take(), vec!["Instance.Provision"]);

    // Our client sends the token, and so reaches the plugin; also over the Unix socket.
    let client = Client::tcp(
        "instance-remote",
        &TcpClientConfig::plaintext(addr.to_string())
            .insecure_plaintext(true)
            .with_token(TOKEN.into()),
    )
    .unwrap();
    let remote = InstanceClient::new(client.clone(), "");
    let spec = Spec {
        init: INIT_SECRET.into(),
        properties: json!({"Password": PASSWORD}),
        ..Default::default()
    };
    remote.provision(spec.clone()).await.unwrap();
    InstanceClient::new(Client::new("instance-remote", server.socket()), "")
        .provision(spec)
        .await
        .unwrap();
    // Bad params echo nothing into the logs either.
    let (_, _, body) = post_tcp(
        addr,
        Some(&format!("Bearer {TOKEN}")),
        &json!({"jsonrpc": "2.0", "method": "Instance.Provision", "params": {"Spec": {"Init": [INIT_SECRET]}}, "id": 2}).to_string(),
    )
    .await;
    assert!(body.contains("-32602"), "{body}");
    let _ = format!("{client:?}");
    server.stop().await;

    let text = logs.text();
    assert!(
        text.contains("infrakit::audit") && text.contains("Instance.Provision"),
        "the audit trail is captured: {text}"
    );
    assert!(
        text.contains("peer=127.0.0.1:"),
        "remote callers are named: {text}"
    );
    for secret in [TOKEN, INIT_SECRET, PASSWORD] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the logs:\n{text}"
        );
    }
    assert!(!format!("{client:?}").contains(TOKEN));
}
