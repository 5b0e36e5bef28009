//! Observation: which instances belong to a group ([`membership`]), what the instance plugin
//! lists of them and what the flavor says of their health ([`observe`]), and how that becomes
//! the planner's members once recorded in the group's history ([`members`]).

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::time::Instant;

use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::{Description, Flavor, Health, Instance, Method, Result, Tags};

use crate::context::Context;
use crate::history::History;
use crate::planner::Member;
use crate::settings::Settings;

pub use infrakit_spi::instance::PROTECT_TAG;

/// Tags that select the members of group `id`.
pub fn membership(id: &str) -> Tags {
    Tags::from([(GROUP_TAG.to_string(), id.to_string())])
}

/// One observation: the group's instances with their health.
///
/// Most health checks answer at once (no probe, or a cached result): those are taken as they
/// come, without a timer or a place in the bounded stream. Once `max_parallel` checks have had to
/// wait, the rest go through a stream that runs at most `max_parallel` at a time, each with the
/// health timeout, so probes never run unbounded.
pub(crate) async fn observe(
    ctx: &Context,
    settings: &Settings,
    instance: &dyn Instance,
    flavor: &dyn Flavor,
) -> Result<Observation> {
    let descriptions = instance
        .describe_instances(&membership(&settings.id), true)
        .await?;
    let flavor_props = &settings.props.flavor.properties;
    let timeout = ctx.config.health_timeout;
    let max_parallel = ctx.config.max_parallel.max(1);
    let n = descriptions.len();

    let mut health = vec![Verdict::default(); n];
    let timing = Timing {
        metrics: &ctx.config.telemetry.metrics,
        plugin: &settings.props.flavor.plugin,
        timeout,
    };
    check_health(
        &descriptions,
        &mut health,
        flavor,
        flavor_props,
        timing,
        max_parallel,
    )
    .await;
    Ok(Observation {
        descriptions,
        verdicts: health,
    })
}

/// What one observation found: the group's instances, and the flavor's verdict on each, in
/// the same order (kept apart so the descriptions are never copied).
pub(crate) struct Observation {
    pub descriptions: Vec<Description>,
    pub verdicts: Vec<Verdict>,
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

/// A health check's outcome.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verdict {
    pub health: Health,
    /// Whether the check answered (false: it failed or timed out, and the health is Unknown
    /// for want of an answer).
    pub answered: bool,
}

impl Default for Verdict {
    fn default() -> Self {
        Verdict {
            health: Health::Unknown,
            answered: false,
        }
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
}

/// Fills `health` with the flavor's verdict on each of `descriptions` (see [`observe`]).
async fn check_health<'a>(
    descriptions: &'a [Description],
    health: &mut [Verdict],
    flavor: &'a dyn Flavor,
    flavor_props: &'a Value,
    timing: Timing<'_>,
    max_parallel: usize,
) {
    let n = descriptions.len();
    let mut waiting: Vec<(usize, Check<'a>)> = Vec::new();
    let mut next = 0;
    while next < n && waiting.len() < max_parallel {
        let d = &descriptions[next];
        let mut check = flavor.healthy(flavor_props, d);
        match futures::FutureExt::now_or_never(&mut check) {
            Some(answer) => health[next] = settle(d, Ok(answer)),
            None => waiting.push((next, check)),
        }
        next += 1;
    }
    if waiting.is_empty() && next == n {
        return;
    }
    let calls = timing.metrics.call(timing.plugin, Method::FlavorHealthy);
    let timeout = timing.timeout;
    let calls = &calls;
    let mut checks = Vec::with_capacity(waiting.len() + n - next);
    for (i, check) in waiting {
        checks.push(finish(i, &descriptions[i], check, timeout, calls));
    }
    for (i, d) in descriptions.iter().enumerate().skip(next) {
        checks.push(finish(
            i,
            d,
            flavor.healthy(flavor_props, d),
            timeout,
            calls,
        ));
    }
    let settled: Vec<(usize, Verdict)> = futures::stream::iter(checks)
        .buffer_unordered(max_parallel)
        .collect()
        .await;
    for (i, h) in settled {
        health[i] = h;
    }
}

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
        Ok(Ok(health)) => Verdict {
            health,
            answered: true,
        },
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
