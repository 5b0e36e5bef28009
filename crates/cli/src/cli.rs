//! Command-line syntax (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Self-healing infrastructure: groups of instances kept matching their spec.
#[derive(Debug, Parser)]
#[command(name = "infrakit", version, about, propagate_version = true)]
pub struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing filter). Also `RUST_LOG`.
    #[arg(long, global = true, env = "INFRAKIT_LOG", default_value = "warn")]
    pub log: String,
    /// A template variable for spec files, `name=value` (repeatable; see docs/templates.md).
    #[arg(long = "var", global = true, value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Remote access to a group plugin or manager.
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the group controller and the built-in plugins in the foreground, commit specs and
    /// show their instances live until Ctrl-C.
    Up(UpArgs),
    /// Destroy the groups of the given specs and all their instances (the reverse of `up`).
    Down(DownArgs),
    /// Start, list and stop plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run managers (one leads and runs the group controllers) and commit specs through them.
    Manager(ManagerArgs),
    /// Manage groups through the group plugin.
    Group(GroupArgs),
    /// Talk to an instance plugin directly.
    Instance(InstanceArgs),
    /// Talk to a flavor plugin directly.
    Flavor(FlavorArgs),
    /// Render spec templates.
    Template(TemplateArgs),
    /// Print a shell completion script (`infrakit completions bash > /etc/bash_completion.d/infrakit`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages, one per command (`infrakit man --dir DIR`), or print the top one.
    Man {
        /// Directory to write `infrakit.1`, `infrakit-group.1`, `infrakit-group-commit.1`, ... to.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Show the lifecycle events of groups and managers (`--follow` to keep watching).
    Events(EventsArgs),
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// JSON, as on the wire.
    Json,
    /// YAML.
    Yaml,
}

/// Output options shared by listing commands.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Print IDs only, one per line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

/// Options of the built-in plugins.
#[derive(Debug, Clone, Args)]
pub struct PluginOptions {
    /// Group plugin: time between reconciles of a converged group.
    #[arg(long, env = "INFRAKIT_GROUP_POLL_INTERVAL", value_parser = humantime::parse_duration, default_value = "1s")]
    pub poll_interval: Duration,
    /// Group plugin: while the instance plugin's events say nothing changed, list a group's
    /// instances again at least this often.
    #[arg(long, env = "INFRAKIT_GROUP_RESYNC_INTERVAL", value_parser = humantime::parse_duration, default_value = "30s")]
    pub resync_interval: Duration,
    /// Group plugin: how many provisions or destroys run at once.
    #[arg(long, env = "INFRAKIT_GROUP_MAX_PARALLEL_NUM", default_value_t = 64)]
    pub max_parallel: usize,
    /// instance-file: directory of instance files (default `$INFRAKIT_HOME/<name>`).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// instance-simulator: provisioning latency.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub latency: Duration,
    /// instance-simulator: probability that a provision fails (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub failure_rate: f64,
}

/// `infrakit up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Group spec files (JSON or YAML; `-` for stdin).
    #[arg(required = true)]
    pub specs: Vec<String>,
    /// Print one status line per change instead of redrawing a table.
    #[arg(long)]
    pub plain: bool,
    /// Commit specs that scale a group to 0 or destroy more than half of its instances.
    #[arg(long)]
    pub force: bool,
    /// Serve `/metrics` and the live dashboard on this address, e.g. `127.0.0.1:9090`.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Let the dashboard scale groups and pause or resume rollouts (read-only without it).
    #[arg(long, requires = "http")]
    pub http_actions: bool,
    /// Built-in plugin options.
    #[command(flatten)]
    pub options: PluginOptions,
}

/// `infrakit down`.
#[derive(Debug, Args)]
pub struct DownArgs {
    /// Group spec files (JSON or YAML).
    #[arg(required = true)]
    pub specs: Vec<String>,
    /// Built-in plugin options.
    #[command(flatten)]
    pub options: PluginOptions,
}

