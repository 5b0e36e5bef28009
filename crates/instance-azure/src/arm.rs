//! Azure Resource Manager over HTTPS.
//!
//! Requests go through `azure_core`'s pipeline: a bearer token from the configured credential
//! (refreshed before it expires), a client request ID, and retries with exponential back-off of
//! what ARM says may be retried (408, 429 and 5xx, honouring `Retry-After`); a request ARM
//! refuses (any other 4xx) is never retried. Answers are read here: a success into the
//! caller's type, an error into [`ArmError`] with ARM's code and message.
//!
//! Long-running operations (a `PUT` answered 201, a `DELETE` answered 202, ...) are followed to
//! their end by [`Arm::wait`]: the `Azure-AsyncOperation` URL's status until it is
//! `Succeeded`, `Failed` or `Canceled`, or else the `Location` URL until it stops answering 202,
//! waiting what `Retry-After` says between polls. Lists are read page by page, following
//! `nextLink` ([`Arm::list`]).

use std::sync::Arc;
use std::time::Duration;

use azure_core::http::{Context, Method, Pipeline, PipelineSendOptions, RawResponse, Request, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::model::{ErrorDetail, ErrorResponse, OperationStatus, Page};

/// Header naming an operation's status URL.
const ASYNC_OPERATION: &str = "azure-asyncoperation";
/// Header naming an operation's result URL.
const LOCATION: &str = "location";
/// Header saying how long to wait before asking again, in seconds.
const RETRY_AFTER: &str = "retry-after";
/// Most pages followed in one list (a loop in `nextLink` must end).
const MAX_PAGES: usize = 10_000;

/// An error from ARM or on the way to it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ArmError {
    /// ARM answered with an error status.
    #[error("{what}: {} (HTTP {status})", .detail.describe())]
    Api {
        /// The request, e.g. `PUT virtualMachines/web-1`.
        what: String,
        /// The HTTP status.
        status: u16,
        /// ARM's error.
        detail: Box<ErrorDetail>,
    },
    /// A long-running operation ended `Failed` or `Canceled`.
    #[error("{what}: operation {status}: {}", .detail.describe())]
    Operation {
        /// The request whose operation it was.
        what: String,
        /// `Failed` or `Canceled`.
        status: String,
        /// ARM's error.
        detail: Box<ErrorDetail>,
    },
    /// The request did not get an answer (connection, TLS, token).
    #[error("{what}: {message}")]
    Transport {
        /// The request.
        what: String,
        /// What failed.
        message: String,
    },
    /// An answer that does not read as the specification says.
    #[error("{what}: unexpected answer: {message}")]
    Decode {
        /// The request.
        what: String,
        /// What did not read.
        message: String,
    },
    /// A long-running operation did not end in time.
    #[error("{what}: not done within {}", humantime::format_duration(*.timeout))]
    Timeout {
        /// The request whose operation it was.
        what: String,
        /// How long it was waited for.
        timeout: Duration,
    },
}

impl ArmError {
    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ArmError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// ARM's error code, from an error answer or a failed operation.
    pub fn code(&self) -> Option<&str> {
        match self {
            ArmError::Api { detail, .. } | ArmError::Operation { detail, .. } => Some(&detail.code),
            _ => None,
        }
    }

    /// A 404 about the resource itself (not its resource group or subscription).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
            && matches!(self.code(), Some("ResourceNotFound" | "NotFound" | ""))
    }
}

/// The result of an ARM request.
pub type ArmResult<T> = std::result::Result<T, ArmError>;

/// A long-running operation to follow: where to ask, and how soon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// An `Azure-AsyncOperation` status URL.
    Status(String, Option<Duration>),
    /// A `Location` result URL.
    Result(String, Option<Duration>),
}

/// How operations are polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polling {
    /// The wait between polls when ARM does not say (`Retry-After`).
    pub interval: Duration,
    /// The shortest wait between polls, whatever ARM says.
    pub min_interval: Duration,
    /// The longest wait between polls, whatever ARM says.
    pub max_interval: Duration,
}

impl Default for Polling {
    fn default() -> Self {
        Polling {
            interval: Duration::from_secs(5),
            min_interval: Duration::from_millis(200),
            max_interval: Duration::from_secs(60),
        }
    }
}

/// A client of ARM for one subscription.
#[derive(Debug, Clone)]
pub struct Arm {
    pipeline: Arc<Pipeline>,
    endpoint: Url,
    subscription: String,
    polling: Polling,
}

impl Arm {
    /// A client sending through `pipeline` to ARM at `endpoint` (e.g.
    /// `https://management.azure.com`), in `subscription`.
    pub fn new(pipeline: Pipeline, endpoint: Url, subscription: &str, polling: Polling) -> Self {
        Arm {
            pipeline: Arc::new(pipeline),
            endpoint,
            subscription: subscription.to_string(),
            polling,
        }
    }

