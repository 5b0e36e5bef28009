//! The Vagrant instance plugin: every instance is a Vagrant machine with its own directory and
//! generated `Vagrantfile`.
//!
//! # Layout
//!
//! * [`properties`]: the instance properties (`Provider`, `Image` or `Box`, `Cmd`, `CPUs`,
//!   `Memory`, `Env`, `Networks`, `Vars`), decoded with field paths.
//! * [`template`]: the Vagrantfile template (built in, or the user's) and its variables.
//! * [`status`]: parsing `vagrant status --machine-readable`.
//! * [`freshness`]: when a describe may use a status run it did not start.
//! * [`vagrant`]: running the `vagrant` command line.
//! * [`instances`]: the instance directories and their `tags.json`.
//!
//! # Lifecycle
//!
//! `Provision` renders the Vagrantfile (an error there creates nothing), creates
//! `<dir>/<ID>/` with it, runs `vagrant up --provider=<Provider>` there and, once that
//! succeeded, writes the tags to `tags.json` and returns the ID. If `vagrant up` fails, the
//! machine is destroyed (`vagrant destroy -f`), the directory removed and the error carries
//! Vagrant's own message (if even the destroy fails, the directory stays, for
//! [`VagrantPlugin::reap_incomplete`]). The work runs in its own task, so a caller that gives up does not
//! leave a half-made machine behind.
//!
//! `Destroy` runs `vagrant destroy -f` and removes the directory; a missing instance is already
//! destroyed, and a second `Destroy` of an instance joins the first. `Label` merges tags into
//! `tags.json`.
//!
//! `DescribeInstances` filters the instance directories by their tags, then asks
//! `vagrant status --machine-readable` about each remaining one, a few at a time
//! ([`VagrantOptions::status_concurrency`]). An instance is listed only while every machine of
//! its Vagrantfile is `running`, so one that stopped, or whose container was removed, is gone
//! and its group replaces it; the plugin then destroys the dead machine in the background
//! ([`VagrantOptions::destroy_dead`]). A describe answers from the status run the previous
//! describe of the same instance started, when that one has finished, and starts the next in
//! the background ([`freshness`]): a dead machine is listed by at most one describe after its
//! death, and a steady poll does not wait for Vagrant.
//!
//! With the docker provider (the default), `Init` runs as the container's command, or before
//! `Cmd` when the properties give one (`/bin/sh -c '<Init>; exec "$@"'`), since there is no SSH
//! to provision through; with VM providers it is a shell provisioner.
//!
//! # Vagrant's own state
//!
//! Vagrant locks a machine for `status` as well as `up` and `destroy`, and fails instead of
//! waiting; the plugin runs one Vagrant command per machine at a time, and tries again for a few
//! seconds when another process holds the lock. Vagrant's global state (the machine index, its
//! lock files) lives in `VAGRANT_HOME`, which [`VagrantOptions::vagrant_home`] can set per
//! plugin; the docker provider needs nothing else from it (no box), VM providers find their
//! boxes there.

pub mod freshness;
pub mod instances;
pub mod properties;
pub mod status;
pub mod template;
pub mod vagrant;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::StreamExt;
use infrakit_spi::instance::{tags_match, Properties, GROUP_TAG, LOGICAL_ID_TAG};
use infrakit_spi::{Description, DestroyContext, Error, Instance, Result, Spec, Tags};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use freshness::{Freshness, Plan};
use instances::Dirs;
use status::Status;
use template::{Context, Template};
use vagrant::Vagrant;

pub use properties::{Machine, VagrantProperties};
pub use template::{ENV_GROUP, ENV_INSTANCE_ID, ENV_LOGICAL_ID};