/// `infrakit plugin ...`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Start plugins in the background: `KIND[:NAME]...`. Built in: `group`, `instance-process`,
    /// `instance-file`, `instance-simulator`, `instance-docker`, `instance-terraform`,
    /// `flavor-vanilla`, `flavor-combo`, `flavor-zookeeper`, `flavor-swarm`. Any other KIND runs
    /// the program `infrakit-KIND` found beside infrakit or on PATH (`instance-aws`,
    /// `instance-azure`, `instance-vagrant`).
    Start {
        /// Plugins to start, e.g. `group instance-file flavor-vanilla` or `instance-file:files2`.
        #[arg(required = true)]
        plugins: Vec<String>,
        /// Name of the plugin (with a single KIND).
        #[arg(long)]
        name: Option<String>,
        /// Built-in plugin options.
        #[command(flatten)]
        options: PluginOptions,
    },
    /// List the plugins in the plugin directory.
    Ls {
        /// Names only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Stop plugins.
    Stop {
        /// Plugins to stop.
        plugins: Vec<String>,
        /// Stop every plugin in the directory.
        #[arg(long, conflicts_with = "plugins")]
        all: bool,
    },
    /// Run one built-in plugin in the foreground (what `plugin start` launches).
    #[command(hide = true)]
    Run {
        /// The kind of plugin.
        kind: String,
        /// Its name (socket file name); defaults to the kind.
        #[arg(long)]
        name: Option<String>,
        /// Built-in plugin options.
        #[command(flatten)]
        options: PluginOptions,
    },
}

/// Where a manager keeps specs and how managers elect a leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// Files under `$INFRAKIT_HOME`; a single manager per home, guarded by a lock file.
    Embedded,
    /// An etcd cluster: several managers, one elected leader with a lease.
    Etcd,
}

