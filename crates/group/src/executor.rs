//! The executor: runs a plan's actions against the plugins. Destroys run first, then provisions,
//! each at most `max_parallel` at a time; every mutating call is preceded by a fence check, and
//! provisions are recorded (persisted) before they start when the controller has a store.

use std::collections::HashMap;

use futures::StreamExt;

use infrakit_spi::instance::{CONFIG_HASH_TAG, LOGICAL_ID_TAG};
use infrakit_spi::{
    Description, DestroyContext, Error, Flavor, Index, Instance, Method, Result, Spec,
};

use crate::context::Context;
use crate::observe::membership;
use crate::planner::{Action, Plan, Reason};
use crate::rollout::{self, Pending, TOKEN_TAG};
use crate::settings::Settings;
use crate::state::GroupState;
use crate::telemetry::kind;

/// What running a plan produced.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// One line per failed action.
    pub errors: Vec<String>,
    /// Why a rolling-update drain failed, if one did (the rollout pauses).
    pub drain_failure: Option<String>,
    /// Instances created, with their logical IDs.
    pub provisioned: Vec<(String, Option<String>)>,
}

fn token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..16)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

/// Runs a plan: destroys first, then provisions, each at most `max_parallel` at a time.
/// Provisions are recorded (persisted) before they start.
pub(crate) async fn execute(
    ctx: &Context,
    state: &GroupState,
    settings: &Settings,
    instance: &dyn Instance,
    flavor: &dyn Flavor,
    plan: &Plan,
    observed: &[Description],
) -> Result<Report> {
    let plugins = Plugins {
        ctx,
        settings,
        instance,
        flavor,
    };
    let mut report = Report::default();
    destroy_all(&plugins, plan, observed, &mut report).await;
    if report.drain_failure.is_some() {
        // The provisions were to replace what could not be drained: the rollout pauses here.
        return Ok(report);
    }
    provision_all(&plugins, state, plan, &mut report).await?;
    Ok(report)
}

/// What a plan runs against.
struct Plugins<'a> {
    ctx: &'a Context,
    settings: &'a Settings,
    instance: &'a dyn Instance,
    flavor: &'a dyn Flavor,
}

/// Runs the plan's destroys, noting failures in `report`.
async fn destroy_all(
    plugins: &Plugins<'_>,
    plan: &Plan,
    observed: &[Description],
    report: &mut Report,
) {
    let Plugins {
        ctx,
        settings,
        instance,
        flavor,
    } = *plugins;
    let doomed: Vec<(&String, Reason)> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Destroy { id, reason } => Some((id, *reason)),
            Action::Provision { .. } => None,
        })
        .collect();
    if doomed.is_empty() {
        return;
    }
    // By ID: a scale-in of a large group destroys many of many.
    let by_id: HashMap<&str, &Description> = observed.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut destroys = Vec::new();
    for (id, reason) in doomed {
        if let Some(&d) = by_id.get(id.as_str()) {
            tracing::info!(group = %settings.id, instance = %d.id, reason = reason.as_str(), "destroying instance");
            destroys.push(destroy_one(ctx, settings, instance, flavor, d, reason));
        }
    }
    let results: Vec<std::result::Result<(), DestroyError>> = futures::stream::iter(destroys)
        .buffer_unordered(ctx.config.max_parallel.max(1))
        .collect()
        .await;
    for r in results {
        match r {
            Ok(()) => {}
            Err(DestroyError::Drain(why)) => report.drain_failure = Some(why),
            Err(DestroyError::Destroy(e)) => report.errors.push(e.to_string()),
        }
    }
}