/// Default plugin name.
pub const DEFAULT_NAME: &str = "instance-vagrant";
/// Default number of `vagrant status` runs at once.
pub const DEFAULT_STATUS_CONCURRENCY: usize = 4;
/// Default time `vagrant up` may take.
pub const DEFAULT_UP_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default time `vagrant status` and `vagrant destroy` may take.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Where the plugin keeps its machines and how it runs Vagrant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VagrantOptions {
    /// Plugin name (the prefix of IDs of instances without a group, and a container label).
    pub name: String,
    /// The directory holding one sub-directory per instance. One plugin per directory.
    pub dir: PathBuf,
    /// A Vagrantfile template file; `None` uses [`template::DEFAULT_TEMPLATE`].
    pub template: Option<PathBuf>,
    /// The `vagrant` executable.
    pub vagrant: PathBuf,
    /// `VAGRANT_HOME` for every Vagrant run; `None` inherits it (default `~/.vagrant.d`, where
    /// the boxes of VM providers are).
    pub vagrant_home: Option<PathBuf>,
    /// How many `vagrant status` runs may go at once (each is a Ruby process of about a second).
    pub status_concurrency: usize,
    /// Time `vagrant up` may take before the machine is destroyed and `Provision` fails.
    pub up_timeout: Duration,
    /// Time `vagrant status` and `vagrant destroy` may take.
    pub command_timeout: Duration,
    /// Destroy (in the background) the machines a describe finds not running, so dead
    /// machines do not pile up; `false` keeps them for post-mortems until destroyed by hand.
    pub destroy_dead: bool,
}

impl VagrantOptions {
    /// Default options for plugin `name` keeping its machines in `dir`.
    pub fn new(name: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        VagrantOptions {
            name: name.into(),
            dir: dir.into(),
            template: None,
            vagrant: PathBuf::from("vagrant"),
            vagrant_home: None,
            status_concurrency: DEFAULT_STATUS_CONCURRENCY,
            up_timeout: DEFAULT_UP_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            destroy_dead: true,
        }
    }
}

/// The Vagrant instance plugin. Cheap to clone; clones share their state.
#[derive(Debug, Clone)]
pub struct VagrantPlugin {
    inner: Arc<Inner>,
}

type StatusFuture = Shared<BoxFuture<'static, Result<Status>>>;
type DestroyFuture = Shared<BoxFuture<'static, Result<()>>>;

