//! The process instance plugin, infrakit's embedded default: every instance is a local OS
//! process.
//!
//! Instance properties name the program ([`ProcessProperties`]):
//! `{"Cmd": "sleep", "Args": ["3600"], "Env": {"K": "V"}, "Dir": "/path"}`.
//!
//! # Layout
//!
//! The plugin owns a state directory, e.g. `$INFRAKIT_HOME/instance-process/<plugin-name>`.
//! Each instance has `instances/<id>/` in it holding
//! - `instance.json`: tags, logical ID, attachments, spec, pid and process start time, rewritten
//!   atomically on every change;
//! - `stdout.log` and `stderr.log`: output of the spec's `Init` script and of the command
//!   (appended);
//! - whatever the process writes, since this directory is its default working directory;
//! - `volumes/`, with a symlink per volume attachment (below).
//!
//! # Volumes
//!
//! An attachment of type `volume` in the provisioned spec (e.g. `{"ID": "data-db1", "Type":
//! "volume"}`) is a persistent directory `volumes/<ID>` of the state directory, created on first
//! use. It is never removed by the plugin, neither when an instance is destroyed nor when it
//! dies, so a pet replaced by a new instance with the same attachment finds its data again;
//! remove a volume by hand once nothing needs it. Attachment IDs must be plain directory names.
//! The init script and the command see each volume's absolute path in
//! `INFRAKIT_VOLUME_<ID>` ([`volume_env_name`]: `INFRAKIT_VOLUME_DATA_DB1`), and
//! `INFRAKIT_VOLUMES` names the instance's `volumes/` directory, where `<ID>` is a symlink to
//! the volume. Nothing is locked: two live instances with the same attachment share the
//! directory. Attachments of other types are recorded, and otherwise ignored.
//!
//! # Lifecycle
//!
//! `Provision` runs `Init` (if any) with `/bin/sh -c` and waits for it, then starts the command
//! in a process group of its own, so a Ctrl-C in the terminal that started the plugin does not
//! reach the instances and `Destroy` can kill everything the command started. Both see
//! `INFRAKIT_INSTANCE_ID`, `INFRAKIT_LOGICAL_ID` and `INFRAKIT_GROUP` in their environment.
//!
//! Processes outlive the plugin. [`ProcessPlugin::open`] on the same state directory re-adopts
//! those still running (same pid *and* same start time, so a recycled pid is not mistaken for the
//! instance) and forgets the others.
//!
//! An instance whose process exits by itself (not through `Destroy`) leaves the live set at once,
//! and an `exited` event is published ([`Publisher`]); what is left of its process group is
//! killed. Its directory, with the logs, is kept for post-mortems (the last
//! [`DEAD_INSTANCE_DIRS_KEPT`] only) until the plugin is next opened.

mod procfs;
mod properties;
mod record;
mod volumes;

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use infrakit_spi::event::{Event, Publisher};
use infrakit_spi::instance::{tags_match, Properties, GROUP_TAG};
use infrakit_spi::{Description, DestroyContext, Error, Instance, Result, Spec, Tags};
use nix::sys::signal::Signal;
use rand::Rng;
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use procfs::Presence;
pub use properties::ProcessProperties;
use record::{Record, RECORD_FILE};
use volumes::VOLUMES_DIR;
pub use volumes::{volume_env_name, ENV_VOLUMES, ENV_VOLUME_PREFIX, VOLUME_ATTACHMENT};

/// Prefix of every instance ID; 8 random lowercase letters and digits follow.
pub const ID_PREFIX: &str = "proc-";
/// Default time a process gets to exit after SIGTERM before it is sent SIGKILL.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(5);
/// Default time the `Init` script may run.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(300);
/// How often re-adopted processes (which are not children of the plugin) are checked.
pub const ADOPTED_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How many directories of instances that exited by themselves are kept, for their logs.
pub const DEAD_INSTANCE_DIRS_KEPT: usize = 16;
/// Capacity of the event channel; slow subscribers lose the oldest events beyond this.
pub const EVENT_CAPACITY: usize = 1024;

