//! Calling plugins over their sockets (or over TCP, see [`Client::tcp`]), and trait
//! implementations on top of that, so a remote plugin is used exactly like an in-process one.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyperlocal::UnixConnector;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use infrakit_spi::group::{PlanPreview, RolloutAction};
use infrakit_spi::{
    Allocation, Description, DestroyContext, Error, Flavor, Group, GroupDescription, GroupSpec,
    Health, HealthCadence, HealthChecks, Index, Instance, Method, Result, Spec, Tags,
};

use infrakit_spi::secret::Secret;

use crate::jsonrpc::Response;
use crate::tcp::TcpClientConfig;

/// Default timeout of quick calls (validate, describe, health, ...): `$INFRAKIT_CLIENT_TIMEOUT`
/// (a duration like `15s`), else 15 s.
pub fn default_timeout() -> Duration {
    std::env::var("INFRAKIT_CLIENT_TIMEOUT")
        .ok()
        .and_then(|t| match t.trim().parse::<u64>() {
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => humantime::parse_duration(t.trim()).ok(),
        })
        .unwrap_or(Duration::from_secs(15))
}

/// Timeout of calls that create or destroy things, which may legitimately take minutes.
pub const LONG_TIMEOUT: Duration = Duration::from_secs(600);

/// The most bytes read of an answer that lists things (`DescribeInstances`, `DescribeGroup`,
/// `InspectGroups`, batched health, the last version's `Describe` and `Inspect`): 64 MiB. Sized
/// for `DescribeInstances` of a 100,000-instance group: our plugins describe an instance, with
/// its properties, in 300-600 bytes (30-60 MB at 100,000); a plugin that says more per instance
/// than ~670 bytes at that scale is refused rather than allowed to make the controller hold an
/// unbounded answer. `$INFRAKIT_MAX_LISTING_BYTES` changes it.
pub const DEFAULT_MAX_LISTING_BYTES: usize = 64 << 20;

/// The most bytes read of any other answer (an ID, a spec, an acknowledgement): 4 MiB.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// How much of a plugin's HTTP error body goes into an error message (and so into logs and
/// status): a few hundred bytes.
const QUOTED_BODY_BYTES: usize = 300;

/// How much of a plugin's JSON-RPC error message is kept: as much as our servers send (1 KiB).
const QUOTED_MESSAGE_BYTES: usize = 1024;

/// At most one answer at a time, in this process, is read past [`MAX_ANSWER_BYTES`]: concurrent
/// listings (the controller's pass, an operator's `describe`) that are large wait for each other
/// there, so a plugin streaming endless answers to all of them costs one listing limit of memory,
/// not one per call in flight.
static LARGE_ANSWERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Why an answer's body was not read.
enum Bounded {
    TooLarge,
    Read(hyper::Error),
}

/// Reads `body` up to `limit` bytes (see [`LARGE_ANSWERS`]); the chunks are joined once, at
/// the end, freeing each as it is copied.
async fn read_bounded(body: hyper::body::Incoming, limit: usize) -> Result<Bytes, Bounded> {
    let mut body = std::pin::pin!(body);
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    let mut large = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(Bounded::Read)?.into_data() else {
            continue;
        };
        len += data.len();
        if len > limit {
            return Err(Bounded::TooLarge);
        }
        if large.is_none() && len > MAX_ANSWER_BYTES {
            large = Some(LARGE_ANSWERS.acquire().await);
        }
        chunks.push(data);
    }
    if chunks.len() == 1 {
        return Ok(chunks.pop().unwrap_or_default());
    }
    let mut joined = bytes::BytesMut::with_capacity(len);
    for chunk in chunks {
        joined.extend_from_slice(&chunk);
    }
    drop(large);
    Ok(joined.freeze())
}

