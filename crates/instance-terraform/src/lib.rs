//! The Terraform instance plugin: every instance is a resource that Terraform creates, in one
//! working directory per plugin.
//!
//! # Layout
//!
//! The directory ([`TerraformOptions::dir`]) holds the user's own `*.tf` / `*.tf.json`
//! (providers, variables, shared resources), Terraform's state (`terraform.tfstate` with the
//! default local backend) and one generated `<id>.tf.json` per instance. Instance IDs are
//! `<prefix>-<unix seconds>-<6 random characters>`, taken without races (exclusive creation of
//! the file).
//!
//! * [`properties`]: the instance properties, a Terraform JSON fragment with one primary
//!   resource, validated with the path of any bad field;
//! * [`render`]: how properties, tags, logical ID and `Init` become the instance file, with
//!   per-instance names and the record of the instance as a Terraform output;
//! * [`state`]: `terraform show -json`, and which instances really exist in it;
//! * [`batch`]: the pure decisions around an apply: judging each change, blaming errors on
//!   instances, orphaned files, back-off;
//! * `options`: the plugin's options and their defaults; `applier`: the one-at-a-time apply
//!   loop; `terraform`: running the command.
//!
//! # Lifecycle
//!
//! `Provision`, `Destroy`, `Label` and [`TerraformPlugin::import`] change files, then wait for the
//! next `terraform apply`, which takes every change waiting at that time: twenty provisions
//! asked for together make one or two applies. Each returns once the apply it was part of is
//! over and the state shows its goal reached, or fails with Terraform's own error message. A
//! failed new instance's file is removed (and whatever Terraform did create of it is destroyed
//! by the next apply); changes that were not at fault are retried with the next apply, at most
//! [`TerraformOptions::max_attempts`] times, with exponential back-off while no error can be
//! pinned on a change.
//!
//! `DescribeInstances` reads Terraform's state, never the files: an instance exists when
//! Terraform created its primary resource (and it is not tainted). Tags and logical IDs come from
//! the instance's record, an output in the same state. Something removed outside the plugin
//! (`terraform state rm`, `terraform destroy -target`) is missing at once; its file is removed
//! before the next apply, which would otherwise bring it back.
//!
//! # Events
//!
//! While someone subscribes ([`Publisher`]), the plugin checks the state file every
//! [`TerraformOptions::watch_interval`] and publishes `/instance/destroyed` for instances that
//! left the state and `/instance/created` for new ones, with `{"Tags": ...}`, so the group
//! controller replaces a resource removed behind its back without waiting for its next poll.

mod applier;
pub mod batch;
mod files;
mod options;
pub mod properties;
pub mod render;
pub mod state;
mod terraform;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use infrakit_spi::event::{Event, Publisher};
use infrakit_spi::instance::{tags_match, Properties, LOGICAL_ID_TAG};
use infrakit_spi::{Description, DestroyContext, Error, Instance, Result, Spec, Tags};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use applier::{lock, Shared, Undo};
use batch::Change;
use files::Files;
use render::InstanceInput;
use terraform::Terraform;

pub use applier::{ApplyStats, EVENT_CAPACITY};
pub use options::{TerraformOptions, DEFAULT_BATCH_WINDOW, DEFAULT_ID_PREFIX, DEFAULT_NAME};
pub use properties::TerraformProperties;
pub use render::{ImportSource, Record, ENV_GROUP, ENV_INSTANCE_ID, ENV_LOGICAL_ID};
pub use terraform::MIN_VERSION;

/// Environment variable naming the plugin's directory (as in InfraKit).
pub const ENV_DIR: &str = "INFRAKIT_INSTANCE_TERRAFORM_DIR";
/// A file of the plugin's own in the directory, so that there is always a configuration:
/// Terraform refuses to apply an empty one, which is what destroying the last instance needs.
pub const ANCHOR_FILE: &str = "infrakit.tf.json";

/// An existing resource for a new instance to take over ([`TerraformPlugin::import`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRequest {
    /// Instance properties, as in the group spec: they say the resource's type and
    /// configuration (Terraform changes the resource to match them).
    pub properties: Value,
    /// Where the resource is: a provider import ID, or an address in the directory's state.
    pub source: ImportSource,
    /// The instance's tags (for a group: `infrakit.group`, `infrakit.config.hash`, ...).
    pub tags: Tags,
    /// The logical ID, for a pet; also recorded as the `infrakit.logical_id` tag.
    pub logical_id: Option<String>,
}

