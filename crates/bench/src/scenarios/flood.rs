//! `flood`: plugins keep serving and the group keeps healing while thousands of connections are
//! held open on them, as a hostile or broken neighbour would.
//!
//! One deployment as users run it (group plugin, `instance-process`, `flavor-vanilla`, each its
//! own process; see [`crate::deployment`]), plus a manager `mgr` started with `infrakit manager
//! start` and a TLS listener that requires a token. Two floods, one after the other:
//!
//! 1. **Unix socket**: 5,000 connections (`--flood-connections`) to the instance plugin's
//!    socket, the one the group controller needs to heal, each sending a request head that
//!    promises 1,000 bytes of body and one byte of it, then nothing.
//! 2. **TLS listener**: 5,000 TCP connections to the manager's listener from 50 local addresses
//!    (127.0.0.10-59), none starting its TLS handshake.
//!
//! A connection the server closes is opened again a second later, so the flood stays at its
//! size for the whole window. Throughout each window (10 s), every 50 ms a legitimate caller
//! opens a **new** connection and calls (`Instance.DescribeInstances` on the socket; on TCP a new
//! TLS handshake, the token and `Handshake.Hello`): its latency is the sample, and a call that
//! fails counts as a failure. Meanwhile members of a group of 5 are killed with SIGKILL one after
//! the other and the time to a live replacement is measured (see `deployed::heal`). The same
//! calls without a flood give the baseline.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UnixStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

use infrakit_rpc::{dir, Client, ClientTlsConfig, GroupClient, InstanceClient, TcpClientConfig};
use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::{Group, Instance, Method, Tags};

use crate::deployment::{Deployment, InstanceKind};
use crate::fixture;
use crate::measure::ms;
use crate::opts::Opts;
use crate::report::{fmt, Measurement, Target};
use crate::scenarios::cli;
use crate::scenarios::deployed::heal;

const SCENARIO: &str = "flood";
/// Members of each group.
const MEMBERS: usize = 5;
/// A request head promising 1000 bytes of body, and one byte of it.
const STUCK: &[u8] =
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
/// How often the legitimate caller calls.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// How long a legitimate call may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Local addresses the TCP flood comes from.
const FLOOD_ADDRESSES: u8 = 50;

/// What a window of legitimate calls saw.
struct Probed {
    latencies_ms: Vec<f64>,
    failures: usize,
}

/// A flood of connections, held open (and reopened a second after the server closes one)
/// until dropped.
struct Flood {
    tasks: JoinSet<()>,
    opened: Arc<AtomicU64>,
}

