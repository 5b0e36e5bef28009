//! Polling with a deadline, the tests' only way to wait for something to happen.

use std::time::Duration;

use tokio::time::Instant;

/// Polls `f` until it returns `Some`, failing the test after `within`, measured on tokio's clock:
/// real time, or virtual time in a test with paused time (where `within` is then a bound on the
/// simulated system, not on this machine's speed).
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