/// Environment variable holding the instance ID.
pub const ENV_INSTANCE_ID: &str = "INFRAKIT_INSTANCE_ID";
/// Environment variable holding the logical ID (empty for cattle).
pub const ENV_LOGICAL_ID: &str = "INFRAKIT_LOGICAL_ID";
/// Environment variable holding the `infrakit.group` tag (empty if absent).
pub const ENV_GROUP: &str = "INFRAKIT_GROUP";

/// Name of the log file receiving standard output.
pub const STDOUT_LOG: &str = "stdout.log";
/// Name of the log file receiving standard error.
pub const STDERR_LOG: &str = "stderr.log";

/// How much of each log an `Init` failure quotes.
const INIT_TAIL_BYTES: u64 = 2048;
/// Longest polling step while waiting for a signalled process to go.
const KILL_POLL: Duration = Duration::from_millis(20);
/// How long to wait for a process to disappear after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// The process instance plugin.
///
/// Cheap to clone; clones share the instances. Must be created and used within a tokio runtime
/// (with the process and time drivers, e.g. `#[tokio::main]`). Dropping the last clone stops
/// watching the processes but leaves them running; a later [`ProcessPlugin::open`] adopts them.
#[derive(Debug, Clone)]
pub struct ProcessPlugin {
    inner: Arc<Inner>,
    grace_period: Duration,
    init_timeout: Duration,
}

#[derive(Debug)]
struct Inner {
    state_dir: PathBuf,
    /// `<state_dir>/volumes`, absolute.
    volumes_root: PathBuf,
    live: Mutex<HashMap<String, Live>>,
    /// Directories of instances that exited by themselves, oldest first.
    dead_dirs: Mutex<VecDeque<PathBuf>>,
    events: broadcast::Sender<Event>,
}

#[derive(Debug)]
struct Live {
    record: Record,
    /// The task noticing the process's exit.
    watcher: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let live = self.live.get_mut().unwrap_or_else(|e| e.into_inner());
        for l in live.values() {
            l.watcher.abort();
        }
    }
}

fn plugin_error(
    what: impl std::fmt::Display,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::caused(what.to_string(), e)
}

/// True when `id` could name an instance directory (a plain, non-hidden file name).
fn valid_id(id: &str) -> bool {
    !id.is_empty() && !id.starts_with('.') && !id.contains(['/', '\\', '\0'])
}

fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{ID_PREFIX}{suffix}")
}

fn remove_dir(path: &Path) {
    match fs::remove_dir_all(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(dir = %path.display(), error = %e, "cannot remove instance directory")
        }
    }
}