#[derive(Debug)]
struct Inner {
    options: VagrantOptions,
    template: Template,
    vagrant: Vagrant,
    dirs: Dirs,
    /// Destroys under way, by instance: hidden from `DescribeInstances`, and joined by a second
    /// `Destroy` of the same instance.
    destroying: Mutex<HashMap<String, DestroyFuture>>,
    /// Per instance: the latest `vagrant status` result and the run under way (see
    /// [`freshness`]).
    statuses: Mutex<HashMap<String, Freshness<Status, StatusFuture>>>,
    /// Numbers `vagrant status` runs, to tell them apart in `statuses`.
    runs: AtomicU64,
    /// Bounds the `vagrant status` runs across describes.
    status_permits: Semaphore,
    /// Serialises read-modify-write of tags files.
    tags_lock: Mutex<()>,
    /// One lock per instance, held by every Vagrant run in its directory: Vagrant locks a
    /// machine for `status` as well as `up` and `destroy`, and fails rather than waits.
    machines: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A finished task's result; a panicked task is a plugin error.
fn joined<T>(r: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    r.unwrap_or_else(|e| Err(Error::caused("internal error", e)))
}

impl VagrantPlugin {
    /// A plugin with `options`: creates the directory and loads the template (a template that
    /// does not parse, or uses an unknown variable, is an error here). Does not run Vagrant;
    /// see [`VagrantPlugin::check`].
    pub fn open(options: VagrantOptions) -> Result<Self> {
        let template = match &options.template {
            Some(path) => Template::from_file(path)?,
            None => Template::builtin(),
        };
        let dirs = Dirs::open(&options.dir)?;
        let vagrant = Vagrant {
            program: options.vagrant.clone(),
            home: options.vagrant_home.clone(),
        };
        Ok(VagrantPlugin {
            inner: Arc::new(Inner {
                status_permits: Semaphore::new(options.status_concurrency.max(1)),
                options,
                template,
                vagrant,
                dirs,
                destroying: Mutex::new(HashMap::new()),
                statuses: Mutex::new(HashMap::new()),
                runs: AtomicU64::new(0),
                tags_lock: Mutex::new(()),
                machines: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Runs `vagrant --version`; an error says Vagrant cannot be run.
    pub async fn check(&self) -> Result<String> {
        self.inner
            .vagrant
            .version(self.inner.options.command_timeout)
            .await
    }

    /// The options the plugin was opened with.
    pub fn options(&self) -> &VagrantOptions {
        &self.inner.options
    }

    /// The directory of instance `id` (whether or not it exists).
    pub fn instance_dir(&self, id: &str) -> PathBuf {
        self.inner.dirs.dir(id)
    }

    /// Destroys and removes directories whose provision never finished (no `tags.json`), such
    /// as those of a plugin that was killed during `vagrant up`. Call it once at start, before
    /// serving: a provision under way looks just the same. Returns the IDs removed; one that
    /// cannot be destroyed (say, its Vagrantfile was edited into an error) is left as it is,
    /// with a warning.
    pub async fn reap_incomplete(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for id in self.inner.dirs.list()?.incomplete {
            tracing::warn!(instance = %id, "removing a machine whose provision never finished");
            match self.inner.destroy(&id, "provision never finished").await {
                Ok(()) => removed.push(id),
                Err(e) => {
                    tracing::warn!(instance = %id, error = %e, "cannot remove an unfinished machine; left as it is")
                }
            }
        }
        Ok(removed)
    }

    /// The instance's tags: the spec's, plus `infrakit.logical_id` for a pet.
    fn instance_tags(spec: &Spec) -> Tags {
        let mut tags = spec.tags.clone();
        if let Some(l) = &spec.logical_id {
            tags.insert(LOGICAL_ID_TAG, l);
        }
        tags
    }
}

impl Inner {
    /// The lock of instance `id`'s machine.
    fn machine(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.machines)
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// Creates the directory of a new instance with its Vagrantfile; returns the ID.
    fn create(&self, spec: &Spec, machine: &Machine, tags: &Tags) -> Result<String> {
        let prefix = spec
            .tags
            .get(GROUP_TAG)
            .filter(|g| !g.is_empty())
            .unwrap_or(&self.options.name);
        for _ in 0..8 {
            let id = instances::new_id(prefix);
            let dir = self.dirs.dir(&id);
            let context = Context::new(
                &id,
                &self.options.name,
                &dir,
                machine,
                &spec.init,
                tags,
                spec.logical_id.as_deref(),
            );
            let vagrantfile = self.template.render(&context)?;
            if self.dirs.create(&id, &vagrantfile)? {
                return Ok(id);
            }
        }
        Err(Error::plugin(format!(
            "cannot find a free instance ID with prefix {prefix}"
        )))
    }

    /// `vagrant up` in the new directory of `id`; on failure destroys and removes it.
    async fn up(&self, id: &str, provider: &str, tags: &Tags) -> Result<()> {
        let machine = self.machine(id);
        let _machine = machine.lock().await;
        let dir = self.dirs.dir(id);
        let result = match self
            .vagrant
            .up(&dir, provider, self.options.up_timeout)
            .await
        {
            Ok(()) => self.dirs.write_tags(id, tags),
            Err(e) => Err(e),
        };
        let Err(e) = result else {
            return Ok(());
        };
        tracing::warn!(instance = %id, error = %e, "provision failed; destroying the machine");
        if let Err(de) = self
            .vagrant
            .destroy(&dir, self.options.command_timeout)
            .await
        {
            // Keep the directory, so the machine can still be destroyed (the plugin does so
            // when it next starts: the directory has no tags).
            return Err(Error::plugin(format!(
                "provisioning {id}: {e}; the machine could not be destroyed either, it is left in {}: {de}",
                dir.display()
            )));
        }
        if let Err(re) = self.dirs.remove(id) {
            tracing::warn!(instance = %id, error = %re, "cannot remove the directory of a failed provision");
        }
        lock(&self.machines).remove(id);
        Err(Error::caused(format!("provisioning {id}"), e))
    }

    /// `vagrant destroy -f` and removal of the directory of `id`.
    async fn destroy(&self, id: &str, reason: &str) -> Result<()> {
        let machine = self.machine(id);
        let _machine = machine.lock().await;
        let dir = self.dirs.dir(id);
        tracing::info!(instance = %id, reason, "destroying instance");
        if dir.join(instances::VAGRANTFILE).exists() {
            if let Err(e) = self
                .vagrant
                .destroy(&dir, self.options.command_timeout)
                .await
            {
                if !self.dirs.exists(id) {
                    return Ok(()); // destroyed by someone else meanwhile
                }
                return Err(Error::caused(format!("destroying {id}"), e));
            }
        }
        self.dirs.remove(id)?;
        lock(&self.machines).remove(id);
        lock(&self.statuses).remove(id);
        Ok(())
    }

    /// The status of `id` for a describe starting now: from a run requested since the previous
    /// describe of `id` if there is one (starting the next run in the background), else from a
    /// run of its own. See [`freshness`].
    async fn status(self: &Arc<Self>, id: &str) -> Result<Status> {
        let future = {
            let mut statuses = lock(&self.statuses);
            let entry = statuses.entry(id.to_string()).or_default();
            match entry.ask(Instant::now()) {
                (Plan::Cached { refresh }, Some(status), _) => {
                    if refresh {
                        tokio::spawn(self.start_status(id, entry));
                    }
                    return Ok(status);
                }
                (Plan::Join, _, Some(run)) => run,
                _ => self.start_status(id, entry),
            }
        };
        future.await
    }

    /// Starts a `vagrant status` run for `id`, recorded in `entry` (the caller holds the
    /// `statuses` lock); it makes progress when polled.
    fn start_status(
        self: &Arc<Self>,
        id: &str,
        entry: &mut Freshness<Status, StatusFuture>,
    ) -> StatusFuture {
        let requested = Instant::now();
        let number = self.runs.fetch_add(1, Ordering::Relaxed);
        let inner = self.clone();
        let id = id.to_string();
        let future = async move {
            let result = async {
                let machine = inner.machine(&id);
                let _machine = machine.lock().await;
                let _permit = inner
                    .status_permits
                    .acquire()
                    .await
                    .map_err(|_| Error::plugin("the plugin is shutting down"))?;
                inner
                    .vagrant
                    .status(&inner.dirs.dir(&id), inner.options.command_timeout)
                    .await
            }
            .await;
            if let Some(entry) = lock(&inner.statuses).get_mut(&id) {
                entry.finish(requested, number, result.as_ref().ok().cloned());
            }
            result
        }
        .boxed()
        .shared();
        entry.running = Some((requested, number, future.clone()));
        future
    }

    /// What Vagrant says about `id`.
    async fn describe(
        self: &Arc<Self>,
        id: String,
        tags: Tags,
        properties: bool,
    ) -> Result<Described> {
        let status = match self.status(&id).await {
            Ok(s) => s,
            // Destroyed while we asked.
            Err(_) if !self.dirs.exists(&id) || lock(&self.destroying).contains_key(&id) => {
                return Ok(Described::Gone)
            }
            Err(e) => return Err(e),
        };
        if !status.running() {
            tracing::debug!(instance = %id, state = status.state(), "not running: not listed");
            return Ok(Described::Dead(id));
        }
        let properties = properties.then(|| {
            Properties::new(&json!({
                "State": status.state(),
                "Provider": status.provider(),
                "Dir": self.dirs.dir(&id).display().to_string(),
                "Machines": status.machines,
            }))
        });
        Ok(Described::Running(Description {
            logical_id: tags.get(LOGICAL_ID_TAG).map(str::to_string),
            id,
            tags,
            properties,
            created: None,
        }))
    }

    /// Destroys `id` in a task of its own (so it completes even if no one waits), or joins the
    /// destroy of `id` already under way.
    fn destroy_shared(self: &Arc<Self>, id: &str, reason: &str) -> DestroyFuture {
        let mut destroying = lock(&self.destroying);
        destroying
            .entry(id.to_string())
            .or_insert_with(|| {
                let inner = self.clone();
                let (id, reason) = (id.to_string(), reason.to_string());
                let future = async move {
                    let result = inner.destroy(&id, &reason).await;
                    if let Err(e) = &result {
                        tracing::warn!(instance = %id, error = %e, "destroy failed");
                    }
                    lock(&inner.destroying).remove(&id);
                    result
                }
                .boxed()
                .shared();
                tokio::spawn(future.clone());
                future
            })
            .clone()
    }
}

/// One instance as a describe found it.
enum Described {
    /// Running: listed.
    Running(Description),
    /// Vagrant reports it not running.
    Dead(String),
    /// Destroyed while it was looked at.
    Gone,
}

#[async_trait]
impl Instance for VagrantPlugin {
    async fn validate(&self, properties: &Value) -> Result<()> {
        let machine = properties::parse(properties)?;
        // Render once, so a template that cannot handle these properties fails here.
        let context = Context::new(
            "validate",
            &self.inner.options.name,
            &self.inner.dirs.dir("validate"),
            &machine,
            "",
            &Tags::new(),
            None,
        );
        self.inner.template.render(&context).map(drop)
    }

    async fn provision(&self, spec: Spec) -> Result<String> {
        let machine = properties::parse(&spec.properties)?;
        let tags = Self::instance_tags(&spec);
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let id = inner.create(&spec, &machine, &tags)?;
            tracing::info!(instance = %id, provider = %machine.provider, "vagrant up");
            inner.up(&id, &machine.provider, &tags).await?;
            tracing::info!(instance = %id, "instance is up");
            Ok(id)
        });
        joined(task.await)
    }

    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        instances::check_id(id)?;
        let _guard = lock(&self.inner.tags_lock);
        let mut tags = self
            .inner
            .dirs
            .tags(id)?
            .ok_or_else(|| Error::instance_not_found(id))?;
        tags.extend(labels);
        self.inner.dirs.write_tags(id, &tags)
    }

    async fn destroy(&self, id: &str, context: &DestroyContext) -> Result<()> {
        instances::check_id(id)?;
        if !self.inner.dirs.exists(id) {
            return Ok(());
        }
        self.inner.destroy_shared(id, &context.reason).await
    }

    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        let listing = self.inner.dirs.list()?;
        let candidates: Vec<(String, Tags)> = {
            let destroying = lock(&self.inner.destroying);
            listing
                .instances
                .into_iter()
                .filter(|(id, t)| !destroying.contains_key(id) && tags_match(t, tags))
                .collect()
        };
        let inner = &self.inner;
        let found: Vec<Described> = futures::stream::iter(candidates)
            .map(|(id, t)| inner.describe(id, t, properties))
            .buffer_unordered(inner.options.status_concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        let mut out = Vec::new();
        for d in found {
            match d {
                Described::Running(d) => out.push(d),
                Described::Dead(id) if inner.options.destroy_dead => {
                    drop(inner.destroy_shared(&id, "not running"));
                }
                Described::Dead(_) | Described::Gone => {}
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

/// The directory of the instances of plugin `name` under `home` (`<home>/<name>/instances`).
pub fn default_dir(home: &Path, name: &str) -> PathBuf {
    home.join(name).join("instances")
}
