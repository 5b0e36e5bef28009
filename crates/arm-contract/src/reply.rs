//! What a request is answered with: [`Reply`], and [`ArmError`] for the ARM error body
//! `{"error":{"code","message","target"?,"details"?}}`.

use serde_json::{json, Value};

/// An ARM error, answered as `{"error":{...}}` with `status`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub(crate) struct ArmError {
    /// The HTTP status.
    pub status: u16,
    /// `error.code`.
    pub code: String,
    /// `error.message`.
    pub message: String,
    /// `error.target`.
    pub target: Option<String>,
    /// `error.details`.
    pub details: Vec<Value>,
}

impl ArmError {
    /// An error with a status, a code and a message.
    pub(crate) fn new(status: u16, code: &str, message: impl Into<String>) -> ArmError {
        ArmError {
            status,
            code: code.to_string(),
            message: message.into(),
            target: None,
            details: Vec::new(),
        }
    }

    /// 400 with `code`.
    pub(crate) fn bad(code: &str, message: impl Into<String>) -> ArmError {
        ArmError::new(400, code, message)
    }

    /// 409 with `code`.
    pub(crate) fn conflict(code: &str, message: impl Into<String>) -> ArmError {
        ArmError::new(409, code, message)
    }

    /// Compute's `InvalidParameter` (400) naming the parameter in `target`.
    pub(crate) fn invalid_parameter(target: &str, message: impl Into<String>) -> ArmError {
        ArmError::bad("InvalidParameter", message).with_target(target)
    }

    /// Compute's answer to a missing required parameter.
    pub(crate) fn missing(target: &str) -> ArmError {
        ArmError::invalid_parameter(
            target,
            format!("Required parameter '{target}' is missing (null)."),
        )
    }

    /// Sets `error.target`.
    pub(crate) fn with_target(mut self, target: &str) -> ArmError {
        self.target = Some(target.to_string());
        self
    }

    /// Adds an entry to `error.details`.
    pub(crate) fn with_detail(mut self, code: &str, message: impl Into<String>) -> ArmError {
        self.details
            .push(json!({"code": code, "message": message.into()}));
        self
    }

    /// The `{"error":{...}}` body.
    pub(crate) fn body(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(target) = &self.target {
            error["target"] = json!(target);
        }
        if !self.details.is_empty() {
            error["details"] = json!(self.details);
        }
        json!({ "error": error })
    }
}

/// A response before it is turned into HTTP.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Reply {
    /// The status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// A JSON body, if any.
    pub body: Option<Value>,
}

impl Reply {
    /// A JSON body with `status`.
    pub(crate) fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    /// No body.
    pub(crate) fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The value of header `name`, without case.
    pub(crate) fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl From<ArmError> for Reply {
    fn from(e: ArmError) -> Reply {
        Reply::json(e.status, e.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        let e = ArmError::missing("osProfile");
        assert_eq!(
            e.body(),
            json!({"error": {"code": "InvalidParameter",
                "message": "Required parameter 'osProfile' is missing (null).",
                "target": "osProfile"}})
        );
        let e = ArmError::bad("InvalidRequestFormat", "Cannot parse the request.")
            .with_detail("InvalidJson", "x");
        assert_eq!(e.body()["error"]["details"][0]["code"], "InvalidJson");
        assert!(e.body()["error"].get("target").is_none());
        let r = Reply::from(ArmError::conflict("OperationNotAllowed", "no"));
        assert_eq!(r.status, 409);
    }
}
