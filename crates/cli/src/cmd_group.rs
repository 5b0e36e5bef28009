//! `infrakit group ...`: the Group API from the command line.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use comfy_table::{Cell, Color};
use indicatif::{ProgressBar, ProgressDrawTarget};

use infrakit_rpc::{dir, GroupClient, Plugins};
use infrakit_spi::group::{
    GroupDescription, InstanceStatus, RolloutAction, RolloutPhase, RolloutStatus, Wait,
};
use infrakit_spi::instance::PROTECT_TAG;
use infrakit_spi::{Group, GroupProperties, GroupSpec};

use crate::cli::{Format, GroupArgs, GroupCommand, OutputArgs, RolloutVerb};
use crate::live::{self, LiveView, Section};
use crate::{guard, io, style};

/// How often live views ask for a new description.
const REFRESH: Duration = Duration::from_millis(500);

/// A client of the group plugin called `name`.
pub fn client(name: &str) -> Result<GroupClient> {
    if let Some(remote) = crate::remote::client(name)? {
        return Ok(GroupClient::new(remote));
    }
    let plugins = Plugins::new(dir::plugins_dir());
    let client = plugins.client(name).with_context(|| {
        format!("is the group plugin running? try `infrakit plugin start {name}` or `infrakit up`")
    })?;
    Ok(GroupClient::new(client))
}

/// Reads a group spec file.
pub fn read_spec(file: &str) -> Result<GroupSpec> {
    let doc = io::read_document(file)?;
    let spec: GroupSpec = infrakit_spi::error::decode_at("", &doc)
        .with_context(|| format!("{file} is not a group spec"))?;
    Ok(spec)
}

/// Runs a group command.
pub async fn run(args: GroupArgs) -> Result<()> {
    let g = client(&args.name)?;
    match args.command {
        GroupCommand::Commit {
            file,
            pretend,
            force,
        } => commit(&g, &file, pretend, force).await?,
        GroupCommand::Describe { id, watch, out } => {
            if watch {
                watch_description(&g, &id).await?;
            } else {
                let d = g.describe_group(&id).await?;
                print_description(&id, &d, out.quiet, out.output)?;
            }
        }
        GroupCommand::Rollout { action, id, watch } => rollout(&g, action, &id, watch).await?,
        GroupCommand::Inspect { id, output } => {
            let spec = g
                .inspect_groups()
                .await?
                .into_iter()
                .find(|s| s.id == id)
                .with_context(|| format!("Group {id} is not being watched"))?;
            io::print_value(&spec, output)?;
        }
        GroupCommand::Free { id } => {
            g.free_group(&id).await?;
            outln!("Freed {id}");
        }
        GroupCommand::Destroy { id } => {
            g.destroy_group(&id).await?;
            outln!("Destroyed {id}");
        }
        GroupCommand::Ls { out } => ls(&g, &out).await?,
        GroupCommand::Scale { id, size } => {
            let current = g.size(&id).await?;
            match size {
                None => outln!("Group {id} at {current} instances"),
                Some(n) => {
                    g.set_size(&id, n).await?;
                    outln!("Group {id} at {current} instances, scale to {n}");
                }
            }
        }
        GroupCommand::DestroyInstance { id, instances } => {
            if instances.is_empty() {
                bail!("name the instances to destroy");
            }
            g.destroy_instances(&id, &instances).await?;
            for i in &instances {
                outln!("Destroyed {i}");
            }
        }
    }
    Ok(())
}

/// `group commit`: commits the spec in `file`, unless it would destroy instances without
/// `force`; with `pretend`, only says what committing would do.
async fn commit(g: &GroupClient, file: &str, pretend: bool, force: bool) -> Result<()> {
    let spec = read_spec(file)?;
    let id = spec.id.clone();
    let destruction = guard::assess_commit(g, &spec).await?;
    if let (Some(d), false, false) = (&destruction, pretend, force) {
        bail!(d.refusal());
    }
    if !pretend {
        let details = g.commit_group(spec, false).await?;
        outln!("Committed {id}: {details}");
        return Ok(());
    }
    let details = g.commit_group(spec.clone(), true).await?;
    outln!("Committing {id} would involve: {details}");
    // infrakit's group plugin also explains the plan step by step.
    if let Ok(plan) = g.plan_group(spec).await {
        for step in &plan.steps {
            outln!("  {step}");
        }
        outln!(
            "  lowest number of healthy instances during the change: {}; most instances at once: {}",
            plan.min_healthy, plan.max_instances
        );
    }
    if let Some(d) = &destruction {
        outln!("  {}", d.warning());
    }
    Ok(())
}

