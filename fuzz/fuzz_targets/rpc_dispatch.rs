//! The JSON-RPC request parser and dispatcher: arbitrary bytes as a request body, handled as the
//! server handles them (`infrakit_rpc::dispatch::handle_bytes`), against an in-memory instance
//! plugin (the simulator, fresh for every input) and fixed flavor and group plugins.
//!
//! Checked for every input: no panic, and any response is one JSON-RPC 2.0 object carrying
//! either an object result or an error with a known code (and, for protocol errors, a bounded
//! message).
#![no_main]

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

use infrakit_instance_simulator::{Simulator, SimulatorConfig};
use infrakit_rpc::Handlers;
use infrakit_spi::group::{PlanPreview, RolloutAction};
use infrakit_spi::{
    Allocation, Description, Error, Flavor, Group, GroupDescription, GroupSpec, Health, Index,
    Result, Spec,
};

/// A flavor that checks nothing and tags what it prepares.
struct Fixed;

#[async_trait]
impl Flavor for Fixed {
    async fn validate(&self, _: &Value, _: &Allocation) -> Result<()> {
        Ok(())
    }
    async fn prepare(&self, _: &Value, mut spec: Spec, _: &Allocation, i: &Index) -> Result<Spec> {
        spec.tags.insert("seq", i.sequence.to_string());
        Ok(spec)
    }
    async fn healthy(&self, _: &Value, _: &Description) -> Result<Health> {
        Ok(Health::Healthy)
    }
    async fn drain(&self, _: &Value, _: &Description) -> Result<()> {
        Ok(())
    }
}

/// A group plugin that knows one group, `workers`.
#[async_trait]
impl Group for Fixed {
    async fn commit_group(&self, spec: GroupSpec, _: bool) -> Result<String> {
        Ok(format!("committed {}", spec.id))
    }
    async fn free_group(&self, id: &str) -> Result<()> {
        known(id)
    }
    async fn describe_group(&self, id: &str) -> Result<GroupDescription> {
        known(id).map(|_| GroupDescription::default())
    }
    async fn destroy_group(&self, id: &str) -> Result<()> {
        known(id)
    }
    async fn inspect_groups(&self) -> Result<Vec<GroupSpec>> {
        Ok(vec![GroupSpec {
            id: "workers".into(),
            properties: Value::Null,
        }])
    }
    async fn destroy_instances(&self, id: &str, _: &[String]) -> Result<()> {
        known(id)
    }
    async fn size(&self, id: &str) -> Result<usize> {
        known(id).map(|_| 3)
    }
    async fn set_size(&self, id: &str, _: usize) -> Result<()> {
        known(id)
    }
    async fn plan_group(&self, spec: GroupSpec) -> Result<PlanPreview> {
        Ok(PlanPreview {
            details: spec.id,
            steps: vec![],
            min_healthy: 0,
            max_instances: 0,
        })
    }
    async fn rollout(&self, id: &str, _: RolloutAction) -> Result<()> {
        known(id)
    }
}

fn known(id: &str) -> Result<()> {
    if id == "workers" {
        Ok(())
    } else {
        Err(Error::NotFound {
            kind: "group",
            id: id.to_string(),
        })
    }
}

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
});

const CODES: &[i64] = &[-32700, -32600, -32601, -32602, -32000];

fuzz_target!(|data: &[u8]| {
    let fixed = Arc::new(Fixed);
    let handlers = Handlers::new()
        .instance("", Arc::new(Simulator::new(SimulatorConfig::default())))
        .instance(
            "typed",
            Arc::new(Simulator::new(SimulatorConfig::default())),
        )
        .flavor("", fixed.clone())
        .group(fixed);
    let Some(out) = RUNTIME.block_on(infrakit_rpc::dispatch::handle_bytes(&handlers, data)) else {
        return;
    };
    let v: Value = serde_json::from_slice(&out).expect("every response is JSON");
    assert_eq!(v["jsonrpc"], "2.0", "{v}");
    assert!(v.get("id").is_some(), "{v}");
    match (v.get("result"), v.get("error")) {
        (Some(r), None) => assert!(r.is_object(), "results are objects: {v}"),
        (None, Some(e)) => {
            let code = e["code"].as_i64().expect("an error code");
            assert!(CODES.contains(&code), "unknown code: {v}");
            let message = e["message"].as_str().expect("an error message");
            // Protocol errors are bounded; a plugin's own message (-32000) is passed on whole.
            if code != -32000 {
                assert!(
                    message.len() <= 4096,
                    "unbounded error message ({} bytes)",
                    message.len()
                );
            }
        }
        _ => panic!("exactly one of result and error: {v}"),
    }
});
