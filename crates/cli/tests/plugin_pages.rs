//! Every plugin page's example group spec, taken from the page itself and committed through the
//! `infrakit` binary against the plugin's real backend: Docker containers, Terraform resources,
//! Vagrant machines, EC2 instances in a moto server, a ZooKeeper ensemble, processes under a
//! combo flavor, and Docker engines joining a swarm. Each test substitutes only what must differ
//! on a test machine (a directory, ports, IDs of resources it creates), fails when the text it
//! substitutes is no longer on the page, waits for the group to converge with healthy members,
//! checks the backend, destroys the group and checks the backend is empty again.
//!
//! Needs what the plugins' own tests need: a running dockerd and the `docker` CLI, `terraform`,
//! `vagrant`, `moto_server` and the `aws` CLI, Java with Debian's `zookeeper` package, root with
//! `ip`, `nsenter` and `unshare` for the swarm lab, and the binaries `infrakit-instance-aws` and
//! `infrakit-instance-vagrant` built beside `infrakit`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, Home};
use infrakit_testkit::process::is_running as alive;
use serde_json::Value;

/// How long a group may take to converge (engines, JVMs and Vagrant on a busy 2-core machine).
const CONVERGE: Duration = Duration::from_secs(180);
/// How long a destroyed group's resources may take to go.
const GONE: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// The pages.

