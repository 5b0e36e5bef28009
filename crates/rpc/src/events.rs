//! Server-sent events on `/events?topic=...` (InfraKit's event convention, spec 2.6).
//!
//! Each event is one `data: <json>` block. A subscriber that falls behind receives an event of
//! type `lagged` and should re-list what it watches. The first bytes of every stream are a
//! `: subscribed` comment, so a client knows when it will see every later event.

use std::io;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode};
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use infrakit_spi::{Error, Event};

use crate::Client;

/// Event type sent to a subscriber that missed events.
pub const LAGGED: &str = "lagged";
/// Event type that ends the history sent to a subscriber that asked for it (`history=true`):
/// every later event is new.
pub const LIVE: &str = "live";

/// Whether the query asks for the publisher's recent events first (`history=true` or `1`).
pub fn history_from_query(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "history" && (v == "true" || v == "1"))
    })
}

/// The `topic` query parameter, `/` when absent.
pub fn topic_from_query(query: Option<&str>) -> String {
    query
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "topic")
                .map(|(_, v)| v.into_owned())
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

fn frame(event: &Event) -> Frame<Bytes> {
    let json = serde_json::to_string(event).expect("events serialise");
    Frame::data(Bytes::from(format!("data: {json}\n\n")))
}

/// A streaming `text/event-stream` response of the events under `topic`: with `recent`, those
/// of them under `topic` and a [`LIVE`] event first.
pub(crate) fn sse_response(
    rx: broadcast::Receiver<Event>,
    topic: String,
    recent: Option<Vec<Event>>,
) -> Response<http_body_util::combinators::BoxBody<Bytes, io::Error>> {
    let mut first = vec![Ok(Frame::data(Bytes::from_static(b": subscribed\n\n")))];
    if let Some(recent) = recent {
        first.extend(
            recent
                .iter()
                .filter(|e| e.matches(&topic))
                .map(|e| Ok(frame(e))),
        );
        let mut live = Event::instance(
            LIVE,
            "",
            "the events after this one are new",
            serde_json::Value::Null,
        );
        live.topic = "/".into();
        first.push(Ok(frame(&live)));
    }
    let hello = futures::stream::iter(first);
    let events = BroadcastStream::new(rx).filter_map(move |item| {
        let out = match item {
            Ok(e) if e.matches(&topic) => Some(Ok(frame(&e))),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                let mut e = Event::instance(
                    LAGGED,
                    "",
                    format!("{n} events were dropped"),
                    serde_json::Value::Null,
                );
                e.topic = "/".into();
                Some(Ok(frame(&e)))
            }
        };
        futures::future::ready(out)
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, "text/event-stream")
        .header(hyper::header::CACHE_CONTROL, "no-cache")
        .body(BodyExt::boxed(StreamBody::new(hello.chain(events))))
        .expect("static response parts are valid")
}

/// Subscribes to `topic` on the plugin listening at `socket`. The stream ends when the plugin
/// goes away; callers re-subscribe (and re-list) as they see fit.
pub async fn subscribe(
    socket: &Path,
    topic: &str,
    timeout: Duration,
) -> Result<impl Stream<Item = Event> + Send + 'static, Error> {
    subscribe_via(&socket_client(socket), topic, false, timeout).await
}

/// Like [`subscribe`], but the stream starts with the events the plugin still keeps (if it
/// keeps any), then a [`LIVE`] event, then new events.
pub async fn subscribe_recent(
    socket: &Path,
    topic: &str,
    timeout: Duration,
) -> Result<impl Stream<Item = Event> + Send + 'static, Error> {
    subscribe_via(&socket_client(socket), topic, true, timeout).await
}

fn socket_client(socket: &Path) -> Client {
    let name = socket
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Client::new(&name, socket)
}

/// Subscribes to `topic` through `client`: over its socket, or over TCP with its TLS and token
/// (a manager's `--listen`). With `history`, the stream starts with the events the plugin still
/// keeps, then a [`LIVE`] event. `timeout` bounds the subscription, not the stream.
pub async fn subscribe_via(
    client: &Client,
    topic: &str,
    history: bool,
    timeout: Duration,
) -> Result<impl Stream<Item = Event> + Send + 'static, Error> {
    let unavailable = |reason: String| Error::Unavailable {
        name: client.name().to_string(),
        socket: client.socket().display().to_string(),
        reason,
    };
    let connect = async {
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("topic", topic);
            if history {
                query.append_pair("history", "true");
            }
            query.finish()
        };
        let resp = client.get(&format!("/events?{query}")).await?;
        if resp.status() != StatusCode::OK {
            return Err(Error::plugin(format!(
                "event subscription refused: HTTP {}",
                resp.status()
            )));
        }
        let mut body = resp.into_body();
        // Wait for the `: subscribed` comment so no event published after we return is missed.
        let mut buf = Vec::new();
        while !buf.windows(2).any(|w| w == b"\n\n") {
            match body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        buf.extend_from_slice(&d);
                    }
                }
                _ => return Err(unavailable("event stream closed".into())),
            }
        }
        Ok((body, buf))
    };
    let (body, buf) = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| unavailable("timed out subscribing to events".into()))??;
    let state = (body, buf);
    Ok(futures::stream::unfold(
        state,
        |(mut body, mut buf)| async move {
            loop {
                if let Some(pos) = buf.windows(2).position(|w| w == b"\n\n") {
                    let block: Vec<u8> = buf.drain(..pos + 2).collect();
                    if let Some(event) = parse_block(&block) {
                        return Some((event, (body, buf)));
                    }
                    continue;
                }
                match body.frame().await {
                    Some(Ok(f)) => {
                        if let Ok(d) = f.into_data() {
                            buf.extend_from_slice(&d);
                        }
                    }
                    _ => return None,
                }
            }
        },
    ))
}

/// Parses one SSE block: the `data:` lines joined by newlines, as JSON.
fn parse_block(block: &[u8]) -> Option<Event> {
    let text = std::str::from_utf8(block).ok()?;
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return None;
    }
    serde_json::from_str(&data.join("\n")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_is_decoded_and_defaults_to_root() {
        assert_eq!(topic_from_query(Some("topic=%2Finstance%2F")), "/instance/");
        assert_eq!(
            topic_from_query(Some("topic=/instance/exited&x=1")),
            "/instance/exited"
        );
        assert_eq!(topic_from_query(None), "/");
    }

    #[test]
    fn blocks_parse_data_lines() {
        let e = parse_block(b"event: x\ndata: {\"Topic\":\"/instance/exited\",\"ID\":\"i-1\"}\n\n")
            .unwrap();
        assert_eq!(e.id, "i-1");
        assert!(parse_block(b": comment\n\n").is_none());
    }
}