/// The error a JSON-RPC error object stands for: invalid input with its path, else the
/// plugin's message (both quoted to [`QUOTED_MESSAGE_BYTES`]).
fn error_of(err: &crate::jsonrpc::ErrorObject) -> Error {
    let path = err.data.get("Path").and_then(Value::as_str);
    let message = err.data.get("Message").and_then(Value::as_str);
    match (path, message) {
        (Some(path), Some(message)) => Error::invalid(
            quote(path, QUOTED_MESSAGE_BYTES),
            quote(message, QUOTED_MESSAGE_BYTES),
        ),
        _ => Error::Plugin(quote(&err.message, QUOTED_MESSAGE_BYTES)),
    }
}

/// One item of a batch answer: a value or the error object of its failure.
#[derive(Deserialize)]
struct BatchItem<T> {
    #[serde(rename = "ID", alias = "Spec", default = "Option::default")]
    value: Option<T>,
    #[serde(rename = "Error", default)]
    error: Option<crate::jsonrpc::ErrorObject>,
}

/// A batch answer: one result per item asked for, in order.
#[derive(Deserialize)]
struct BatchAnswer<T> {
    #[serde(rename = "Results", default = "Vec::new")]
    results: Vec<BatchItem<T>>,
}

impl<T> BatchAnswer<T> {
    /// The items' results; all failed when the answer does not have one per item.
    fn into_results(self, plugin: &str, method: Method, asked: usize) -> Vec<Result<T>> {
        if self.results.len() != asked {
            let e = Error::plugin(format!(
                "plugin '{plugin}' answered {method} with {} results for {asked} items",
                self.results.len()
            ));
            return (0..asked).map(|_| Err(e.clone())).collect();
        }
        self.results
            .into_iter()
            .map(|item| match (item.value, item.error) {
                (_, Some(err)) => Err(error_of(&err)),
                (Some(v), None) => Ok(v),
                (None, None) => Err(Error::plugin(format!(
                    "plugin '{plugin}' answered {method} with an empty result"
                ))),
            })
            .collect()
    }
}

/// The most bytes read of an answer to `method`.
pub fn max_response_bytes(method: Method) -> usize {
    match method {
        Method::InstanceDescribeInstances
        | Method::GroupDescribeGroup
        | Method::GroupInspectGroups
        | Method::FlavorHealthCheck
        | Method::FlavorBatchPrepare
        | Method::InstanceBatchProvision
        | Method::ControllerDescribe
        | Method::ControllerFree
        | Method::ManagerInspect
        | Method::ManagerSpecs => listing_limit(),
        _ => MAX_ANSWER_BYTES,
    }
}

fn listing_limit() -> usize {
    static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("INFRAKIT_MAX_LISTING_BYTES")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_MAX_LISTING_BYTES)
    })
}

/// `text` cut to `max` bytes (on a character boundary), for quoting a peer's words.
fn quote(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &text[..end], text.len())
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn next_id() -> u64 {
    if NEXT_ID.load(Ordering::Relaxed) == 0 {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        let _ = NEXT_ID.compare_exchange(0, seed >> 1, Ordering::Relaxed, Ordering::Relaxed);
    }
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Pooled connections idle longer than this are closed by the client, before a server's idle
/// timeout (60 s by default) could close them under a request.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// How requests reach the plugin.
#[derive(Clone)]
enum Transport {
    Unix(HttpClient<UnixConnector, Full<Bytes>>),
    Tcp {
        http: HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
        url: String,
        token: Option<Arc<Secret>>,
    },
}

/// A JSON-RPC client of one plugin socket (or TCP listener). Cheap to clone; connections are
/// pooled.
#[derive(Clone)]
pub struct Client {
    name: String,
    socket: PathBuf,
    timeout: Duration,
    transport: Transport,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("socket", &self.socket)
            .finish()
    }
}

impl Client {
    /// A client of plugin `name` listening at `socket`.
    pub fn new(name: &str, socket: impl Into<PathBuf>) -> Client {
        let http = HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(UnixConnector);
        Client {
            name: name.to_string(),
            socket: socket.into(),
            timeout: default_timeout(),
            transport: Transport::Unix(http),
        }
    }

