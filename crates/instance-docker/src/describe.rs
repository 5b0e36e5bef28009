//! `DescribeInstances`: the plugin's live containers that carry the wanted tags (with the tags
//! `Label` added), inspected when their properties are asked for or when the engine's list may
//! lag behind a death seen on the event stream.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummaryStateEnum, HealthStatusEnum,
};
use bollard::query_parameters::ListContainersOptions;
use futures::StreamExt;
use infrakit_spi::instance::{tags_match, Properties, LOGICAL_ID_TAG};
use infrakit_spi::{Description, Error, Result, Tags};
use serde_json::{json, Value};

use crate::options::PLUGIN_LABEL;
use crate::shared::{lock, Shared};

/// How many inspections `DescribeInstances` runs at once.
const INSPECT_CONCURRENCY: usize = 8;

fn live_summary_state(s: Option<&ContainerSummaryStateEnum>) -> bool {
    matches!(
        s,
        Some(
            ContainerSummaryStateEnum::CREATED
                | ContainerSummaryStateEnum::RUNNING
                | ContainerSummaryStateEnum::RESTARTING
        )
    )
}

fn live_state(s: Option<&ContainerStateStatusEnum>) -> bool {
    matches!(
        s,
        Some(
            ContainerStateStatusEnum::CREATED
                | ContainerStateStatusEnum::RUNNING
                | ContainerStateStatusEnum::RESTARTING
        )
    )
}

/// The summary `DescribeInstances` reports as an instance's properties.
fn summary(c: &ContainerInspectResponse) -> Value {
    let state = c.state.as_ref();
    let status = state
        .and_then(|s| s.status.as_ref())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let health = match state
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status.as_ref())
    {
        Some(HealthStatusEnum::HEALTHY) => "healthy",
        Some(HealthStatusEnum::UNHEALTHY) => "unhealthy",
        Some(HealthStatusEnum::STARTING) => "starting",
        _ => "none",
    };
    let networks = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref());
    // Prefer the default bridge's address, then any network's, in name order.
    let ip = networks.and_then(|n| {
        let mut named: Vec<(&String, &bollard::models::EndpointSettings)> = n.iter().collect();
        named.sort_by_key(|(name, _)| (name.as_str() != "bridge", name.as_str()));
        named
            .into_iter()
            .filter_map(|(_, e)| e.ip_address.clone())
            .find(|ip| !ip.is_empty())
    });
    json!({
        "State": status,
        "Health": health,
        "IP": ip.unwrap_or_default(),
        "StartedAt": state.and_then(|s| s.started_at.clone()).unwrap_or_default(),
        "Image": c.config.as_ref().and_then(|cfg| cfg.image.clone()).unwrap_or_default(),
        "Name": c.name.as_deref().unwrap_or_default().trim_start_matches('/'),
        "ContainerID": c.id.clone().unwrap_or_default(),
    })
}

/// One container found by `DescribeInstances`, before inspection.
struct Found {
    id: String,
    name: String,
    tags: Tags,
    /// Listed as running although its `die` was seen: the list may lag; inspect to be sure.
    suspect: bool,
    /// When the engine created the container.
    created: Option<std::time::SystemTime>,
}

impl Found {
    fn describe(self, properties: Option<Value>) -> Description {
        Description {
            logical_id: self.tags.get(LOGICAL_ID_TAG).map(str::to_string),
            id: self.name,
            tags: self.tags,
            properties: properties.as_ref().map(Properties::new),
            created: self.created,
        }
    }
}

/// The plugin's instances that carry every one of `tags`, sorted by ID, with the container's
/// summary as properties when `properties` is set.
pub(crate) async fn describe(
    shared: &Shared,
    tags: &Tags,
    properties: bool,
) -> Result<Vec<Description>> {
    let found = list(shared, tags).await?;
    let inspected: Vec<Option<Description>> = futures::stream::iter(found)
        .map(|f| async move {
            if !(properties || f.suspect) {
                return Ok(Some(f.describe(None)));
            }
            let Some(c) = shared.inspect(&f.id).await? else {
                return Ok(None);
            };
            let state = c.state.as_ref().and_then(|s| s.status.as_ref());
            if !live_state(state) {
                return Ok(None);
            }
            if state == Some(&ContainerStateStatusEnum::RUNNING) && f.suspect {
                // Restarted since (a restart policy): it is alive.
                shared.forget_death(&f.id);
            }
            let props = properties.then(|| summary(&c));
            Ok::<_, Error>(Some(f.describe(props)))
        })
        .buffer_unordered(INSPECT_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let mut out: Vec<Description> = inspected.into_iter().flatten().collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The plugin's live containers, not being provisioned, that carry every one of `tags` (with the
/// tags `Label` added), as the engine lists them.
async fn list(shared: &Shared, tags: &Tags) -> Result<Vec<Found>> {
    let extras = shared.labels.snapshot();
    // Tags that Label may have set cannot be filtered by the engine.
    let relabelled: HashSet<&str> = extras.values().flat_map(|t| t.keys()).collect();
    let mut label_filters = vec![format!("{PLUGIN_LABEL}={}", shared.options.name)];
    label_filters.extend(
        tags.iter()
            .filter(|(k, _)| !relabelled.contains(k))
            .map(|(k, v)| format!("{k}={v}")),
    );
    let list = shared
        .docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_string(), label_filters)])),
            ..Default::default()
        }))
        .await
        .map_err(|e| shared.error("listing containers", e))?;
    let provisioning = lock(&shared.provisioning).clone();
    let mut found = Vec::new();
    for c in list {
        let (Some(id), Some(name)) = (c.id, c.names.and_then(|n| n.into_iter().next())) else {
            continue;
        };
        let name = name.trim_start_matches('/').to_string();
        if !live_summary_state(c.state.as_ref()) || provisioning.contains(&name) {
            continue;
        }
        let mut merged: Tags = c.labels.unwrap_or_default().into_iter().collect();
        if let Some(extra) = extras.get(&id) {
            merged.extend(extra);
        }
        if !tags_match(&merged, tags) {
            continue;
        }
        let suspect =
            c.state == Some(ContainerSummaryStateEnum::RUNNING) && shared.died_recently(&id);
        let created = c
            .created
            .and_then(|secs| u64::try_from(secs).ok())
            .map(|secs| std::time::UNIX_EPOCH + Duration::from_secs(secs));
        found.push(Found {
            id,
            name,
            tags: merged,
            suspect,
            created,
        });
    }
    Ok(found)
}
