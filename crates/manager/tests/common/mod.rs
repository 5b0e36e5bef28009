//! A manager `mystack` served on a socket of its own, for the tests of its wire.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use infrakit_flavor_vanilla::VanillaFlavor;
use infrakit_group::ControllerConfig;
use infrakit_instance_file::FilePlugin;
use infrakit_manager::{Backend, LocalLeadership, Manager};
use infrakit_rpc::{Handlers, PluginServer, Plugins};
use infrakit_spi::manager::Manager as _;
use infrakit_store::FileStore;
use infrakit_testkit::eventually;

/// A running manager and how to stop it.
pub struct Mystack {
    pub manager: Arc<Manager>,
    pub server: PluginServer,
    shutdown: CancellationToken,
}

impl Mystack {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.stop().await;
    }
}

/// Our manager `mystack` with the file instance plugin and the vanilla flavor, served on a
/// socket in `dir`.
pub async fn mystack(dir: &Path) -> Mystack {
    let plugins = Arc::new(Plugins::new(dir.join("plugins")));
    let files = Arc::new(FilePlugin::new(dir.join("files")).unwrap());
    plugins.register_instance("instance-file", files);
    plugins.register_flavor("flavor-vanilla", Arc::new(VanillaFlavor::new()));
    let location = dir.join("plugins/mystack").display().to_string();
    let config = ControllerConfig {
        poll_interval: Duration::from_millis(100),
        ..ControllerConfig::default()
    };
    let manager = Manager::new(
        "mystack",
        &location,
        plugins,
        config,
        Backend {
            store: Arc::new(FileStore::new(dir.join("mystack/groups"))),
            info: json!({"Backend": "embedded"}),
            leadership: Arc::new(LocalLeadership::acquire(dir, &location).unwrap()),
            vars: Some(Arc::new(FileStore::new(dir.join("mystack/vars")))),
        },
    );
    let server = PluginServer::start(
        &dir.join("plugins"),
        "mystack",
        Handlers::new()
            .group(manager.clone())
            .manager(manager.clone()),
    )
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(manager.clone().run(shutdown.clone()));
    eventually("mystack leads", Duration::from_secs(10), || async {
        manager.is_leader().await.unwrap_or(false).then_some(())
    })
    .await;
    Mystack {
        manager,
        server,
        shutdown,
    }
}
