//! Routing and the JSON/SSE API behind the dashboard.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use infrakit_spi::group::{ConfigState, RolloutAction, RolloutStatus};
use infrakit_spi::{Event, Health};

use crate::assets;
use crate::config::{Options, Sources};

type Body = BoxBody<Bytes, Infallible>;

/// Shared by every request.
pub(crate) struct State {
    pub(crate) sources: Sources,
    pub(crate) options: Options,
}

/// One group as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupView {
    /// Group ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Instances wanted.
    #[serde(rename = "Desired")]
    pub desired: usize,
    /// Instances found.
    #[serde(rename = "Actual")]
    pub actual: usize,
    /// Instances healthy.
    #[serde(rename = "Healthy")]
    pub healthy: usize,
    /// Converged, as `DescribeGroup` says.
    #[serde(rename = "Converged")]
    pub converged: bool,
    /// What the controller is doing or waiting for.
    #[serde(rename = "Message")]
    pub message: String,
    /// The rollout, if one is shown.
    #[serde(rename = "Rollout")]
    pub rollout: Option<RolloutStatus>,
    /// The members.
    #[serde(rename = "Instances")]
    pub instances: Vec<InstanceView>,
    /// Set when the group could not be described.
    #[serde(rename = "Error", skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One instance as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceView {
    /// Instance ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Logical ID (pets).
    #[serde(rename = "LogicalID")]
    pub logical_id: Option<String>,
    /// `healthy`, `unhealthy` or `unknown`.
    #[serde(rename = "Health")]
    pub health: &'static str,
    /// `current` or `old`.
    #[serde(rename = "Config")]
    pub config: &'static str,
    /// Seconds since the controller first saw it.
    #[serde(rename = "AgeSeconds")]
    pub age_seconds: u64,
}

fn health_name(h: Health) -> &'static str {
    match h {
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
        Health::Unknown => "unknown",
    }
}

/// Every group the Group API knows, described.
pub(crate) async fn groups(state: &State) -> Result<Vec<GroupView>, String> {
    let group = &state.sources.groups;
    let specs = group.inspect_groups().await.map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let view = match group.describe_group(&spec.id).await {
            Ok(d) => {
                let status = d.status.unwrap_or_default();
                GroupView {
                    id: spec.id,
                    desired: status.desired,
                    actual: d.instances.len(),
                    healthy: status.healthy,
                    converged: d.converged,
                    message: status.message,
                    rollout: status.rollout,
                    instances: status
                        .instances
                        .into_iter()
                        .map(|i| InstanceView {
                            id: i.id,
                            logical_id: i.logical_id,
                            health: health_name(i.health),
                            config: match i.config {
                                ConfigState::Current => "current",
                                ConfigState::Old => "old",
                            },
                            age_seconds: i.age_seconds,
                        })
                        .collect(),
                    error: None,
                }
            }
            Err(e) => GroupView {
                id: spec.id,
                desired: 0,
                actual: 0,
                healthy: 0,
                converged: false,
                message: String::new(),
                rollout: None,
                instances: Vec::new(),
                error: Some(e.to_string()),
            },
        };
        out.push(view);
    }
    Ok(out)
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .header(CACHE_CONTROL, "no-cache")
        .body(Full::new(body.into()).boxed())
        .expect("static response parts are valid")
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    full(
        status,
        "application/json",
        serde_json::to_vec(value).expect("views serialise"),
    )
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(status, &serde_json::json!({"error": message.into()}))
}

fn sse_frame(event: &Event) -> Frame<Bytes> {
    let data = serde_json::to_string(event).expect("events serialise");
    Frame::data(Bytes::from(format!("data: {data}\n\n")))
}

/// The recent events, a `: live` comment, then every new event.
fn events(state: &State) -> Response<Body> {
    let publisher = &state.sources.events;
    // Subscribe first, so nothing published between the two is missed (it may appear twice).
    let rx = publisher.subscribe();
    let recent: Vec<Result<Frame<Bytes>, Infallible>> = publisher
        .recent()
        .iter()
        .map(|e| Ok(sse_frame(e)))
        .collect();
    let live_marker = futures::stream::once(async {
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b": live\n\n")))
    });
    let live = BroadcastStream::new(rx).filter_map(|item| async move {
        match item {
            Ok(e) => Some(Ok(sse_frame(&e))),
            Err(BroadcastStreamRecvError::Lagged(n)) => Some(Ok(Frame::data(Bytes::from(
                format!(": {n} events dropped\n\n"),
            )))),
        }
    });
    let stream = futures::stream::iter(recent).chain(live_marker).chain(live);
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "text/event-stream")
        .header(CACHE_CONTROL, "no-cache")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("static response parts are valid")
}

fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `POST /api/groups/{id}/{action}`.
async fn act(state: &State, req: &Request<Incoming>, id: &str, action: &str) -> Response<Body> {
    if !state.options.actions {
        return error(
            StatusCode::FORBIDDEN,
            "actions are disabled: start the listener with actions enabled (--http-actions)",
        );
    }
    let group = &state.sources.groups;
    let result = match action {
        "scale" => match query_param(req, "size").map(|s| s.parse::<usize>()) {
            Some(Ok(size)) => group.set_size(id, size).await,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "scale needs ?size=N with N a whole number",
                )
            }
        },
        "pause" => group.rollout(id, RolloutAction::Pause).await,
        "resume" => group.rollout(id, RolloutAction::Resume).await,
        other => return error(StatusCode::NOT_FOUND, format!("no action '{other}'")),
    };
    match result {
        Ok(()) => {
            tracing::info!(target: "infrakit::audit", group = id, action, "dashboard action");
            json(StatusCode::OK, &serde_json::json!({"ok": true}))
        }
        Err(e) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

/// Routes one request.
pub(crate) async fn route(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let response = match (req.method(), parts.as_slice()) {
        (&Method::GET, [""]) => full(
            StatusCode::OK,
            "text/html; charset=utf-8",
            assets::dashboard(state.options.actions),
        ),
        (&Method::GET, ["metrics"]) => full(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.sources.telemetry.metrics.encode(),
        ),
        (&Method::GET, ["api", "groups"]) => match groups(&state).await {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => error(StatusCode::BAD_GATEWAY, e),
        },
        (&Method::GET, ["api", "events"]) => events(&state),
        (&Method::POST, ["api", "groups", id, action]) => act(&state, &req, id, action).await,
        (_, ["api", ..]) | (_, ["metrics"]) => error(StatusCode::METHOD_NOT_ALLOWED, "not allowed"),
        _ => error(StatusCode::NOT_FOUND, format!("nothing at {path}")),
    };
    Ok(response)
}
