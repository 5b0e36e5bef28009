//! The operator's listener against a real group of local processes: `/metrics` parses as
//! Prometheus text and agrees with `DescribeGroup`, and the dashboard, driven in headless
//! Chromium through WebDriver (chromedriver), shows the group and follows a SIGKILL of one of
//! its processes without reloading.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/test.sh` installs them).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::{ControllerConfig, GroupPlugin};
use infrakit_http::{HttpServer, Options, Sources};
use infrakit_instance_process::ProcessPlugin;
use infrakit_rpc::Plugins;
use infrakit_spi::Group;
use infrakit_testkit::process::kill_processes_in;
use infrakit_testkit::{eventually, free_port, group, ProcessDir, ProcessGroup};

const WITHIN: Duration = Duration::from_secs(30);

/// A group of `size` `sleep` processes under an in-process controller, and the listener.
struct Fixture {
    process: Arc<ProcessPlugin>,
    group: Arc<GroupPlugin>,
    http: HttpServer,
    /// The process plugin's directory. The plugin leaves its instances running when dropped
    /// (by design); dropping this kills every process working in the directory, so that a
    /// failing test leaves no `sleep` behind. Dropped last, after the controller.
    _dir: ProcessDir,
}

impl Fixture {
    async fn start(id: &str, size: usize) -> Fixture {
        let dir = ProcessDir::new();
        let process = Arc::new(ProcessPlugin::open(dir.path().join("process")).unwrap());
        let plugins = Arc::new(Plugins::new(dir.path().join("plugins")));
        plugins.register_instance("instance-process", process.clone());
        plugins.register_publisher("instance-process", process.clone());
        plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
        let config = ControllerConfig {
            poll_interval: Duration::from_millis(300),
            ..ControllerConfig::default()
        };
        let group = Arc::new(GroupPlugin::new(plugins, config));
        group
            .commit_group(
                group::spec(id)
                    .size(size)
                    .instance("instance-process", json!({"Cmd": "sleep", "Args": ["300"]}))
                    .flavor("flavor-vanilla", serde_json::Value::Null)
                    .build(),
                false,
            )
            .await
            .unwrap();
        let http = HttpServer::start(
            "127.0.0.1:0",
            Sources {
                groups: group.clone(),
                events: group.clone(),
                telemetry: group.telemetry().clone(),
            },
            Options::default(),
        )
        .await
        .unwrap();
        Fixture {
            process,
            group,
            http,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http.addr())
    }

    async fn converged(&self, id: &str, size: usize) -> Vec<String> {
        let healthy = |d: &infrakit_spi::GroupDescription| {
            d.status.as_ref().map(|s| s.healthy).unwrap_or(0) == size
        };
        group::converged_where(
            &*self.group,
            id,
            size,
            WITHIN,
            "every member healthy",
            healthy,
        )
        .await
        .instances
        .into_iter()
        .map(|i| i.id)
        .collect()
    }
}

/// One HTTP/1.0 request to the listener: status code and body.
async fn request(f: &Fixture, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(f.http.addr()).await.unwrap();
    conn.write_all(format!("{method} {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_match_describe() {
    let f = Fixture::start("metrics", 2).await;
    f.converged("metrics", 2).await;
    // Gauges are written at the end of each reconcile: wait for one that saw it converged.
    let text = eventually("metrics of the converged group", WITHIN, || async {
        let (code, body) = request(&f, "GET", "/metrics").await;
        assert_eq!(code, 200);
        body.contains("infrakit_group_healthy_instances{group=\"metrics\"} 2")
            .then_some(body)
    })
    .await;
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    let gauge = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("group") == Some("metrics"))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{name} is not a gauge: {other:?}"),
            })
            .unwrap_or_else(|| panic!("no {name} for the group in:\n{text}"))
    };
    let d = f.group.describe_group("metrics").await.unwrap();
    let status = d.status.unwrap();
    assert_eq!(
        gauge("infrakit_group_desired_instances"),
        status.desired as f64
    );
    assert_eq!(gauge("infrakit_group_instances"), d.instances.len() as f64);
    assert_eq!(
        gauge("infrakit_group_healthy_instances"),
        status.healthy as f64
    );
    assert!(
        scrape.samples.iter().any(|s| s
            .metric
            .starts_with("infrakit_plugin_call_duration_seconds")
            && matches!(
                s.labels.get("method"),
                Some("Instance.Provision" | "InstanceBatch.Provision")
            )),
        "plugin call latencies are exported:\n{text}"
    );
    assert!(text.contains("infrakit_reconcile_duration_seconds_count{group=\"metrics\"}"));

    // The read-only listener refuses actions.
    let (code, _) = request(&f, "POST", "/api/groups/metrics/scale?size=5").await;
    assert_eq!(code, 403);
    assert_eq!(f.group.size("metrics").await.unwrap(), 2);
    f.group.destroy_group("metrics").await.unwrap();
    f.http.stop().await;
}

