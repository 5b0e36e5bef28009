//! `infrakit up` and `infrakit down`: the group controller and every built-in plugin in one
//! foreground process.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use infrakit_manager::Manager;
use infrakit_rpc::{dir, PluginServer, Plugins};
use infrakit_spi::{Group, GroupSpec};

use crate::builtin::{self, EMBEDDED};
use crate::cli::{DownArgs, ManagerRunArgs, PluginOptions, StoreKind, UpArgs};
use crate::cmd_group::{description_lines, live_section, read_spec};
use crate::cmd_manager::{self, RunningManager};
use crate::live::{self, LiveView, Section};
use crate::{guard, io};

/// The built-in plugins and an embedded manager, served from this process.
struct Stack {
    servers: Vec<PluginServer>,
    manager: RunningManager,
}

impl Stack {
    async fn start(opts: &PluginOptions, http: Option<(String, bool)>) -> Result<Stack> {
        const BUSY: &str = "is another `infrakit up` or `infrakit plugin start` running? stop it with `infrakit plugin stop --all`";
        let plugins = Arc::new(Plugins::new(dir::plugins_dir()));
        // Refuse before any plugin opens its state: a running one may be creating instances
        // there right now.
        let names = EMBEDDED.iter().map(|k| k.default_name()).chain(["group"]);
        for name in names {
            let socket = dir::socket_path(plugins.dir(), name);
            if crate::cmd_plugin::answers(&socket).await {
                anyhow::bail!("{name} is already running: {BUSY}");
            }
        }
        let mut servers = Vec::new();
        for kind in EMBEDDED {
            servers.push(
                builtin::serve(*kind, kind.default_name(), opts, &plugins)
                    .await
                    .context(BUSY)?,
            );
        }
        let args = ManagerRunArgs {
            store: StoreKind::Embedded,
            etcd_endpoints: Vec::new(),
            etcd_prefix: String::new(),
            lease_ttl: Duration::from_secs(3),
            http_actions: http.as_ref().is_some_and(|(_, actions)| *actions),
            http: http.map(|(addr, _)| addr),
            listen: Default::default(),
            options: opts.clone(),
        };
        let manager = cmd_manager::start("group", &args, &plugins)
            .await
            .context(BUSY)?;
        if !manager.wait_until_leading(Duration::from_secs(10)).await {
            anyhow::bail!("the embedded manager did not take the lead");
        }
        Ok(Stack { servers, manager })
    }

    fn group(&self) -> &Manager {
        &self.manager.manager
    }

    async fn stop(self) {
        self.manager.stop().await;
        for s in self.servers {
            s.stop().await;
        }
    }
}

fn read_specs(files: &[String]) -> Result<Vec<GroupSpec>> {
    files.iter().map(|f| read_spec(f)).collect()
}

/// Runs `infrakit up`.
pub async fn run(args: UpArgs, log: &str) -> Result<()> {
    let specs = read_specs(&args.specs)?;
    let logs = dir::infrakit_home().join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let log_file = logs.join("up.log");
    let filter = if log == "warn" { "info" } else { log };
    io::init_logging(filter, Some(&log_file));

    let http = args.http.clone().map(|addr| (addr, args.http_actions));
    let stack = Stack::start(&args.options, http).await?;
    // Every spec is checked before any is committed, so a refusal changes nothing.
    for spec in &specs {
        if let Err(e) = guard::refuse_destructive(stack.group(), spec, args.force).await {
            stack.stop().await;
            return Err(e);
        }
    }
    for spec in &specs {
        match stack.group().commit_group(spec.clone(), false).await {
            Ok(details) => outln!("Committed {}: {details}", spec.id),
            Err(e) => {
                stack.stop().await;
                return Err(anyhow::anyhow!("committing {}: {e}", spec.id));
            }
        }
    }
    let interrupt = live::Interrupt::new()?;
    let mut view = (!args.plain && std::io::stdout().is_terminal()).then(LiveView::new);
    let mut last = String::new();
    loop {
        // Every managed group: those committed now and those resumed from earlier runs.
        let ids: Vec<String> = match stack.group().inspect_groups().await {
            Ok(specs) => specs.into_iter().map(|s| s.id).collect(),
            Err(_) => specs.iter().map(|s| s.id.clone()).collect(),
        };
        let mut described = Vec::new();
        for id in &ids {
            described.push((id, stack.group().describe_group(id).await));
        }
        match &mut view {
            Some(view) => {
                let mut sections = vec![Section {
                    key: "header".into(),
                    lines: vec![format!(
                        "infrakit up: {} group(s); Ctrl-C to stop (instances keep running). Log: {}",
                        ids.len(),
                        log_file.display()
                    )],
                    rollout: None,
                }];
                for (id, d) in &described {
                    sections.push(match d {
                        Ok(d) => live_section(id, d),
                        Err(e) => Section {
                            key: id.to_string(),
                            lines: vec![format!("{id}: {e}")],
                            rollout: None,
                        },
                    });
                }
                view.update(&sections);
            }
            None => {
                // One line per group summary change.
                let mut screen = Vec::new();
                for (id, d) in &described {
                    match d {
                        Ok(d) => screen.extend(description_lines(id, d)),
                        Err(e) => screen.push(format!("{id}: {e}")),
                    }
                }
                let text = screen
                    .iter()
                    .filter(|l| ids.iter().any(|id| l.starts_with(&format!("{id}: "))))
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n");
                if text != last {
                    outln!("{text}");
                    last = text;
                }
            }
        }
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    stack.stop().await;
    outln!(
        "\nStopped. The instances keep running: `infrakit up {}` resumes managing them, `infrakit down {}` destroys them.",
        args.specs.join(" "),
        args.specs.join(" ")
    );
    Ok(())
}

/// Runs `infrakit down`: destroys the groups of the given specs, through the running controller
/// when there is one (`infrakit up` in another terminal, or `plugin start group`), else through
/// a controller started for the purpose.
pub async fn down(args: DownArgs) -> Result<()> {
    let specs = read_specs(&args.specs)?;
    let socket = dir::socket_path(&dir::plugins_dir(), "group");
    if crate::cmd_plugin::answers(&socket).await {
        let running = crate::cmd_group::client("group")?;
        return destroy_groups(&running, specs).await;
    }
    let stack = Stack::start(&args.options, None).await?;
    let result = destroy_groups(stack.group(), specs).await;
    stack.stop().await;
    result
}

/// Destroys each spec's group; a group the controller does not watch yet is committed first,
/// so that its instances are found and destroyed too.
async fn destroy_groups(controller: &impl Group, specs: Vec<GroupSpec>) -> Result<()> {
    let watched: Vec<String> = controller
        .inspect_groups()
        .await
        .map_err(|e| anyhow::anyhow!("listing groups: {e}"))?
        .into_iter()
        .map(|s| s.id)
        .collect();
    let mut result = Ok(());
    for spec in specs {
        let id = spec.id.clone();
        let outcome = async {
            if !watched.contains(&id) {
                controller.commit_group(spec, false).await?;
            }
            controller.destroy_group(&id).await
        }
        .await;
        match outcome {
            Ok(()) => outln!("Destroyed {id}"),
            Err(e) => result = Err(anyhow::anyhow!("destroying {id}: {e}")),
        }
    }
    result
}
