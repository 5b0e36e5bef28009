//! InfraKit's combo flavor: several flavors applied to a group as one.
//!
//! ```json
//! {"Flavors": [
//!   {"Plugin": "flavor-vanilla", "Properties": {"Tags": {"tier": "coordination"}}},
//!   {"Plugin": "flavor-zookeeper", "Properties": {"DataDir": "/var/lib/zookeeper"}}
//! ]}
//! ```
//!
//! Each flavor is looked up by name through [`Plugins`] on every call, so it may run in-process or
//! behind a socket, and may be restarted between calls.
//!
//! * **Prepare** calls the flavors in list order, each on the previous one's output, so a flavor
//!   sees (and may build on) what the earlier ones did. The result always keeps what earlier
//!   flavors produced ([`combine::merge_step`]): tags merged in order (a later flavor wins a
//!   clash), Init scripts joined by newlines, attachments concatenated; Properties and LogicalID
//!   are what the last flavor returned. The first failure stops it, naming the flavor.
//! * **Healthy** asks every flavor at once and reports the worst answer: Unhealthy over Unknown
//!   over Healthy. A flavor that fails to answer counts as Unknown; the reason is logged.
//! * **Drain** drains every flavor in list order, whatever happens to the others, and reports
//!   every failure, not just the first.
//! * **Validate** checks the list, then validates each flavor's properties with that flavor;
//!   errors name the field under its entry, e.g. `Properties.Flavors[1].Properties.Init`, or
//!   `Properties.Flavors[1].Plugin` for a flavor that cannot be found.

pub mod combine;
pub mod properties;

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use infrakit_rpc::Plugins;
use infrakit_spi::{
    Allocation, Description, Error, Flavor, Health, HealthCadence, Index, Result, Spec,
};
use serde_json::Value;

pub use properties::{ComboProperties, FlavorRef};

/// The combo flavor.
///
/// It holds its plugin registry weakly, so it can be registered in that same registry without a
/// reference cycle; once the registry is dropped, every call fails.
#[derive(Debug, Clone)]
pub struct ComboFlavor {
    plugins: Weak<Plugins>,
}

impl ComboFlavor {
    /// A combo flavor that finds its flavors in `plugins`.
    pub fn new(plugins: &Arc<Plugins>) -> Self {
        ComboFlavor {
            plugins: Arc::downgrade(plugins),
        }
    }

    /// The flavor called `name`.
    fn lookup(&self, name: &str) -> Result<Arc<dyn Flavor>> {
        let plugins = self
            .plugins
            .upgrade()
            .ok_or_else(|| Error::plugin("the combo flavor's plugin registry is gone"))?;
        plugins.flavor(name)
    }
}

#[async_trait]
impl Flavor for ComboFlavor {
    async fn validate(&self, properties: &Value, allocation: &Allocation) -> Result<()> {
        let combo = ComboProperties::parse(properties)?;
        for (i, f) in combo.flavors.iter().enumerate() {
            let flavor = self
                .lookup(&f.plugin)
                .map_err(|e| combine::under_entry(i, e))?;
            flavor
                .validate(&f.properties, allocation)
                .await
                .map_err(|e| combine::under_entry(i, e))?;
        }
        Ok(())
    }

    async fn prepare(
        &self,
        properties: &Value,
        spec: Spec,
        allocation: &Allocation,
        index: &Index,
    ) -> Result<Spec> {
        let combo = ComboProperties::parse(properties)?;
        let mut spec = spec;
        for (i, f) in combo.flavors.iter().enumerate() {
            let flavor = self
                .lookup(&f.plugin)
                .map_err(|e| combine::from_entry(i, &f.plugin, e))?;
            let out = flavor
                .prepare(&f.properties, spec.clone(), allocation, index)
                .await
                .map_err(|e| combine::from_entry(i, &f.plugin, e))?;
            spec = combine::merge_step(&spec, out);
        }
        Ok(spec)
    }