/// The text of `docs/plugins/<page>.md`.
fn page(page: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/plugins")
        .join(format!("{page}.md"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The code block of `docs/plugins/<page>.md` in language `lang` that contains `marker`.
fn doc_block(page_name: &str, lang: &str, marker: &str) -> String {
    page(page_name)
        .split(&format!("```{lang}\n"))
        .skip(1)
        .filter_map(|b| b.split("\n```").next())
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| {
            panic!("no {lang} block containing {marker:?} in docs/plugins/{page_name}.md")
        })
        .to_string()
        + "\n"
}

/// `text` with every `from` replaced by `to`; fails when the page no longer has `from` exactly
/// `times` times, so the test never runs something other than what the page says.
fn substitute(text: &str, from: &str, to: &str, times: usize) -> String {
    assert_eq!(
        text.matches(from).count(),
        times,
        "the example should contain {from:?} {times} time(s) (the test substitutes it):\n{text}"
    );
    text.replace(from, to)
}

// ---------------------------------------------------------------------------------------------
// Programs.

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// Fails the test with what to install when `program` is not on `PATH`.
fn require(program: &str, install: &str) {
    assert!(on_path(program), "{program} is not on PATH: {install}");
}

/// Runs `cmd`; its standard output on success, `None` on failure.
fn try_output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stdin(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd`, failing the test with its output when it fails; returns its standard output.
fn output(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(program: &str, args: &[&str]) -> String {
    output(Command::new(program).args(args))
}

/// `infrakit <args>` in `home` with extra environment (for the plugins run as programs of their
/// own, which take their settings from it); fails the test when it fails.
fn ok_with_env(home: &Home, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = home.command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    output(&mut cmd)
}

/// A plugin shipped as a program of its own, which `infrakit plugin start` finds beside
/// `infrakit`; the test binary does not build it.
fn require_plugin_program(kind: &str) {
    let exe = Path::new(env!("CARGO_BIN_EXE_infrakit"));
    let program = exe.with_file_name(format!("infrakit-{kind}"));
    assert!(
        program.is_file(),
        "{} is missing: build it first with `cargo build -p infrakit-{kind}` (same profile and \
         CARGO_TARGET_DIR as the tests)",
        program.display()
    );
}

/// Runs `f` when dropped: removes what a test made outside its home, even when it fails.
struct Cleanup<F: FnMut()>(F);

impl<F: FnMut()> Drop for Cleanup<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

// ---------------------------------------------------------------------------------------------
// Groups.

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// `infrakit group describe <id> -o json` once the group is converged with `n` members, all
/// healthy and current.
fn converged(home: &Home, id: &str, n: usize) -> Value {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let d = home.json(&["group", "describe", id, "-o", "json"]);
        let members = d["Status"]["Instances"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if d["Converged"] == true
            && members.len() == n
            && d["Instances"].as_array().map(Vec::len) == Some(n)
            && members
                .iter()
                .all(|m| m["Health"] == 1 && m["Config"] == "current")
        {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "group {id} did not converge with {n} healthy instances within {CONVERGE:?}: {d:#}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The IDs of a described group's instances.
fn ids(d: &Value) -> Vec<String> {
    d["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ID"].as_str().unwrap().to_string())
        .collect()
}

/// Commits `spec` (written into the home as `file`) and returns the group's description once it
/// has converged with `n` healthy instances.
fn commit(home: &Home, file: &str, spec: &str, id: &str, n: usize) -> Value {
    let path = home.write(file, spec);
    home.ok(&["group", "commit", path_str(&path)]);
    converged(home, id, n)
}

// ---------------------------------------------------------------------------------------------
// Docker.

const IMAGE: &str = "infrakit-test/busybox:latest";

/// The test image, busybox on `scratch` as the Docker and Vagrant pages build it, built once per
/// test binary with the `docker` CLI (never pulled: no registry is reachable).
fn busybox_image() -> &'static str {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        require("docker", "install the Docker CLI and run dockerd");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
        )
        .unwrap();
        let busybox = dir.path().join("busybox");
        std::fs::write(&busybox, infrakit_testkit::busybox::static_busybox()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&busybox, std::fs::Permissions::from_mode(0o755)).unwrap();
        run("docker", &["build", "-q", "-t", IMAGE, path_str(dir.path())]);
    });
    IMAGE
}

/// The containers (running or not) carrying every label of `labels`.
fn containers(labels: &[&str]) -> Vec<String> {
    let filters: Vec<String> = labels.iter().map(|l| format!("label={l}")).collect();
    let mut args = vec!["ps", "-a", "--format", "{{.Names}}"];
    for f in &filters {
        args.push("--filter");
        args.push(f);
    }
    run("docker", &args)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Removes the containers carrying every label of `labels`.
fn remove_containers(labels: &[&str]) {
    for c in containers(labels) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &c])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// What `wget` gets from port 8080 inside container `name`.
fn page_in(name: &str) -> Option<String> {
    try_output(Command::new("docker").args([
        "exec",
        name,
        "wget",
        "-qO-",
        "http://127.0.0.1:8080/",
    ]))
}

#[test]
fn docker_page_example() {
    let image = busybox_image();
    let spec = doc_block("instance-docker", "yaml", "ID: docker-web");
    assert!(spec.contains(&format!("image: {image}")));
    let labels = [
        "infrakit.plugin=instance-docker",
        "infrakit.group=docker-web",
    ];
    let _cleanup = Cleanup(|| remove_containers(&labels));
    remove_containers(&labels);

    let home = Home::new();
    home.ok(&[
        "plugin",
        "start",
        "group",
        "instance-docker",
        "flavor-vanilla",
    ]);
    let d = commit(&home, "web.yaml", &spec, "docker-web", 2);

    let names = ids(&d);
    assert_eq!(
        containers(&labels).into_iter().collect::<BTreeSet<_>>(),
        names.iter().cloned().collect::<BTreeSet<_>>()
    );
    for name in &names {
        assert!(name.starts_with("docker-web-"), "{name}");
        let inspect: Value =
            serde_json::from_str(&run("docker", &["inspect", name])).expect("docker inspect");
        let c = &inspect[0];
        assert_eq!(c["State"]["Running"], true, "{c:#}");
        assert_eq!(c["State"]["Health"]["Status"], "healthy", "{c:#}");
        let l = &c["Config"]["Labels"];
        assert_eq!(l["team"], "web");
        assert_eq!(l["tier"], "web");
        assert_eq!(l["infrakit.plugin"], "instance-docker");
        assert_eq!(c["HostConfig"]["Memory"], 64 << 20);
        assert_eq!(
            page_in(name).as_deref(),
            Some(format!("hello from {name}\n").as_str())
        );
    }

    home.ok(&["group", "destroy", "docker-web"]);
    eventually("the group's containers are removed", GONE, || {
        containers(&labels).is_empty().then_some(())
    });
}

// ---------------------------------------------------------------------------------------------
// Terraform.

/// `terraform state list` in `dir`.
fn terraform_state(dir: &Path) -> BTreeSet<String> {
    output(
        Command::new("terraform")
            .args(["state", "list"])
            .env("CHECKPOINT_DISABLE", "1")
            .current_dir(dir),
    )
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_string)
    .collect()
}

#[test]
fn terraform_page_example() {
    require(
        "terraform",
        "install Terraform 1.9 or later (scripts/test.sh does)",
    );
    let home = Home::new();
    let dir = home.path().join("instance-terraform");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.tf.json"),
        doc_block("terraform", "json", "\"network\": {\"input\""),
    )
    .unwrap();
    let spec = doc_block("terraform", "json", "\"ID\": \"web\"");

    home.ok(&[
        "plugin",
        "start",
        "instance-terraform",
        "--dir",
        path_str(&dir),
    ]);
    home.ok(&["plugin", "start", "group", "flavor-vanilla"]);
    let d = commit(&home, "web.json", &spec, "web", 3);

    let names = ids(&d);
    let mut expected: BTreeSet<String> = ["terraform_data.network".to_string()].into();
    for id in &names {
        expected.insert(format!("terraform_data.{id}"));
        expected.insert(format!("terraform_data.{id}-disk"));
    }
    assert_eq!(terraform_state(&dir), expected);
    // Each server's provisioner started its process; the flavor's Init ran once per instance.
    let mut pids = Vec::new();
    for id in &names {
        let pid: i32 = std::fs::read_to_string(dir.join(format!("run/{id}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(alive(pid), "the process of {id} runs");
        pids.push(pid);
    }
    let joined: BTreeSet<String> = std::fs::read_to_string(dir.join("run/joined.log"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        joined,
        names.iter().map(|id| format!("{id} joined web")).collect()
    );

    home.ok(&["group", "destroy", "web"]);
    eventually("only the shared network is left", GONE, || {
        (terraform_state(&dir) == ["terraform_data.network".to_string()].into()).then_some(())
    });
    // The destroy-time provisioners stopped the processes.
    eventually("the servers' processes end", GONE, || {
        pids.iter().all(|p| !alive(*p)).then_some(())
    });
}

// ---------------------------------------------------------------------------------------------
// Vagrant.

#[test]
fn vagrant_page_example() {
    require("vagrant", "install Vagrant (scripts/test.sh does)");
    require_plugin_program("instance-vagrant");
    let image = busybox_image();
    let spec = doc_block("vagrant", "yaml", "ID: vagrant-web");
    assert!(spec.contains(&format!("Image: {image}")));
    let labels = [
        "infrakit.plugin=instance-vagrant",
        "infrakit.group=vagrant-web",
    ];
    let _cleanup = Cleanup(|| remove_containers(&labels));
    remove_containers(&labels);

    let home = Home::new();
    let vagrant_home = home.path().join("vagrant.d");
    let vagrant_env = [
        ("VAGRANT_HOME", path_str(&vagrant_home)),
        ("VAGRANT_CHECKPOINT_DISABLE", "1"),
    ];
    ok_with_env(
        &home,
        &["plugin", "start", "instance-vagrant"],
        &vagrant_env,
    );
    // As the page starts them: `vagrant status` is too slow for a faster poll.
    assert!(doc_block("vagrant", "sh", "infrakit group commit web.yml")
        .contains("infrakit plugin start group flavor-vanilla --poll-interval 5s"));
    home.ok(&[
        "plugin",
        "start",
        "group",
        "flavor-vanilla",
        "--poll-interval",
        "5s",
    ]);
    let d = commit(&home, "web.yml", &spec, "vagrant-web", 2);

    let names = ids(&d);
    assert_eq!(
        containers(&labels).into_iter().collect::<BTreeSet<_>>(),
        names.iter().cloned().collect::<BTreeSet<_>>()
    );
    let machines = home.path().join("instance-vagrant/instances");
    for name in &names {
        // Init runs as the container's command, after Provision returned.
        eventually(&format!("{name} serves its page"), CONVERGE, || {
            (page_in(name)? == format!("hello from {name}\n")).then_some(())
        });
        // Vagrant itself knows the machine (retrying while the plugin holds its lock).
        let status = eventually(&format!("vagrant status of {name}"), GONE, || {
            let mut cmd = Command::new("vagrant");
            cmd.args(["status", "--machine-readable"])
                .current_dir(machines.join(name));
            for (k, v) in vagrant_env {
                cmd.env(k, v);
            }
            try_output(&mut cmd)
        });
        assert!(status.contains(",state,running"), "{status}");
    }

    home.ok(&["group", "destroy", "vagrant-web"]);
    eventually("the machines are destroyed", GONE, || {
        let dirs = std::fs::read_dir(&machines).map(|d| d.count()).unwrap_or(0);
        (containers(&labels).is_empty() && dirs == 0).then_some(())
    });
}

// ---------------------------------------------------------------------------------------------
// AWS, on a moto server.

/// The region and zone the page's example uses.
const AWS_REGION: &str = "eu-west-1";

/// A moto server on a reserved loopback port, validating AMIs as EC2 does; killed when dropped.
struct Moto {
    _server: infrakit_testkit::process::ProcessGroup,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Moto {
    fn start() -> Moto {
        require(
            "moto_server",
            "pip install 'moto[server]' (scripts/test.sh installs it)",
        );
        require("aws", "pip install awscli (the AWS CLI)");
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("moto.log")).unwrap();
        let port = infrakit_testkit::free_port();
        let server = infrakit_testkit::process::ProcessGroup::spawn(
            Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_ENABLE_AMI_VALIDATION", "true")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        )
        .expect("starting moto_server");
        eventually("moto_server listens", Duration::from_secs(60), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        Moto {
            _server: server,
            endpoint: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The environment that points the AWS CLI and the plugin at this server, with dummy keys
    /// and nothing from the machine's own AWS configuration.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", AWS_REGION.into()),
            ("AWS_DEFAULT_REGION", AWS_REGION.into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_CONFIG_FILE", "/nonexistent/aws-config".into()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials".into(),
            ),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    fn configure(&self, cmd: &mut Command) {
        cmd.env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN");
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
    }

    /// `aws <args> --output json`.
    fn aws(&self, args: &[&str]) -> Value {
        let mut cmd = Command::new("aws");
        cmd.args(args).args(["--output", "json"]);
        self.configure(&mut cmd);
        let out = output(&mut cmd);
        if out.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&out).unwrap()
        }
    }

    /// The instances tagged `infrakit.group=<group>` in state pending or running.
    fn live_instances(&self, group: &str) -> Vec<Value> {
        let v = self.aws(&[
            "ec2",
            "describe-instances",
            "--filters",
            &format!("Name=tag:infrakit.group,Values={group}"),
            "Name=instance-state-name,Values=pending,running",
        ]);
        v["Reservations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .flat_map(|r| r["Instances"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

fn tag<'a>(resource: &'a Value, key: &str) -> Option<&'a str> {
    resource["Tags"]
        .as_array()?
        .iter()
        .find(|t| t["Key"] == key)?["Value"]
        .as_str()
}

#[test]
fn aws_page_example() {
    require_plugin_program("instance-aws");
    let moto = Moto::start();

    // What the page's example presumes exists: a VPC with the two subnets in eu-west-1a, their
    // security groups and the database's instance profile.
    let zone = format!("{AWS_REGION}a");
    let vpc = moto.aws(&["ec2", "create-vpc", "--cidr-block", "10.0.0.0/16"])["Vpc"]["VpcId"]
        .as_str()
        .unwrap()
        .to_string();
    let subnet = |cidr: &str| {
        moto.aws(&[
            "ec2",
            "create-subnet",
            "--vpc-id",
            &vpc,
            "--cidr-block",
            cidr,
            "--availability-zone",
            &zone,
        ])["Subnet"]["SubnetId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let security_group = |name: &str| {
        moto.aws(&[
            "ec2",
            "create-security-group",
            "--group-name",
            name,
            "--description",
            name,
            "--vpc-id",
            &vpc,
        ])["GroupId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (db_subnet, web_subnet) = (subnet("10.0.1.0/24"), subnet("10.0.2.0/24"));
    let (db_sg, web_sg) = (security_group("db"), security_group("web"));
    moto.aws(&[
        "iam",
        "create-instance-profile",
        "--instance-profile-name",
        "db",
    ]);
    let ami = moto.aws(&[
        "ec2",
        "describe-images",
        "--owners",
        "amazon",
        "--filters",
        "Name=name,Values=amzn-ami-hvm-*",
    ])["Images"][0]["ImageId"]
        .as_str()
        .expect("moto lists an Amazon Linux AMI")
        .to_string();

    // The page's own commands make the volumes.
    let volumes_script = doc_block("aws", "sh", "aws ec2 create-volume");
    let mut sh = Command::new("sh");
    sh.args(["-ec", &volumes_script]);
    moto.configure(&mut sh);
    output(&mut sh);
    let volumes = moto.aws(&["ec2", "describe-volumes"])["Volumes"]
        .as_array()
        .cloned()
        .unwrap();
    assert_eq!(volumes.len(), 3, "{volumes:#?}");

    // The page's groups; AMI, subnets and security groups are the ones just made.
    let db = doc_block("aws", "yaml", "ID: db");
    let db = substitute(&db, "ami-0123456789abcdef0", &ami, 1);
    let db = substitute(&db, "subnet-0a1b2c3d", &db_subnet, 1);
    let db = substitute(&db, "sg-0db0db0db", &db_sg, 1);
    let web = doc_block("aws", "yaml", "ID: web");
    let web = substitute(&web, "ami-0123456789abcdef0", &ami, 1);
    let web = substitute(&web, "subnet-0e1f2a3b", &web_subnet, 1);
    let web = substitute(&web, "sg-0eb0eb0eb", &web_sg, 1);

    let home = Home::new();
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ok_with_env(&home, &["plugin", "start", "instance-aws"], &env);
    home.ok(&["plugin", "start", "group", "flavor-vanilla"]);
    let d = commit(&home, "db.yaml", &db, "db", 3);
    commit(&home, "web.yaml", &web, "web", 4);

    // Three pets on their addresses, each with its own volume at /dev/sdf.
    let pets = moto.live_instances("db");
    assert_eq!(pets.len(), 3, "{pets:#?}");
    let mut ips = BTreeSet::new();
    for i in &pets {
        let ip = i["PrivateIpAddress"].as_str().unwrap();
        ips.insert(ip.to_string());
        assert_eq!(i["SubnetId"], db_subnet.as_str());
        assert_eq!(i["InstanceType"], "r6g.large");
        assert_eq!(tag(i, "tier"), Some("db"));
        assert_eq!(tag(i, "infrakit.logical_id"), Some(ip));
        let id = i["InstanceId"].as_str().unwrap();
        assert!(ids(&d).iter().any(|m| m == id));
        let attached = moto.aws(&[
            "ec2",
            "describe-volumes",
            "--filters",
            &format!("Name=attachment.instance-id,Values={id}"),
        ]);
        let data: Vec<&Value> = attached["Volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| tag(v, "infrakit.volume").is_some())
            .collect();
        assert_eq!(data.len(), 1, "{attached:#}");
        assert_eq!(
            tag(data[0], "infrakit.volume"),
            Some(format!("db-{ip}").as_str())
        );
        assert_eq!(data[0]["Attachments"][0]["Device"], "/dev/sdf");
    }
    assert_eq!(
        ips,
        ["10.0.1.10", "10.0.1.11", "10.0.1.12"]
            .map(String::from)
            .into()
    );
    let cattle = moto.live_instances("web");
    assert_eq!(cattle.len(), 4, "{cattle:#?}");
    for i in &cattle {
        assert_eq!(i["SubnetId"], web_subnet.as_str());
        assert_eq!(i["InstanceType"], "t3.small");
        assert_eq!(tag(i, "project"), Some("shop"));
        assert_eq!(tag(i, "tier"), Some("web"));
    }

    home.ok(&["group", "destroy", "web"]);
    home.ok(&["group", "destroy", "db"]);
    eventually("every instance is terminated", GONE, || {
        (moto.live_instances("db").is_empty() && moto.live_instances("web").is_empty())
            .then_some(())
    });
    // The volumes stay, free for the next instances.
    let volumes = moto.aws(&[
        "ec2",
        "describe-volumes",
        "--filters",
        "Name=tag-key,Values=infrakit.volume",
    ]);
    let volumes = volumes["Volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 3);
    eventually("the volumes are detached", GONE, || {
        let v = moto.aws(&[
            "ec2",
            "describe-volumes",
            "--filters",
            "Name=tag-key,Values=infrakit.volume",
            "Name=status,Values=available",
        ]);
        (v["Volumes"].as_array()?.len() == 3).then_some(())
    });
}

// ---------------------------------------------------------------------------------------------
// ZooKeeper.

/// ZooKeeper's answer to `srvr` on `port`.
fn srvr(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"srvr").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn zookeeper_page_example() {
    require(
        "java",
        "install Java and Debian's zookeeper package (scripts/test.sh does)",
    );
    assert!(
        Path::new("/usr/share/java/zookeeper.jar").is_file(),
        "install Debian's zookeeper package (scripts/test.sh does)"
    );
    let home = Home::new();
    let data = home.path().join("zookeeper");
    let spec = doc_block("zookeeper", "json", "\"ID\": \"zk\"");
    let mut spec = substitute(&spec, "/var/lib/infrakit-zookeeper", path_str(&data), 1);
    // Ports of this machine's own: the page's are ZooKeeper's defaults.
    let ports = infrakit_testkit::free_ports(9);
    for (i, member) in [
        "127.0.0.1:2181:2888:3888",
        "127.0.0.1:2182:2889:3889",
        "127.0.0.1:2183:2890:3890",
    ]
    .iter()
    .enumerate()
    {
        let p = &ports[i * 3..i * 3 + 3];
        spec = substitute(
            &spec,
            &format!("\"{member}\""),
            &format!("\"127.0.0.1:{}:{}:{}\"", p[0], p[1], p[2]),
            1,
        );
    }
    let clients = [ports[0], ports[3], ports[6]];

    home.ok(&[
        "plugin",
        "start",
        "group",
        "instance-process",
        "flavor-zookeeper",
    ]);
    commit(&home, "zk.json", &spec, "zk", 3);

    // One leader, two followers, each with its own myid.
    let modes: Vec<String> = clients
        .iter()
        .map(|p| {
            let answer = eventually(&format!("member on {p} serves"), CONVERGE, || {
                srvr(*p).filter(|a| a.contains("Mode: "))
            });
            answer
                .lines()
                .find_map(|l| l.strip_prefix("Mode: "))
                .unwrap()
                .to_string()
        })
        .collect();
    let mut sorted = modes.clone();
    sorted.sort();
    assert_eq!(sorted, ["follower", "follower", "leader"], "{modes:?}");
    for n in 1..=3 {
        let myid = std::fs::read_to_string(data.join(format!("{n}/data/myid"))).unwrap();
        assert_eq!(myid.trim(), n.to_string());
    }

    home.ok(&["group", "destroy", "zk"]);
    eventually("no member answers", GONE, || {
        clients.iter().all(|p| srvr(*p).is_none()).then_some(())
    });
}

// ---------------------------------------------------------------------------------------------
// Combo.

#[test]
fn combo_page_example() {
    let home = Home::new();
    let spec = doc_block("combo", "json", "\"ID\": \"web\"");
    home.ok(&[
        "plugin",
        "start",
        "group",
        "instance-process",
        "flavor-vanilla",
        "flavor-combo",
    ]);
    let d = commit(&home, "web.json", &spec, "web", 2);

    let mut pids = Vec::new();
    for i in d["Instances"].as_array().unwrap() {
        assert_eq!(i["Tags"]["tier"], "web", "{i:#}");
        let props = &i["Properties"];
        let dir = PathBuf::from(props["Dir"].as_str().unwrap());
        // The first flavor's Init ran there; the second one's probe found its file.
        assert_eq!(
            std::fs::read_to_string(dir.join("started.txt")).unwrap(),
            "starting\n"
        );
        let pid = props["PID"].as_i64().unwrap() as i32;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            String::from_utf8_lossy(&cmdline).contains("http.server"),
            "{i:#}"
        );
        pids.push(pid);
    }

    home.ok(&["group", "destroy", "web"]);
    eventually("the processes end", GONE, || {
        pids.iter().all(|p| !alive(*p)).then_some(())
    });
    let left = home.json(&[
        "instance",
        "describe",
        "--tags",
        "infrakit.group=web",
        "-o",
        "json",
    ]);
    assert_eq!(left.as_array().map(Vec::len), Some(0), "{left:#}");
}

// ---------------------------------------------------------------------------------------------
// Swarm: engines in network namespaces on a private bridge, as the page's example runs them.

/// The page's private bridge, in a network namespace named after this test process, and the
/// page's launcher pointing at it; removed, with every engine, when dropped.
struct Lab {
    prefix: String,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "the swarm example creates network namespaces and runs dockerd: run it as root"
        );
        for (tool, package) in [
            ("dockerd", "docker.io"),
            ("docker", "docker.io"),
            ("ip", "iproute2"),
            ("nsenter", "util-linux"),
            ("unshare", "util-linux"),
        ] {
            require(tool, &format!("install Debian's {package} package"));
        }
        let lab = Lab {
            prefix: format!("ikpp{}", std::process::id()),
            dir: tempfile::Builder::new().prefix("ikpp").tempdir().unwrap(),
        };
        // The page's bridge, in a namespace of this test's own instead of `swarm-lab`.
        let setup = doc_block("swarm", "sh", "ip netns add swarm-lab");
        for line in setup.lines().take_while(|l| l.starts_with("ip ")) {
            let line = line.replace("swarm-lab", &lab.prefix);
            let words: Vec<&str> = line.split_whitespace().collect();
            run(words[0], &words[1..]);
        }
        assert!(
            lab.namespaces().contains(&lab.prefix),
            "the bridge's namespace exists"
        );
        // The page's launcher, with this lab's directory and namespace.
        let launcher = doc_block("swarm", "sh", "infrakit-engine: runs one Docker engine");
        let launcher = substitute(
            &launcher,
            "LAB=/var/lib/infrakit-swarm-lab\n",
            &format!("LAB={}\n", lab.dir.path().display()),
            1,
        );
        let launcher = substitute(
            &launcher,
            "NET=swarm-lab\n",
            &format!("NET={}\n", lab.prefix),
            1,
        );
        std::fs::write(lab.launcher(), launcher).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(lab.launcher(), std::fs::Permissions::from_mode(0o755)).unwrap();
        lab
    }

    fn launcher(&self) -> PathBuf {
        self.dir.path().join("infrakit-engine")
    }

    fn bootstrap_socket(&self) -> PathBuf {
        self.dir.path().join("bootstrap/docker.sock")
    }

    /// `docker -H <bootstrap manager> <args>`.
    fn docker(&self, args: &[&str]) -> Option<String> {
        let host = format!("unix://{}", self.bootstrap_socket().display());
        try_output(Command::new("docker").args(["-H", &host]).args(args))
    }

    /// The swarm's nodes as `docker node ls` lists them.
    fn nodes(&self) -> Vec<Value> {
        self.docker(&["node", "ls", "--format", "{{json .}}"])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn namespaces(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir("/run/netns") else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| *n == self.prefix || n.starts_with(&format!("{}-", self.prefix)))
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        infrakit_testkit::process::kill_processes_in(self.dir.path());
        for ns in self.namespaces() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

#[test]
fn swarm_page_example() {
    // Dropped last: after the home has ended the group's engines.
    let lab = Lab::new();
    // The page's bootstrap manager: the launcher run by hand, then `swarm init`.
    let bootstrap = doc_block("swarm", "sh", "ip netns add swarm-lab");
    assert!(bootstrap.contains(
        "INFRAKIT_INSTANCE_ID=boot INFRAKIT_LOGICAL_ID=10.213.0.1 nohup infrakit-engine"
    ));
    assert!(bootstrap.contains("swarm init --advertise-addr 10.213.0.1"));
    let boot_dir = lab.dir.path().join("bootstrap");
    std::fs::create_dir_all(&boot_dir).unwrap();
    let log = std::fs::File::create(boot_dir.join("engine.log")).unwrap();
    let _bootstrap = infrakit_testkit::process::ProcessGroup::spawn(
        Command::new(lab.launcher())
            .current_dir(&boot_dir)
            .env("INFRAKIT_INSTANCE_ID", "boot")
            .env("INFRAKIT_LOGICAL_ID", "10.213.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    )
    .unwrap();
    eventually(
        "the bootstrap engine answers",
        Duration::from_secs(60),
        || lab.docker(&["version"]).map(|_| ()),
    );
    lab.docker(&["swarm", "init", "--advertise-addr", "10.213.0.1"])
        .expect("swarm init");

    // The page's groups, with this lab's launcher and bootstrap manager.
    let host = format!("unix://{}", lab.bootstrap_socket().display());
    let documented = |marker: &str| {
        let spec = doc_block("swarm", "json", marker);
        let spec = substitute(
            &spec,
            "\"/usr/local/bin/infrakit-engine\"",
            &format!("\"{}\"", lab.launcher().display()),
            1,
        );
        substitute(
            &spec,
            "\"unix:///var/lib/infrakit-swarm-lab/bootstrap/docker.sock\"",
            &format!("\"{host}\""),
            1,
        )
    };
    let managers = documented("\"ID\": \"swarm-managers\"");
    let workers = documented("\"ID\": \"swarm-workers\"");

    let home = Home::new();
    home.ok(&[
        "plugin",
        "start",
        "group",
        "instance-process",
        "flavor-swarm",
    ]);
    let managers_file = home.write("managers.json", &managers);
    let workers_file = home.write("workers.json", &workers);
    home.ok(&["group", "commit", path_str(&managers_file)]);
    home.ok(&["group", "commit", path_str(&workers_file)]);
    converged(&home, "swarm-managers", 2);
    converged(&home, "swarm-workers", 2);

    // Three managers and two workers, as the page says.
    let nodes = eventually("three managers and two workers", CONVERGE, || {
        let nodes = lab.nodes();
        let managers = nodes
            .iter()
            .filter(|n| n["ManagerStatus"] == "Leader" || n["ManagerStatus"] == "Reachable")
            .count();
        let workers: Vec<String> = nodes
            .iter()
            .filter(|n| n["Status"] == "Ready" && n["ManagerStatus"] == "")
            .map(|n| n["ID"].as_str().unwrap().to_string())
            .collect();
        (nodes.len() == 5 && managers == 3 && workers.len() == 2).then_some(workers)
    });
    for id in &nodes {
        let inspect: Value =
            serde_json::from_str(&lab.docker(&["node", "inspect", id]).unwrap()).unwrap();
        let labels = &inspect[0]["Description"]["Engine"]["Labels"];
        assert_eq!(labels["tier"], "web", "{inspect:#}");
        assert_eq!(labels["infrakit.group"], "swarm-workers", "{inspect:#}");
    }

    home.ok(&["group", "destroy", "swarm-workers"]);
    home.ok(&["group", "destroy", "swarm-managers"]);
    let mut last = Vec::new();
    let left = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually("only the bootstrap manager is left", GONE, || {
            last = lab.nodes();
            (last.len() == 1 && last[0]["ManagerStatus"] == "Leader").then_some(())
        })
    }));
    assert!(left.is_ok(), "nodes left after destroy: {last:#?}");
    drop(home);
}
