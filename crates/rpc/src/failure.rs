//! The errors a server answers with: a JSON-RPC code, a message cut to a bounded size, and for
//! bad params the path of the bad field (`params.Spec.Tags`) in the message and in `data.Path`.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use infrakit_spi::Error;

use crate::jsonrpc;

/// Messages of protocol errors (not the plugin's own) are cut to this many bytes: some echo the
/// input (a method name, a bad value, a map key).
const MAX_MESSAGE_BYTES: usize = 1024;

/// Cuts `s` to at most [`MAX_MESSAGE_BYTES`] on a character boundary.
pub(crate) fn clip(mut s: String) -> String {
    if s.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

/// What went wrong, mapped to a JSON-RPC error code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) data: Value,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let data = match &e {
            Error::Invalid { path, message } => json!({"Path": path, "Message": message}),
            _ => Value::Null,
        };
        Failure {
            code: jsonrpc::SERVER_ERROR,
            message: e.to_string(),
            data,
        }
    }
}

/// A protocol error: `code`, the message clipped, no data.
pub(crate) fn failure(code: i64, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: clip(message.into()),
        data: Value::Null,
    }
}

/// Invalid params: code -32602, the path of the bad field in the message and in `data`.
pub(crate) fn bad_param(path: &str, message: impl Into<String>) -> Failure {
    // Paths hold the caller's map keys, which may be of any length.
    let path = clip(path.to_string());
    let message = clip(message.into());
    Failure {
        code: jsonrpc::INVALID_PARAMS,
        data: json!({"Path": path, "Message": message}),
        message: format!("{path}: {message}"),
    }
}

/// Method not found, named as the caller named it (clipped).
pub(crate) fn not_found(method: &str) -> Failure {
    failure(
        jsonrpc::METHOD_NOT_FOUND,
        format!("rpc: can't find method \"{}\"", clip(method.to_string())),
    )
}

/// Decodes params, naming the bad field (`params.Spec.Tags: ...`) on failure.
pub(crate) fn decode<T: DeserializeOwned>(params: Value) -> Result<T, Failure> {
    infrakit_spi::error::decode_at("params", &params).map_err(|e| match e {
        Error::Invalid { path, message } => bad_param(&path, message),
        other => failure(jsonrpc::INVALID_PARAMS, other.to_string()),
    })
}