    /// The most frequent of the flavors' cadences: a combined verdict can change whenever one
    /// of its parts can. A flavor that cannot say makes the whole [`HealthCadence::EveryPass`].
    async fn health_cadence(&self, properties: &Value) -> Result<HealthCadence> {
        let combo = ComboProperties::parse(properties)?;
        let mut cadence = HealthCadence::OnChange;
        for f in &combo.flavors {
            let part = match self.lookup(&f.plugin) {
                Ok(flavor) => flavor
                    .health_cadence(&f.properties)
                    .await
                    .unwrap_or_default(),
                Err(_) => HealthCadence::EveryPass,
            };
            cadence = cadence.and(part);
        }
        Ok(cadence)
    }

    async fn healthy(&self, properties: &Value, instance: &Description) -> Result<Health> {
        let combo = ComboProperties::parse(properties)?;
        let checks = combo.flavors.iter().map(|f| async move {
            let flavor = self.lookup(&f.plugin)?;
            flavor.healthy(&f.properties, instance).await
        });
        let answers = futures::future::join_all(checks).await;
        for (i, (f, answer)) in combo.flavors.iter().zip(&answers).enumerate() {
            if let Err(e) = answer {
                tracing::warn!(
                    instance = %instance.id,
                    flavor = %f.plugin,
                    entry = i,
                    error = %e,
                    "flavor health check failed; counting it as unknown"
                );
            }
        }
        Ok(combine::worst(answers.iter().map(combine::counted)))
    }

