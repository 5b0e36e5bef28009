//! `protocol`: the plugin protocol (JSON-RPC over HTTP/1.1 on a Unix socket), server and
//! clients in this process.
//!
//! - `Handshake.Hello` (a no-op) through one client, sequentially (its pool keeps one
//!   connection), and through 16 clients at once (16 connections): calls per second, and the
//!   latency of each call.
//! - `Instance.DescribeInstances` with properties, of 1,000 simulated instances served on a
//!   socket: latency through `InstanceClient` (including decoding), and the size of the response
//!   body on the wire.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tokio::time::Instant;

use infrakit_instance_simulator::Simulator;
use infrakit_rpc::{Client, Handlers, InstanceClient, PluginServer};
use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::{Instance, Method, Spec, Tags};

use crate::measure::{cpu_times, ms};
use crate::opts::Opts;
use crate::report::{fmt, Measurement, Stats, Target};

/// `calls` sequential hellos through `client`; returns each call's latency in microseconds.
async fn hellos(client: &Client, calls: usize) -> Result<Vec<f64>> {
    let mut lat = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        client.hello().await?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(lat)
}

/// One run over `clients` connections of `calls` calls in all: calls per second and latencies.
///
/// The clients run on a runtime of their own, on a thread of their own, as a client process
/// would: the server's runtime does not also schedule them, and every call crosses threads.
fn hello_run(socket: &Path, clients: usize, calls: usize) -> Result<(f64, Vec<f64>)> {
    let socket = socket.to_path_buf();
    let client_side = move || -> Result<(f64, Vec<f64>)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let conns: Vec<Client> = (0..clients)
                .map(|_| Client::new("bench-protocol", &socket))
                .collect();
            // Connect (and warm up) before timing.
            for c in &conns {
                hellos(c, 10).await?;
            }
            let per_client = calls / clients;
            let start = Instant::now();
            let runs = conns.iter().map(|c| hellos(c, per_client));
            let mut lat = Vec::with_capacity(calls);
            for l in futures::future::try_join_all(runs).await? {
                lat.extend(l);
            }
            let wall = start.elapsed().as_secs_f64();
            Ok((lat.len() as f64 / wall, lat))
        })
    };
    std::thread::spawn(client_side)
        .join()
        .map_err(|_| anyhow::anyhow!("the client thread panicked"))?
}

/// The raw response body of one `DescribeInstances` call, for its size on the wire.
async fn raw_describe(socket: &Path, group: &str) -> Result<Bytes> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let body = json!({
        "jsonrpc": "2.0",
        "method": Method::InstanceDescribeInstances.as_str(),
        "params": {"Type": "", "Tags": {GROUP_TAG: group}, "Properties": true},
        "id": 1,
    });
    let req = hyper::Request::post("/")
        .header("Host", "h")
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let resp = sender.send_request(req).await?;
    if !resp.status().is_success() {
        bail!("DescribeInstances answered HTTP {}", resp.status());
    }
    Ok(resp.into_body().collect().await?.to_bytes())
}

/// Runs the scenario.
pub async fn run(opts: &Opts) -> Result<Vec<Measurement>> {
    let (calls, runs, n, describes) = if opts.quick {
        (1_600, 1, 1_000, 20)
    } else {
        (32_000, 5, 1_000, 200)
    };
    let runs = opts.runs.unwrap_or(runs);
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("plugins");
    let sim = Arc::new(Simulator::default());
    let server = PluginServer::start(
        &dir,
        "bench-protocol",
        Handlers::new().instance("", sim.clone()),
    )
    .await?;
    let socket = server.socket().to_path_buf();
    let mut out = Vec::new();

    for clients in [1usize, 16] {
        let mut rates = Vec::new();
        let mut cpu = Vec::new();
        let mut lat = Vec::new();
        let mut kernel = Vec::new();
        for i in 0..runs {
            let sock = socket.clone();
            let (user0, system0) = cpu_times()?;
            let (rate, l) =
                tokio::task::spawn_blocking(move || hello_run(&sock, clients, calls)).await??;
            // Client and server together (warm-up calls included).
            let (user1, system1) = cpu_times()?;
            let per_call = |d: std::time::Duration| ms(d) * 1e3 / (l.len() + 10 * clients) as f64;
            cpu.push(per_call((user1 - user0) + (system1 - system0)));
            kernel.push(per_call(system1 - system0));
            eprintln!(
                "protocol {}, {clients} client(s), run {}/{runs}: {} calls/s",
                Method::HandshakeHello,
                i + 1,
                fmt(rate)
            );
            rates.push(rate);
            lat.extend(l);
        }
        let how = if clients == 1 {
            "1 connection, sequential".to_string()
        } else {
            format!("{clients} concurrent clients")
        };
        out.push(
            Measurement::runs(
                "protocol",
                format!("{}, {how}: throughput", Method::HandshakeHello),
                "calls/s",
                &rates,
            )
            .target(Target::Above(20_000.0), opts.quick),
        );
        out.push(Measurement::samples(
            "protocol",
            format!("{}, {how}: latency", Method::HandshakeHello),
            "µs",
            &lat,
        ));
        out.push(
            Measurement::runs(
                "protocol",
                format!(
                    "{}, {how}: CPU per call, client and server",
                    Method::HandshakeHello
                ),
                "µs",
                &cpu,
            )
            .note(format!(
                "{} µs of it in the kernel",
                fmt(Stats::of_runs(&kernel).median)
            )),
        );
    }

    let group = "bench";
    for _ in 0..n {
        sim.provision(Spec {
            tags: Tags::from([
                (GROUP_TAG.to_string(), group.to_string()),
                (
                    "infrakit.config.hash".to_string(),
                    "rsfonnrfmaykaiytaj26ud5ixjk7m4rd".to_string(),
                ),
            ]),
            ..Spec::default()
        })
        .await?;
    }
    let client = InstanceClient::new(Client::new("bench-protocol", &socket), "");
    let tags = Tags::from([(GROUP_TAG.to_string(), group.to_string())]);
    let mut lat = Vec::new();
    for i in 0..describes + 5 {
        let t = Instant::now();
        let list = client.describe_instances(&tags, true).await?;
        let took = ms(t.elapsed());
        if list.len() != n {
            bail!(
                "DescribeInstances returned {} instances, not {n}",
                list.len()
            );
        }
        if i >= 5 {
            lat.push(took);
        }
    }
    let bytes = raw_describe(&socket, group).await?.len();
    eprintln!(
        "protocol DescribeInstances of {n}: p50 {} ms, {} bytes",
        fmt(Stats::of_samples(&lat).median),
        fmt(bytes as f64)
    );
    out.push(Measurement::samples(
        "protocol",
        format!(
            "{} of {} instances (with properties): latency",
            Method::InstanceDescribeInstances,
            fmt(n as f64)
        ),
        "ms",
        &lat,
    ));
    out.push(
        Measurement::runs(
            "protocol",
            format!(
                "{} of {} instances: response body",
                Method::InstanceDescribeInstances,
                fmt(n as f64)
            ),
            "bytes",
            &[bytes as f64],
        )
        .note(format!(
            "{} bytes per instance",
            fmt(bytes as f64 / n as f64)
        )),
    );
    server.stop().await;
    Ok(out)
}
