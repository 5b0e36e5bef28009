//! Observation: which instances belong to a group ([`membership`]), what the instance plugin
//! lists of them (or the observed cache, [`crate::listing`]) and what the flavor says of their health ([`observe`], checking only the
//! instances [`crate::health`] says are due), and how that becomes the planner's members once
//! recorded in the group's history ([`members`]).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::time::Instant;

use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::{Description, Flavor, Health, HealthCadence, Instance, Method, Result, Tags};

use crate::context::Context;
use crate::health::{HealthClock, Verdict};
use crate::history::History;
use crate::listing::{Listing, Watch};
use crate::planner::Member;
use crate::pushed::{HealthFeed, Keep, Pushing, Watcher};
use crate::settings::Settings;

pub use infrakit_spi::instance::PROTECT_TAG;

/// Tags that select the members of group `id`.
pub fn membership(id: &str) -> Tags {
    Tags::from([(GROUP_TAG.to_string(), id.to_string())])
}

/// One observation: the group's instances with their health.
///
/// Only the instances whose verdict may have changed are checked (see [`crate::health`]); the
/// others keep their last verdict. A flavor plugin that serves the health extension is asked
/// in batches; otherwise each due instance gets its own `Healthy` call. Most such calls answer
/// at once (no probe, or a cached result): those are taken as they come, without a timer or a
/// place in the bounded stream. Once `max_parallel` checks have had to wait, the rest go through
/// a stream that runs at most `max_parallel` at a time, each with the health timeout, so probes
/// never run unbounded.
pub(crate) async fn observe(
    ctx: &Context,
    (settings, watch, feed): (&Settings, &Watch, &HealthFeed),
    (instance, flavor): (&dyn Instance, &dyn Flavor),
    (listing, clock, watcher): (&mut Listing, &mut HealthClock, &mut Watcher),
) -> Result<Observation> {
    let descriptions = listing
        .list(
            watch,
            (instance, &settings.props.instance.plugin),
            &membership(&settings.id),
            ctx.config.resync_interval,
        )
        .await?;
    let flavor_ref = &settings.props.flavor;
    let timing = Timing {
        metrics: &ctx.config.telemetry.metrics,
        plugin: &flavor_ref.plugin,
        timeout: ctx.config.health_timeout,
        max_parallel: ctx.config.max_parallel.max(1),
    };
    let now = Instant::now();
    let checks = clock
        .checks(
            flavor,
            &flavor_ref.plugin,
            &flavor_ref.properties,
            timing.timeout,
            now,
        )
        .await;
    let mut cadence = checks.cadence;
    let mut pushed = 0;
    let mut renew = None;
    if let HealthCadence::Every(interval) = checks.cadence {
        let prints = clock.fingerprints(&descriptions);
        let keep = Keep {
            feed,
            flavor,
            plugin: &flavor_ref.plugin,
            properties: &flavor_ref.properties,
            group: &settings.id,
            timeout: timing.timeout,
        };
        match watcher.keep(keep, &descriptions, &prints, now).await {
            // The flavor says when a verdict changes; asking again is only a backstop.
            Pushing::Live => {
                cadence = HealthCadence::Every(interval.max(ctx.config.resync_interval));
            }
            Pushing::Asking { forget: true } => clock.forget(),
            Pushing::Asking { forget: false } => {}
        }
        pushed = clock.apply(feed.drain());
        renew = watcher.next_renewal();
    } else {
        feed.want(false);
    }
    let mut due = clock.plan(cadence, &descriptions, now);
    let check = Checking {
        descriptions: &descriptions,
        flavor,
        properties: &flavor_ref.properties,
        timing,
    };
    if checks.batched {
        let chunk = match checks.cadence {
            HealthCadence::OnChange => BATCH,
            _ => timing.max_parallel,
        };
        check.batched(&due.due, &mut due.verdicts, chunk).await;
    } else {
        check.each(&due.due, &mut due.verdicts).await;
    }
    clock.record(&descriptions, &due, Instant::now());
    let next_check = match (clock.next_due(cadence), renew) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(Observation {
        descriptions,
        verdicts: due.verdicts,
        judged: due.due.len(),
        pushed,
        next_check,
    })
}