    /// A client of plugin `name` behind a TCP listener (see [`crate::tcp`]): over TLS, with a
    /// client certificate when one is configured, and/or sending a bearer token. Fails when the
    /// configuration is inconsistent or a PEM file cannot be read; connecting happens on the
    /// first call.
    pub fn tcp(name: &str, config: &TcpClientConfig) -> io::Result<Client> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = match &config.tls {
            Some(t) => crate::tls::client_config(t)?,
            // A plaintext client never makes a TLS connection; the connector still wants a config.
            None => rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let builder = HttpsConnectorBuilder::new().with_tls_config(tls);
        let builder = if config.tls.is_some() {
            builder.https_only()
        } else {
            builder.https_or_http()
        };
        let server_name = config.tls.as_ref().and_then(|t| t.server_name.clone());
        let builder = match server_name {
            Some(n) => {
                let n = rustls::pki_types::ServerName::try_from(n.clone()).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("invalid TLS server name '{n}': {e}"),
                    )
                })?;
                builder.with_server_name_resolver(FixedServerNameResolver::new(n))
            }
            None => builder,
        };
        let connector = builder.enable_http1().wrap_connector(http);
        let http = HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(connector);
        let url = config.url();
        Ok(Client {
            name: name.to_string(),
            socket: PathBuf::from(url.trim_end_matches('/')),
            timeout: default_timeout(),
            transport: Transport::Tcp {
                http,
                url,
                token: config.token.clone().map(Arc::new),
            },
        })
    }

    /// Sets the timeout of quick calls.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The plugin name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The socket path (for a TCP client, its URL, e.g. `https://host:24864`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether this client reaches its plugin over TCP.
    pub fn is_tcp(&self) -> bool {
        matches!(self.transport, Transport::Tcp { .. })
    }

    fn unavailable(&self, reason: impl std::fmt::Display) -> Error {
        Error::Unavailable {
            name: self.name.clone(),
            socket: self.socket.display().to_string(),
            reason: reason.to_string(),
        }
    }

    /// Calls `method` with `params` and decodes the result, within the quick-call timeout.
    pub async fn call<P: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        params: &P,
    ) -> Result<R> {
        self.call_within(method, params, self.timeout).await
    }

    /// Calls `method` with an explicit timeout.
    pub async fn call_within<P: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        params: &P,
        timeout: Duration,
    ) -> Result<R> {
        let id = next_id();
        // Written straight to bytes: a large params (a batch of specs) is not first built as a
        // tree of values.
        #[derive(Serialize)]
        struct Request<'a, P: ?Sized> {
            jsonrpc: &'static str,
            method: &'a str,
            params: &'a P,
            id: u64,
        }
        let body = serde_json::to_vec(&Request {
            jsonrpc: "2.0",
            method: method.as_str(),
            params,
            id,
        })
        .map_err(|e| Error::caused(format!("cannot encode {method} params"), e))?;
        let body = Full::new(Bytes::from(body));
        let resp = self.send(hyper::Method::POST, "/", body)?;
        let limit = max_response_bytes(method);
        let exchange = async {
            let resp = resp.await.map_err(|e| self.unavailable(root_cause(&e)))?;
            let status = resp.status();
            let too_large = || {
                Error::plugin(format!(
                    "plugin '{}' answered {method} with more than {limit} bytes, the most read of such an answer; refused",
                    self.name
                ))
            };
            let declared = resp
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit as u64) {
                return Err(too_large());
            }
            // Read only up to the limit: an endless or huge answer stops here.
            let bytes = read_bounded(resp.into_body(), limit)
                .await
                .map_err(|e| match e {
                    Bounded::TooLarge => too_large(),
                    Bounded::Read(e) => self.unavailable(e),
                })?;
            Ok::<_, Error>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::Timeout {
                name: self.name.clone(),
                method: method.to_string(),
                timeout_ms: timeout.as_millis() as u64,
            })??;
        if !status.is_success() {
            return Err(Error::plugin(format!(
                "plugin '{}' answered {method} with HTTP {status}: {}",
                self.name,
                quote(&String::from_utf8_lossy(&bytes), QUOTED_BODY_BYTES)
            )));
        }
        // The result is decoded straight into its type, not first into a tree of values.
        let resp: Response<Box<RawValue>> = serde_json::from_slice(&bytes).map_err(|e| {
            Error::caused(
                format!("plugin '{}' sent an invalid {method} response", self.name),
                e,
            )
        })?;
        // An answer to another request (a confused or lying plugin) is not this call's.
        if resp.id.get() != id.to_string() {
            return Err(Error::plugin(format!(
                "plugin '{}' answered {method} for request id {}, not {id}; refused",
                self.name,
                quote(resp.id.get(), QUOTED_BODY_BYTES)
            )));
        }
        if let Some(err) = resp.error {
            return Err(error_of(&err));
        }
        match resp.result {
            None => Err(Error::plugin(format!(
                "plugin '{}' returned a null result for {method}",
                self.name
            ))),
            Some(v) => serde_json::from_str(v.get()).map_err(|e| {
                Error::caused(
                    format!("plugin '{}' sent an unexpected {method} result", self.name),
                    e,
                )
            }),
        }
    }

    /// Calls `method` of an extension, which plugins without it (the original's among them)
    /// answer with "can't find": `None` then.
    pub async fn call_extension<P: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        params: &P,
    ) -> Result<Option<R>> {
        self.call_extension_within(method, params, self.timeout)
            .await
    }

    /// [`Client::call_extension`] with its own timeout.
    pub async fn call_extension_within<P: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        params: &P,
        timeout: Duration,
    ) -> Result<Option<R>> {
        match self.call_within(method, params, timeout).await {
            Ok(r) => Ok(Some(r)),
            Err(Error::Plugin(m)) if m.contains("rpc: can't find") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A GET of `path_and_query` (e.g. `/events?topic=%2F`), sent the way calls are (over the
    /// socket, or over TCP with TLS and the token), answered as soon as the response's head
    /// arrives: the body streams. For event subscriptions; no timeout of its own.
    pub(crate) async fn get(
        &self,
        path_and_query: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let resp = self.send(hyper::Method::GET, path_and_query, Full::new(Bytes::new()))?;
        resp.await.map_err(|e| self.unavailable(root_cause(&e)))
    }

    /// Starts a request of `method` on `path` to the plugin: over its socket, or over TCP with
    /// the token. A POST carries JSON.
    fn send(
        &self,
        method: hyper::Method,
        path: &str,
        body: Full<Bytes>,
    ) -> Result<hyper_util::client::legacy::ResponseFuture> {
        let json = method == hyper::Method::POST;
        let with_type = |b: hyper::http::request::Builder| {
            if json {
                b.header(hyper::header::CONTENT_TYPE, "application/json")
            } else {
                b
            }
        };
        Ok(match &self.transport {
            Transport::Unix(http) => {
                let req = with_type(hyper::Request::builder().method(method))
                    .uri(hyperlocal::Uri::new(&self.socket, path))
                    .header(hyper::header::HOST, "h")
                    .body(body)
                    .map_err(|e| Error::plugin(e.to_string()))?;
                http.request(req)
            }
            Transport::Tcp { http, url, token } => {
                let mut req = with_type(hyper::Request::builder().method(method))
                    .uri(format!("{}{path}", url.trim_end_matches('/')))
                    .body(body)
                    .map_err(|e| Error::plugin(e.to_string()))?;
                authorize(&mut req, token.as_deref())?;
                http.request(req)
            }
        })
    }

    /// `Handshake.Hello`: the interfaces (e.g. `Instance/0.6.1`) and objects the plugin serves.
    pub async fn hello(&self) -> Result<std::collections::BTreeMap<String, Vec<Value>>> {
        #[derive(Deserialize)]
        struct Hello {
            #[serde(rename = "Objects", default)]
            objects: std::collections::BTreeMap<String, Vec<Value>>,
        }
        let h: Hello = self.call(Method::HandshakeHello, &json!({})).await?;
        Ok(h.objects)
    }
}

/// Adds the bearer `token`, if there is one, marked sensitive so it is never logged.
fn authorize<B>(req: &mut hyper::Request<B>, token: Option<&Secret>) -> Result<()> {
    if let Some(token) = token {
        let mut value = hyper::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| Error::plugin("the token is not a valid header value"))?;
        value.set_sensitive(true);
        req.headers_mut()
            .insert(hyper::header::AUTHORIZATION, value);
    }
    Ok(())
}

/// The innermost cause of a request's failure: the connector's own error says why the socket
/// or address could not be used.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        reason = s.to_string();
        source = s.source();
    }
    reason
}

