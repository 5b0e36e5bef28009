//! Polling with a deadline, the tests' only way to wait for something to happen.
//!
//! - [`eventually`]: an async check that yields a value once it holds.
//! - [`until`]: an async check that holds or not.
//! - [`eventually_blocking`]: a check on the test's own thread, for tests without a runtime
//!   (those that drive the `infrakit` binary).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Polls `f` until it returns `Some`, failing the test after `within`, measured on tokio's clock:
/// real time, or virtual time in a test with paused time (where `within` is then a bound on the
/// simulated system, not on this machine's speed).
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
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

/// Polls `check` until it holds, failing the test after `within` (on tokio's clock, as
/// [`eventually`]).
pub async fn until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(what, within, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await
}

/// Polls `f` on this thread until it returns `Some`, failing the test after `within` of real
/// time. It sleeps 50 ms between polls: the checks it serves usually run a command.
pub fn eventually_blocking<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn eventually_returns_the_first_value_and_until_waits_for_true() {
        let start = Instant::now();
        let mut polls = 0;
        let v = eventually("the third poll", Duration::from_secs(1), || {
            polls += 1;
            let n = polls;
            async move { (n == 3).then_some(n) }
        })
        .await;
        assert_eq!(v, 3);
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(40),
            "two 20 ms pauses"
        );

        let mut left = 2;
        until("the countdown", Duration::from_secs(1), || {
            left -= 1;
            let done = left == 0;
            async move { done }
        })
        .await;
        assert_eq!(left, 0);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "not within 1s: never")]
    async fn eventually_fails_after_the_deadline() {
        eventually("never", Duration::from_secs(1), || async { None::<()> }).await;
    }

    #[test]
    fn eventually_blocking_polls_and_fails_after_the_deadline() {
        let mut polls = 0;
        let v = eventually_blocking("the second poll", Duration::from_secs(10), || {
            polls += 1;
            (polls == 2).then_some(polls)
        });
        assert_eq!(v, 2);
        let failed = std::panic::catch_unwind(|| {
            eventually_blocking("never", Duration::from_millis(100), || None::<()>)
        });
        let message = failed.unwrap_err();
        let message = message.downcast_ref::<String>().unwrap();
        assert_eq!(message, "not within 100ms: never");
    }
}
