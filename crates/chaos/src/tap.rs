//! The tap: an Instance plugin that passes every call through to the real one and writes down
//! what the controller did to the infrastructure.
//!
//! - Every `Destroy` is recorded with its `DestroyContext` reason and the instance's health at
//!   that moment according to a *judging* flavor: the real flavor, asked directly, so a flavor
//!   the test makes hang or fail does not blind the judge. The [`Ledger`] decides whether the
//!   destroy broke the rules.
//! - After every successful `Provision` the instances are counted (a [`Census`]) and checked
//!   against the ledger's limit: the count only grows at provisions, so this catches every peak
//!   the controller itself causes, however briefly it lasts.
//! - Provisions and destroys in flight are published on a `watch` channel, so a test can strike
//!   exactly while one is under way (kill a plugin mid-provision).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::watch;

use infrakit_spi::{Description, DestroyContext, Flavor, Instance, Result, Spec, Tags};

use crate::ledger::{DestroyRecord, Ledger};
use crate::rules::Judged;

/// How long the judge may take to answer about one instance.
const JUDGE_TIMEOUT: Duration = Duration::from_secs(5);

/// How the tap counts instances after a provision.
pub enum Census {
    /// It does not count.
    None,
    /// It lists the instances carrying these tags (e.g. one group's).
    Listing(Tags),
    /// It asks this function (cheap counts of big simulated groups).
    Count(Box<dyn Fn() -> usize + Send + Sync>),
}

impl std::fmt::Debug for Census {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Census::None => f.write_str("None"),
            Census::Listing(tags) => f.debug_tuple("Listing").field(tags).finish(),
            Census::Count(_) => f.write_str("Count(..)"),
        }
    }
}

/// What is in flight through the tap right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Provisions started and not answered yet.
    pub provisions: usize,
    /// Destroys started and not answered yet.
    pub destroys: usize,
    /// Provisions started since the tap was created.
    pub provisions_started: u64,
    /// Provisions answered (successfully or not).
    pub provisions_answered: u64,
    /// Provisions that failed (including those whose connection to the plugin broke).
    pub provisions_failed: u64,
    /// Destroys answered (successfully or not).
    pub destroys_answered: u64,
    /// Provisions abandoned by their caller before they were answered (the caller died).
    pub provisions_cut_off: u64,
    /// Destroys abandoned by their caller before they were answered.
    pub destroys_cut_off: u64,
}

/// The recording Instance plugin. See the module documentation.
pub struct Tap {
    inner: Arc<dyn Instance>,
    judge: Arc<dyn Flavor>,
    judge_properties: std::sync::Mutex<Value>,
    ledger: Arc<Ledger>,
    census: Census,
    flight: watch::Sender<InFlight>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("census", &self.census)
            .field("in_flight", &*self.flight.borrow())
            .finish()
    }
}

/// Counts a call as in flight until it is dropped, answered or not: a call cut off by a
/// vanished caller must not stay in flight forever.
struct Flying<'a> {
    flight: &'a watch::Sender<InFlight>,
    provision: bool,
    answered: bool,
}

impl<'a> Flying<'a> {
    fn start(flight: &'a watch::Sender<InFlight>, provision: bool) -> Self {
        flight.send_modify(|f| {
            if provision {
                f.provisions += 1;
                f.provisions_started += 1;
            } else {
                f.destroys += 1;
            }
        });
        Flying {
            flight,
            provision,
            answered: false,
        }
    }
}

impl Drop for Flying<'_> {
    fn drop(&mut self) {
        let (provision, answered) = (self.provision, self.answered);
        self.flight.send_modify(|f| match (provision, answered) {
            (true, true) => {
                f.provisions -= 1;
                f.provisions_answered += 1;
            }
            (true, false) => {
                f.provisions -= 1;
                f.provisions_cut_off += 1;
            }
            (false, true) => {
                f.destroys -= 1;
                f.destroys_answered += 1;
            }
            (false, false) => {
                f.destroys -= 1;
                f.destroys_cut_off += 1;
            }
        });
    }
}

impl Tap {
    /// A tap in front of `inner`, judging health with `judge` (and `judge_properties`, the
    /// group's flavor properties), reporting to `ledger`.
    pub fn new(
        inner: Arc<dyn Instance>,
        judge: Arc<dyn Flavor>,
        judge_properties: Value,
        ledger: Arc<Ledger>,
        census: Census,
    ) -> Arc<Tap> {
        Arc::new(Tap {
            inner,
            judge,
            judge_properties: std::sync::Mutex::new(judge_properties),
            ledger,
            census,
            flight: watch::channel(InFlight::default()).0,
        })
    }

    /// The ledger this tap reports to.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// What is in flight now, and totals.
    pub fn in_flight(&self) -> InFlight {
        *self.flight.borrow()
    }

    /// A receiver of every change of [`Tap::in_flight`].
    pub fn watch(&self) -> watch::Receiver<InFlight> {
        self.flight.subscribe()
    }

    /// Waits until `pred` holds for what is in flight, at most `within`; false if it never did.
    pub async fn wait_for(&self, within: Duration, pred: impl FnMut(&InFlight) -> bool) -> bool {
        let mut rx = self.flight.subscribe();
        tokio::time::timeout(within, rx.wait_for(pred))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn census(&self) {
        match &self.census {
            Census::None => {}
            Census::Count(count) => self.ledger.count(count(), "census after a provision"),
            Census::Listing(tags) => match self.inner.describe_instances(tags, false).await {
                Ok(list) => self.ledger.count(list.len(), "listing after a provision"),
                Err(_) => self.ledger.gap(),
            },
        }
    }

    /// The health of instance `id` according to the judge, now.
    async fn judge(&self, id: &str) -> Judged {
        let listed = match self.inner.describe_instances(&Tags::new(), true).await {
            Ok(list) => list.into_iter().find(|d| d.id == id),
            Err(e) => return Judged::Unknown(format!("cannot list: {e}")),
        };
        let Some(d) = listed else {
            return Judged::Absent;
        };
        let props = self
            .judge_properties
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match tokio::time::timeout(JUDGE_TIMEOUT, self.judge.healthy(&props, &d)).await {
            Ok(Ok(h)) => Judged::Listed(h),
            Ok(Err(e)) => Judged::Unknown(format!("the judge failed: {e}")),
            Err(_) => Judged::Unknown("the judge did not answer".into()),
        }
    }
}

#[async_trait]
impl Instance for Tap {
    async fn validate(&self, properties: &Value) -> Result<()> {
        self.inner.validate(properties).await
    }

    async fn provision(&self, spec: Spec) -> Result<String> {
        let mut flying = Flying::start(&self.flight, true);
        let result = self.inner.provision(spec).await;
        flying.answered = true;
        match &result {
            Ok(_) => self.census().await,
            Err(_) => self.flight.send_modify(|f| f.provisions_failed += 1),
        }
        drop(flying);
        result
    }

    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        self.inner.label(id, labels).await
    }

    async fn destroy(&self, id: &str, context: &DestroyContext) -> Result<()> {
        let mut flying = Flying::start(&self.flight, false);
        let judged = self.judge(id).await;
        let result = self.inner.destroy(id, context).await;
        flying.answered = true;
        self.ledger.destroyed(DestroyRecord {
            id: id.to_string(),
            reason: context.reason.clone(),
            judged,
            ok: result.is_ok(),
        });
        result
    }

    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        self.inner.describe_instances(tags, properties).await
    }
}