/// Options of a manager process.
#[derive(Debug, Clone, Args)]
pub struct ManagerRunArgs {
    /// Store and leadership backend.
    #[arg(long, value_enum, default_value = "embedded")]
    pub store: StoreKind,
    /// etcd client endpoints, comma-separated (with `--store etcd`).
    #[arg(long, value_delimiter = ',', env = "INFRAKIT_ETCD_ENDPOINTS")]
    pub etcd_endpoints: Vec<String>,
    /// Key prefix in etcd: managers with the same prefix elect one leader.
    #[arg(long, default_value = "infrakit")]
    pub etcd_prefix: String,
    /// Leadership lease TTL (with `--store etcd`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    pub lease_ttl: Duration,
    /// Serve `/metrics` (Prometheus) and the live dashboard on this address, e.g.
    /// `127.0.0.1:9090`.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Let the dashboard scale groups and pause or resume rollouts (read-only without it).
    #[arg(long, requires = "http")]
    pub http_actions: bool,
    /// A TCP listener for remote CLIs and plugins.
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Built-in plugin options (the group controller's).
    #[command(flatten)]
    pub options: PluginOptions,
}

/// `infrakit manager ...`.
#[derive(Debug, Args)]
pub struct ManagerArgs {
    /// The manager's name: the socket it serves the Group API on.
    #[arg(long, default_value = "group")]
    pub name: String,
    /// The manager command.
    #[command(subcommand)]
    pub command: ManagerCommand,
}

/// Manager commands.
#[derive(Debug, Subcommand)]
pub enum ManagerCommand {
    /// Start a manager in the background.
    Start(ManagerRunArgs),
    /// Run a manager in the foreground.
    Run(ManagerRunArgs),
    /// Who leads, where, with which store and lease.
    Status {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Commit an array of `{Plugin, Properties}` group entries (InfraKit's manager format).
    Commit {
        /// The file (JSON or YAML; `-` for stdin).
        file: String,
        /// Show what would happen without changing anything.
        #[arg(long)]
        pretend: bool,
        /// Commit even if it scales a group to 0 or destroys more than half of its instances.
        #[arg(long)]
        force: bool,
    },
    /// Print the committed specs in the manager format.
    Inspect {
        /// Output format (json or yaml).
        #[arg(short, long, value_enum, default_value = "json")]
        output: Format,
    },
}

/// `infrakit group ...`.
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// Name of the group plugin.
    #[arg(long, default_value = "group")]
    pub name: String,
    /// The group command.
    #[command(subcommand)]
    pub command: GroupCommand,
}

/// Group commands.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Commit a group spec: start managing the group, or update it.
    Commit {
        /// Spec file (JSON or YAML, rendered as a template first; `-` for stdin).
        file: String,
        /// Show what would happen without changing anything.
        #[arg(long)]
        pretend: bool,
        /// Commit even if it scales the group to 0 or destroys more than half of its instances.
        #[arg(long)]
        force: bool,
    },
    /// Describe a group's instances.
    Describe {
        /// Group ID.
        id: String,
        /// Keep redrawing until Ctrl-C.
        #[arg(short, long)]
        watch: bool,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show or steer a group's configuration rollout.
    Rollout {
        /// What to do.
        #[arg(value_enum)]
        action: RolloutVerb,
        /// Group ID.
        id: String,
        /// Then follow the rollout with a progress bar until it completes (exit 0) or fails or
        /// rolls back (exit 1).
        #[arg(short, long)]
        watch: bool,
    },
    /// Print a group's committed spec.
    Inspect {
        /// Group ID.
        id: String,
        /// Output format (json or yaml).
        #[arg(short, long, value_enum, default_value = "json")]
        output: Format,
    },
    /// Stop managing a group, leaving its instances running.
    Free {
        /// Group ID.
        id: String,
    },
    /// Stop managing a group and destroy all its instances.
    Destroy {
        /// Group ID.
        id: String,
    },
    /// List the managed groups.
    Ls {
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show or change a group's size.
    Scale {
        /// Group ID.
        id: String,
        /// New size.
        size: Option<usize>,
    },
    /// Destroy some instances and shrink the group by as many.
    DestroyInstance {
        /// Group ID.
        id: String,
        /// Instance IDs.
        #[arg(required = true)]
        instances: Vec<String>,
    },
}

/// Rollout verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RolloutVerb {
    /// Phase, progress, and why it is paused if it is.
    Status,
    /// Stop replacing instances.
    Pause,
    /// Continue (also past a partition).
    Resume,
    /// Go back to the previous configuration.
    Undo,
}

/// `infrakit instance ...`.
#[derive(Debug, Args)]
pub struct InstanceArgs {
    /// Name of the instance plugin (`name` or `name/type`).
    #[arg(long, default_value = "instance-process")]
    pub name: String,
    /// The instance command.
    #[command(subcommand)]
    pub command: InstanceCommand,
}

/// Instance commands.
#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// List instances.
    Describe {
        /// Only instances with these tags: `k=v,k2=v2`.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        /// Include provider properties.
        #[arg(short, long)]
        properties: bool,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Provision an instance from a spec file.
    Provision {
        /// Instance spec (`{Properties, Tags, Init, LogicalID, Attachments}`).
        file: String,
    },
    /// Destroy instances.
    Destroy {
        /// Instance IDs.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Validate instance properties.
    Validate {
        /// Properties file.
        file: String,
    },
    /// Adopt an existing resource as an instance of the Terraform plugin working in `--dir`
    /// (Terraform's state lock keeps this safe while the plugin runs).
    Import(ImportArgs),
}

/// `infrakit instance import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The Terraform plugin's working directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Import the resource with this provider import ID (an `import` block).
    #[arg(long, conflicts_with = "address", required_unless_present = "address")]
    pub id: Option<String>,
    /// Take over the resource at this address of the directory's state (a `moved` block); remove
    /// its declaration from your own files first.
    #[arg(long)]
    pub address: Option<String>,
    /// Make it a member of this group: its instance properties and configuration tags come from
    /// the group's spec (asked of the group plugin `--group-plugin`).
    #[arg(long, conflicts_with = "spec")]
    pub group: Option<String>,
    /// Make it a member of the group this spec file describes (committed or not yet: a group
    /// committed afterwards adopts it instead of creating an instance).
    #[arg(long)]
    pub spec: Option<String>,
    /// The group plugin (or manager) to ask for the group's spec.
    #[arg(long, default_value = "group")]
    pub group_plugin: String,
    /// Instance properties file (the resource's type and configuration); default: the group's.
    #[arg(long)]
    pub properties: Option<String>,
    /// The logical ID, for a pet.
    #[arg(long)]
    pub logical_id: Option<String>,
}

/// Allocation flags for flavor commands.
#[derive(Debug, Clone, Args)]
pub struct AllocationArgs {
    /// Cattle allocation size.
    #[arg(long, default_value_t = 1)]
    pub size: u64,
    /// Pet allocation: logical IDs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub logical_ids: Vec<String>,
}

/// `infrakit flavor ...`.
#[derive(Debug, Args)]
pub struct FlavorArgs {
    /// Name of the flavor plugin (`name` or `name/type`).
    #[arg(long, default_value = "flavor-vanilla")]
    pub name: String,
    /// The flavor command.
    #[command(subcommand)]
    pub command: FlavorCommand,
}

/// Flavor commands.
#[derive(Debug, Subcommand)]
pub enum FlavorCommand {
    /// Validate flavor properties.
    Validate {
        /// Flavor properties file.
        file: String,
        /// Allocation.
        #[command(flatten)]
        allocation: AllocationArgs,
    },
    /// Show the instance spec the flavor would produce.
    Prepare {
        /// Flavor properties file.
        flavor: String,
        /// Instance spec file.
        spec: String,
        /// Allocation.
        #[command(flatten)]
        allocation: AllocationArgs,
    },
    /// Ask the flavor whether an instance is healthy.
    Healthy {
        /// Flavor properties file.
        flavor: String,
        /// Instance ID.
        #[arg(long)]
        id: String,
        /// Logical ID.
        #[arg(long)]
        logical_id: Option<String>,
        /// Tags, `k=v,k2=v2`.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
    },
}

/// `infrakit events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The group plugin or manager to ask.
    #[arg(long, default_value = "group")]
    pub name: String,
    /// Only the events of this group.
    #[arg(long)]
    pub group: Option<String>,
    /// Keep printing new events until interrupted.
    #[arg(short, long)]
    pub follow: bool,
    /// Output format (`json`: one event per line, as on the wire).
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

/// `infrakit template ...`.
#[derive(Debug, Args)]
pub struct TemplateArgs {
    /// The template command.
    #[command(subcommand)]
    pub command: TemplateCommand,
}

/// Template commands.
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Print a spec file as the CLI reads it: rendered with `--var` and the environment.
    Render {
        /// The file (`-` for stdin).
        file: String,
    },
}

/// Talking to a group plugin or manager over TCP (`docs/security.md`).
#[derive(Debug, Clone, Default, Args)]
pub struct RemoteArgs {
    /// Talk to the group plugin or manager listening at this `host:port` instead of a local
    /// socket (group and manager commands).
    #[arg(long, global = true, env = "INFRAKIT_REMOTE", value_name = "HOST:PORT")]
    pub remote: Option<String>,
    /// CA certificate (PEM) that the remote's certificate must chain to.
    #[arg(long, global = true, env = "INFRAKIT_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for listeners that require one.
    #[arg(long, global = true, env = "INFRAKIT_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The key of `--tls-cert` (PEM).
    #[arg(long, global = true, env = "INFRAKIT_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// A file holding the bearer token to send.
    #[arg(long, global = true, env = "INFRAKIT_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Talk to a plaintext listener: requests and token cross the network unencrypted.
    #[arg(long, global = true)]
    pub insecure_plaintext: bool,
}

/// A manager's TCP listener for remote CLIs and plugins (`docs/security.md`).
#[derive(Debug, Clone, Default, Args)]
pub struct ListenArgs {
    /// Also serve the manager's API on this `host:port` (TLS, or a token, required).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// The listener's certificate chain (PEM).
    #[arg(long, value_name = "FILE")]
    pub listen_tls_cert: Option<PathBuf>,
    /// The key of `--listen-tls-cert` (PEM).
    #[arg(long, value_name = "FILE")]
    pub listen_tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM).
    #[arg(long, value_name = "FILE")]
    pub listen_client_ca: Option<PathBuf>,
    /// Require this bearer token (read from the file) on every request.
    #[arg(long, value_name = "FILE")]
    pub listen_token_file: Option<PathBuf>,
    /// Serve without TLS: requests and token cross the network unencrypted. Only for tests, or
    /// behind something that already encrypts (a VPN, an SSH tunnel).
    #[arg(long)]
    pub listen_insecure_plaintext: bool,
}
