//! Raw JSON-RPC over a plugin's Unix socket, as any client of any generation sends it: for tests
//! that check the wire itself rather than go through infrakit's client.

use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::UnixStream;

/// POSTs `body` to the server on `socket` (with `content_type`, if any): the HTTP status and
/// the response body.
pub async fn post(socket: &Path, content_type: Option<&str>, body: &str) -> (u16, String) {
    let stream = UnixStream::connect(socket)
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::post("/").header("Host", "h");
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let resp = sender
        .send_request(
            req.body(Full::new(Bytes::from(body.to_string())))
                .expect("request"),
        )
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Sends the JSON-RPC request `body` and returns the whole response envelope (`result` or
/// `error`), checking that it came with HTTP 200.
pub async fn rpc(socket: &Path, body: &str) -> Value {
    let (status, text) = post(socket, Some("application/json"), body).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Calls `method` with `params` as the original's Go client does (a random id) and returns the
/// response envelope.
pub async fn call(socket: &Path, method: &str, params: Value) -> Value {
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id});
    rpc(socket, &body.to_string()).await
}

/// [`call`] for tests without a runtime of their own.
pub fn call_blocking(socket: &Path, method: &str, params: Value) -> Value {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(call(socket, method, params))
}
