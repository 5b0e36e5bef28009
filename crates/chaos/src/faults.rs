//! Plugins with switchable faults: they pass calls through to a real plugin until a test turns a
//! [`Switch`] on, then answer late, fail, or hang, for every call or only for some instances.
//!
//! The faults are injected into real controller code: the group controller calls these
//! wrappers exactly as it calls any plugin, in-process or over a socket.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::watch;

use infrakit_spi::event::Publisher;
use infrakit_spi::{
    Allocation, Description, DestroyContext, Error, Event, Flavor, Health, Index, Instance, Method,
    Result, Spec, Tags,
};

/// What a switched-on call does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: the call goes through.
    #[default]
    Off,
    /// The call waits this long, then goes through.
    Delay(Duration),
    /// The call fails at once with this message.
    Fail(String),
    /// The call never answers, until the switch changes (then it goes through, or fails, as
    /// the new setting says).
    Hang,
}

/// One switchable fault, for one kind of call.
#[derive(Debug)]
pub struct Switch {
    state: watch::Sender<(Fault, Option<BTreeSet<String>>)>,
    injected: AtomicU64,
}

impl Default for Switch {
    fn default() -> Self {
        Switch {
            state: watch::channel((Fault::Off, None)).0,
            injected: AtomicU64::new(0),
        }
    }
}

impl Switch {
    /// Applies `fault` to every call.
    pub fn set(&self, fault: Fault) {
        self.state.send_replace((fault, None));
    }

    /// Applies `fault` to calls about these instances only (calls about no instance, such as
    /// `Provision`, are not affected).
    pub fn set_for(&self, fault: Fault, ids: impl IntoIterator<Item = String>) {
        self.state
            .send_replace((fault, Some(ids.into_iter().collect())));
    }

    /// Turns the fault off.
    pub fn off(&self) {
        self.set(Fault::Off);
    }

    /// How many calls the fault has affected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Runs the fault for a call about `subject`: `Ok` when the call should go through.
    pub async fn gate(&self, method: Method, subject: Option<&str>) -> Result<()> {
        let mut rx = self.state.subscribe();
        let mut counted = false;
        loop {
            let fault = {
                let state = rx.borrow_and_update();
                let (fault, only) = &*state;
                match (only, subject) {
                    (None, _) => fault.clone(),
                    (Some(ids), Some(s)) if ids.contains(s) => fault.clone(),
                    _ => Fault::Off,
                }
            };
            if fault != Fault::Off && !counted {
                counted = true;
                self.injected.fetch_add(1, Ordering::Relaxed);
            }
            match fault {
                Fault::Off => return Ok(()),
                Fault::Delay(d) => {
                    tokio::time::sleep(d).await;
                    return Ok(());
                }
                Fault::Fail(msg) => return Err(Error::plugin(format!("{method}: {msg}"))),
                Fault::Hang => {
                    // The sender lives as long as `self`: a change always comes, or never.
                    let _ = rx.changed().await;
                }
            }
        }
    }
}

/// An Instance plugin with switchable faults on `DescribeInstances`, `Provision` and `Destroy`.
#[derive(Debug)]
pub struct FaultyInstance<I> {
    inner: Arc<I>,
    /// Faults of `DescribeInstances`.
    pub describe: Switch,
    /// Faults of `Provision`.
    pub provision: Switch,
    /// Faults of `Destroy` (per instance with [`Switch::set_for`]).
    pub destroy: Switch,
}

impl<I> FaultyInstance<I> {
    /// `inner`, with every fault off.
    pub fn new(inner: Arc<I>) -> Arc<Self> {
        Arc::new(FaultyInstance {
            inner,
            describe: Switch::default(),
            provision: Switch::default(),
            destroy: Switch::default(),
        })
    }

    /// Turns every fault off.
    pub fn all_off(&self) {
        self.describe.off();
        self.provision.off();
        self.destroy.off();
    }

    /// How many calls the faults have affected so far.
    pub fn injected(&self) -> u64 {
        self.describe.injected() + self.provision.injected() + self.destroy.injected()
    }
}