/// `group rollout`: pauses, resumes or undoes group `id`'s rollout, then shows it (until
/// Ctrl-C with `watch`).
async fn rollout(g: &GroupClient, action: RolloutVerb, id: &str, watch: bool) -> Result<()> {
    let verb = match action {
        RolloutVerb::Status => None,
        RolloutVerb::Pause => Some(RolloutAction::Pause),
        RolloutVerb::Resume => Some(RolloutAction::Resume),
        RolloutVerb::Undo => Some(RolloutAction::Undo),
    };
    if let Some(verb) = verb {
        g.rollout(id, verb).await?;
        let done = match verb {
            RolloutAction::Pause => "paused",
            RolloutAction::Resume => "resumed",
            RolloutAction::Undo => "undone: going back to the previous configuration",
        };
        outln!("Rollout of {id} {done}");
    }
    if watch {
        watch_rollout(g, id).await?;
    } else {
        let d = g.describe_group(id).await?;
        outln!("{}", rollout_line(id, &d));
    }
    Ok(())
}

/// `group ls`: the watched groups, with their size and plugins in a table.
async fn ls(g: &GroupClient, out: &OutputArgs) -> Result<()> {
    let groups = g.inspect_groups().await?;
    if out.quiet {
        for s in &groups {
            outln!("{}", s.id);
        }
    } else if out.output != Format::Table {
        io::print_value(&groups, out.output)?;
    } else {
        let mut t = io::table(&["ID", "SIZE", "INSTANCE", "FLAVOR"]);
        for s in &groups {
            let (size, inst, flav) = match GroupProperties::parse(s) {
                Ok(p) => (
                    p.allocation.desired().to_string(),
                    p.instance.plugin,
                    p.flavor.plugin,
                ),
                Err(_) => ("?".into(), "?".into(), "?".into()),
            };
            t.add_row(vec![s.id.clone(), size, inst, flav]);
        }
        io::print_table(&t);
    }
    Ok(())
}

/// One line about a group's rollout: phase, progress bar, reason.
pub fn rollout_line(id: &str, d: &GroupDescription) -> String {
    let Some(r) = d.status.as_ref().and_then(|s| s.rollout.as_ref()) else {
        return format!("{id}: no rollout since the group was committed");
    };
    let width = 20;
    let filled = (r.updated.min(r.total) * width)
        .checked_div(r.total)
        .unwrap_or(width);
    let bar: String = "#".repeat(filled) + &".".repeat(width - filled);
    let mut line = format!(
        "{id}: rollout {} [{bar}] {}/{} updated",
        r.phase, r.updated, r.total
    );
    if !r.reason.is_empty() {
        line.push_str(&format!(" ({})", r.reason));
    }
    line
}

/// Shows a group's description until Ctrl-C: redrawn in place on a terminal (with a progress
/// bar while a rollout is under way), else printed again whenever it changes.
async fn watch_description(g: &GroupClient, id: &str) -> Result<()> {
    let interrupt = live::Interrupt::new()?;
    let mut view = std::io::stdout().is_terminal().then(LiveView::new);
    let mut last = String::new();
    loop {
        let described = g.describe_group(id).await;
        match &mut view {
            Some(view) => view.update(&[match &described {
                Ok(d) => live_section(id, d),
                Err(e) => Section {
                    key: id.to_string(),
                    lines: vec![format!("{id}: {e}")],
                    rollout: None,
                },
            }]),
            None => {
                let text = match &described {
                    Ok(d) => description_lines(id, d).join("\n"),
                    Err(e) => format!("{id}: {e}"),
                };
                if text != last {
                    outln!("{text}\n");
                    last = text;
                }
            }
        }
        tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            _ = tokio::time::sleep(REFRESH) => {}
        }
    }
}