/// Runs the plan's provisions, recording them first when there is a store; notes what was
/// created and what failed in `report`. Fails only when they cannot be recorded (then nothing
/// is provisioned).
async fn provision_all(
    plugins: &Plugins<'_>,
    state: &GroupState,
    plan: &Plan,
    report: &mut Report,
) -> Result<()> {
    let Plugins {
        ctx,
        settings,
        instance,
        flavor,
    } = *plugins;
    // With a store, each provision carries a token tag and is recorded before it starts, so a
    // restarted controller can tell which ones completed (and an instance made by a provision
    // the plugin said failed is recognised). Without one there is nothing to resume, and the
    // tags stay exactly the original's.
    let durable = ctx.store.is_some();
    let provisions: Vec<(String, Option<String>, usize)> = plan
        .actions
        .iter()
        .enumerate()
        .filter_map(|(seq, a)| match a {
            Action::Provision { logical_id } => Some((
                if durable { token() } else { String::new() },
                logical_id.clone(),
                seq,
            )),
            Action::Destroy { .. } => None,
        })
        .collect();
    if provisions.is_empty() {
        return Ok(());
    }
    if durable {
        let since_ms = rollout::now_ms();
        let pending = provisions
            .iter()
            .map(|(token, logical_id, _)| Pending {
                token: token.clone(),
                logical_id: logical_id.clone(),
                since_ms,
            })
            .collect();
        // Record intent before acting: if this cannot be saved, nothing is provisioned.
        state.begin_provisions(ctx, pending).await?;
    }
    let items: Vec<Provision> = provisions
        .iter()
        .map(|(token, logical_id, seq)| Provision {
            token: token.clone(),
            logical_id: logical_id.clone(),
            sequence: match (logical_id, &settings.props.allocation.logical_ids) {
                (Some(l), Some(ids)) => ids.iter().position(|x| x == l).unwrap_or(*seq),
                _ => *seq,
            } as u64,
        })
        .collect();
    // In batches, each one flavor call and one instance call when the plugins serve the batch
    // extensions (at most `max_parallel` provisions running at a time either way).
    // Two batches in flight, so the controller prepares one while the plugins work on the
    // other; each runs half of `max_parallel` provisions at a time.
    let parallel = (ctx.config.max_parallel / BATCHES_IN_FLIGHT).max(1);
    let batches: Vec<_> = items
        .chunks(PROVISION_BATCH)
        .map(|batch| provision_batch(ctx, settings, instance, flavor, batch, parallel))
        .collect();
    let answers: Vec<Vec<Result<String>>> = futures::stream::iter(batches)
        .buffered(BATCHES_IN_FLIGHT)
        .collect()
        .await;
    let results: Vec<(String, Option<String>, Result<String>)> = items
        .iter()
        .zip(answers.into_iter().flatten())
        .map(|(p, r)| (p.token.clone(), p.logical_id.clone(), r))
        .collect();
    // A provision that timed out or lost its connection may still complete: keep counting it
    // until it shows up or its grace expires. The others are settled.
    let settled: Vec<&str> = results
        .iter()
        .filter(|(_, _, result)| {
            !matches!(
                result,
                Err(Error::Timeout { .. }) | Err(Error::Unavailable { .. })
            )
        })
        .map(|(token, _, _)| token.as_str())
        .collect();
    state.end_provisions(ctx, &settled).await;
    // Failed for sure (not a timeout or a lost connection, which stay pending).
    state.provisions_failed(
        results
            .iter()
            .filter(|(_, _, r)| {
                matches!(r, Err(e) if !matches!(e, Error::Timeout { .. } | Error::Unavailable { .. }))
            })
            .map(|(token, _, _)| token.as_str()),
    );
    for (_, logical_id, result) in results {
        match result {
            Ok(id) => report.provisioned.push((id, logical_id)),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    Ok(())
}

/// Runs futures at most `parallel` at a time and returns the messages of those that failed.
pub(crate) async fn run_bounded<T, F>(futures: Vec<F>, parallel: usize) -> Vec<String>
where
    F: std::future::Future<Output = Result<T>>,
{
    let results: Vec<Result<T>> = futures::stream::iter(futures)
        .buffer_unordered(parallel)
        .collect()
        .await;
    results
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect()
}

/// Provisions asked for in one batch: one `FlavorBatch.Prepare` and one
/// `InstanceBatch.Provision` call for plugins that serve them.
const PROVISION_BATCH: usize = 1000;

/// Batches being provisioned at once.
const BATCHES_IN_FLIGHT: usize = 2;

/// One provision to make.
#[derive(Debug, Clone)]
pub(crate) struct Provision {
    /// The token tag it carries (empty without a store).
    pub token: String,
    /// Its logical ID, for pets.
    pub logical_id: Option<String>,
    /// Its index in the group, for the flavor.
    pub sequence: u64,
}

/// Prepares a batch of specs with the flavor and provisions them: one answer per item, in
/// order.
pub(crate) async fn provision_batch(
    ctx: &Context,
    settings: &Settings,
    instance: &dyn Instance,
    flavor: &dyn Flavor,
    items: &[Provision],
    parallel: usize,
) -> Vec<Result<String>> {
    let ours: Vec<infrakit_spi::Tags> = items
        .iter()
        .map(|p| {
            let mut tags = membership(&settings.id);
            tags.insert(CONFIG_HASH_TAG, &settings.config_hash);
            if !p.token.is_empty() {
                tags.insert(TOKEN_TAG, &p.token);
            }
            if let Some(l) = &p.logical_id {
                tags.insert(LOGICAL_ID_TAG, l.clone());
            }
            tags
        })
        .collect();
    let specs: Vec<(Spec, Index)> = items
        .iter()
        .zip(&ours)
        .map(|(p, tags)| {
            let spec = Spec {
                properties: settings.props.instance.properties.clone(),
                tags: tags.clone(),
                init: String::new(),
                logical_id: p.logical_id.clone(),
                attachments: Vec::new(),
            };
            let index = Index {
                group: settings.id.clone(),
                sequence: p.sequence,
            };
            (spec, index)
        })
        .collect();
    let prepared = flavor
        .prepare_many(
            &settings.props.flavor.properties,
            specs,
            &settings.props.allocation,
        )
        .await;
    let mut answers: Vec<Option<Result<String>>> = Vec::with_capacity(items.len());
    let mut ready: Vec<(usize, Spec)> = Vec::new();
    for (i, (p, prepared)) in items.iter().zip(prepared).enumerate() {
        match prepared {
            Ok(mut spec) => {
                // Membership tags are ours: a flavor cannot change them.
                spec.tags.extend(&ours[i]);
                spec.logical_id = p.logical_id.clone();
                ready.push((i, spec));
                answers.push(None);
            }
            Err(e) => answers.push(Some(Err(Error::caused(Method::FlavorPrepare.as_str(), e)))),
        }
    }
    if !ready.is_empty() {
        if let Err(e) = ctx.may_act() {
            for (i, _) in &ready {
                answers[*i] = Some(Err(e.clone()));
            }
            ready.clear();
        }
    }
    let events = &ctx.config.telemetry.events;
    let what = |logical_id: &Option<String>| match logical_id {
        Some(l) => format!("an instance for {l}"),
        None => "an instance".to_string(),
    };
    for (_, spec) in &ready {
        events.group(
            kind::PROVISIONING,
            &settings.id,
            None,
            format!("provisioning {}", what(&spec.logical_id)),
        );
    }
    let (indexes, specs): (Vec<usize>, Vec<Spec>) = ready.into_iter().unzip();
    let provisioned = instance.provision_many(specs, parallel).await;
    for (i, result) in indexes.into_iter().zip(provisioned) {
        let logical_id = &items[i].logical_id;
        answers[i] = Some(match result {
            Ok(id) => {
                tracing::info!(group = %settings.id, instance = %id, "provisioned instance");
                events.group(
                    kind::PROVISIONED,
                    &settings.id,
                    Some(&id),
                    format!("provisioned {id}"),
                );
                Ok(id)
            }
            Err(e) => {
                events.group(
                    kind::PROVISION_FAILED,
                    &settings.id,
                    None,
                    format!("provisioning {} failed: {e}", what(logical_id)),
                );
                Err(match e {
                    Error::Timeout { .. } | Error::Unavailable { .. } => e,
                    other => Error::caused(Method::InstanceProvision.as_str(), other),
                })
            }
        });
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(Error::plugin("the instance plugin gave no answer"))))
        .collect()
}

/// Why a destroy did not happen.
#[derive(Debug)]
pub(crate) enum DestroyError {
    /// The drain before a rolling-update destroy failed; the instance was left alone.
    Drain(String),
    /// The instance plugin failed to destroy it.
    Destroy(Error),
}

impl std::fmt::Display for DestroyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DestroyError::Drain(why) => f.write_str(why),
            DestroyError::Destroy(e) => write!(f, "{e}"),
        }
    }
}

