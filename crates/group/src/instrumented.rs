//! Instance and flavor plugins wrapped so every call is timed and its failures counted, by
//! plugin and method (see [`crate::telemetry::Metrics`]).
//!
//! The wrappers are made once per reconcile with their instruments already looked up, so a call
//! only records: two clock reads and a few atomic adds. `Flavor.Healthy` is not wrapped: it runs
//! for every member on every pass and mostly answers at once; the supervisor times the calls
//! that have to wait.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use infrakit_spi::{
    Allocation, Description, DestroyContext, Flavor, Health, HealthCadence, HealthChecks, Index,
    Instance, Method, Result, Spec, Tags,
};

use crate::telemetry::{CallMetrics, Metrics};

/// An instance plugin whose calls are measured.
pub(crate) struct TimedInstance {
    inner: Arc<dyn Instance>,
    validate: CallMetrics,
    provision: CallMetrics,
    provision_many: CallMetrics,
    label: CallMetrics,
    destroy: CallMetrics,
    describe: CallMetrics,
}

impl TimedInstance {
    /// Wraps instance plugin `name`.
    pub(crate) fn new(inner: Arc<dyn Instance>, name: &str, metrics: &Metrics) -> Self {
        TimedInstance {
            inner,
            validate: metrics.call(name, Method::InstanceValidate),
            provision: metrics.call(name, Method::InstanceProvision),
            provision_many: metrics.call(name, Method::InstanceBatchProvision),
            label: metrics.call(name, Method::InstanceLabel),
            destroy: metrics.call(name, Method::InstanceDestroy),
            describe: metrics.call(name, Method::InstanceDescribeInstances),
        }
    }
}

#[async_trait]
impl Instance for TimedInstance {
    async fn validate(&self, properties: &Value) -> Result<()> {
        self.validate.time(self.inner.validate(properties)).await
    }
    async fn provision(&self, spec: Spec) -> Result<String> {
        self.provision.time(self.inner.provision(spec)).await
    }
    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        self.label.time(self.inner.label(id, labels)).await
    }
    async fn destroy(&self, id: &str, context: &DestroyContext) -> Result<()> {
        self.destroy.time(self.inner.destroy(id, context)).await
    }
    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        self.describe
            .time(self.inner.describe_instances(tags, properties))
            .await
    }
    async fn provision_many(&self, specs: Vec<Spec>, parallel: usize) -> Vec<Result<String>> {
        self.provision_many
            .time_batch(self.inner.provision_many(specs, parallel))
            .await
    }
}

/// A flavor plugin whose calls (except health checks, which the observation measures) are
/// measured.
pub(crate) struct TimedFlavor {
    inner: Arc<dyn Flavor>,
    validate: CallMetrics,
    prepare: CallMetrics,
    prepare_many: CallMetrics,
    drain: CallMetrics,
    watch: CallMetrics,
}

impl TimedFlavor {
    /// Wraps flavor plugin `name`.
    pub(crate) fn new(inner: Arc<dyn Flavor>, name: &str, metrics: &Metrics) -> Self {
        TimedFlavor {
            inner,
            validate: metrics.call(name, Method::FlavorValidate),
            prepare: metrics.call(name, Method::FlavorPrepare),
            prepare_many: metrics.call(name, Method::FlavorBatchPrepare),
            drain: metrics.call(name, Method::FlavorDrain),
            watch: metrics.call(name, Method::FlavorHealthWatch),
        }
    }
}

#[async_trait]
impl Flavor for TimedFlavor {
    async fn validate(&self, properties: &Value, allocation: &Allocation) -> Result<()> {
        self.validate
            .time(self.inner.validate(properties, allocation))
            .await
    }
    async fn prepare(
        &self,
        properties: &Value,
        spec: Spec,
        allocation: &Allocation,
        index: &Index,
    ) -> Result<Spec> {
        self.prepare
            .time(self.inner.prepare(properties, spec, allocation, index))
            .await
    }
    async fn healthy(&self, properties: &Value, instance: &Description) -> Result<Health> {
        self.inner.healthy(properties, instance).await
    }
    async fn health_cadence(&self, properties: &Value) -> Result<HealthCadence> {
        self.inner.health_cadence(properties).await
    }
    async fn health_checks(&self, properties: &Value) -> Result<HealthChecks> {
        self.inner.health_checks(properties).await
    }
    async fn healthy_many(
        &self,
        properties: &Value,
        instances: &[&Description],
    ) -> Result<Vec<Health>> {
        self.inner.healthy_many(properties, instances).await
    }
    async fn watch_health(
        &self,
        properties: &Value,
        watch: &str,
        instances: &[&Description],
        lease: std::time::Duration,
    ) -> Result<bool> {
        self.watch
            .time(self.inner.watch_health(properties, watch, instances, lease))
            .await
    }
    async fn drain(&self, properties: &Value, instance: &Description) -> Result<()> {
        self.drain
            .time(self.inner.drain(properties, instance))
            .await
    }
    async fn prepare_many(
        &self,
        properties: &Value,
        specs: Vec<(Spec, Index)>,
        allocation: &Allocation,
    ) -> Vec<Result<Spec>> {
        self.prepare_many
            .time_batch(self.inner.prepare_many(properties, specs, allocation))
            .await
    }
}
