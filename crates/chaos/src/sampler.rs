//! The sampler: counts a group's instances continuously, from the instance plugin's own listing
//! and, for process instances, from the processes that really run, and reports every count to
//! the [`Ledger`].
//!
//! The tap catches the peaks the controller causes at each provision; the sampler also sees
//! what the tap cannot: instances that appear without the controller asking (a plugin that
//! re-adopts processes after a restart, a provision finished after its caller died).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use infrakit_spi::{Instance, Tags};

use crate::ledger::Ledger;
use crate::procs;

/// What to count.
#[derive(Clone)]
pub enum Source {
    /// The instances carrying `tags` in this plugin's listing.
    Listing(Arc<dyn Instance>, Tags),
    /// The processes of a process-plugin group: command line `argv`, environment
    /// `INFRAKIT_GROUP=group` (see [`procs::group_processes`]).
    Processes {
        /// The group ID.
        group: String,
        /// The instances' exact command line.
        argv: Vec<String>,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Listing(_, tags) => f.debug_tuple("Listing").field(tags).finish(),
            Source::Processes { group, argv } => f
                .debug_struct("Processes")
                .field("group", group)
                .field("argv", argv)
                .finish(),
        }
    }
}

impl Source {
    fn name(&self) -> &'static str {
        match self {
            Source::Listing(..) => "the plugin's listing",
            Source::Processes { .. } => "the running processes",
        }
    }

    async fn count(&self) -> Option<usize> {
        match self {
            Source::Listing(plugin, tags) => plugin
                .describe_instances(tags, false)
                .await
                .ok()
                .map(|l| l.len()),
            Source::Processes { group, argv } => Some(procs::group_processes(group, argv).len()),
        }
    }
}

/// A running sampler; [`Sampler::stop`] ends it.
#[derive(Debug)]
pub struct Sampler {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<u64>,
}

impl Sampler {
    /// Counts every source each `interval` until stopped, reporting to `ledger`.
    pub fn start(sources: Vec<Source>, ledger: Arc<Ledger>, interval: Duration) -> Sampler {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut rounds = 0;
            loop {
                for s in &sources {
                    match s.count().await {
                        Some(n) => ledger.count(n, s.name()),
                        None => ledger.gap(),
                    }
                }
                rounds += 1;
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = &mut stopped => return rounds,
                }
            }
        });
        Sampler {
            stop: Some(stop),
            task,
        }
    }

    /// Stops sampling; returns how many rounds were taken.
    pub async fn stop(mut self) -> u64 {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap_or(0)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}