impl ProcessPlugin {
    /// Opens the plugin on `state_dir` (created if missing), re-adopting the processes of
    /// instances that still run and forgetting the others.
    ///
    /// Must be called from within a tokio runtime: it starts a watcher task per adopted process.
    pub fn open(state_dir: PathBuf) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::plugin("the process plugin must be opened from within a tokio runtime")
        })?;
        let instances = state_dir.join("instances");
        fs::create_dir_all(&instances)
            .map_err(|e| plugin_error(format_args!("cannot create {}", instances.display()), e))?;
        let volumes_root = std::path::absolute(state_dir.join(VOLUMES_DIR)).map_err(|e| {
            plugin_error(
                format_args!("cannot make {} absolute", state_dir.display()),
                e,
            )
        })?;

        let mut adopted = Vec::new();
        let entries = fs::read_dir(&instances)
            .map_err(|e| plugin_error(format_args!("cannot list {}", instances.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                plugin_error(format_args!("cannot list {}", instances.display()), e)
            })?;
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            match Record::load(&path) {
                Ok(r) if r.id == name && procfs::presence(r.pid, r.start_time).running() => {
                    tracing::info!(id = %r.id, pid = r.pid, "re-adopted running instance");
                    adopted.push(r);
                }
                Ok(r) => {
                    tracing::info!(id = %r.id, pid = r.pid, "dropping instance whose process is gone");
                    remove_dir(&path);
                }
                Err(e) => {
                    tracing::debug!(dir = %path.display(), error = %e, "removing directory without a usable instance record");
                    remove_dir(&path);
                }
            }
        }

        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let inner = Arc::new(Inner {
            state_dir,
            volumes_root,
            live: Mutex::new(HashMap::new()),
            dead_dirs: Mutex::new(VecDeque::new()),
            events,
        });
        {
            let mut live = inner.lock_live();
            for record in adopted {
                let watcher = runtime.spawn(watch_adopted(
                    Arc::downgrade(&inner),
                    record.id.clone(),
                    record.pid,
                    record.start_time,
                ));
                live.insert(
                    record.id.clone(),
                    Live {
                        record,
                        watcher: watcher.abort_handle(),
                    },
                );
            }
        }
        Ok(ProcessPlugin {
            inner,
            grace_period: DEFAULT_GRACE_PERIOD,
            init_timeout: DEFAULT_INIT_TIMEOUT,
        })
    }

    /// Sets how long `Destroy` waits after SIGTERM before sending SIGKILL.
    pub fn with_grace_period(mut self, grace_period: Duration) -> Self {
        self.grace_period = grace_period;
        self
    }

    /// Sets how long the `Init` script may run before it is killed and `Provision` fails.
    pub fn with_init_timeout(mut self, init_timeout: Duration) -> Self {
        self.init_timeout = init_timeout;
        self
    }

    /// The SIGTERM-to-SIGKILL grace period of `Destroy`.
    pub fn grace_period(&self) -> Duration {
        self.grace_period
    }

    /// The `Init` timeout.
    pub fn init_timeout(&self) -> Duration {
        self.init_timeout
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// The directory of instance `id` (its state, logs and default working directory), whether or
    /// not it exists; `None` for an ID that cannot name one.
    pub fn instance_dir(&self, id: &str) -> Option<PathBuf> {
        self.inner.instance_dir(id)
    }

    /// The directory of the volume attachment `id` (absolute), whether or not it exists; `None`
    /// for an ID that cannot name one. Volumes outlive instances: the plugin never removes them.
    pub fn volume_dir(&self, id: &str) -> Option<PathBuf> {
        volumes::valid_volume_id(id).then(|| self.inner.volumes_root.join(id))
    }

    /// The pid of live instance `id`.
    pub fn pid(&self, id: &str) -> Option<u32> {
        let live = self.inner.lock_live();
        live.get(id).map(|l| l.record.pid as u32)
    }

    /// Runs the `Init` script synchronously; on failure the error quotes the end of its output.
    async fn run_init(
        &self,
        id: &str,
        script: &str,
        dir: &Path,
        env: &[(String, String)],
        stdout: &File,
        stderr: &File,
    ) -> Result<()> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(clone_file(stdout)?)
            .stderr(clone_file(stderr)?)
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| plugin_error(format_args!("cannot run Init in {}", dir.display()), e))?;
        let pid = child.id().map(|p| p as i32);
        let outcome = tokio::time::timeout(self.init_timeout, child.wait()).await;
        // Whatever the script left running in the background goes too.
        if let Some(pid) = pid {
            procfs::signal_group(pid, Signal::SIGKILL);
        }
        let failure = match outcome {
            Ok(Ok(status)) if status.success() => return Ok(()),
            Ok(Ok(status)) => format!("Init failed ({status})"),
            Ok(Err(e)) => format!("Init failed: cannot wait for it: {e}"),
            Err(_) => {
                let _ = child.wait().await;
                format!(
                    "Init timed out after {}",
                    humantime::format_duration(self.init_timeout)
                )
            }
        };
        let log_dir = self.inner.instance_dir(id).unwrap_or_default();
        Err(Error::plugin(format!(
            "{failure}; stderr: {:?}; stdout: {:?}",
            tail(&log_dir.join(STDERR_LOG)),
            tail(&log_dir.join(STDOUT_LOG))
        )))
    }

    /// Everything Provision does after the instance directory exists. On error the caller
    /// removes that directory.
    async fn start(
        &self,
        id: &str,
        inst_dir: &Path,
        props: ProcessProperties,
        spec: Spec,
        volume_ids: &[&str],
    ) -> Result<()> {
        let dir = props.dir.clone().unwrap_or_else(|| inst_dir.to_path_buf());
        let mut env: Vec<(String, String)> = props.env.clone().into_iter().collect();
        env.push((ENV_INSTANCE_ID.into(), id.to_string()));
        env.push((
            ENV_LOGICAL_ID.into(),
            spec.logical_id.clone().unwrap_or_default(),
        ));
        env.push((
            ENV_GROUP.into(),
            spec.tags
                .get(GROUP_TAG)
                .map(str::to_string)
                .unwrap_or_default(),
        ));
        if !volume_ids.is_empty() {
            let links = std::path::absolute(inst_dir.join(VOLUMES_DIR))
                .map_err(|e| plugin_error("cannot locate the instance's volumes", e))?;
            let volume_env = volumes::attach(&self.inner.volumes_root, &links, volume_ids)
                .map_err(|e| {
                    plugin_error(
                        format_args!(
                            "cannot attach volumes under {}",
                            self.inner.volumes_root.display()
                        ),
                        e,
                    )
                })?;
            env.extend(volume_env);
        }

        let stdout = open_log(&inst_dir.join(STDOUT_LOG))?;
        let stderr = open_log(&inst_dir.join(STDERR_LOG))?;

        if !spec.init.trim().is_empty() {
            self.run_init(id, &spec.init, &dir, &env, &stdout, &stderr)
                .await?;
        }

        let mut cmd = Command::new(&props.cmd);
        cmd.args(&props.args)
            .current_dir(&dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        let child = cmd.spawn().map_err(|e| {
            plugin_error(
                format_args!("cannot start {:?} in {}", props.cmd, dir.display()),
                e,
            )
        })?;
        let pid = child
            .id()
            .ok_or_else(|| Error::plugin("the process vanished as it started"))?
            as i32;
        let record = Record {
            id: id.to_string(),
            logical_id: spec.logical_id.clone(),
            tags: spec.tags.clone(),
            attachments: spec.attachments.clone(),
            pid,
            start_time: procfs::start_time(pid).unwrap_or(0),
            started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            dir,
            cmd: props.cmd,
            spec,
        };
        if let Err(e) = record.save(inst_dir) {
            procfs::signal_group(pid, Signal::SIGKILL);
            let mut child = child;
            let _ = child.wait().await;
            return Err(plugin_error(
                format_args!("cannot write {}", inst_dir.join(RECORD_FILE).display()),
                e,
            ));
        }

        let mut live = self.inner.lock_live();
        let watcher = tokio::spawn(watch_child(
            Arc::downgrade(&self.inner),
            id.to_string(),
            pid,
            child,
        ));
        live.insert(
            id.to_string(),
            Live {
                record,
                watcher: watcher.abort_handle(),
            },
        );
        tracing::info!(%id, pid, "started instance");
        Ok(())
    }
}

