//! Requests to etcd with a deadline, retried while they fail for transient reasons.
//!
//! The client balances requests over every endpoint; one that is down (or was down, until the
//! client has reconnected to it) fails the requests routed to it with `Unavailable`. Such a
//! request never reached etcd, or was refused before it was decided, so trying again (another
//! endpoint, most likely) is safe for everything sent here: reads, lease grants, revocations,
//! and the store's conditional writes (applying the same put or delete twice changes nothing).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How long one request to etcd may take (campaigns, which wait for the election, excepted).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause between attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// No answer before the deadline (with the last transient error, if any).
    TimedOut(Duration, Option<etcd_client::Error>),
    /// etcd (or the connection to it) answered with an error.
    Failed(etcd_client::Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::TimedOut(limit, None) => write!(f, "no answer within {limit:?}"),
            CallError::TimedOut(limit, Some(last)) => {
                write!(f, "no answer within {limit:?} (last error: {last})")
            }
            CallError::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::TimedOut(_, last) => last.as_ref().map(|e| e as _),
            CallError::Failed(e) => Some(e),
        }
    }
}

/// gRPC's `UNAVAILABLE`.
const UNAVAILABLE: i32 = 14;

/// Whether an error means "not reached, or not decided; try again".
pub(crate) fn transient(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => i32::from(status.code()) == UNAVAILABLE,
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// Runs `op` until it succeeds, fails for good, or `limit` has passed.
pub(crate) async fn call<T, F, Fut>(limit: Duration, mut op: F) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + limit;
    let mut last = None;
    loop {
        match tokio::time::timeout_at(deadline, op()).await {
            Err(_) => return Err(CallError::TimedOut(limit, last)),
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if transient(&e) => {
                tracing::debug!(error = %e, "etcd request failed; retrying");
                last = Some(e);
                if Instant::now() + RETRY_PAUSE >= deadline {
                    return Err(CallError::TimedOut(limit, last));
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Ok(Err(e)) => return Err(CallError::Failed(e)),
        }
    }
}
