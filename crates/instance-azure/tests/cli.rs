//! End to end through the `infrakit` binary: `infrakit plugin start instance-azure` (this
//! crate's binary, found beside `infrakit`), the group plugin and the vanilla flavor, committing
//! the examples of docs/plugins/azure.md, against the ARM contract server (or Azure itself, when
//! asked: see `common`).
//!
//! Needs the `infrakit` binary built beside this crate's (`cargo build -p infrakit`, same
//! profile and target directory; `cargo test --workspace` builds both).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use infrakit_arm_contract::ArmOptions;
use infrakit_instance_azure::model::{Disk, NetworkInterface, VirtualMachine};
use infrakit_instance_azure::{COMPUTE_API, DISK_API, NETWORK_API};

use common::Azure;

/// How long a group may take to converge.
const CONVERGE: Duration = Duration::from_secs(180);

/// The `infrakit` binary beside this crate's.
fn infrakit() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_infrakit-instance-azure")).with_file_name("infrakit");
    assert!(
        exe.is_file(),
        "{} is missing: build it first with `cargo build -p infrakit` (same profile and \
         CARGO_TARGET_DIR as the tests)",
        exe.display()
    );
    exe
}

/// A code block of docs/plugins/azure.md in `lang` containing `marker`.
fn doc_block(lang: &str, marker: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/plugins/azure.md");
    let page = std::fs::read_to_string(&path).unwrap();
    page.split(&format!("```{lang}\n"))
        .skip(1)
        .filter_map(|b| b.split("\n```").next())
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("no {lang} block with {marker:?} in docs/plugins/azure.md"))
        .to_string()
        + "\n"
}

/// `text` with `from` replaced by `to`, failing when the page no longer has `from` `times`
/// times.
fn substitute(text: &str, from: &str, to: &str, times: usize) -> String {
    assert_eq!(
        text.matches(from).count(),
        times,
        "the example should contain {from:?} {times} time(s):\n{text}"
    );
    text.replace(from, to)
}

/// The contract server (or Azure), a private infrakit home with the plugins started, and a
/// runtime for the test's own ARM calls.
struct Lab {
    azure: Azure,
    rt: tokio::runtime::Runtime,
    home: tempfile::TempDir,
}

impl Lab {
    fn new(options: ArmOptions) -> Lab {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let azure = rt.block_on(Azure::start(options));
        let lab = Lab {
            azure,
            rt,
            home: tempfile::Builder::new()
                .prefix("infrakit-azure")
                .tempdir()
                .unwrap(),
        };
        lab.ok(&["plugin", "start", "instance-azure"]);
        lab.ok(&["plugin", "start", "group", "flavor-vanilla"]);
        lab
    }

    fn command(&self, args: &[&str]) -> Command {
        let c = &self.azure.config;
        let mut cmd = Command::new(infrakit());
        cmd.args(args)
            .env("INFRAKIT_HOME", self.home.path())
            .env_remove("INFRAKIT_PLUGINS_DIR")
            .env_remove("RUST_LOG")
            .env("INFRAKIT_GROUP_POLL_INTERVAL", "200ms")
            .env("AZURE_SUBSCRIPTION_ID", &c.subscription)
            .env("AZURE_RESOURCE_MANAGER_ENDPOINT", &c.endpoint)
            .env("AZURE_AUTHORITY_HOST", &c.authority_host)
            .env(
                "AZURE_TENANT_ID",
                c.tenant_id.as_deref().unwrap_or_default(),
            )
            .env(
                "AZURE_CLIENT_ID",
                c.client_id.as_deref().unwrap_or_default(),
            )
            .env(
                "AZURE_CLIENT_SECRET",
                c.client_secret.as_deref().unwrap_or_default(),
            )
            .env("INFRAKIT_AZURE_CREDENTIAL", "client-secret")
            .stdin(Stdio::null());
        match &c.ca_file {
            Some(ca) => cmd.env("INFRAKIT_AZURE_CA_FILE", ca),
            None => cmd.env_remove("INFRAKIT_AZURE_CA_FILE"),
        };
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "infrakit {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn describe(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["group", "describe", id, "-o", "json"])).unwrap()
    }