impl Inner {
    fn lock_live(&self) -> MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn instance_dir(&self, id: &str) -> Option<PathBuf> {
        valid_id(id).then(|| self.state_dir.join("instances").join(id))
    }

    /// Records that the process of `id` exited by itself: drops the instance and publishes
    /// `exited`. Does nothing when the instance is no longer live (e.g. being destroyed).
    fn exited(&self, id: &str, pid: i32, status: &str) {
        let record = {
            let mut live = self.lock_live();
            match live.get(id) {
                Some(l) if l.record.pid == pid => live.remove(id).map(|l| l.record),
                _ => None,
            }
        };
        let Some(record) = record else {
            return;
        };
        // The instance is its process group: kill what the leader left behind.
        if procfs::presence(pid, record.start_time) != Presence::Reused {
            procfs::signal_group(pid, Signal::SIGKILL);
        }
        if let Some(dir) = self.instance_dir(id) {
            let _ = fs::remove_file(dir.join(RECORD_FILE));
            let mut dead = self.dead_dirs.lock().unwrap_or_else(|e| e.into_inner());
            dead.push_back(dir);
            while dead.len() > DEAD_INSTANCE_DIRS_KEPT {
                if let Some(old) = dead.pop_front() {
                    remove_dir(&old);
                }
            }
        }
        let message = format!("process {pid} exited: {status}");
        tracing::info!(%id, "{message}");
        let event = Event::instance("exited", id, message, json!({"Tags": record.tags}));
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }
}

