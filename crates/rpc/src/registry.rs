//! Resolving plugin names to trait objects: in-process plugins first, then sockets in the
//! plugin directory. Callers get the same trait objects either way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;

use infrakit_spi::event::Publisher;
use infrakit_spi::group::split_plugin_name;
use infrakit_spi::{Error, Event, Flavor, Instance, Result};

use crate::client::{Client, FlavorClient, InstanceClient};

#[derive(Default)]
struct Local {
    instances: HashMap<String, Arc<dyn Instance>>,
    flavors: HashMap<String, Arc<dyn Flavor>>,
    publishers: HashMap<String, Arc<dyn Publisher>>,
    clients: HashMap<String, Client>,
}

/// Finds plugins by name.
pub struct Plugins {
    dir: PathBuf,
    timeout: Option<Duration>,
    local: RwLock<Local>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins").field("dir", &self.dir).finish()
    }
}

impl Plugins {
    /// Looks plugins up in `dir` (see [`crate::dir::plugins_dir`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Plugins {
            dir: dir.into(),
            timeout: None,
            local: RwLock::new(Local::default()),
        }
    }

    /// Sets the timeout of quick calls to remote plugins.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The plugin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn local(&self) -> std::sync::RwLockWriteGuard<'_, Local> {
        self.local.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Local> {
        self.local.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an in-process Instance plugin under `name` (e.g. `instance-file`).
    pub fn register_instance(&self, name: &str, plugin: Arc<dyn Instance>) {
        self.local().instances.insert(name.to_string(), plugin);
    }

    /// Registers an in-process Flavor plugin under `name`.
    pub fn register_flavor(&self, name: &str, plugin: Arc<dyn Flavor>) {
        self.local().flavors.insert(name.to_string(), plugin);
    }

    /// Registers the event publisher of in-process plugin `name`.
    pub fn register_publisher(&self, name: &str, publisher: Arc<dyn Publisher>) {
        self.local().publishers.insert(name.to_string(), publisher);
    }

    /// A JSON-RPC client of the socket that serves `name` (`lookup/type` uses `lookup`).
    pub fn client(&self, name: &str) -> Result<Client> {
        let (lookup, _) = split_plugin_name(name);
        if let Some(c) = self.read().clients.get(lookup) {
            if c.socket().exists() {
                return Ok(c.clone());
            }
        }
        let socket = crate::dir::socket_path(&self.dir, lookup);
        if !socket.exists() {
            return Err(Error::Unavailable {
                name: lookup.to_string(),
                socket: socket.display().to_string(),
                reason: "no such plugin is running (no socket)".into(),
            });
        }
        let mut client = Client::new(lookup, socket);
        if let Some(t) = self.timeout {
            client = client.with_timeout(t);
        }
        self.local()
            .clients
            .insert(lookup.to_string(), client.clone());
        Ok(client)
    }

    /// The Instance plugin called `name`.
    pub fn instance(&self, name: &str) -> Result<Arc<dyn Instance>> {
        if let Some(p) = self.read().instances.get(name) {
            return Ok(p.clone());
        }
        let (_, kind) = split_plugin_name(name);
        Ok(Arc::new(InstanceClient::new(self.client(name)?, kind)))
    }

    /// The Flavor plugin called `name`.
    pub fn flavor(&self, name: &str) -> Result<Arc<dyn Flavor>> {
        if let Some(p) = self.read().flavors.get(name) {
            return Ok(p.clone());
        }
        let (_, kind) = split_plugin_name(name);
        Ok(Arc::new(FlavorClient::new(self.client(name)?, kind)))
    }

    /// Events under `topic` from plugin `name`, in-process or over server-sent events. The stream
    /// ends when a remote plugin goes away.
    pub async fn subscribe(&self, name: &str, topic: &str) -> Result<BoxStream<'static, Event>> {
        let (lookup, _) = split_plugin_name(name);
        let local = {
            let guard = self.read();
            guard
                .publishers
                .get(name)
                .or_else(|| guard.publishers.get(lookup))
                .cloned()
        };
        if let Some(p) = local {
            let topic = topic.to_string();
            let rx = p.subscribe();
            let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |e| {
                let out = match e {
                    Ok(e) if e.matches(&topic) => Some(e),
                    Ok(_) => None,
                    Err(_) => Some(Event {
                        topic: "/".into(),
                        kind: crate::events::LAGGED.into(),
                        ..Default::default()
                    }),
                };
                futures::future::ready(out)
            });
            return Ok(stream.boxed());
        }
        let client = self.client(name)?;
        let stream =
            crate::events::subscribe(client.socket(), topic, Duration::from_secs(5)).await?;
        Ok(stream.boxed())
    }
}