/// Most instances judged in one `FlavorHealth.Check` call of a flavor without probes.
const BATCH: usize = 1_000;
/// Batched calls in flight at once.
const BATCHES_AT_ONCE: usize = 4;

/// What one observation found: the group's instances, and the flavor's verdict on each, in
/// the same order (kept apart so the descriptions are never copied).
pub(crate) struct Observation {
    pub descriptions: Arc<Vec<Description>>,
    pub verdicts: Vec<Verdict>,
    /// How many instances the flavor was asked about (the others kept their last verdict).
    pub judged: usize,
    /// How many remembered verdicts the flavor's health events changed.
    pub pushed: usize,
    /// When a remembered verdict expires (a probe's interval passing), if one does.
    pub next_check: Option<Instant>,
}

impl Observation {
    /// A digest of what this observation saw (which instances, and how many of them healthy):
    /// two observations with the same digest show no progress between them. Independent of
    /// the listing's order.
    pub fn digest(&self) -> u64 {
        use std::hash::BuildHasher;
        let hasher = foldhash::fast::FixedState::with_seed(0x1f_0b5e);
        let ids = self
            .descriptions
            .iter()
            .fold(0u64, |acc, d| acc ^ hasher.hash_one(d.id.as_str()));
        let healthy = self
            .verdicts
            .iter()
            .filter(|v| v.health == Health::Healthy)
            .count() as u64;
        hasher.hash_one((ids, self.descriptions.len() as u64, healthy))
    }

    /// Each instance's ID and health, for [`History::observe`].
    pub fn health(&self) -> impl Iterator<Item = (&str, Health)> {
        self.descriptions
            .iter()
            .zip(&self.verdicts)
            .map(|(d, v)| (d.id.as_str(), v.health))
    }
}

/// A health check in progress.
type Check<'a> = futures::future::BoxFuture<'a, Result<Health>>;

/// How health checks that have to wait are bounded and measured.
#[derive(Clone, Copy)]
struct Timing<'a> {
    metrics: &'a crate::telemetry::Metrics,
    plugin: &'a str,
    timeout: Duration,
    max_parallel: usize,
}

/// The health checks of one observation.
struct Checking<'a> {
    descriptions: &'a [Description],
    flavor: &'a dyn Flavor,
    properties: &'a Value,
    timing: Timing<'a>,
}