/// Waits for a child the plugin spawned, then reports its exit.
async fn watch_child(inner: Weak<Inner>, id: String, pid: i32, mut child: Child) {
    let status = match child.wait().await {
        Ok(status) => status.to_string(),
        Err(e) => format!("unknown status ({e})"),
    };
    if let Some(inner) = inner.upgrade() {
        inner.exited(&id, pid, &status);
    }
}

/// Polls a re-adopted process (not a child of this plugin, so it cannot be waited for).
async fn watch_adopted(inner: Weak<Inner>, id: String, pid: i32, start_time: u64) {
    let mut tick = tokio::time::interval(ADOPTED_POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let still_live = inner
            .lock_live()
            .get(&id)
            .is_some_and(|l| l.record.pid == pid);
        if !still_live {
            return; // destroyed
        }
        if !procfs::presence(pid, start_time).running() {
            inner.exited(&id, pid, "status unknown (not a child of this plugin)");
            return;
        }
    }
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| plugin_error(format_args!("cannot open {}", path.display()), e))
}

fn clone_file(f: &File) -> Result<File> {
    f.try_clone()
        .map_err(|e| plugin_error("cannot duplicate a log file handle", e))
}

/// The last few KiB of a log file, trimmed.
fn tail(path: &Path) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(INIT_TAIL_BYTES);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(INIT_TAIL_BYTES).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).trim().to_string()
}

/// Stops the process (pid, start time) and its group: SIGTERM, up to `grace` to exit, SIGKILL.
async fn terminate(pid: i32, start_time: u64, grace: Duration) -> Result<()> {
    let presence = procfs::presence(pid, start_time);
    if presence == Presence::Reused {
        return Ok(()); // the pid is someone else's now: the instance is long gone
    }
    if presence.running() {
        procfs::signal_process(pid, Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + grace;
        let mut poll = Backoff::default();
        while procfs::presence(pid, start_time).running() && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(poll.next()).await;
        }
    }
    // Kill the leader if it ignored SIGTERM, and whatever it left behind in its group.
    match procfs::presence(pid, start_time) {
        Presence::Running | Presence::Zombie => {
            procfs::signal_process(pid, Signal::SIGKILL);
        }
        Presence::Gone => {
            procfs::signal_group(pid, Signal::SIGKILL);
        }
        Presence::Reused => {}
    }
    let deadline = tokio::time::Instant::now() + KILL_WAIT;
    let mut poll = Backoff::default();
    while procfs::presence(pid, start_time).running() {
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::plugin(format!(
                "process {pid} is still running after SIGKILL"
            )));
        }
        tokio::time::sleep(poll.next()).await;
    }
    Ok(())
}

/// Waits between looks at a process being stopped: 1 ms, then doubling up to [`KILL_POLL`]. Most
/// processes are gone within a millisecond of SIGTERM, so a rolling update's step does not wait
/// a whole poll period for each.
#[derive(Debug, Default)]
struct Backoff(u32);

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = Duration::from_millis(1 << self.0.min(5)).min(KILL_POLL);
        self.0 += 1;
        wait
    }
}