/// A group's block in a live view: its table and summary, and its rollout while under way.
pub fn live_section(id: &str, d: &GroupDescription) -> Section {
    Section {
        key: id.to_string(),
        lines: table_and_summary(id, d),
        rollout: rollout_of(d).filter(|r| live::in_progress(r)).cloned(),
    }
}

fn rollout_of(d: &GroupDescription) -> Option<&RolloutStatus> {
    d.status.as_ref().and_then(|s| s.rollout.as_ref())
}

/// How a watched rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutOutcome {
    /// Finished (or there is none): the watch ends successfully.
    Done,
    /// Failed or rolled back: the watch ends with this error.
    Failed(String),
    /// Still under way, or paused by an operator or a partition: keep watching.
    Waiting,
}

/// When `rollout status --watch` stops, given the group's rollout.
pub fn rollout_outcome(id: &str, r: Option<&RolloutStatus>) -> RolloutOutcome {
    let Some(r) = r else {
        return RolloutOutcome::Done;
    };
    if r.phase == RolloutPhase::Complete {
        return RolloutOutcome::Done;
    }
    match r.pause() {
        Some(pause) if r.failed() => {
            RolloutOutcome::Failed(format!("the rollout of {id} is paused: {pause}"))
        }
        None if r.failed() => RolloutOutcome::Failed(format!(
            "the rollout of {id} {}{}",
            r.phase,
            if r.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.reason)
            }
        )),
        _ => RolloutOutcome::Waiting,
    }
}

/// Follows a rollout until it completes (exit 0), fails or rolls back (exit 1), or Ctrl-C: a
/// progress bar on a terminal, else a line per change.
async fn watch_rollout(g: &GroupClient, id: &str) -> Result<()> {
    let interrupt = live::Interrupt::new()?;
    let bar = std::io::stdout().is_terminal().then(|| {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout());
        bar.set_style(live::rollout_style(false));
        bar
    });
    let mut last = String::new();
    loop {
        let d = g.describe_group(id).await?;
        let rollout = rollout_of(&d);
        match (&bar, rollout) {
            (Some(bar), Some(r)) => live::set_rollout(bar, id, r),
            _ => {
                let line = rollout_line(id, &d);
                if line != last {
                    match &bar {
                        Some(bar) => bar.println(&line),
                        None => outln!("{line}"),
                    }
                    last = line;
                }
            }
        }
        match rollout_outcome(id, rollout) {
            RolloutOutcome::Done => {
                if let Some(bar) = &bar {
                    bar.finish();
                }
                return Ok(());
            }
            RolloutOutcome::Failed(why) => {
                if let Some(bar) = &bar {
                    bar.abandon();
                }
                bail!(why);
            }
            RolloutOutcome::Waiting => {}
        }
        tokio::select! {
            _ = interrupt.recv() => {
                if let Some(bar) = &bar {
                    bar.abandon();
                }
                return Ok(());
            }
            _ = tokio::time::sleep(REFRESH) => {}
        }
    }
}

/// Prints a group description as a table (or IDs, JSON, YAML).
pub fn print_description(
    id: &str,
    d: &GroupDescription,
    quiet: bool,
    format: Format,
) -> Result<()> {
    if quiet {
        for i in &d.instances {
            outln!("{}", i.id);
        }
        return Ok(());
    }
    if format != Format::Table {
        // Provider properties may hold credentials or user data: never shown.
        let mut shown = d.clone();
        for i in &mut shown.instances {
            i.properties = i
                .properties
                .as_ref()
                .map(infrakit_spi::secret::redact_properties);
        }
        return io::print_value(&shown, format);
    }
    for line in description_lines(id, d) {
        outln!("{line}");
    }
    Ok(())
}

/// The table and summary of a group description, and its rollout while one is under way, as
/// lines.
pub fn description_lines(id: &str, d: &GroupDescription) -> Vec<String> {
    let mut lines = table_and_summary(id, d);
    if rollout_of(d).is_some_and(|r| r.phase != RolloutPhase::Complete) {
        lines.push(rollout_line(id, d));
    }
    lines
}

/// What a group waits for, in words, with the command that moves it on where there is one.
pub fn wait_text(wait: &Wait) -> String {
    match wait {
        Wait::AtPartition { .. } | Wait::RolloutPaused { .. } => {
            format!("{wait}; `infrakit group rollout resume` continues")
        }
        _ => wait.to_string(),
    }
}