impl<'a> Checking<'a> {
    /// Fills `health[i]` for each of `due` with the flavor's verdict, one `Healthy` call each.
    async fn each(&self, due: &[usize], health: &mut [Verdict]) {
        let (descriptions, flavor, props) = (self.descriptions, self.flavor, self.properties);
        let mut waiting: Vec<(usize, Check<'a>)> = Vec::new();
        let mut next = 0;
        while next < due.len() && waiting.len() < self.timing.max_parallel {
            let i = due[next];
            let d = &descriptions[i];
            let mut check = flavor.healthy(props, d);
            match futures::FutureExt::now_or_never(&mut check) {
                Some(answer) => health[i] = settle(d, Ok(answer)),
                None => waiting.push((i, check)),
            }
            next += 1;
        }
        if waiting.is_empty() && next == due.len() {
            return;
        }
        let calls = self
            .timing
            .metrics
            .call(self.timing.plugin, Method::FlavorHealthy);
        let timeout = self.timing.timeout;
        let calls = &calls;
        let mut checks = Vec::with_capacity(waiting.len() + due.len() - next);
        for (i, check) in waiting {
            checks.push(finish(i, &descriptions[i], check, timeout, calls));
        }
        for &i in &due[next..] {
            let d = &descriptions[i];
            checks.push(finish(i, d, flavor.healthy(props, d), timeout, calls));
        }
        let settled: Vec<(usize, Verdict)> = futures::stream::iter(checks)
            .buffer_unordered(self.timing.max_parallel)
            .collect()
            .await;
        for (i, h) in settled {
            health[i] = h;
        }
    }

    /// Fills `health[i]` for each of `due` from `FlavorHealth.Check` calls of up to `chunk`
    /// instances, each within twice the health timeout; a failed call leaves its instances
    /// unanswered.
    async fn batched(&self, due: &[usize], health: &mut [Verdict], chunk: usize) {
        let calls = self
            .timing
            .metrics
            .call(self.timing.plugin, Method::FlavorHealthCheck);
        let calls = &calls;
        let timeout = self.timing.timeout * 2;
        let mut batches = Vec::new();
        for indices in due.chunks(chunk.max(1)) {
            batches.push(self.batch(indices, timeout, calls));
        }
        let mut answers = futures::stream::iter(batches).buffer_unordered(BATCHES_AT_ONCE);
        while let Some((indices, answer)) = answers.next().await {
            match answer {
                Ok(Ok(verdicts)) => {
                    for (&i, h) in indices.iter().zip(verdicts) {
                        health[i] = Verdict::answered(h);
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(instances = indices.len(), error = %e, "batched health check failed; counting as unknown");
                }
                Err(_) => {
                    tracing::debug!(
                        instances = indices.len(),
                        "batched health check timed out; counting as unknown"
                    );
                }
            }
        }
    }

    /// One `FlavorHealth.Check` call for the instances at `indices`, within `timeout`.
    async fn batch<'i>(
        &self,
        indices: &'i [usize],
        timeout: Duration,
        calls: &crate::telemetry::CallMetrics,
    ) -> (&'i [usize], BatchAnswer) {
        let batch: Vec<&Description> = indices.iter().map(|&i| &self.descriptions[i]).collect();
        let start = Instant::now();
        let answer =
            tokio::time::timeout(timeout, self.flavor.healthy_many(self.properties, &batch)).await;
        calls.record(start.elapsed(), matches!(answer, Ok(Ok(_))));
        (indices, answer)
    }
}

/// What a batched check answered, or its timeout.
type BatchAnswer = std::result::Result<Result<Vec<Health>>, tokio::time::error::Elapsed>;

/// Waits for a health check that did not answer at once, at most `timeout`.
async fn finish<'a>(
    i: usize,
    d: &'a Description,
    check: Check<'a>,
    timeout: Duration,
    calls: &crate::telemetry::CallMetrics,
) -> (usize, Verdict) {
    let start = Instant::now();
    let answer = tokio::time::timeout(timeout, check).await;
    calls.record(start.elapsed(), matches!(answer, Ok(Ok(_))));
    (i, settle(d, answer))
}

/// The health a check's answer (or its timeout) stands for.
fn settle(
    d: &Description,
    answer: std::result::Result<Result<Health>, tokio::time::error::Elapsed>,
) -> Verdict {
    match answer {
        Ok(Ok(health)) => Verdict::answered(health),
        Ok(Err(e)) => {
            tracing::debug!(instance = %d.id, error = %e, "health check failed; counting as unknown");
            Verdict::default()
        }
        Err(_) => {
            tracing::debug!(instance = %d.id, "health check timed out; counting as unknown");
            Verdict::default()
        }
    }
}

/// Members as the planner sees them: `observed` recorded in `history` at `now`, with the
/// timings that gives each.
pub(crate) fn members(
    settings: &Settings,
    observed: &Observation,
    history: &mut History,
    now: Instant,
) -> Vec<Member> {
    let mut members: Vec<Member> = observed
        .descriptions
        .iter()
        .zip(&observed.verdicts)
        .map(|(d, v)| Member {
            id: d.id.clone(),
            logical_id: d.logical_id().map(str::to_string),
            current: d.config_hash() == Some(settings.config_hash.as_str()),
            health: v.health,
            protected: d.tags.get(PROTECT_TAG) == Some("true"),
            unanswered: !v.answered,
            created: d.created,
            ..Member::default()
        })
        .collect();
    let mut next = members.iter_mut();
    history.observe(observed.health(), now, |t| {
        if let Some(m) = next.next() {
            m.age = t.age;
            m.healthy_for = t.healthy_for;
            m.healthy_streak = t.streak;
            m.unhealthy_for = t.unhealthy_for;
            m.ever_healthy = t.ever_healthy;
        }
    });
    members
}
