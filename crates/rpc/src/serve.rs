//! One HTTP/1.1 connection of a plugin server, whatever carried it (Unix socket, TCP, TLS):
//! the [`Limits`] applied to it, bearer-token checks, and routing of each request.
//!
//! Nothing here logs a request or response body: bodies carry specs whose `Init` and properties
//! may hold secrets. The only per-request log line is the audit line of a mutating call
//! (see `dispatch`), which names the method and the caller, never the params.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};

use infrakit_spi::secret::Secret;

use crate::admission::Phase;
use crate::conns::{Closed, Conn};
use crate::dispatch::Caller;
use crate::handlers::Handlers;
use crate::limits::Limits;
use crate::{dispatch, events, tcp};

/// What every connection of one server shares.
pub(crate) struct ServerInfo {
    pub(crate) name: String,
    pub(crate) handlers: Handlers,
    pub(crate) limits: Limits,
}

/// Serves HTTP/1.1 on `io` until the client goes away, sends no first request head within
/// [`Limits::head_timeout`], idles past [`Limits::idle_timeout`], is evicted to make room, or
/// the server shuts down.
pub(crate) fn spawn_connection<IO>(
    io: IO,
    info: Arc<ServerInfo>,
    caller: Caller,
    token: Option<Arc<Secret>>,
    graceful: Watcher,
    conn: Conn,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = info.limits.clone();
    let conn = Arc::new(conn);
    let handle = conn.clone();
    let service = hyper::service::service_fn(move |req| {
        let info = info.clone();
        let token = token.clone();
        let conn = handle.clone();
        async move {
            conn.request_started();
            let resp = route(&info, req, caller, token.as_deref(), &conn).await;
            let streaming = resp
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .is_some_and(|ct| ct.as_bytes().starts_with(b"text/event-stream"));
            conn.phase(if streaming {
                Phase::Streaming
            } else {
                Phase::Waiting
            });
            Ok::<_, Infallible>(resp)
        }
    });
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.idle_timeout)
        .max_headers(limits.max_headers)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.read_buffer_bytes())
        .serve_connection(TokioIo::new(io), service);
    let http = graceful.watch(http);
    tokio::spawn(async move {
        // A new connection has `head_timeout` to send its first request head; after that,
        // hyper's keep-alive idle timeout applies.
        let first_head = async {
            tokio::time::sleep(limits.head_timeout).await;
            if conn.served() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            ended = http => match ended {
                Ok(()) => {}
                Err(e) if e.is_timeout() => conn.closing(Closed::Idle),
                Err(e) => tracing::debug!(error = %e, "connection ended with an error"),
            },
            () = conn.evicted().cancelled() => {}
            () = first_head => conn.closing(Closed::Idle),
        }
    });
}

pub(crate) type Body = BoxBody<Bytes, io::Error>;

pub(crate) fn full(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(
            Full::new(body.into())
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("static response parts are valid")
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", format!("{msg}\n"))
}

/// A plain-text error after which the connection is closed (the rest of the request is unread).
fn closing(status: StatusCode, msg: &str) -> Response<Body> {
    let mut resp = text(status, msg);
    resp.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    resp
}

async fn route(
    info: &ServerInfo,
    req: Request<Incoming>,
    caller: Caller,
    token: Option<&Secret>,
    conn: &Conn,
) -> Response<Body> {
    if let Some(token) = token {
        if tcp::bearer_matches(req.headers().get(hyper::header::AUTHORIZATION), token) {
            conn.authenticate();
        } else {
            let mut resp = text(
                StatusCode::UNAUTHORIZED,
                "401 unauthorized: send Authorization: Bearer <token>",
            );
            resp.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer realm=\"infrakit\""),
            );
            return resp;
        }
    }
    if *req.method() != Method::POST {
        conn.phase(Phase::Busy);
    }
    match *req.method() {
        Method::POST => rpc(info, req, caller, conn).await,
        Method::GET if req.uri().path() == "/events" => {
            let Some(publisher) = &info.handlers.publisher else {
                return text(StatusCode::NOT_FOUND, "this plugin publishes no events");
            };
            let topic = events::topic_from_query(req.uri().query());
            // Subscribe before reading the history, so nothing falls between the two.
            let rx = publisher.subscribe();
            let recent = events::history_from_query(req.uri().query()).then(|| publisher.recent());
            events::sse_response(rx, topic, recent)
        }
        Method::GET if req.uri().path() == "/info/api.json" => {
            let implements: Vec<_> = info
                .handlers
                .interfaces()
                .iter()
                .map(|(i, types)| serde_json::json!({"Name": i.name, "Version": i.version, "Types": types}))
                .collect();
            let body = serde_json::json!({"Name": info.name, "Implements": implements});
            full(StatusCode::OK, "application/json", body.to_string())
        }
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed"),
    }
}

/// Reads a request body within the limits: refused at once when `Content-Length` is over the
/// size limit, cut off when a chunked body passes it, and given up on when it is too slow.
async fn read_body(req: Request<Incoming>, limits: &Limits) -> Result<Bytes, Response<Body>> {
    let max = limits.max_body_bytes;
    let too_large = || {
        closing(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("413 request body too large (limit {max} bytes)"),
        )
    };
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large());
    }
    let collect = Limited::new(req.into_body(), max).collect();
    match tokio::time::timeout(limits.body_timeout, collect).await {
        Err(_) => Err(closing(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "408 request body not received within {}",
                humantime::format_duration(limits.body_timeout)
            ),
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(closing(
            StatusCode::BAD_REQUEST,
            &format!("400 cannot read request body: {e}"),
        )),
        Ok(Ok(body)) => Ok(body.to_bytes()),
    }
}

async fn rpc(
    info: &ServerInfo,
    req: Request<Incoming>,
    caller: Caller,
    conn: &Conn,
) -> Response<Body> {
    if let Some(ct) = req.headers().get(hyper::header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        if !ct.starts_with("application/json") {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "rpc: unrecognized Content-Type: use application/json",
            );
        }
    }
    let body = match read_body(req, &info.limits).await {
        Ok(b) => b,
        Err(resp) => {
            if resp.status() == StatusCode::REQUEST_TIMEOUT {
                conn.closing(Closed::Slow);
            }
            return resp;
        }
    };
    conn.phase(Phase::Busy);
    let out = dispatch::handle(&info.handlers, &body, &info.name, caller)
        .await
        .unwrap_or_default();
    full(StatusCode::OK, "application/json; charset=utf-8", out)
}
