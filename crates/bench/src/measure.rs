//! What the process costs: CPU time (`getrusage`) and memory (`/proc/self/status`).

use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::resource::{getrusage, UsageWho};

/// User plus system CPU time used by this process so far (all threads).
pub fn cpu_time() -> Result<Duration> {
    let (user, system) = cpu_times()?;
    Ok(user + system)
}

/// User and system (kernel) CPU time used by this process so far (all threads).
pub fn cpu_times() -> Result<(Duration, Duration)> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).context("getrusage")?;
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Ok((tv(usage.user_time()), tv(usage.system_time())))
}

/// CPU time of the calling thread (zero if the clock cannot be read).
pub fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Resident memory of this process: now (`VmRSS`) and at its peak (`VmHWM`), in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Resident now.
    pub rss: u64,
    /// Highest resident so far.
    pub hwm: u64,
}

/// Reads `VmRSS` and `VmHWM` from `/proc/self/status`.
pub fn memory() -> Result<Memory> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/self/status"))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("cannot parse {line:?}"))?;
        Ok(kb * 1024)
    };
    Ok(Memory {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
    })
}

/// Milliseconds in a duration, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Bytes to mebibytes.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_and_memory_are_read() {
        let before = cpu_time().unwrap();
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(cpu_time().unwrap() >= before);
        let m = memory().unwrap();
        assert!(m.rss > 0 && m.hwm >= m.rss);
    }
}