    async fn drain(&self, properties: &Value, instance: &Description) -> Result<()> {
        let combo = ComboProperties::parse(properties)?;
        let mut failures = Vec::new();
        for (i, f) in combo.flavors.iter().enumerate() {
            let drained = match self.lookup(&f.plugin) {
                Ok(flavor) => flavor.drain(&f.properties, instance).await,
                Err(e) => Err(e),
            };
            if let Err(e) = drained {
                failures.push(combine::from_entry(i, &f.plugin, e));
            }
        }
        match combine::drain_errors(failures) {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The combo's own logic with small in-process flavors.

    use super::*;
    use infrakit_spi::Attachment;
    use serde_json::json;
    use std::sync::Mutex;

    /// A flavor whose answers come from its properties, recording what it was asked.
    #[derive(Default)]
    struct Fake {
        name: &'static str,
        calls: Mutex<Vec<String>>,
    }

    impl Fake {
        fn new(name: &'static str) -> Arc<Fake> {
            Arc::new(Fake {
                name,
                calls: Mutex::new(Vec::new()),
            })
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }

        fn record(&self, what: String) {
            self.calls.lock().unwrap().push(what);
        }
    }

    #[async_trait]
    impl Flavor for Fake {
        async fn validate(&self, properties: &Value, _: &Allocation) -> Result<()> {
            match properties.get("Bad") {
                Some(field) => Err(Error::invalid(
                    format!("Properties.{}", field.as_str().unwrap_or("Bad")),
                    "rejected",
                )),
                None => Ok(()),
            }
        }

        async fn prepare(
            &self,
            p: &Value,
            mut spec: Spec,
            _: &Allocation,
            _: &Index,
        ) -> Result<Spec> {
            self.record(format!("prepare saw init {:?}", spec.init));
            if let Some(e) = p.get("Fail") {
                return Err(Error::plugin(e.as_str().unwrap_or("failed")));
            }
            let line = format!("echo {}", self.name);
            spec.init = if spec.init.is_empty() {
                line
            } else {
                format!("{}\n{line}", spec.init)
            };
            spec.tags.insert("by", self.name);
            spec.tags.insert(self.name, "yes");
            spec.attachments.push(Attachment {
                id: format!("vol-{}", self.name),
                kind: "volume".into(),
            });
            if let Some(props) = p.get("SetProperties") {
                spec.properties = props.clone();
            }
            Ok(spec)
        }

        async fn healthy(&self, p: &Value, _: &Description) -> Result<Health> {
            match p.get("Health").and_then(Value::as_str) {
                Some("healthy") | None => Ok(Health::Healthy),
                Some("unknown") => Ok(Health::Unknown),
                Some("unhealthy") => Ok(Health::Unhealthy),
                Some(other) => Err(Error::plugin(other.to_string())),
            }
        }

        async fn drain(&self, p: &Value, instance: &Description) -> Result<()> {
            self.record(format!("drain {}", instance.id));
            match p.get("DrainError").and_then(Value::as_str) {
                Some(e) => Err(Error::plugin(e.to_string())),
                None => Ok(()),
            }
        }
    }

    struct Setup {
        _tmp: tempfile::TempDir,
        plugins: Arc<Plugins>,
        combo: ComboFlavor,
        a: Arc<Fake>,
        b: Arc<Fake>,
    }

    fn setup() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let plugins = Arc::new(Plugins::new(tmp.path()));
        let (a, b) = (Fake::new("a"), Fake::new("b"));
        plugins.register_flavor("flavor-a", a.clone());
        plugins.register_flavor("flavor-b", b.clone());
        let combo = ComboFlavor::new(&plugins);
        plugins.register_flavor("flavor-combo", Arc::new(combo.clone()));
        Setup {
            _tmp: tmp,
            plugins,
            combo,
            a,
            b,
        }
    }

    fn props(a: Value, b: Value) -> Value {
        json!({"Flavors": [
            {"Plugin": "flavor-a", "Properties": a},
            {"Plugin": "flavor-b", "Properties": b},
        ]})
    }

    fn instance() -> Description {
        Description {
            id: "i-1".into(),
            ..Default::default()
        }
    }

    fn input() -> Spec {
        Spec {
            properties: json!({"Cmd": "sleep"}),
            init: "echo first".into(),
            logical_id: Some("db1".into()),
            tags: [("infrakit.group".to_string(), "g".to_string())].into(),
            ..Default::default()
        }
    }

    async fn health(s: &Setup, a: &str, b: &str) -> Health {
        s.combo
            .healthy(
                &props(json!({"Health": a}), json!({"Health": b})),
                &instance(),
            )
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn prepare_chains_the_flavors_in_order() {
        let s = setup();
        let out = s
            .combo
            .prepare(
                &props(json!({}), json!({"SetProperties": {"Cmd": "java"}})),
                input(),
                &Allocation::size(1),
                &Index::default(),
            )
            .await
            .unwrap();
        assert_eq!(out.init, "echo first\necho a\necho b");
        assert_eq!(s.a.calls(), vec!["prepare saw init \"echo first\""]);
        assert_eq!(
            s.b.calls(),
            vec!["prepare saw init \"echo first\\necho a\""]
        );
        assert_eq!(&out.tags["by"], "b", "the later flavor wins a clash");
        assert_eq!(&out.tags["a"], "yes");
        assert_eq!(&out.tags["b"], "yes");
        assert_eq!(&out.tags["infrakit.group"], "g");
        let ids: Vec<&str> = out.attachments.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["vol-a", "vol-b"]);
        assert_eq!(out.properties, json!({"Cmd": "java"}));
        assert_eq!(out.logical_id.as_deref(), Some("db1"));
    }

    #[tokio::test]
    async fn prepare_stops_at_the_first_failure_and_names_it() {
        let s = setup();
        let e = s
            .combo
            .prepare(
                &props(json!({"Fail": "no disk"}), json!({})),
                input(),
                &Allocation::size(1),
                &Index::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "Flavors[0] (flavor-a): no disk");
        assert!(s.b.calls().is_empty());

        let missing = json!({"Flavors": [{"Plugin": "flavor-nope"}]});
        let e = s
            .combo
            .prepare(&missing, input(), &Allocation::size(1), &Index::default())
            .await
            .unwrap_err();
        assert!(
            e.to_string().starts_with("Flavors[0] (flavor-nope): "),
            "{e}"
        );
    }

    #[tokio::test]
    async fn healthy_is_the_worst_answer() {
        let s = setup();
        assert_eq!(health(&s, "healthy", "healthy").await, Health::Healthy);
        assert_eq!(health(&s, "healthy", "unknown").await, Health::Unknown);
        assert_eq!(health(&s, "unknown", "unhealthy").await, Health::Unhealthy);
        assert_eq!(health(&s, "unhealthy", "healthy").await, Health::Unhealthy);
        // An error counts as Unknown, but not over an Unhealthy answer.
        assert_eq!(health(&s, "boom", "healthy").await, Health::Unknown);
        assert_eq!(health(&s, "boom", "unhealthy").await, Health::Unhealthy);
        let missing = json!({"Flavors": [{"Plugin": "flavor-a"}, {"Plugin": "flavor-nope"}]});
        assert_eq!(
            s.combo.healthy(&missing, &instance()).await.unwrap(),
            Health::Unknown
        );
    }

    #[tokio::test]
    async fn drain_calls_every_flavor_and_reports_every_error() {
        let s = setup();
        s.combo
            .drain(&props(json!({}), json!({})), &instance())
            .await
            .unwrap();
        let e = s
            .combo
            .drain(
                &props(
                    json!({"DrainError": "busy"}),
                    json!({"DrainError": "locked"}),
                ),
                &instance(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "2 flavors failed to drain: Flavors[0] (flavor-a): busy; Flavors[1] (flavor-b): locked"
        );
        assert_eq!(s.a.calls(), vec!["drain i-1", "drain i-1"]);
        assert_eq!(
            s.b.calls(),
            vec!["drain i-1", "drain i-1"],
            "drained despite a's error"
        );

        let missing = json!({"Flavors": [{"Plugin": "flavor-nope"}, {"Plugin": "flavor-b"}]});
        let e = s.combo.drain(&missing, &instance()).await.unwrap_err();
        assert!(
            e.to_string().starts_with("Flavors[0] (flavor-nope): "),
            "{e}"
        );
        assert_eq!(
            s.b.calls().len(),
            3,
            "the flavor after a missing one is drained"
        );
    }

    #[tokio::test]
    async fn validate_reports_the_path_under_the_entry() {
        let s = setup();
        let alloc = Allocation::size(1);
        s.combo
            .validate(&props(json!({}), json!(null)), &alloc)
            .await
            .unwrap();
        let path = |e: Error| match e {
            Error::Invalid { path, .. } => path,
            other => panic!("not invalid: {other}"),
        };
        let e = s
            .combo
            .validate(&props(json!({}), json!({"Bad": "Init"})), &alloc)
            .await
            .unwrap_err();
        assert_eq!(path(e), "Properties.Flavors[1].Properties.Init");
        let e = s
            .combo
            .validate(&json!({"Flavors": [{"Plugin": "flavor-nope"}]}), &alloc)
            .await
            .unwrap_err();
        assert_eq!(path(e), "Properties.Flavors[0].Plugin");
        let e = s
            .combo
            .validate(&json!({"Flavors": []}), &alloc)
            .await
            .unwrap_err();
        assert_eq!(path(e), "Properties.Flavors");
    }

    #[tokio::test]
    async fn combos_nest() {
        let s = setup();
        let nested = json!({"Flavors": [
            {"Plugin": "flavor-a"},
            {"Plugin": "flavor-combo", "Properties": {"Flavors": [
                {"Plugin": "flavor-b", "Properties": {"Health": "unknown"}}
            ]}}
        ]});
        let out = s
            .combo
            .prepare(&nested, input(), &Allocation::size(1), &Index::default())
            .await
            .unwrap();
        assert_eq!(out.init, "echo first\necho a\necho b");
        assert_eq!(
            s.combo.healthy(&nested, &instance()).await.unwrap(),
            Health::Unknown
        );
        let bad = json!({"Flavors": [
            {"Plugin": "flavor-combo", "Properties": {"Flavors": [
                {"Plugin": "flavor-b", "Properties": {"Bad": "Tags"}}
            ]}}
        ]});
        let e = s
            .combo
            .validate(&bad, &Allocation::size(1))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Properties.Flavors[0].Properties.Flavors[0].Properties.Tags: rejected"
        );
    }

    #[tokio::test]
    async fn the_combo_does_not_keep_its_registry_alive() {
        let Setup { plugins, combo, .. } = setup();
        // The registry holds the combo; the combo must not hold the registry.
        drop(plugins);
        assert!(combo.plugins.upgrade().is_none());
        let e = combo
            .prepare(
                &props(json!({}), json!({})),
                input(),
                &Allocation::size(1),
                &Index::default(),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("registry is gone"), "{e}");
    }
}
