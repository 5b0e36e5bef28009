//! The plugin's own file-system threads: a fixed few, for the whole life of the plugin.
//!
//! Not tokio's blocking pool: there, a burst of parallel calls (a group provisioning 64
//! instances at once) starts a thread each, and a steady trickle of calls afterwards (a describe
//! every 100 ms) wakes the idle ones in turn, so none lives out its idle timeout. Each of these
//! threads keeps memory of its own in the allocator, and a few dozen of them made most of the
//! plugin's resident memory.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use infrakit_spi::{Error, Result};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Name of the threads (`/proc/<pid>/task/*/comm`).
pub(crate) const THREAD_NAME: &str = "instance-file-io";

/// A fixed set of threads running jobs in turn. Dropping it lets them end once the jobs queued
/// are done.
#[derive(Debug)]
pub(crate) struct Pool {
    jobs: mpsc::Sender<Job>,
}

impl Pool {
    /// Starts `threads` threads.
    pub(crate) fn start(threads: usize) -> std::io::Result<Pool> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads.max(1) {
            let queue = queue.clone();
            thread::Builder::new()
                .name(THREAD_NAME.to_string())
                .spawn(move || loop {
                    // The lock is held while waiting, so one thread waits on the queue and the
                    // others on the lock; a job is taken by one only.
                    let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return, // the pool was dropped and the queue is empty
                    }
                })?;
        }
        Ok(Pool { jobs })
    }

    /// Runs `f` on one of the threads and waits for its result without blocking the caller's
    /// thread. The job runs to its end even if the caller stops waiting.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(f))
                .unwrap_or_else(|_| Err(Error::plugin("file plugin task panicked")));
            let _ = tx.send(result);
        });
        self.jobs
            .send(job)
            .map_err(|_| Error::plugin("the file plugin's threads are gone"))?;
        rx.await
            .map_err(|_| Error::plugin("the file plugin's threads are gone"))?
    }
}