/// The table of a group's members and the summary line under it.
pub fn table_and_summary(id: &str, d: &GroupDescription) -> Vec<String> {
    let statuses: HashMap<&str, &InstanceStatus> = d
        .status
        .iter()
        .flat_map(|s| s.instances.iter())
        .map(|s| (s.id.as_str(), s))
        .collect();
    let current_hash = d
        .status
        .as_ref()
        .map(|s| s.config_hash.as_str())
        .unwrap_or("");
    let mut t = io::table(&["ID", "LOGICAL", "HEALTH", "CONFIG", "AGE", "TAGS"]);
    for i in &d.instances {
        let st = statuses.get(i.id.as_str());
        let config = match i.config_hash() {
            Some(h) if h == current_hash => "current",
            _ if current_hash.is_empty() => "-",
            _ => "old",
        };
        let tags: infrakit_spi::Tags = i
            .tags
            .iter()
            // infrakit's own bookkeeping tags are shown in other columns or are noise.
            .filter(|(k, _)| !k.starts_with("infrakit.") || *k == PROTECT_TAG)
            .collect();
        let health = st
            .map(|s| s.health.to_string())
            .unwrap_or_else(|| "unknown".into());
        t.add_row(vec![
            Cell::new(&i.id),
            Cell::new(i.logical_id().unwrap_or("-")),
            style::colored(&health, style::health_color(&health)),
            if config == "old" {
                style::colored(config, Color::Yellow)
            } else {
                Cell::new(config)
            },
            Cell::new(
                st.map(|s| io::age(s.age_seconds))
                    .unwrap_or_else(|| "-".into()),
            ),
            Cell::new(io::tags_text(&tags)),
        ]);
    }
    let mut lines = io::table_lines(&t);
    if let Some(s) = &d.status {
        let state = if d.converged {
            style::paint("converged", Color::Green)
        } else {
            match &s.waiting {
                Some(wait) if *wait != Wait::Unknown => wait_text(wait),
                _ => s.message.clone(),
            }
        };
        lines.push(String::new());
        lines.push(format!(
            "{id}: {} desired, {} running, {} healthy; {}",
            s.desired,
            d.instances.len(),
            s.healthy,
            if state.is_empty() {
                "reconciling".into()
            } else {
                state
            }
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(phase: &str, reason: &str) -> RolloutStatus {
        RolloutStatus {
            phase: serde_json::from_value(phase.into()).unwrap(),
            updated: 1,
            total: 3,
            reason: reason.into(),
        }
    }

    #[test]
    fn a_held_rollout_says_how_to_go_on() {
        let held = Wait::AtPartition {
            updated: 1,
            total: 3,
            partition: 1,
            pets: false,
        };
        assert_eq!(
            wait_text(&held),
            "rollout paused at partition: 1 of 3 updated (Partition 1); `infrakit group rollout resume` continues"
        );
        let unhealthy = Wait::NotHealthy { count: 2 };
        assert_eq!(wait_text(&unhealthy), "2 instance(s) not healthy");
    }

    #[test]
    fn rollout_watches_end_when_the_rollout_does() {
        assert_eq!(rollout_outcome("web", None), RolloutOutcome::Done);
        assert_eq!(
            rollout_outcome("web", Some(&rollout("complete", ""))),
            RolloutOutcome::Done
        );
        for waiting in [
            rollout("progressing", ""),
            rollout("rolling back", "rolled back: no progress"),
            rollout("paused", "paused by an operator"),
        ] {
            assert_eq!(
                rollout_outcome("web", Some(&waiting)),
                RolloutOutcome::Waiting
            );
        }
        assert_eq!(
            rollout_outcome(
                "web",
                Some(&rollout("rolled back", "rolled back: no progress"))
            ),
            RolloutOutcome::Failed(
                "the rollout of web rolled back (rolled back: no progress)".into()
            )
        );
        assert!(matches!(
            rollout_outcome("web", Some(&rollout("paused", "rollout failed: deadline"))),
            RolloutOutcome::Failed(m) if m.contains("rollout failed: deadline")
        ));
    }
}