    /// The subscription.
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// The ID of a resource of `kind` (e.g. `Microsoft.Compute/virtualMachines`) in a resource
    /// group.
    pub fn resource_id(&self, group: &str, kind: &str, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{group}/providers/{kind}/{name}",
            self.subscription
        )
    }

    /// The ID of the collection of `kind` in a resource group.
    pub fn collection_id(&self, group: &str, kind: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{group}/providers/{kind}",
            self.subscription
        )
    }

    /// The URL of `path` (a resource ID, perhaps with a suffix) with `api-version` and `query`.
    fn url(&self, path: &str, api: &str, query: &[(&str, &str)]) -> ArmResult<Url> {
        let mut url = self.endpoint.join(path).map_err(|e| ArmError::Decode {
            what: path.to_string(),
            message: format!("not a path: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("api-version", api);
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// Sends a request and answers the raw response, whatever its status.
    async fn send(
        &self,
        what: &str,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> ArmResult<RawResponse> {
        let mut request = Request::new(url, method);
        request.insert_header("accept", "application/json");
        if let Some(body) = body {
            request.insert_header("content-type", "application/json");
            request.set_body(body);
        }
        let options = PipelineSendOptions {
            skip_checks: true,
            ..Default::default()
        };
        self.pipeline
            .send(&Context::new(), &mut request, Some(options))
            .await
            .map_err(|e| ArmError::Transport {
                what: what.to_string(),
                message: error_chain(&e),
            })
    }

    /// `GET` of a resource: `None` when it does not exist.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        api: &str,
        query: &[(&str, &str)],
    ) -> ArmResult<Option<T>> {
        let what = format!("GET {}", short(path));
        let response = self
            .send(&what, Method::Get, self.url(path, api, query)?, None)
            .await?;
        match u16::from(response.status()) {
            200 => decode(&what, &response).map(Some),
            _ => match failure(&what, &response) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// `PUT` of a resource: its body as ARM answered, and the operation to wait for, if any.
    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        api: &str,
        body: &B,
    ) -> ArmResult<(T, Option<Pending>)> {
        self.write(Method::Put, path, api, body).await
    }

    /// `PATCH` of a resource (e.g. its tags), as [`Arm::put`].
    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        api: &str,
        body: &B,
    ) -> ArmResult<(T, Option<Pending>)> {
        self.write(Method::Patch, path, api, body).await
    }

    async fn write<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        api: &str,
        body: &B,
    ) -> ArmResult<(T, Option<Pending>)> {
        let what = format!("{method} {}", short(path));
        let body = serde_json::to_vec(body).map_err(|e| ArmError::Decode {
            what: what.clone(),
            message: format!("cannot encode the request: {e}"),
        })?;
        let response = self
            .send(&what, method, self.url(path, api, &[])?, Some(body))
            .await?;
        match u16::from(response.status()) {
            200..=202 => {
                let pending = pending(&response);
                Ok((decode(&what, &response)?, pending))
            }
            _ => Err(failure(&what, &response)),
        }
    }

    /// `DELETE` of a resource: the operation to wait for, if any. A resource that does not exist
    /// is already deleted.
    pub async fn delete(
        &self,
        path: &str,
        api: &str,
        query: &[(&str, &str)],
    ) -> ArmResult<Option<Pending>> {
        let what = format!("DELETE {}", short(path));
        let response = self
            .send(&what, Method::Delete, self.url(path, api, query)?, None)
            .await?;
        match u16::from(response.status()) {
            200 | 202 => Ok(pending(&response)),
            204 => Ok(None),
            _ => match failure(&what, &response) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Every resource of a list operation, page after page.
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        api: &str,
        query: &[(&str, &str)],
    ) -> ArmResult<Vec<T>> {
        let what = format!("GET {}", short(path));
        let mut url = self.url(path, api, query)?;
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = self.send(&what, Method::Get, url, None).await?;
            if u16::from(response.status()) != 200 {
                return Err(failure(&what, &response));
            }
            let page: Page<T> = decode(&what, &response)?;
            out.extend(page.value);
            match page.next_link.filter(|l| !l.is_empty()) {
                Some(next) => {
                    url = Url::parse(&next).map_err(|e| ArmError::Decode {
                        what: what.clone(),
                        message: format!("nextLink {next:?} is not a URL: {e}"),
                    })?;
                }
                None => return Ok(out),
            }
        }
        Err(ArmError::Decode {
            what,
            message: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// Follows `pending` until its operation ends, at most `timeout`: `Ok` when it succeeded.
    pub async fn wait(&self, what: &str, pending: Pending, timeout: Duration) -> ArmResult<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (url, mut delay, status_url) = match pending {
            Pending::Status(u, d) => (u, d, true),
            Pending::Result(u, d) => (u, d, false),
        };
        let url = Url::parse(&url).map_err(|e| ArmError::Decode {
            what: what.to_string(),
            message: format!("operation URL {url:?}: {e}"),
        })?;
        loop {
            let wait = self.polling.clamp(delay);
            if tokio::time::Instant::now() + wait > deadline {
                return Err(ArmError::Timeout {
                    what: what.to_string(),
                    timeout,
                });
            }
            tokio::time::sleep(wait).await;
            let response = self.send(what, Method::Get, url.clone(), None).await?;
            let code = u16::from(response.status());
            delay = retry_after(&response);
            if status_url {
                if code != 200 {
                    return Err(failure(what, &response));
                }
                let status: OperationStatus = decode(what, &response)?;
                match status.status.as_str() {
                    s if s.eq_ignore_ascii_case("Succeeded") => return Ok(()),
                    s if s.eq_ignore_ascii_case("Failed")
                        || s.eq_ignore_ascii_case("Canceled")
                        || s.eq_ignore_ascii_case("Cancelled") =>
                    {
                        return Err(ArmError::Operation {
                            what: what.to_string(),
                            status: status.status.clone(),
                            detail: Box::new(status.error.unwrap_or_else(|| ErrorDetail {
                                code: status.status.clone(),
                                message: "the operation ended without saying why".into(),
                                ..ErrorDetail::default()
                            })),
                        });
                    }
                    _ => {}
                }
            } else {
                match code {
                    202 => {}
                    200 | 201 | 204 => return Ok(()),
                    _ => return Err(failure(what, &response)),
                }
            }
        }
    }
}

impl Polling {
    /// The wait before the next poll, ARM having said `retry_after`.
    fn clamp(&self, retry_after: Option<Duration>) -> Duration {
        retry_after
            .unwrap_or(self.interval)
            .clamp(self.min_interval, self.max_interval)
    }
}

/// The operation a response announces, if any: its `Azure-AsyncOperation` URL, else its
/// `Location`.
fn pending(response: &RawResponse) -> Option<Pending> {
    let header = |name: &'static str| {
        response
            .headers()
            .get_optional_str(&azure_core::http::headers::HeaderName::from_static(name))
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let delay = retry_after(response);
    if let Some(url) = header(ASYNC_OPERATION) {
        return Some(Pending::Status(url, delay));
    }
    if u16::from(response.status()) == 202 {
        return header(LOCATION).map(|url| Pending::Result(url, delay));
    }
    None
}

/// `Retry-After` in seconds, if the response says.
fn retry_after(response: &RawResponse) -> Option<Duration> {
    response
        .headers()
        .get_optional_str(&azure_core::http::headers::HeaderName::from_static(
            RETRY_AFTER,
        ))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A success's body as `T`, or an error naming the path of the field that did not read.
fn decode<T: DeserializeOwned>(what: &str, response: &RawResponse) -> ArmResult<T> {
    let body: &[u8] = response.body();
    let body = if body.is_empty() { b"{}" } else { body };
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| ArmError::Decode {
        what: what.to_string(),
        message: format!("at {}: {}", e.path(), e.inner()),
    })
}

/// An error answer as [`ArmError::Api`]: ARM's error body, or the status alone.
fn failure(what: &str, response: &RawResponse) -> ArmError {
    let status = u16::from(response.status());
    let body: &[u8] = response.body();
    let detail = serde_json::from_slice::<ErrorResponse>(body)
        .ok()
        .and_then(|r| r.error)
        .unwrap_or_else(|| ErrorDetail {
            code: String::new(),
            message: quote(body),
            ..ErrorDetail::default()
        });
    ArmError::Api {
        what: what.to_string(),
        status,
        detail: Box::new(detail),
    }
}

/// A body that is not ARM's error shape, cut short for a message.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(no body)".to_string();
    }
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        format!("{}...", &text[..end])
    } else {
        text.to_string()
    }
}

/// A resource ID without its subscription and resource group, for messages:
/// `virtualMachines/web-1`.
fn short(path: &str) -> &str {
    match path.rfind("/providers/") {
        Some(i) => {
            let rest = &path[i + "/providers/".len()..];
            // Skip the namespace, e.g. `Microsoft.Compute/`.
            rest.split_once('/').map(|(_, r)| r).unwrap_or(rest)
        }
        None => path,
    }
}

/// An error with its causes.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_resource_not_the_subscription() {
        assert_eq!(
            short("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web-1"),
            "virtualMachines/web-1"
        );
        assert_eq!(short("/somewhere"), "/somewhere");
    }

    #[test]
    fn polling_waits_what_arm_says_within_bounds() {
        let p = Polling::default();
        assert_eq!(p.clamp(None), Duration::from_secs(5));
        assert_eq!(p.clamp(Some(Duration::ZERO)), Duration::from_millis(200));
        assert_eq!(
            p.clamp(Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.clamp(Some(Duration::from_secs(600))),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn bodies_that_are_not_arm_errors_are_quoted_short() {
        assert_eq!(quote(b""), "(no body)");
        let long = "x".repeat(1000);
        assert_eq!(quote(long.as_bytes()).len(), 303);
    }
}