#[async_trait]
impl<I: Instance + 'static> Instance for FaultyInstance<I> {
    async fn validate(&self, properties: &Value) -> Result<()> {
        self.inner.validate(properties).await
    }

    async fn provision(&self, spec: Spec) -> Result<String> {
        self.provision.gate(Method::InstanceProvision, None).await?;
        self.inner.provision(spec).await
    }

    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        self.inner.label(id, labels).await
    }

    async fn destroy(&self, id: &str, context: &DestroyContext) -> Result<()> {
        self.destroy.gate(Method::InstanceDestroy, Some(id)).await?;
        self.inner.destroy(id, context).await
    }

    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        self.describe
            .gate(Method::InstanceDescribeInstances, None)
            .await?;
        self.inner.describe_instances(tags, properties).await
    }
}

impl<I: Publisher + 'static> Publisher for FaultyInstance<I> {
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.inner.subscribe()
    }
}

/// A Flavor plugin with switchable faults on `Healthy` (per instance with [`Switch::set_for`])
/// and `Drain`.
#[derive(Debug)]
pub struct FaultyFlavor<F> {
    inner: Arc<F>,
    /// Faults of `Healthy`.
    pub healthy: Switch,
    /// Faults of `Drain`.
    pub drain: Switch,
    answered: Mutex<u64>,
}

impl<F> FaultyFlavor<F> {
    /// `inner`, with every fault off.
    pub fn new(inner: Arc<F>) -> Arc<Self> {
        Arc::new(FaultyFlavor {
            inner,
            healthy: Switch::default(),
            drain: Switch::default(),
            answered: Mutex::new(0),
        })
    }

    /// How many calls the faults have affected so far.
    pub fn injected(&self) -> u64 {
        self.healthy.injected() + self.drain.injected()
    }

    /// How many `Healthy` calls were answered (by the real flavor).
    pub fn answered(&self) -> u64 {
        *self.answered.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl<F: Flavor + 'static> Flavor for FaultyFlavor<F> {
    async fn validate(&self, properties: &Value, allocation: &Allocation) -> Result<()> {
        self.inner.validate(properties, allocation).await
    }

    async fn prepare(
        &self,
        properties: &Value,
        spec: Spec,
        allocation: &Allocation,
        index: &Index,
    ) -> Result<Spec> {
        self.inner
            .prepare(properties, spec, allocation, index)
            .await
    }

    async fn healthy(&self, properties: &Value, instance: &Description) -> Result<Health> {
        self.healthy
            .gate(Method::FlavorHealthy, Some(&instance.id))
            .await?;
        let h = self.inner.healthy(properties, instance).await;
        *self.answered.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        h
    }

    async fn drain(&self, properties: &Value, instance: &Description) -> Result<()> {
        self.drain
            .gate(Method::FlavorDrain, Some(&instance.id))
            .await?;
        self.inner.drain(properties, instance).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    /// The method the tests gate.
    const M: Method = Method::InstanceProvision;

    #[tokio::test(start_paused = true)]
    async fn a_switch_delays_fails_or_holds_calls_until_it_changes() {
        let s = Switch::default();
        assert!(s.gate(M, None).await.is_ok());
        assert_eq!(s.injected(), 0);

        s.set(Fault::Fail("down".into()));
        let e = s.gate(M, None).await.unwrap_err().to_string();
        assert_eq!(e, format!("{M}: down"));

        s.set(Fault::Delay(Duration::from_secs(3)));
        let start = tokio::time::Instant::now();
        s.gate(M, None).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3));

        s.set(Fault::Hang);
        let mut held = Box::pin(s.gate(M, None));
        assert!((&mut held).now_or_never().is_none());
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!((&mut held).now_or_never().is_none());
        s.off();
        assert!(held.await.is_ok());
        assert_eq!(s.injected(), 3);
    }

    #[tokio::test]
    async fn a_switch_can_target_some_instances_only() {
        let s = Switch::default();
        s.set_for(Fault::Fail("x".into()), ["a".to_string()]);
        assert!(s.gate(M, Some("a")).await.is_err());
        assert!(s.gate(M, Some("b")).await.is_ok());
        assert!(s.gate(M, None).await.is_ok());
        assert_eq!(s.injected(), 1);
    }
}
