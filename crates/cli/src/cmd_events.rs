//! `infrakit events`: the lifecycle events of groups and managers, as they happen.
//!
//! Without `--follow`, prints the events the group plugin or manager still keeps (the most
//! recent thousand) and exits; with it, goes on printing new ones until Ctrl-C. With `--remote`,
//! from a manager's TCP listener.

use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;

use infrakit_rpc::{dir, events, Client};
use infrakit_spi::Event;

use crate::cli::{EventsArgs, Format};

/// Runs `infrakit events`.
pub async fn run(args: EventsArgs) -> Result<()> {
    // Over TCP with `--remote`, else over the local socket.
    let client = match crate::remote::client(&args.name)? {
        Some(remote) => remote,
        None => Client::new(
            &args.name,
            dir::socket_path(&dir::plugins_dir(), &args.name),
        ),
    };
    let stream = events::subscribe_via(&client, "/", true, Duration::from_secs(5))
        .await
        .with_context(|| format!("subscribing to the events of {}", args.name))?;
    let mut stream = std::pin::pin!(stream);
    let mut out = std::io::stdout().lock();
    while let Some(event) = stream.next().await {
        if event.kind == events::LIVE {
            if !args.follow {
                return Ok(());
            }
            continue;
        }
        if !wanted(&event, args.group.as_deref()) {
            continue;
        }
        print(&mut out, &event, args.output)?;
    }
    anyhow::bail!("{} closed the event stream", args.name)
}

/// Whether `event` is about `group` (every event when no group is given).
fn wanted(event: &Event, group: Option<&str>) -> bool {
    match group {
        None => true,
        Some(g) => event.data.get("Group").and_then(|v| v.as_str()) == Some(g),
    }
}

fn print(out: &mut impl std::io::Write, e: &Event, format: Format) -> Result<()> {
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string(e)?)?,
        Format::Yaml => writeln!(out, "---\n{}", serde_saphyr::to_string(e)?.trim_end())?,
        Format::Table => {
            let field = |k: &str| {
                e.data
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("-")
                    .to_string()
            };
            let subject = if e.topic.starts_with("/manager/") {
                format!("manager {}", field("Manager"))
            } else {
                format!("{} {}", field("Group"), field("Instance"))
            };
            writeln!(
                out,
                "{}  {:<19} {:<28} {}",
                e.timestamp, e.kind, subject, e.message
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn group_filter_matches_the_event_data() {
        let e = Event {
            topic: "/group/provisioned".into(),
            kind: "provisioned".into(),
            data: json!({"Group": "web", "Instance": "i-1"}),
            ..Event::default()
        };
        assert!(wanted(&e, None));
        assert!(wanted(&e, Some("web")));
        assert!(!wanted(&e, Some("db")));
    }

    #[test]
    fn table_lines_name_the_group_and_instance() {
        let e = Event {
            topic: "/group/destroyed".into(),
            kind: "destroyed".into(),
            id: "i-1".into(),
            message: "destroyed i-1 (scale_down)".into(),
            timestamp: "2026-11-27T12:00:00.000Z".into(),
            data: json!({"Group": "web", "Instance": "i-1"}),
        };
        let mut out = Vec::new();
        print(&mut out, &e, Format::Table).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(line.contains("destroyed"), "{line}");
        assert!(line.contains("web i-1"), "{line}");
        assert!(line.ends_with("destroyed i-1 (scale_down)\n"), "{line}");
    }
}