/// A result whose content does not matter (`{"OK": true}`).
#[derive(Deserialize)]
struct Ack {}

/// An Instance plugin reached over its socket.
#[derive(Debug, Clone)]
pub struct InstanceClient {
    client: Client,
    kind: String,
}

impl InstanceClient {
    /// A client of subtype `kind` (`""` for the default) of the plugin behind `client`.
    pub fn new(client: Client, kind: &str) -> Self {
        InstanceClient {
            client,
            kind: kind.to_string(),
        }
    }
}

#[async_trait]
impl Instance for InstanceClient {
    async fn validate(&self, properties: &Value) -> Result<()> {
        let p = json!({"Type": self.kind, "Properties": properties});
        self.client
            .call::<_, Ack>(Method::InstanceValidate, &p)
            .await
            .map(|_| ())
    }

    async fn provision(&self, spec: Spec) -> Result<String> {
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "ID", default)]
            id: Option<String>,
        }
        let p = json!({"Type": self.kind, "Spec": spec});
        let r: R = self
            .client
            .call_within(Method::InstanceProvision, &p, LONG_TIMEOUT)
            .await?;
        r.id.ok_or_else(|| {
            Error::plugin(format!(
                "plugin '{}' provisioned an instance without an ID",
                self.client.name
            ))
        })
    }

    async fn label(&self, id: &str, labels: &Tags) -> Result<()> {
        let p = json!({"Type": self.kind, "Instance": id, "Labels": labels});
        self.client
            .call::<_, Ack>(Method::InstanceLabel, &p)
            .await
            .map(|_| ())
    }

    async fn destroy(&self, id: &str, context: &DestroyContext) -> Result<()> {
        let p = json!({"Type": self.kind, "Instance": id, "Context": context});
        self.client
            .call_within::<_, Ack>(Method::InstanceDestroy, &p, LONG_TIMEOUT)
            .await
            .map(|_| ())
    }

    async fn describe_instances(&self, tags: &Tags, properties: bool) -> Result<Vec<Description>> {
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "Descriptions", default)]
            descriptions: Option<Vec<Description>>,
        }
        let p = json!({"Type": self.kind, "Tags": tags, "Properties": properties});
        let r: R = self
            .client
            .call(Method::InstanceDescribeInstances, &p)
            .await?;
        Ok(r.descriptions.unwrap_or_default())
    }

    /// One `InstanceBatch.Provision` call when the plugin serves the extension; otherwise one
    /// `Instance.Provision` per spec, `parallel` at a time, as the original's plugins expect. A
    /// call that fails as a whole (a timeout, a lost connection) fails every item with its
    /// error, so the caller treats each as it would a single provision that failed that way.
    async fn provision_many(&self, specs: Vec<Spec>, parallel: usize) -> Vec<Result<String>> {
        let asked = specs.len();
        if asked == 0 {
            return Vec::new();
        }
        #[derive(Serialize)]
        struct Params<'a> {
            #[serde(rename = "Type")]
            kind: &'a str,
            #[serde(rename = "Specs")]
            specs: &'a [Spec],
            #[serde(rename = "Parallel")]
            parallel: usize,
        }
        let p = Params {
            kind: &self.kind,
            specs: &specs,
            parallel,
        };
        let answer: Result<Option<BatchAnswer<String>>> = self
            .client
            .call_extension_within(Method::InstanceBatchProvision, &p, LONG_TIMEOUT)
            .await;
        match answer {
            Ok(Some(a)) => a.into_results(&self.client.name, Method::InstanceBatchProvision, asked),
            Err(e) => (0..asked).map(|_| Err(e.clone())).collect(),
            Ok(None) => infrakit_spi::instance::provision_each(self, specs, parallel).await,
        }
    }
}

