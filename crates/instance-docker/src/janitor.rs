//! Clean-up in the background: exited containers of the plugin beyond the newest
//! [`DockerOptions::keep_exited`](crate::DockerOptions::keep_exited) are removed, and the labels
//! of containers that no longer exist forgotten. Woken after deaths and reconnections.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};

use crate::options::PLUGIN_LABEL;
use crate::shared::Shared;

/// Wait before the janitor removes old exited containers, so bursts of deaths are handled once.
const JANITOR_DELAY: Duration = Duration::from_secs(2);

/// Runs until aborted (when the plugin is dropped): one clean-up each time it is woken
/// (`Shared::janitor`), [`JANITOR_DELAY`] later.
pub(crate) async fn janitor(shared: Arc<Shared>) {
    loop {
        shared.janitor.notified().await;
        tokio::time::sleep(JANITOR_DELAY).await;
        clean_up(&shared).await;
    }
}

/// Removes exited containers of the plugin beyond the newest `keep_exited`, and forgets the
/// labels of containers that no longer exist.
async fn clean_up(shared: &Shared) {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{PLUGIN_LABEL}={}", shared.options.name)],
    )]);
    let list = match shared
        .docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(error = %e, "janitor: cannot list containers");
            return;
        }
    };
    let existing: BTreeSet<String> = list.iter().filter_map(|c| c.id.clone()).collect();
    shared.labels.retain(&existing);
    let mut dead: Vec<_> = list
        .into_iter()
        .filter(|c| {
            matches!(
                c.state,
                Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD)
            )
        })
        .collect();
    dead.sort_by_key(|c| std::cmp::Reverse(c.created.unwrap_or(0)));
    for c in dead.into_iter().skip(shared.options.keep_exited) {
        let Some(id) = c.id else { continue };
        let options = RemoveContainerOptions {
            v: true,
            force: true,
            link: false,
        };
        match shared.docker.remove_container(&id, Some(options)).await {
            Ok(()) => tracing::debug!(container = %id, "removed an old exited container"),
            Err(e) => tracing::debug!(container = %id, error = %e, "janitor: cannot remove"),
        }
    }
}
