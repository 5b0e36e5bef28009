//! A request as the server sees it, independent of the HTTP library.

use bytes::Bytes;

/// A request, independent of the HTTP library.
#[derive(Clone, Debug, Default)]
pub(crate) struct Req {
    /// The method, uppercase.
    pub method: String,
    /// The raw path.
    pub path: String,
    /// The raw query string (without `?`).
    pub query: String,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl Req {
    /// The first value of header `name` (lowercase).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of query parameter `name`, compared without case.
    pub(crate) fn param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.into_owned())
    }
}