/// Drains (within the drain timeout, unless the spec skips it) and destroys one instance. A
/// failing drain stops a rolling-update destroy (the rollout pauses instead of destroying
/// blindly); for other reasons it is logged and the destroy goes ahead.
pub(crate) async fn destroy_one(
    ctx: &Context,
    settings: &Settings,
    instance: &dyn Instance,
    flavor: &dyn Flavor,
    d: &Description,
    reason: Reason,
) -> std::result::Result<(), DestroyError> {
    ctx.may_act().map_err(DestroyError::Destroy)?;
    let events = &ctx.config.telemetry.events;
    if reason == Reason::Unhealthy {
        events.group(
            kind::REPLACED,
            &settings.id,
            Some(&d.id),
            format!("replacing {}: unhealthy too long", d.id),
        );
    }
    if settings.drain_before_destroy() {
        let drained = tokio::time::timeout(
            settings.drain_timeout(),
            flavor.drain(&settings.props.flavor.properties, d),
        )
        .await;
        let failure = match drained {
            Ok(Ok(())) => {
                events.group(
                    kind::DRAINED,
                    &settings.id,
                    Some(&d.id),
                    format!("drained {}", d.id),
                );
                None
            }
            Ok(Err(e)) => Some(format!("drain of {} failed: {e}", d.id)),
            Err(_) => Some(format!(
                "drain of {} did not finish within {:?}",
                d.id,
                settings.drain_timeout()
            )),
        };
        if let Some(why) = failure {
            if reason == Reason::RollingUpdate {
                tracing::warn!(instance = %d.id, reason = %why, "not destroying; pausing the rollout");
                return Err(DestroyError::Drain(why));
            }
            tracing::warn!(instance = %d.id, reason = %why, "destroying anyway");
        }
    }
    ctx.may_act().map_err(DestroyError::Destroy)?;
    let data = serde_json::json!({"Reason": reason.as_str()});
    match instance
        .destroy(&d.id, &DestroyContext::reason(reason.as_str()))
        .await
    {
        Ok(()) => {
            events.group_with(
                kind::DESTROYED,
                &settings.id,
                Some(&d.id),
                format!("destroyed {} ({})", d.id, reason.as_str()),
                data,
            );
            Ok(())
        }
        Err(e) => {
            events.group_with(
                kind::DESTROY_FAILED,
                &settings.id,
                Some(&d.id),
                format!("destroying {} failed: {e}", d.id),
                data,
            );
            Err(DestroyError::Destroy(Error::caused(
                format!("{} {}", Method::InstanceDestroy, d.id),
                e,
            )))
        }
    }
}
