//! JSON-RPC 2.0 envelopes as InfraKit (gorilla/rpc json2) writes and reads them.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// A plugin-side error (InfraKit uses this code for every plugin error).
pub const SERVER_ERROR: i64 = -32000;

/// A request as read off the wire. `id` and `params` are kept raw so IDs above 2^53 are echoed
/// back byte for byte.
#[derive(Debug, Deserialize)]
pub struct Request<'a> {
    /// Must be `"2.0"`.
    #[serde(default)]
    pub jsonrpc: Option<String>,
    /// `Service.Method`.
    #[serde(default)]
    pub method: Option<String>,
    /// One object (or a one-element array holding it).
    #[serde(borrow, default)]
    pub params: Option<&'a RawValue>,
    /// Absent for notifications.
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
}

/// An error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// Error code.
    pub code: i64,
    /// Readable message.
    pub message: String,
    /// `null`, or `{"Path": "..."}` for invalid input.
    #[serde(default)]
    pub data: Value,
}

/// A response as written to, or read from, the wire.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response<R> {
    /// `"2.0"`.
    pub jsonrpc: String,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<R>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorObject>,
    /// The request's ID.
    pub id: Box<RawValue>,
}

/// Serialises a success response echoing `id`.
pub fn encode_result(id: &RawValue, result: &Value) -> Vec<u8> {
    let mut out = br#"{"jsonrpc":"2.0","result":"#.to_vec();
    serde_json::to_writer(&mut out, result).expect("serialising a JSON value cannot fail");
    out.extend_from_slice(br#","id":"#);
    out.extend_from_slice(id.get().as_bytes());
    out.extend_from_slice(b"}\n");
    out
}

/// Serialises a success response echoing `id`, whose result is already JSON text.
pub fn encode_raw_result(id: &RawValue, result: &RawValue) -> Vec<u8> {
    let (result, id) = (result.get().as_bytes(), id.get().as_bytes());
    let mut out = Vec::with_capacity(result.len() + id.len() + 40);
    out.extend_from_slice(br#"{"jsonrpc":"2.0","result":"#);
    out.extend_from_slice(result);
    out.extend_from_slice(br#","id":"#);
    out.extend_from_slice(id);
    out.extend_from_slice(b"}\n");
    out
}

/// Serialises an error response echoing `id` (`null` when the request could not be read).
pub fn encode_error(id: Option<&RawValue>, code: i64, message: &str) -> Vec<u8> {
    encode_error_with(id, code, message, Value::Null)
}

/// Like [`encode_error`], with a `data` member. infrakit puts `{"Path": ...}` there for invalid
/// input, so its clients can point at the bad field; other clients ignore it.
pub fn encode_error_with(id: Option<&RawValue>, code: i64, message: &str, data: Value) -> Vec<u8> {
    let err = ErrorObject {
        code,
        message: message.to_string(),
        data,
    };
    let mut out = br#"{"jsonrpc":"2.0","error":"#.to_vec();
    serde_json::to_writer(&mut out, &err).expect("serialising an error cannot fail");
    out.extend_from_slice(br#","id":"#);
    out.extend_from_slice(id.map(RawValue::get).unwrap_or("null").as_bytes());
    out.extend_from_slice(b"}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_ids_are_echoed_exactly() {
        let body = format!(
            r#"{{"jsonrpc":"2.0","method":"{}","params":{{}},"id":18446744073709551615}}"#,
            infrakit_spi::Method::HandshakeHello
        );
        let req: Request = serde_json::from_str(&body).unwrap();
        let out = encode_result(req.id.unwrap(), &serde_json::json!({"OK": true}));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"jsonrpc\":\"2.0\",\"result\":{\"OK\":true},\"id\":18446744073709551615}\n"
        );
    }

    #[test]
    fn errors_have_null_data() {
        let out = encode_error(None, PARSE_ERROR, "parse error");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["error"]["code"], -32700);
        assert_eq!(v["error"]["data"], Value::Null);
        assert_eq!(v["id"], Value::Null);
    }
}
