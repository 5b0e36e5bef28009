//! A tap served on its own socket, so that controllers in other processes (a real `infrakit
//! manager run`) go through it: specs name the tap's socket as their instance plugin, and the
//! tap forwards to the real plugin's socket. The real plugin's instance events are relayed, so
//! the controller reacts to deaths as fast as without the tap.
//!
//! When a caller dies mid-call, its connection to the tap closes and the tap's outgoing call is
//! dropped with it: the real plugin sees its caller vanish exactly as it would without the tap.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use infrakit_rpc::{Handlers, PluginServer};
use infrakit_spi::event::{Publisher, INSTANCE_TOPIC};
use infrakit_spi::Event;

use crate::tap::Tap;

/// Relays the instance events of the plugin at a socket, resubscribing whenever it goes away
/// (it is being killed and restarted).
#[derive(Debug)]
pub struct Relay {
    tx: broadcast::Sender<Event>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Starts relaying the events of the plugin listening at `socket`.
    pub fn start(socket: PathBuf) -> Arc<Relay> {
        let (tx, _) = broadcast::channel(4096);
        let sender = tx.clone();
        let task = tokio::spawn(async move {
            loop {
                match infrakit_rpc::events::subscribe(
                    &socket,
                    INSTANCE_TOPIC,
                    Duration::from_secs(2),
                )
                .await
                {
                    Ok(stream) => {
                        let mut stream = std::pin::pin!(stream);
                        while let Some(e) = stream.next().await {
                            let _ = sender.send(e);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "no events to relay yet"),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Arc::new(Relay { tx, task })
    }
}

impl Publisher for Relay {
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A tap serving the Instance API (and the relayed events) on `<plugin_dir>/<name>`.
pub struct TapServer {
    server: Option<PluginServer>,
    _relay: Arc<Relay>,
}

impl std::fmt::Debug for TapServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapServer").finish_non_exhaustive()
    }
}

impl TapServer {
    /// Serves `tap` as plugin `name` in `plugin_dir`, relaying the events of the plugin at
    /// `events_from` (the real plugin's socket).
    ///
    /// # Panics
    /// When the socket cannot be served.
    pub async fn start(plugin_dir: &Path, name: &str, tap: Arc<Tap>, events_from: &Path) -> Self {
        let relay = Relay::start(events_from.to_path_buf());
        let server = PluginServer::start(
            plugin_dir,
            name,
            Handlers::new().instance("", tap).publisher(relay.clone()),
        )
        .await
        .expect("the tap can serve its socket");
        TapServer {
            server: Some(server),
            _relay: relay,
        }
    }

    /// Stops serving.
    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }
}
