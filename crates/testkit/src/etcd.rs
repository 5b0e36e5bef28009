//! A real etcd cluster for tests: three members on loopback, data in a temporary directory,
//! killed when dropped. Needs Debian's `etcd-server` (`scripts/test.sh` installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

use crate::ports::free_ports;

/// Where Debian's `etcd-server` package puts etcd.
const ETCD: &str = "/usr/bin/etcd";

struct Member {
    name: String,
    client_url: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("etcd log file");
        let child = Command::new(ETCD)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {ETCD} ({e}); install Debian's etcd-server package")
            });
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running etcd cluster.
pub struct EtcdCluster {
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

fn data_root() -> tempfile::TempDir {
    // Memory-backed when available: etcd fsyncs a lot, and the tests need timely heartbeats.
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new()
        .prefix("infrakit-etcd-")
        .tempdir_in(shm);
    match builder {
        Ok(dir) if shm.is_dir() => dir,
        _ => tempfile::Builder::new()
            .prefix("infrakit-etcd-")
            .tempdir()
            .expect("a temporary directory"),
    }
}

impl EtcdCluster {
    /// Starts a three-member cluster and waits until it is healthy.
    pub async fn start() -> EtcdCluster {
        let n = 3;
        let dir = data_root();
        let ports = free_ports(2 * n);
        let peer = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let initial = (0..n)
            .map(|i| format!("m{i}={}", peer(i)))
            .collect::<Vec<_>>()
            .join(",");
        let token = dir
            .path()
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "infrakit-test".into());
        let members = (0..n)
            .map(|i| {
                let name = format!("m{i}");
                let client_url = format!("http://127.0.0.1:{}", ports[2 * i]);
                let args = vec![
                    format!("--name={name}"),
                    format!("--data-dir={}", dir.path().join(&name).display()),
                    format!("--listen-client-urls={client_url}"),
                    format!("--advertise-client-urls={client_url}"),
                    format!("--listen-peer-urls={}", peer(i)),
                    format!("--initial-advertise-peer-urls={}", peer(i)),
                    format!("--initial-cluster={initial}"),
                    format!("--initial-cluster-token={token}"),
                    "--initial-cluster-state=new".into(),
                    "--heartbeat-interval=100".into(),
                    "--election-timeout=1000".into(),
                    "--logger=zap".into(),
                    "--log-level=warn".into(),
                ];
                Member {
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    client_url,
                    args,
                    child: None,
                }
            })
            .collect();
        let mut cluster = EtcdCluster { members, _dir: dir };
        for m in &mut cluster.members {
            m.spawn();
        }
        cluster.wait_healthy(Duration::from_secs(30)).await;
        cluster
    }

    /// The client URLs of every member, running or not.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Kills member `i` (SIGKILL), keeping its data.
    pub fn stop(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again on its data.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.members[i].spawn();
    }

    /// Waits until every running member has a leader and serves a linearizable read.
    pub async fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            loop {
                if member_healthy(&m.client_url).await {
                    break;
                }
                if Instant::now() > deadline {
                    let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(20).collect();
                    panic!(
                        "etcd member {} ({}) not healthy within {within:?}; log tail:\n{}",
                        m.name,
                        m.client_url,
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn member_healthy(url: &str) -> bool {
    let options = ConnectOptions::new()
        .with_require_leader(true)
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(1));
    let check = async {
        let mut client = Client::connect([url], Some(options)).await.ok()?;
        client.get("health", None).await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Some(_))
    )
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}