impl Publisher for ProcessPlugin {
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }
}

#[async_trait]
impl Instance for ProcessPlugin {
    async fn validate(&self, properties: &Value) -> Result<()> {
        ProcessProperties::parse(properties).map(|_| ())
    }

    async fn provision(&self, spec: Spec) -> Result<String> {
        let props = ProcessProperties::parse(&spec.properties)?;
        let volume_ids: Vec<String> = volumes::volume_ids(&spec)?
            .into_iter()
            .map(String::from)
            .collect();
        let volume_ids: Vec<&str> = volume_ids.iter().map(String::as_str).collect();
        let (id, inst_dir) = loop {
            let id = new_id();
            let dir = self.inner.state_dir.join("instances").join(&id);
            match fs::create_dir(&dir) {
                Ok(()) => break (id, dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(plugin_error(
                        format_args!("cannot create {}", dir.display()),
                        e,
                    ))
                }
            }
        };
        match self.start(&id, &inst_dir, props, spec, &volume_ids).await {
            Ok(()) => Ok(id),
            Err(e) => {
                remove_dir(&inst_dir);
                Err(e)
            }
        }
    }

    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        let dir = self
            .inner
            .instance_dir(id)
            .ok_or_else(|| Error::instance_not_found(id))?;
        let mut live = self.inner.lock_live();
        let l = live
            .get_mut(id)
            .ok_or_else(|| Error::instance_not_found(id))?;
        let mut record = l.record.clone();
        record.tags.extend(labels);
        record.save(&dir).map_err(|e| {
            plugin_error(
                format_args!("cannot write {}", dir.join(RECORD_FILE).display()),
                e,
            )
        })?;
        l.record = record;
        Ok(())
    }

    async fn destroy(&self, id: &str, context: &DestroyContext) -> Result<()> {
        let Some(dir) = self.inner.instance_dir(id) else {
            return Ok(()); // cannot name an instance: nothing to destroy
        };
        let taken = self.inner.lock_live().remove(id);
        if let Some(live) = taken {
            let r = &live.record;
            tracing::info!(%id, pid = r.pid, reason = %context.reason, "destroying instance");
            if let Err(e) = terminate(r.pid, r.start_time, self.grace_period).await {
                // Keep tracking it: it is still there.
                self.inner.lock_live().insert(id.to_string(), live);
                return Err(e);
            }
        }
        remove_dir(&dir);
        Ok(())
    }

    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        let mut out: Vec<Description> = {
            let live = self.inner.lock_live();
            live.values()
                .filter(|l| tags_match(&l.record.tags, tags))
                .map(|l| {
                    let r = &l.record;
                    Description {
                        id: r.id.clone(),
                        logical_id: r.logical_id.clone(),
                        tags: r.tags.clone(),
                        properties: properties.then(|| {
                            Properties::new(&json!({
                                "State": "running",
                                "PID": r.pid,
                                "StartedAt": r.started_at,
                                "Dir": r.dir,
                                "Cmd": r.cmd,
                            }))
                        }),
                        created: humantime::parse_rfc3339_weak(&r.started_at).ok(),
                    }
                })
                .collect()
        };
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_processes_are_looked_at_soon_then_less_often() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..8).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 20, 20, 20]);
    }

    #[test]
    fn ids_are_prefixed_lowercase_alphanumerics() {
        for _ in 0..100 {
            let id = new_id();
            let suffix = id.strip_prefix(ID_PREFIX).unwrap();
            assert_eq!(suffix.len(), 8);
            assert!(suffix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        }
        assert!(!valid_id("../x") && !valid_id("") && !valid_id(".hidden") && valid_id(&new_id()));
    }

    #[test]
    fn open_needs_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let err = ProcessPlugin::open(dir.path().to_path_buf()).unwrap_err();
        assert!(err.to_string().contains("tokio runtime"), "{err}");
    }
}
