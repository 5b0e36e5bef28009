//! [`EtcdStore`]: group records in etcd, written only by the leader.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::PathBuf;

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde_json::{json, Value};

use infrakit_store::{Result, Store, StoreError};

use crate::call::{call, CallError, REQUEST_TIMEOUT};
use crate::endpoints_list;
use crate::session::Current;

/// Group records under `<cluster>/groups/<id>`, one JSON document each.
///
/// Reads are plain (linearizable) reads. Writes are transactions that succeed only if the
/// election key of the term this manager won last still exists with the same create revision:
/// once its lease has expired (the manager was paused, partitioned, or lost quorum) every write
/// fails, even before the manager notices, and a new leader's records are never overwritten by
/// an old one. Without a term, writes fail with "not the leader".
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    endpoints: Vec<String>,
    prefix: String,
    current: Current,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// An error about `key`, as a store I/O error of `kind`.
fn failure(key: &str, kind: ErrorKind, message: String) -> StoreError {
    StoreError::Io {
        path: PathBuf::from(key),
        source: std::io::Error::new(kind, message),
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.contains('/') || key.contains('\0') || key.starts_with('.') {
        return Err(StoreError::InvalidKey(key.to_string()));
    }
    Ok(())
}

impl EtcdStore {
    pub(crate) fn new(
        client: Client,
        endpoints: Vec<String>,
        cluster: &str,
        section: &str,
        current: Current,
    ) -> EtcdStore {
        EtcdStore {
            client,
            endpoints,
            prefix: format!("{cluster}/{section}/"),
            current,
        }
    }

    /// The key prefix of the records (`<cluster>/groups/`, `<cluster>/vars/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Details for `manager status`.
    pub fn info(&self) -> Value {
        json!({"Backend": "etcd", "Endpoints": self.endpoints, "Prefix": self.prefix})
    }

    fn failed(&self, key: &str, e: CallError) -> StoreError {
        let kind = match e {
            CallError::TimedOut(..) => ErrorKind::TimedOut,
            CallError::Failed(_) => ErrorKind::Other,
        };
        failure(
            key,
            kind,
            format!("etcd at {}: {e}", endpoints_list(&self.endpoints)),
        )
    }

    /// Runs `op` on `key` if this manager still leads, as etcd sees it.
    async fn write(&self, key: &str, op: TxnOp) -> Result<()> {
        let elected = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|s| s.elected());
        let Some(elected) = elected else {
            return Err(failure(
                key,
                ErrorKind::PermissionDenied,
                "not the leader: this manager holds no term".to_string(),
            ));
        };
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                elected.key.clone(),
                CompareOp::Equal,
                elected.rev,
            )])
            .and_then(vec![op]);
        let resp = call(REQUEST_TIMEOUT, || {
            let mut kv = self.client.kv_client();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await
        .map_err(|e| self.failed(key, e))?;
        if !resp.succeeded() {
            return Err(failure(
                key,
                ErrorKind::PermissionDenied,
                format!(
                    "not the leader any more: election key {} is gone (its lease expired or was revoked)",
                    String::from_utf8_lossy(&elected.key)
                ),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn load(&self) -> Result<BTreeMap<String, Value>> {
        let resp = call(REQUEST_TIMEOUT, || {
            let mut kv = self.client.kv_client();
            let prefix = self.prefix.clone();
            async move { kv.get(prefix, Some(GetOptions::new().with_prefix())).await }
        })
        .await
        .map_err(|e| self.failed(&self.prefix, e))?;
        let mut out = BTreeMap::new();
        for record in resp.kvs() {
            let key = String::from_utf8_lossy(record.key()).into_owned();
            let Some(id) = key.strip_prefix(&self.prefix) else {
                continue;
            };
            let value =
                serde_json::from_slice(record.value()).map_err(|source| StoreError::Corrupt {
                    path: PathBuf::from(&key),
                    source,
                })?;
            out.insert(id.to_string(), value);
        }
        Ok(out)
    }

    async fn put(&self, key: &str, value: &Value) -> Result<()> {
        check_key(key)?;
        let full = format!("{}{key}", self.prefix);
        let bytes = serde_json::to_vec(value).expect("JSON values serialise");
        self.write(&full, TxnOp::put(full.clone(), bytes, None))
            .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let full = format!("{}{key}", self.prefix);
        self.write(&full, TxnOp::delete(full.clone(), None)).await
    }
}
