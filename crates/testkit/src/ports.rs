//! Loopback ports for the servers tests start (etcd, moto, ZooKeeper, listeners of our own
//! binaries), reserved so that no two tests are handed the same one, in this process or in any
//! other test process on the machine.
//!
//! Picking a free port, releasing it and letting a child bind it later is a race: another test
//! can be handed the same port meanwhile, and a client then talks to the wrong server. Here a
//! port is taken below the kernel's ephemeral range (which port-0 binds and outgoing connections
//! draw from), locked with an exclusive `flock` on a file named after it for as long as this
//! process lives, and checked free by binding it once.

use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};

/// Locks of the ports this process holds; they are released when it exits.
static HELD: Mutex<Vec<Flock<File>>> = Mutex::new(Vec::new());

/// `n` distinct loopback ports nothing listens on, reserved for this process.
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| reserve()).collect()
}

/// A loopback port nothing listens on, reserved for this process.
pub fn free_port() -> u16 {
    reserve()
}

fn lock_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("infrakit-test-ports");
    std::fs::create_dir_all(&dir).expect("creating the port lock directory");
    dir
}

/// Ports below the ephemeral range, so the kernel never hands them out on its own.
fn candidates() -> Range<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let high = ephemeral_low.clamp(12_000, 32_768);
    (high - 10_000)..high
}

fn reserve() -> u16 {
    let dir = lock_dir();
    let range = candidates();
    let len = u64::from(range.end - range.start);
    let start = RandomState::new().hash_one(std::process::id()) % len;
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..len {
        let port = range.start + ((start + i) % len) as u16;
        let Ok(file) = File::create(dir.join(port.to_string())) else {
            continue;
        };
        let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue; // held by another test process, or by this one
        };
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue; // something outside the tests listens there
        }
        held.push(lock);
        return port;
    }
    panic!("no free loopback port in {range:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_locked_against_other_processes() {
        let ports = free_ports(50);
        let mut unique = ports.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 50, "{ports:?}");
        for port in ports {
            assert!(candidates().contains(&port));
            // Free to bind for the server it is meant for.
            drop(TcpListener::bind(("127.0.0.1", port)).expect("a reserved port binds"));
            // Another holder of the lock (a second open file description) is refused.
            let file = File::create(lock_dir().join(port.to_string())).unwrap();
            assert!(Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err());
        }
    }
}
