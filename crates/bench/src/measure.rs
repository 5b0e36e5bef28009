//! What a process costs: CPU time (`getrusage` for this one, `/proc/<pid>/stat` for others) and
//! memory (`/proc/<pid>/status`).

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
    memory_in("/proc/self/status")
}

/// Reads `VmRSS` and `VmHWM` of process `pid` from `/proc/<pid>/status`.
pub fn process_memory(pid: i32) -> Result<Memory> {
    memory_in(&format!("/proc/{pid}/status"))
}

fn memory_in(path: &str) -> Result<Memory> {
    let status = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in {path}"))?;
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

/// User plus system CPU time process `pid` has used so far (all its threads, not its
/// children), from `/proc/<pid>/stat`; to a clock tick (usually 10 ms).
pub fn process_cpu_time(pid: i32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses, so fields are counted after
    // the last ')'. utime and stime are fields 14 and 15, the 12th and 13th after comm.
    let after_comm = &stat[stat
        .rfind(')')
        .with_context(|| format!("no comm in {path}"))?
        + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let mut ticks = || -> Result<u64> {
        fields
            .next()
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no CPU times in {path}"))
    };
    let total = ticks()? + ticks()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|hz| *hz > 0)
        .unwrap_or(100) as u64;
    Ok(Duration::from_nanos(
        total.saturating_mul(1_000_000_000) / hz,
    ))
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

    #[test]
    fn another_process_is_read_through_its_pid() {
        let me = std::process::id() as i32;
        let before = process_cpu_time(me).unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(process_cpu_time(me).unwrap() > before);
        let m = process_memory(me).unwrap();
        assert!(m.rss > 0 && m.hwm >= m.rss);
        assert!(process_cpu_time(i32::MAX).is_err());
    }
}