impl Flood {
    /// Opens `n` connections with `open` (each task keeps its own open), and returns once each
    /// has been opened once.
    async fn start<F, Fut>(n: usize, open: F) -> Result<Flood>
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = std::io::Result<Box<dyn Held>>> + Send,
    {
        let opened = Arc::new(AtomicU64::new(0));
        let open = Arc::new(open);
        let mut tasks = JoinSet::new();
        for i in 0..n {
            let open = open.clone();
            let opened = opened.clone();
            tasks.spawn(async move {
                loop {
                    // A connection refused at once (or out of ports) is tried again too.
                    if let Ok(mut held) = open(i).await {
                        opened.fetch_add(1, Ordering::Relaxed);
                        held.until_closed().await;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        let flood = Flood { tasks, opened };
        let deadline = Instant::now() + Duration::from_secs(60);
        while flood.opened() < n as u64 {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {n} flood connections opened in 60 s",
                    flood.opened()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(flood)
    }

    /// Connections opened so far, reopenings included.
    fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// A connection held open by the flood.
#[async_trait::async_trait]
trait Held: Send {
    /// Returns when the server closes the connection.
    async fn until_closed(&mut self);
}

#[async_trait::async_trait]
impl<S: tokio::io::AsyncRead + Unpin + Send> Held for S {
    async fn until_closed(&mut self) {
        let mut buf = [0u8; 512];
        while let Ok(n) = self.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    }
}

/// Calls `call` every [`PROBE_EVERY`] for `window`, each on a new connection.
async fn probe<F, Fut>(window: Duration, call: F) -> Probed
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut out = Probed {
        latencies_ms: Vec::new(),
        failures: 0,
    };
    let end = Instant::now() + window;
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < end {
        tick.tick().await;
        let started = Instant::now();
        match tokio::time::timeout(PROBE_TIMEOUT, call()).await {
            Ok(Ok(())) => out.latencies_ms.push(ms(started.elapsed())),
            Ok(Err(e)) => {
                eprintln!("flood: a legitimate call failed: {e:#}");
                out.failures += 1;
            }
            Err(_) => out.failures += 1,
        }
    }
    out
}

/// Raises this process's open files limit to its hard limit (the flood needs thousands).
fn raise_open_files_limit() -> Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(hard)
}

/// A CA and a server certificate for 127.0.0.1, written into `dir`: (ca, cert, key).
fn certificates(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "infrakit-bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])?;
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &ca)?;
    let write = |name: &str, pem: String| -> Result<PathBuf> {
        let p = dir.join(name);
        std::fs::write(&p, pem)?;
        Ok(p)
    };
    Ok((
        write("ca.pem", ca.pem())?,
        write("server.pem", cert.pem())?,
        write("server-key.pem", key.serialize_pem())?,
    ))
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Commits a group of [`MEMBERS`] process members through `client` and waits for it.
async fn converge(client: &GroupClient, id: &str) -> Result<()> {
    client
        .commit_group(InstanceKind::Process.spec(id, MEMBERS, "v1", None), false)
        .await?;
    fixture::wait_converged(
        client,
        id,
        Duration::from_millis(20),
        Duration::from_secs(60),
        |g| g.instances.len() == MEMBERS,
    )
    .await?;
    Ok(())
}

/// The rows of one flood: baseline and flooded call latency, failures, heals, flood churn.
#[allow(clippy::too_many_arguments)]
fn rows(
    what: &str,
    call: &str,
    baseline: &Probed,
    flooded: &Probed,
    heals: &[f64],
    reopened: u64,
    window: Duration,
    quick: bool,
) -> Vec<Measurement> {
    let mut out = vec![
        Measurement::samples(
            SCENARIO,
            format!("{call}, no flood"),
            "ms",
            &baseline.latencies_ms,
        ),
        Measurement::samples(
            SCENARIO,
            format!("{call}, during {what}"),
            "ms",
            &flooded.latencies_ms,
        )
        .target(Target::Below(1_000.0), quick)
        .note(format!(
            "{} failed of {}; the flood reopened {} connections the server closed ({}/s)",
            flooded.failures,
            flooded.latencies_ms.len() + flooded.failures,
            reopened,
            fmt(reopened as f64 / window.as_secs_f64())
        )),
    ];
    if !heals.is_empty() {
        out.push(Measurement::samples(
            SCENARIO,
            format!("during {what}: SIGKILL of a member to its replacement running"),
            "ms",
            heals,
        ));
    }
    out
}

/// While `flood` holds: `call` every [`PROBE_EVERY`] for `window`, and `kills` members of group
/// `id` (served by `group`, on the process plugin `plugin`) killed one after the other. Ends the
/// flood; returns what the calls saw, the heal times, and the connections the flood reopened.
async fn during<F, Fut>(
    flood: Flood,
    window: Duration,
    call: F,
    plugin: &InstanceClient,
    group: &GroupClient,
    id: &str,
    kills: usize,
) -> Result<(Probed, Vec<f64>, u64)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let before = flood.opened();
    let (flooded, heals) = tokio::join!(
        probe(window, call),
        heal::measure_with(plugin, group, id, MEMBERS, kills, Duration::ZERO)
    );
    let reopened = flood.opened() - before;
    drop(flood);
    Ok((flooded, heals?, reopened))
}

/// Runs both floods on one deployment.
async fn run_floods(exe: &Path, opts: &Opts) -> Result<Vec<Measurement>> {
    let quick = opts.quick;
    let n = opts
        .flood_connections
        .unwrap_or(if quick { 500 } else { 5_000 });
    let window = Duration::from_secs(if quick { 2 } else { 10 });
    let kills = if quick { 2 } else { 5 };
    let limit = raise_open_files_limit()?;
    if limit < n as u64 + 1_000 {
        bail!("this process may open {limit} files; the flood needs {n} and more");
    }
    let d = Deployment::start(exe, InstanceKind::Process, Duration::from_secs(1)).await?;
    let mut out = Vec::new();

    // 1. The instance plugin's socket.
    let group = d.group();
    converge(&group, "flood").await?;
    let socket = dir::socket_path(&d.plugins_dir(), InstanceKind::Process.plugin());
    let tags = Tags::from([(GROUP_TAG.to_string(), "flood".to_string())]);
    let describe = || {
        let client = InstanceClient::new(
            Client::new("instance-process", &socket).with_timeout(PROBE_TIMEOUT),
            "",
        );
        let tags = tags.clone();
        async move {
            client.describe_instances(&tags, false).await?;
            Ok(())
        }
    };
    let baseline = probe(window / 2, describe).await;
    let target = socket.clone();
    let flood = Flood::start(n, move |_| {
        let target = target.clone();
        async move {
            let mut s = UnixStream::connect(&target).await?;
            s.write_all(STUCK).await?;
            Ok(Box::new(s) as Box<dyn Held>)
        }
    })
    .await?;
    eprintln!("flood: {n} connections held on the instance plugin's socket");
    let plugin = d.instances();
    let (flooded, heals, reopened) =
        during(flood, window, describe, &plugin, &group, "flood", kills).await?;
    out.extend(rows(
        &format!(
            "{} stuck connections on the instance plugin's socket",
            crate::report::count(n)
        ),
        "DescribeInstances on a new connection",
        &baseline,
        &flooded,
        &heals,
        reopened,
        window,
        quick,
    ));

    // 2. A manager's TLS listener.
    let (ca, cert, key) = certificates(d.home())?;
    let token = "flood-bench-token";
    let token_file = d.home().join("token");
    std::fs::write(&token_file, token)?;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let path = |p: &Path| p.display().to_string();
    d.infrakit(&[
        "manager",
        "--name",
        "mgr",
        "start",
        "--listen",
        &addr.to_string(),
        "--listen-tls-cert",
        &path(&cert),
        "--listen-tls-key",
        &path(&key),
        "--listen-token-file",
        &path(&token_file),
    ])
    .await?;
    let manager = GroupClient::new(Client::new(
        "mgr",
        dir::socket_path(&d.plugins_dir(), "mgr"),
    ));
    converge(&manager, "flood-tls").await?;
    let remote = TcpClientConfig::tls(
        addr.to_string(),
        ClientTlsConfig {
            ca,
            cert: None,
            key: None,
            server_name: None,
        },
    )
    .with_token(token.into());
    let hello = || {
        let client = Client::tcp("mgr", &remote).map(|c| c.with_timeout(PROBE_TIMEOUT));
        async move {
            let _: serde_json::Value = client?.call(Method::HandshakeHello, &json!({})).await?;
            Ok(())
        }
    };
    let baseline = probe(window / 2, hello).await;
    let flood = Flood::start(n, move |i| async move {
        let socket = TcpSocket::new_v4()?;
        let from = IpAddr::from([127, 0, 0, 10 + (i % FLOOD_ADDRESSES as usize) as u8]);
        socket.bind(SocketAddr::new(from, 0))?;
        Ok(Box::new(socket.connect(addr).await?) as Box<dyn Held>)
    })
    .await?;
    eprintln!("flood: {n} unauthenticated connections held on the manager's TLS listener");
    let (flooded, heals, reopened) =
        during(flood, window, hello, &plugin, &manager, "flood-tls", kills).await?;
    out.extend(rows(
        &format!(
            "{} unauthenticated connections on the manager's TLS listener",
            crate::report::count(n)
        ),
        "new TLS connection, token and Hello",
        &baseline,
        &flooded,
        &heals,
        reopened,
        window,
        quick,
    ));
    // The manager's group members go with the deployment's instance plugin.
    manager
        .destroy_group("flood-tls")
        .await
        .context("destroying the manager's group")?;
    d.stop().await?.finish().await?;
    Ok(out)
}

/// Runs the scenario.
pub async fn run(opts: &Opts) -> Result<Vec<Measurement>> {
    let exe = match cli::locate(opts.infrakit.as_deref()) {
        Ok(exe) => exe,
        Err(e) if opts.infrakit.is_none() => {
            eprintln!("flood: skipped: {e:#}");
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    tokio::select! {
        out = run_floods(&exe, opts) => out,
        _ = tokio::signal::ctrl_c() => bail!("flood: interrupted; its processes were killed"),
    }
}