/// The Terraform instance plugin.
///
/// Cheap to clone; clones share one apply loop. Must be created within a tokio runtime. Dropping
/// the last clone stops the loop; a running apply finishes on its own.
#[derive(Debug, Clone)]
pub struct TerraformPlugin {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl TerraformPlugin {
    /// Checks the Terraform binary (at least [`MIN_VERSION`]), creates the directory if needed,
    /// runs `terraform init` there and starts the apply loop.
    pub async fn start(options: TerraformOptions) -> Result<TerraformPlugin> {
        if !properties::is_identifier(&options.id_prefix) {
            return Err(Error::invalid(
                "id_prefix",
                format!("{:?} is not a Terraform identifier", options.id_prefix),
            ));
        }
        std::fs::create_dir_all(&options.dir)
            .map_err(|e| Error::caused(format!("cannot create {}", options.dir.display()), e))?;
        let dir = options
            .dir
            .canonicalize()
            .map_err(|e| Error::caused(format!("cannot open {}", options.dir.display()), e))?;
        let tf = Terraform {
            bin: options.terraform.clone(),
            dir: dir.clone(),
            env: options.env.clone(),
            lock_timeout: options.lock_timeout,
        };
        let anchor = dir.join(ANCHOR_FILE);
        if !anchor.exists() {
            let text =
                "{\"//\": \"Kept by infrakit's terraform instance plugin: Terraform needs a \
                        configuration to destroy the last instance.\"}\n";
            std::fs::write(&anchor, text)
                .map_err(|e| Error::caused(format!("cannot write {}", anchor.display()), e))?;
        }
        let version = tf.version().await?;
        tf.init().await?;
        tracing::info!(plugin = %options.name, dir = %dir.display(), terraform = ?version, "terraform plugin ready");
        let files = Files::new(dir, options.id_prefix.clone());
        let shared = Arc::new(Shared::new(options, tf, files));
        shared.resume_tombstones()?;
        let mut tasks = vec![tokio::spawn(applier::run(shared.clone())).abort_handle()];
        if let Some(every) = shared.options.watch_interval {
            tasks.push(tokio::spawn(applier::watch(shared.clone(), every)).abort_handle());
        }
        Ok(TerraformPlugin {
            inner: Arc::new(Inner { shared, tasks }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        &self.shared().tf.dir
    }

    /// The file of instance `id`.
    pub fn instance_file(&self, id: &str) -> PathBuf {
        self.shared().files.path(id)
    }

    /// Counters of the apply loop.
    pub fn stats(&self) -> ApplyStats {
        self.shared().stats()
    }

    /// Takes over an existing resource as a new instance, so that a group can adopt it: writes
    /// the instance's file from `request.properties` with an `import` block (for
    /// [`ImportSource::Id`]) or a `moved` block (for [`ImportSource::Address`], a resource in this
    /// directory's state whose declaration has been removed from the user's files), and waits for
    /// the apply that brings it in. Returns the new instance ID. The primary resource is taken
    /// over, not created (other resources of the properties are created as for any instance);
    /// if Terraform cannot import or move it, the instance's file is removed and Terraform's
    /// message returned.
    pub async fn import(&self, request: ImportRequest) -> Result<String> {
        let props = TerraformProperties::parse(&request.properties)?;
        let kind = props.primary_type().to_string();
        match &request.source {
            ImportSource::Id(id) if id.trim().is_empty() => {
                return Err(Error::invalid("Source.ID", "must not be blank"));
            }
            ImportSource::Id(_) => {}
            ImportSource::Address(address) => {
                let Some((t, name)) = address.split_once('.') else {
                    return Err(Error::invalid(
                        "Source.Address",
                        format!("{address:?} is not a resource address <type>.<name>"),
                    ));
                };
                if t != kind {
                    return Err(Error::invalid(
                        "Source.Address",
                        format!("{address} is a {t}, but the properties make a {kind}"),
                    ));
                }
                let state = self.shared().state().await?;
                if state.managed(address).is_none() {
                    return Err(Error::invalid(
                        "Source.Address",
                        format!(
                            "no resource {address} in the state of {}",
                            self.dir().display()
                        ),
                    ));
                }
                if let Some(f) = state
                    .instances()
                    .iter()
                    .find(|f| f.record.primary == *address)
                {
                    return Err(Error::invalid(
                        "Source.Address",
                        format!("{address} is already instance {}", f.record.id),
                    ));
                }
                if self.shared().files.is_instance_id(name) {
                    return Err(Error::invalid(
                        "Source.Address",
                        format!("{address} belongs to an instance of this plugin"),
                    ));
                }
            }
        }
        let mut tags = request.tags.clone();
        if let Some(l) = &request.logical_id {
            tags.get_or_insert_with(LOGICAL_ID_TAG, || l.clone());
        }
        let shared = self.shared();
        shared
            .submit(Change::Adopt, |_| {
                let id = shared.files.create(|id| {
                    render::render(
                        &props,
                        &InstanceInput {
                            id,
                            logical_id: request.logical_id.as_deref(),
                            tags: &tags,
                            init: "",
                        },
                        Some(&request.source),
                    )
                })?;
                Ok((id, Undo::Remove))
            })
            .await
    }
}

impl Publisher for TerraformPlugin {
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared().events.subscribe()
    }
}

/// The description of a found instance: tags from its record, overlaid with the primary
/// resource's own string `tags`, if it has any.
fn describe(found: state::Found, properties: bool) -> Description {
    let mut tags = found.record.tags;
    if let Some(Value::Object(real)) = found.values.get("tags") {
        for (k, v) in real {
            if let Value::String(v) = v {
                tags.insert(k.clone(), v.clone());
            }
        }
    }
    let logical_id = Some(found.record.logical_id)
        .filter(|l| !l.is_empty())
        .or_else(|| tags.get(LOGICAL_ID_TAG).map(str::to_string));
    Description {
        id: found.record.id,
        logical_id,
        tags,
        properties: properties.then(|| Properties::new(&found.values)),
        created: None,
    }
}

#[async_trait]
impl Instance for TerraformPlugin {
    async fn validate(&self, properties: &Value) -> Result<()> {
        TerraformProperties::parse(properties).map(|_| ())
    }

    async fn provision(&self, spec: Spec) -> Result<String> {
        let props = TerraformProperties::parse(&spec.properties)?;
        let mut tags = spec.tags.clone();
        if let Some(l) = &spec.logical_id {
            tags.get_or_insert_with(LOGICAL_ID_TAG, || l.clone());
        }
        // Render once up front: a bad Init fails before anything is written.
        render::render(
            &props,
            &InstanceInput {
                id: "x",
                logical_id: spec.logical_id.as_deref(),
                tags: &tags,
                init: &spec.init,
            },
            None,
        )?;
        let shared = self.shared();
        let id = shared
            .submit(Change::Provision, |_| {
                let id = shared.files.create(|id| {
                    render::render(
                        &props,
                        &InstanceInput {
                            id,
                            logical_id: spec.logical_id.as_deref(),
                            tags: &tags,
                            init: &spec.init,
                        },
                        None,
                    )
                })?;
                Ok((id, Undo::Remove))
            })
            .await?;
        tracing::info!(plugin = %shared.options.name, instance = %id, "provisioned");
        Ok(id)
    }

    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        let shared = self.shared();
        let state = shared.state().await?;
        let hidden = lock(&shared.queue).hidden.contains(id);
        if hidden || state.instance(id).is_none() {
            return Err(Error::instance_not_found(id));
        }
        shared
            .submit(Change::Label(labels.clone()), |_| {
                // Read and rewritten under the queue's lock: concurrent labels all count.
                let previous = shared
                    .files
                    .read(id)?
                    .ok_or_else(|| Error::instance_not_found(id))?;
                let labelled = render::with_labels(&previous, id, labels).ok_or_else(|| {
                    Error::plugin(format!(
                        "{} has no instance record; is it being destroyed?",
                        shared.files.path(id).display()
                    ))
                })?;
                shared.files.write(id, &labelled)?;
                Ok((id.to_string(), Undo::Restore(previous)))
            })
            .await
            .map(|_| ())
    }

    async fn destroy(&self, id: &str, context: &DestroyContext) -> Result<()> {
        let shared = self.shared();
        if !shared.files.is_instance_id(id) {
            return Ok(()); // never one of ours
        }
        let state = shared.state().await?;
        let has_file = shared.files.path(id).exists();
        if !has_file && !state.holds_anything_of(id) {
            return Ok(()); // already gone
        }
        tracing::info!(plugin = %shared.options.name, instance = %id, reason = %context.reason, "destroying");
        let file = shared.files.read(id)?;
        shared
            .submit(Change::Destroy, |q| {
                match &file {
                    // Replaced (atomically) by its tombstone, which runs the destroy-time
                    // provisioners.
                    Some(f) if f.get("resource").is_some() => {
                        shared.files.write(id, &render::tombstone(f))?;
                        q.tombstones.insert(id.to_string());
                    }
                    // Already a tombstone.
                    Some(_) => {
                        q.tombstones.insert(id.to_string());
                    }
                    None => {
                        shared.files.remove(id)?;
                    }
                }
                Ok((id.to_string(), Undo::Nothing))
            })
            .await
            .map(|_| ())
    }

    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        let shared = self.shared();
        let state = shared.state().await?;
        let hidden = lock(&shared.queue).hidden.clone();
        Ok(state
            .instances()
            .into_iter()
            .filter(|f| !hidden.contains(&f.record.id))
            .map(|f| describe(f, properties))
            .filter(|d| tags_match(&d.tags, tags))
            .collect())
    }
}