    /// The description, or `None` when `describe` fails (a listing throttled past its timeout).
    fn try_describe(&self, id: &str) -> Option<Value> {
        let out = self.run(&["group", "describe", id, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// The page's example `marker` (`ID: web`, `ID: db`) made to fit the backend.
    fn example(&self, marker: &str) -> String {
        let text = doc_block("yaml", marker);
        let subnet = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/infrakit/providers/Microsoft.Network/virtualNetworks/infrakit/subnets/default";
        let text = substitute(&text, subnet, &self.azure.subnet, 1);
        let text = substitute(
            &text,
            "ResourceGroup: infrakit\n",
            &format!("ResourceGroup: {}\n", self.azure.resource_group),
            1,
        );
        substitute(
            &text,
            "Location: westeurope\n",
            &format!("Location: {}\n", self.azure.location),
            1,
        )
    }

    fn commit(&self, file: &str, spec: &str) {
        let path = self.home.path().join(file);
        std::fs::write(&path, spec).unwrap();
        self.ok(&["group", "commit", path.to_str().unwrap()]);
    }

    /// The group's description once it has converged with `n` healthy current members for
    /// which `also` holds.
    fn converged(&self, id: &str, n: usize, also: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let Some(d) = self.try_describe(id) else {
                assert!(Instant::now() < deadline, "group {id} cannot be described");
                std::thread::sleep(Duration::from_millis(250));
                continue;
            };
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
                && also(&d)
            {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "group {id} did not converge with {n} within {CONVERGE:?}: {d:#}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until `f` holds of group `id`'s description.
    fn until(&self, id: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let d = self.describe(id);
            if f(&d) {
                return d;
            }
            assert!(Instant::now() < deadline, "{what}: {d:#}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn vm(&self, name: &str) -> Option<VirtualMachine> {
        let arm = self.azure.arm();
        let id = self
            .azure
            .resource_id("Microsoft.Compute/virtualMachines", name);
        self.rt.block_on(arm.get(&id, COMPUTE_API, &[])).unwrap()
    }

    /// Deletes VM `name` as someone in the portal would, and waits until it is gone.
    fn delete_behind_its_back(&self, name: &str) {
        let arm = self.azure.arm();
        let id = self
            .azure
            .resource_id("Microsoft.Compute/virtualMachines", name);
        self.rt.block_on(async {
            if let Some(p) = arm.delete(&id, COMPUTE_API, &[]).await.unwrap() {
                arm.wait("deleting", p, Duration::from_secs(600))
                    .await
                    .unwrap();
            }
        });
    }

    fn destroy(&self, id: &str) {
        self.ok(&["group", "destroy", id]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.run(&["plugin", "stop", "--all"]);
        infrakit_testkit::process::kill_processes_in(self.home.path());
    }
}

/// The VM names of a described group (instance IDs are `<group>/<vm>`).
fn names(d: &Value) -> BTreeSet<String> {
    d["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let id = i["ID"].as_str().unwrap();
            id.split_once('/').unwrap().1.to_string()
        })
        .collect()
}

#[test]
fn cattle_are_kept_healed_rolled_and_bad_specs_destroy_nothing() {
    let lab = Lab::new(ArmOptions::default());
    let web = lab.example("ID: web");
    lab.commit("web.yaml", &web);
    let d = lab.converged("web", 3, |_| true);
    let before = names(&d);
    for name in &before {
        let vm = lab.vm(name).expect("the VM exists");
        assert!(name.starts_with("web-"), "{name}");
        assert_eq!(vm.tags["tier"], "web");
        assert_eq!(vm.tags["infrakit.group"], "web");
    }

    // Deleted behind its back: replaced, the others untouched.
    let victim = before.iter().next().unwrap().clone();
    lab.delete_behind_its_back(&victim);
    let d = lab.converged("web", 3, |d| !names(d).contains(&victim));
    let healed = names(&d);
    assert_eq!(
        before.intersection(&healed).count(),
        2,
        "{before:?} -> {healed:?}"
    );

    // A bad image and a bad subnet: the group says why, nothing is destroyed.
    let broken = substitute(&web, "ID: web", "ID: broken", 1);
    let broken = substitute(&broken, "Publisher: Canonical", "Publisher: Nobody", 1);
    lab.commit("broken.yaml", &broken);
    lab.until("broken", "the bad image shows", |d| {
        d.to_string().contains("PlatformImageNotFound")
    });
    let mut subnet = lab.azure.subnet.clone();
    subnet.push_str("-missing");
    let unreachable = substitute(&web, "ID: web", "ID: broken", 1);
    let unreachable = substitute(&unreachable, &lab.azure.subnet, &subnet, 1);
    lab.commit("broken.yaml", &unreachable);
    lab.until("broken", "the bad subnet shows", |d| {
        d.to_string().contains("InvalidResourceReference")
    });
    assert_eq!(names(&lab.describe("web")), healed, "web untouched");
    lab.destroy("broken");

    // A size rollout replaces every VM.
    let resized = substitute(
        &web,
        "VMSize: Standard_B1s",
        &format!("VMSize: {}", lab.azure.other_vm_size()),
        1,
    );
    lab.commit("web.yaml", &resized);
    let d = lab.converged("web", 3, |d| names(d).is_disjoint(&healed));
    for name in names(&d) {
        let vm = lab.vm(&name).unwrap();
        assert_eq!(
            vm.properties.hardware_profile.unwrap().vm_size,
            lab.azure.other_vm_size()
        );
    }
    for name in &healed {
        assert!(lab.vm(name).is_none(), "{name} was replaced and deleted");
    }
    lab.destroy("web");
    for name in names(&d) {
        assert!(lab.vm(&name).is_none(), "{name} deleted with its group");
    }
}

#[test]
fn pets_keep_their_addresses_and_disks() {
    let lab = Lab::new(ArmOptions::default());
    let arm = lab.azure.arm();
    let ips = ["10.0.1.10", "10.0.1.11"];
    // The page's disks, made with ARM's API as `az disk create` does.
    for ip in ips {
        let name = format!("data-{ip}");
        let id = lab.azure.resource_id("Microsoft.Compute/disks", &name);
        lab.rt.block_on(async {
            let (_, pending): (Value, _) = arm
                .put(
                    &id,
                    DISK_API,
                    &json!({
                        "location": lab.azure.location,
                        "sku": {"name": "Standard_LRS"},
                        "tags": {"infrakit.disk": name},
                        "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 8},
                    }),
                )
                .await
                .unwrap();
            if let Some(p) = pending {
                arm.wait("creating a disk", p, Duration::from_secs(300))
                    .await
                    .unwrap();
            }
        });
    }
    let check = |round: &str| {
        for ip in ips {
            let nic: NetworkInterface =
                lab.rt
                    .block_on(arm.get(
                        &lab.azure.resource_id(
                            "Microsoft.Network/networkInterfaces",
                            &format!("{ip}-nic"),
                        ),
                        NETWORK_API,
                        &[],
                    ))
                    .unwrap()
                    .expect("the pet's NIC");
            assert_eq!(
                nic.properties.ip_configurations[0]
                    .properties
                    .private_ip_address
                    .as_deref(),
                Some(ip),
                "{round}"
            );
            let disk: Disk = lab
                .rt
                .block_on(
                    arm.get(
                        &lab.azure
                            .resource_id("Microsoft.Compute/disks", &format!("data-{ip}")),
                        DISK_API,
                        &[],
                    ),
                )
                .unwrap()
                .expect("the pet's disk");
            assert!(
                disk.managed_by
                    .as_deref()
                    .unwrap_or("")
                    .ends_with(&format!("/{ip}")),
                "{round}: data-{ip} is attached to {ip}: {disk:?}"
            );
        }
    };
    lab.commit("db.yaml", &lab.example("ID: db"));
    let created = |_: &Value| {
        ips.iter().all(|ip| {
            lab.vm(ip)
                .is_some_and(|vm| vm.properties.provisioning_state.as_deref() == Some("Succeeded"))
        })
    };
    let d = lab.converged("db", 2, created);
    assert_eq!(names(&d), ips.map(String::from).into());
    check("first");

    let old = lab.vm("10.0.1.10").unwrap().properties.vm_id;
    lab.delete_behind_its_back("10.0.1.10");
    let d = lab.converged("db", 2, |_| {
        lab.vm("10.0.1.10").is_some_and(|vm| {
            vm.properties.vm_id != old
                && vm.properties.provisioning_state.as_deref() == Some("Succeeded")
        })
    });
    assert_eq!(names(&d), ips.map(String::from).into());
    check("after the replacement");
    lab.destroy("db");
}

#[test]
fn throttling_slows_a_scale_up_of_twenty_but_does_not_fail_it() {
    let lab = Lab::new(ArmOptions {
        page_size: 50,
        ..ArmOptions::default()
    });
    let Some(server) = &lab.azure.server else {
        eprintln!("staging throttling needs the contract server");
        return;
    };
    let web = lab.example("ID: web");
    lab.commit("web.yaml", &web);
    lab.converged("web", 3, |_| true);
    lab.ok(&["group", "scale", "web", "20"]);
    // The next 25 requests to ARM (the new VMs' and the group's listings) are throttled.
    server.throttle(25, 1);
    lab.converged("web", 20, |_| true);
    let throttled = server.requests().iter().filter(|r| r.status == 429).count();
    assert_eq!(throttled, 25, "every throttled request was retried");
    lab.destroy("web");
}

#[test]
fn the_plugin_refuses_to_start_without_a_subscription() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_infrakit-instance-azure"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("INFRAKIT_HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no subscription"), "{err}");
}