/// A Flavor plugin reached over its socket.
#[derive(Debug, Clone)]
pub struct FlavorClient {
    client: Client,
    kind: String,
}

impl FlavorClient {
    /// A client of subtype `kind` (`""` for the default) of the plugin behind `client`.
    pub fn new(client: Client, kind: &str) -> Self {
        FlavorClient {
            client,
            kind: kind.to_string(),
        }
    }
}

#[async_trait]
impl Flavor for FlavorClient {
    async fn validate(&self, properties: &Value, allocation: &Allocation) -> Result<()> {
        let p = json!({"Type": self.kind, "Properties": properties, "Allocation": allocation});
        self.client
            .call::<_, Ack>(Method::FlavorValidate, &p)
            .await
            .map(|_| ())
    }

    async fn prepare(
        &self,
        properties: &Value,
        spec: Spec,
        allocation: &Allocation,
        index: &Index,
    ) -> Result<Spec> {
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "Spec")]
            spec: Spec,
        }
        let p = json!({"Type": self.kind, "Properties": properties, "Spec": spec, "Allocation": allocation, "Index": index});
        let r: R = self.client.call(Method::FlavorPrepare, &p).await?;
        Ok(r.spec)
    }

    async fn healthy(&self, properties: &Value, instance: &Description) -> Result<Health> {
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "Health")]
            health: Health,
        }
        let p = json!({"Type": self.kind, "Properties": properties, "Instance": instance});
        let r: R = self.client.call(Method::FlavorHealthy, &p).await?;
        Ok(r.health)
    }

    async fn drain(&self, properties: &Value, instance: &Description) -> Result<()> {
        let p = json!({"Type": self.kind, "Properties": properties, "Instance": instance});
        self.client
            .call_within::<_, Ack>(Method::FlavorDrain, &p, LONG_TIMEOUT)
            .await
            .map(|_| ())
    }

    /// One `FlavorBatch.Prepare` call when the plugin serves the extension; otherwise one
    /// `Flavor.Prepare` per spec, a few dozen at a time.
    async fn prepare_many(
        &self,
        properties: &Value,
        specs: Vec<(Spec, Index)>,
        allocation: &Allocation,
    ) -> Vec<Result<Spec>> {
        let asked = specs.len();
        if asked == 0 {
            return Vec::new();
        }
        #[derive(Serialize)]
        struct Item<'a> {
            #[serde(rename = "Spec")]
            spec: &'a Spec,
            #[serde(rename = "Index")]
            index: &'a Index,
        }
        #[derive(Serialize)]
        struct Params<'a> {
            #[serde(rename = "Type")]
            kind: &'a str,
            #[serde(rename = "Properties")]
            properties: &'a Value,
            #[serde(rename = "Allocation")]
            allocation: &'a Allocation,
            #[serde(rename = "Items")]
            items: Vec<Item<'a>>,
        }
        let p = Params {
            kind: &self.kind,
            properties,
            allocation,
            items: specs
                .iter()
                .map(|(spec, index)| Item { spec, index })
                .collect(),
        };
        let answer: Result<Option<BatchAnswer<Spec>>> = self
            .client
            .call_extension(Method::FlavorBatchPrepare, &p)
            .await;
        match answer {
            Ok(Some(a)) => a.into_results(&self.client.name, Method::FlavorBatchPrepare, asked),
            Err(e) => (0..asked).map(|_| Err(e.clone())).collect(),
            Ok(None) => {
                infrakit_spi::flavor::prepare_each(self, properties, specs, allocation).await
            }
        }
    }

    async fn health_cadence(&self, properties: &Value) -> Result<HealthCadence> {
        Ok(self.health_checks(properties).await?.cadence)
    }

    /// Batched when the plugin serves the health extension; otherwise the original's promise
    /// (none: every pass).
    async fn health_checks(&self, properties: &Value) -> Result<HealthChecks> {
        let p = json!({"Type": self.kind, "Properties": properties});
        let answer: Option<HealthCadence> = self
            .client
            .call_extension(Method::FlavorHealthCadence, &p)
            .await?;
        Ok(match answer {
            Some(cadence) => HealthChecks {
                cadence,
                batched: true,
            },
            None => HealthChecks::default(),
        })
    }

    /// One `FlavorHealth.Check` call; only for plugins that serve the extension (see
    /// [`Flavor::health_checks`]).
    async fn healthy_many(
        &self,
        properties: &Value,
        instances: &[&Description],
    ) -> Result<Vec<Health>> {
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "Health")]
            health: Vec<Health>,
        }
        let p = json!({"Type": self.kind, "Properties": properties, "Descriptions": instances});
        let r: R = self.client.call(Method::FlavorHealthCheck, &p).await?;
        if r.health.len() != instances.len() {
            return Err(Error::plugin(format!(
                "plugin '{}' judged {} of {} instances",
                self.client.name,
                r.health.len(),
                instances.len()
            )));
        }
        Ok(r.health)
    }

    /// One `FlavorHealth.Watch` call; `false` from a plugin without the extension.
    async fn watch_health(
        &self,
        properties: &Value,
        watch: &str,
        instances: &[&Description],
        lease: Duration,
    ) -> Result<bool> {
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "Watching", default)]
            watching: bool,
        }
        let lease = humantime::format_duration(lease).to_string();
        let p = json!({
            "Type": self.kind,
            "Properties": properties,
            "Watch": watch,
            "Descriptions": instances,
            "Lease": lease,
        });
        let r: Option<R> = self
            .client
            .call_extension(Method::FlavorHealthWatch, &p)
            .await?;
        Ok(r.is_some_and(|r| r.watching))
    }
}

