//! The Docker instance plugin: every instance is a container of the local (or `DOCKER_HOST`)
//! Docker engine.
//!
//! Instance properties name the image and how to run it ([`DockerProperties`]), either in
//! InfraKit's original shape, with the Docker API's own field names,
//! `{"Config": {"Image": "...", "Cmd": [...]}, "HostConfig": {...}, "NetworkAttachments": [...]}`,
//! or in a short form that reads like `docker run`:
//! `{"image": "...", "command": ["sh", "-c", "..."], "env": {"K": "V"}, "ports": ["8080:80"]}`.
//! Images are never pulled: an image must already be present on the engine.
//!
//! # Containers
//!
//! The instance ID is the container name: `<group>-<logical ID>` for a pet (stable across
//! replacements; a suffix is added only while the previous holder of the name still runs, as in
//! a surge rollout), `<group>-<8 random characters>` for cattle, where `<group>` is the
//! `infrakit.group` tag (the plugin name without one), both reduced to the characters Docker
//! allows in names. A dead container holding a pet's name is removed when the pet is provisioned
//! again.
//!
//! Every container carries the spec's tags as labels, plus the properties' labels and
//! `infrakit.plugin=<plugin name>` ([`PLUGIN_LABEL`]); the plugin only ever lists, destroys,
//! labels and reports containers with its own `infrakit.plugin` label, so several plugins (or
//! test runs) can share an engine. The container's environment holds `INFRAKIT_INSTANCE_ID`,
//! `INFRAKIT_LOGICAL_ID` and `INFRAKIT_GROUP`, as with the process plugin.
//!
//! # Volumes
//!
//! An attachment of type `volume` (e.g. the vanilla flavor's
//! `{"ID": "data-{{ LogicalID }}", "Type": "volume"}`) is a named Docker volume called after the
//! attachment ID, created by the engine on first use and mounted at `/data/<ID>`
//! ([`VOLUME_MOUNT_ROOT`]), unless the properties already mount that volume elsewhere (short
//! form `"volumes": ["<ID>:/var/lib/db"]`). The mount point is also in
//! `INFRAKIT_VOLUME_<ID>` ([`volume_env_name`]). The plugin never removes volumes, so a
//! replaced pet finds its data again.
//!
//! # Lifecycle
//!
//! `Provision` creates the container, connects its networks (creating missing ones), starts it,
//! then runs the spec's `Init` (if not empty) inside it with `/bin/sh -c`; a non-zero exit
//! removes the container and fails with the script's output. A container appears in
//! `DescribeInstances` once its `Provision` has returned. `Destroy` stops the container (SIGTERM,
//! then SIGKILL after the stop timeout) and removes it with its anonymous volumes.
//!
//! `DescribeInstances` lists only `created`, `running` and `restarting` containers: one that
//! exited is gone as an instance, so the group controller replaces it. Exited containers are kept
//! for post-mortems (`docker logs`), the newest [`DockerOptions::keep_exited`] only.
//!
//! `Label` merges tags, which Docker cannot do on an existing container: the extra tags are kept
//! by the plugin (in `labels.json` of its state directory, if it has one) and merged into what
//! `DescribeInstances` and the events report.
//!
//! # Events
//!
//! The plugin follows the engine's event stream and publishes `exited`, `oom`, `destroyed`,
//! `health` and, after a reconnection, `resync` events ([`events`]), so the group controller
//! replaces a dead container without waiting for its next poll.
//!
//! # Layout
//!
//! * `options`: [`DockerOptions`] and the defaults;
//! * [`properties`]: the instance properties, in either shape, checked with the path of any bad
//!   field;
//! * `container`: what a spec adds to its container: name, labels, environment, volume mounts;
//! * `init`: the image check, networks, the start and the `Init` script;
//! * `plugin`: [`DockerPlugin`] and the Instance API; `describe`: `DescribeInstances`;
//! * [`events`]: the engine's events, republished; `janitor`: removal of old exited containers;
//! * `shared`: what the plugin and its background tasks share; `labels`: the tags `Label` adds.

mod container;
mod describe;
pub mod events;
mod init;
mod janitor;
mod labels;
mod options;
mod plugin;
pub mod properties;
mod shared;

pub use container::{
    sanitize_name, volume_env_name, ENV_GROUP, ENV_INSTANCE_ID, ENV_LOGICAL_ID, ENV_VOLUME_PREFIX,
    VOLUME_ATTACHMENT, VOLUME_MOUNT_ROOT,
};
pub use labels::LABELS_FILE;
pub use options::{
    DockerOptions, DEFAULT_ENDPOINT, DEFAULT_INIT_TIMEOUT, DEFAULT_KEEP_EXITED, DEFAULT_NAME,
    DEFAULT_STOP_TIMEOUT, PLUGIN_LABEL,
};
pub use plugin::DockerPlugin;
pub use properties::{DockerProperties, NetworkAttachment};
pub use shared::EVENT_CAPACITY;