/// chromedriver on a reserved port, with the WebDriver session it serves. On drop the session
/// is deleted, then chromedriver is killed with its process group (Chromium included), and any
/// Chromium process left working on the profile directory.
struct Driver {
    process: ProcessGroup,
    port: u16,
    profile: tempfile::TempDir,
    session: Option<Client>,
}

impl Driver {
    fn start() -> Driver {
        for tool in ["/usr/bin/chromedriver", "/usr/bin/chromium"] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: install Debian's chromium and chromium-driver (scripts/test.sh does)"
            );
        }
        let port = free_port();
        let process = ProcessGroup::spawn(
            Command::new("/usr/bin/chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("chromedriver starts");
        Driver {
            process,
            port,
            profile: tempfile::tempdir().unwrap(),
            session: None,
        }
    }

    /// A new session, deleted when the driver is dropped (unless [`Driver::close`] did).
    async fn client(&mut self) -> Client {
        let caps = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,800",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ],
            }
        });
        let caps = caps.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{}", self.port);
        let client = eventually("chromedriver to accept a session", WITHIN, || {
            let caps = caps.clone();
            let url = url.clone();
            async move {
                ClientBuilder::native()
                    .capabilities(caps)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await;
        self.session = Some(client.clone());
        client
    }

    /// Deletes the session.
    async fn close(&mut self) {
        if let Some(client) = self.session.take() {
            client
                .close()
                .await
                .expect("the WebDriver session is deleted");
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A test that failed left its session open: delete it while chromedriver still runs
        // (this needs the tests' multi-threaded runtime).
        if let Some(client) = self.session.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                    tokio::task::block_in_place(|| {
                        rt.block_on(async {
                            let _ = tokio::time::timeout(WITHIN, client.close()).await;
                        })
                    });
                }
            }
        }
        self.process.kill();
        kill_processes_in(self.profile.path());
    }
}

async fn text_of(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_follows_a_killed_instance_without_reloading() {
    let f = Fixture::start("web", 3).await;
    let before = f.converged("web", 3).await;
    let mut driver = Driver::start();
    let c = driver.client().await;
    c.goto(&f.url("/")).await.unwrap();

    let actual = "section[data-group='web'] [data-field='actual']";
    eventually("the dashboard to show 3 instances", WITHIN, || async {
        (text_of(&c, actual).await.as_deref() == Some("3")).then_some(())
    })
    .await;
    for id in &before {
        c.find(Locator::Css(&format!("tr[data-instance='{id}']")))
            .await
            .unwrap_or_else(|_| panic!("instance {id} is listed"));
    }
    // A mark that a reload would wipe out.
    c.execute("window.__kept = 'same page'; return null;", vec![])
        .await
        .unwrap();

    let victim = before[0].clone();
    let pid = f.process.pid(&victim).expect("the instance has a process");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    eventually(
        "the dashboard to drop the killed instance and show its replacement",
        WITHIN,
        || async {
            let gone = c
                .find(Locator::Css(&format!("tr[data-instance='{victim}']")))
                .await
                .is_err();
            let rows = c
                .find_all(Locator::Css("section[data-group='web'] tbody tr"))
                .await
                .ok()?;
            let healthy = text_of(&c, "section[data-group='web'] [data-field='healthy']").await;
            (gone && rows.len() == 3 && healthy.as_deref() == Some("3")).then_some(())
        },
    )
    .await;
    let kept = c
        .execute("return window.__kept || null;", vec![])
        .await
        .unwrap();
    assert_eq!(kept, json!("same page"), "the page was not reloaded");
    let events = text_of(&c, "#events").await.unwrap_or_default();
    assert!(
        events.contains(&victim),
        "the event list mentions the killed instance: {events}"
    );

    let png = c.screenshot().await.unwrap();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&out, png).unwrap();
    driver.close().await;
    f.group.destroy_group("web").await.unwrap();
    f.http.stop().await;
}