/// A Group plugin reached over its socket.
#[derive(Debug, Clone)]
pub struct GroupClient {
    client: Client,
}

impl GroupClient {
    /// A client of the group plugin behind `client`.
    pub fn new(client: Client) -> Self {
        GroupClient { client }
    }

    /// The `Name` of one group's object, keyed as InfraKit's last version addresses it
    /// (`mystack/cattle`); servers of earlier generations ignore it.
    fn object(&self, id: &str) -> String {
        format!("{}/{id}", self.socket_name())
    }

    /// The `Name` of the collection, where new groups are committed (`mystack/groups`).
    fn collection(&self) -> String {
        self.object("groups")
    }

    fn socket_name(&self) -> &str {
        infrakit_spi::group::split_plugin_name(&self.client.name).0
    }

    fn params(&self, id: &str) -> Value {
        json!({"Name": self.object(id), "ID": id})
    }
}

#[async_trait]
impl Group for GroupClient {
    async fn commit_group(&self, spec: GroupSpec, pretend: bool) -> Result<String> {
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "Details", default)]
            details: String,
        }
        let p = json!({"Name": self.collection(), "Spec": spec, "Pretend": pretend});
        let r: R = self
            .client
            .call_within(Method::GroupCommitGroup, &p, LONG_TIMEOUT)
            .await?;
        Ok(r.details)
    }

    async fn free_group(&self, id: &str) -> Result<()> {
        self.client
            .call::<_, Value>(Method::GroupFreeGroup, &self.params(id))
            .await
            .map(|_| ())
    }

    async fn describe_group(&self, id: &str) -> Result<GroupDescription> {
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "Description")]
            description: GroupDescription,
        }
        let r: R = self
            .client
            .call(Method::GroupDescribeGroup, &self.params(id))
            .await?;
        Ok(r.description)
    }

    async fn destroy_group(&self, id: &str) -> Result<()> {
        self.client
            .call_within::<_, Value>(Method::GroupDestroyGroup, &self.params(id), LONG_TIMEOUT)
            .await
            .map(|_| ())
    }

    async fn inspect_groups(&self) -> Result<Vec<GroupSpec>> {
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "Groups", default)]
            groups: Option<Vec<GroupSpec>>,
        }
        let r: R = self
            .client
            .call(
                Method::GroupInspectGroups,
                &json!({"Name": self.collection(), "ID": ""}),
            )
            .await?;
        Ok(r.groups.unwrap_or_default())
    }

    async fn destroy_instances(&self, id: &str, instances: &[String]) -> Result<()> {
        let p = json!({"Name": self.object(id), "ID": id, "Instances": instances});
        self.client
            .call_within::<_, Value>(Method::GroupDestroyInstances, &p, LONG_TIMEOUT)
            .await
            .map(|_| ())
    }

    async fn size(&self, id: &str) -> Result<usize> {
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "Size")]
            size: usize,
        }
        let r: R = self
            .client
            .call(Method::GroupSize, &self.params(id))
            .await?;
        Ok(r.size)
    }

    async fn set_size(&self, id: &str, size: usize) -> Result<()> {
        let p = json!({"Name": self.object(id), "ID": id, "Size": size});
        self.client
            .call::<_, Value>(Method::GroupSetSize, &p)
            .await
            .map(|_| ())
    }

    async fn plan_group(&self, spec: GroupSpec) -> Result<PlanPreview> {
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "Plan")]
            plan: PlanPreview,
        }
        let p = json!({"Name": self.collection(), "Spec": spec});
        let r: R = self
            .client
            .call_within(Method::GroupPlanGroup, &p, LONG_TIMEOUT)
            .await?;
        Ok(r.plan)
    }

    async fn rollout(&self, id: &str, action: RolloutAction) -> Result<()> {
        self.client
            .call::<_, Value>(action.method(), &self.params(id))
            .await
            .map(|_| ())
    }
}

/// A manager reached over its socket.
#[derive(Debug, Clone)]
pub struct ManagerClient {
    client: Client,
}

impl ManagerClient {
    /// A client of the manager behind `client`.
    pub fn new(client: Client) -> Self {
        ManagerClient { client }
    }
}

#[async_trait]
impl infrakit_spi::manager::Manager for ManagerClient {
    async fn is_leader(&self) -> Result<bool> {
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "Leader")]
            leader: bool,
        }
        let r: R = self
            .client
            .call(Method::ManagerIsLeader, &json!({}))
            .await?;
        Ok(r.leader)
    }

    async fn leader_location(&self) -> Result<Option<String>> {
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "Location", default)]
            location: Option<String>,
        }
        let r: R = self
            .client
            .call(Method::ManagerLeaderLocation, &json!({}))
            .await?;
        Ok(r.location)
    }

    async fn status(&self) -> Result<infrakit_spi::manager::ManagerStatus> {
        #[derive(Deserialize)]
        struct R {
            #[serde(rename = "Status")]
            status: infrakit_spi::manager::ManagerStatus,
        }
        let r: R = self.client.call(Method::ManagerStatus, &json!({})).await?;
        Ok(r.status)
    }
}
