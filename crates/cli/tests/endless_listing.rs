//! An instance plugin that starts answering `DescribeInstances` with a body that never ends, in
//! front of a real group plugin process: the group plugin's memory stays bounded, each listing
//! fails instead of hanging, the group's status names the plugin and what it did, nothing is
//! destroyed, and once the plugin is fixed the group heals what died meanwhile.
//!
//! The plugin is `instance-file` (a process of its own) behind a proxy served by this test on
//! the socket `instance-hostile`: it forwards every call, except listings while broken.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, instance_files as files, Home};

const WAIT: Duration = Duration::from_secs(60);

/// Reads one request (head and `Content-Length` body): (head, body).
fn read_request(stream: &mut BufReader<UnixStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// Serves the proxy on `socket`, forwarding to `backend`; listings get an endless body while
/// `broken`.
fn proxy(socket: &Path, backend: PathBuf, broken: Arc<AtomicBool>) {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let backend = backend.clone();
            let broken = broken.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let Some((head, body)) = read_request(&mut reader) else {
                    return;
                };
                let mut client = reader.into_inner();
                let listing = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .is_some_and(|v| v["method"] == "Instance.DescribeInstances");
                if listing && broken.load(Ordering::SeqCst) {
                    let _ = client.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                    );
                    let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
                    chunk.extend(std::iter::repeat_n(b' ', 64 * 1024));
                    chunk.extend(b"\r\n");
                    while client.write_all(&chunk).is_ok() {}
                    return;
                }
                // Forward the request as it came, one per connection.
                let request_line = head.lines().next().unwrap_or("POST / HTTP/1.1");
                let Ok(mut upstream) = UnixStream::connect(&backend) else {
                    return;
                };
                let forwarded = format!(
                    "{request_line}\r\nHost: plugin\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                if upstream.write_all(forwarded.as_bytes()).is_err()
                    || upstream.write_all(&body).is_err()
                {
                    return;
                }
                let mut answer = Vec::new();
                let _ = upstream.read_to_end(&mut answer);
                let _ = client.write_all(&answer);
            });
        }
    });
}

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

#[test]
fn an_endless_listing_is_cut_reported_and_survived() {
    let home = Home::new();
    let dir = home.path().join("files");
    home.ok(&[
        "plugin",
        "start",
        "instance-file",
        "group",
        "flavor-vanilla",
        "--dir",
        dir.to_str().unwrap(),
        "--poll-interval",
        "200ms",
    ]);
    let plugins = home.path().join("plugins");
    let broken = Arc::new(AtomicBool::new(false));
    proxy(
        &plugins.join("instance-hostile"),
        plugins.join("instance-file"),
        broken.clone(),
    );
    let pid: u32 = std::fs::read_to_string(plugins.join("group.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let spec = serde_json::json!({
        "ID": "cattle",
        "Properties": {
            "Allocation": {"Size": 3},
            "Instance": {"Plugin": "instance-hostile", "Properties": {"Note": "v1"}},
            "Flavor": {"Plugin": "flavor-vanilla"},
        }
    });
    let file = home.write("cattle.json", &spec.to_string());
    home.ok(&["group", "commit", file.to_str().unwrap()]);
    let three = eventually("three instances, converged", WAIT, || {
        let out = home.ok(&["group", "describe", "cattle"]);
        let now = files(&dir);
        (now.len() == 3 && out.contains("; converged")).then_some(now)
    });
    // The plugin's normal size, after a few passes.
    let normal = (0..10)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            rss(pid)
        })
        .max()
        .unwrap();

    // Broken: every listing streams for ever. An instance dies meanwhile.
    broken.store(true, Ordering::SeqCst);
    let killed = three.iter().next().unwrap().clone();
    std::fs::remove_file(dir.join(&killed)).unwrap();
    let mut peak = 0;
    let said = eventually("describe names the plugin's fault", WAIT, || {
        peak = peak.max(rss(pid));
        let out = home.run(&["group", "describe", "cattle"]);
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.contains(
            "plugin 'instance-hostile' answered Instance.DescribeInstances with more than 67108864 bytes",
        )
        .then_some(text)
    });
    // A few more cut listings, sampling memory throughout.
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss(pid));
    }
    eprintln!(
        "group plugin resident memory: {} MiB before, at most {} MiB while listings were endless",
        normal >> 20,
        peak >> 20
    );
    assert!(
        peak < normal + 100 * 1024 * 1024,
        "the group plugin grew from {} MiB to {} MiB",
        normal >> 20,
        peak >> 20
    );
    assert_eq!(
        files(&dir).len(),
        2,
        "nothing created or destroyed while the group cannot see: {said}"
    );

    // Fixed: the dead instance is replaced, the two others kept.
    broken.store(false, Ordering::SeqCst);
    let healed = eventually("healed once the plugin is fixed", WAIT, || {
        let out = home.ok(&["group", "describe", "cattle"]);
        let now = files(&dir);
        (now.len() == 3 && out.contains("; converged")).then_some(now)
    });
    assert_eq!(healed.intersection(&three).count(), 2);
    assert!(!healed.contains(&killed));
}
