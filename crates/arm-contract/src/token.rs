//! The Microsoft identity platform token endpoint, client-credentials grant:
//! `POST /{tenant}/oauth2/v2.0/token` with a form body of `client_id`, `client_secret`,
//! `grant_type=client_credentials` and `scope` (as `azure_identity`'s `ClientSecretCredential`
//! sends it).
//!
//! Error bodies carry `error`, `error_description` and `error_codes` as Entra ID does;
//! `azure_identity` reads `error_codes` and `error_description`. The descriptions never hold
//! characters JSON must escape, because `azure_identity` 1.0 borrows the description string
//! while deserializing.

use serde_json::json;

use crate::reply::Reply;
use crate::request::Req;
use crate::state::State;
use crate::util;

/// Seconds a token lives (more than the 300 s `azure_identity` refreshes ahead).
pub(crate) const EXPIRES_IN: u64 = 3599;

/// Whether `path` is `/{tenant}/oauth2/v2.0/token`.
pub(crate) fn is_token_path(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    segs.len() == 4
        && !segs[0].is_empty()
        && segs[1].eq_ignore_ascii_case("oauth2")
        && segs[2].eq_ignore_ascii_case("v2.0")
        && segs[3].eq_ignore_ascii_case("token")
}

fn oauth_error(status: u16, error: &str, code: u32, description: &str) -> Reply {
    let now = util::now();
    let trace = util::new_uuid();
    let correlation = util::new_uuid();
    Reply::json(
        status,
        json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {now}"
            ),
            "error_codes": [code],
            "timestamp": now,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

impl State {
    /// Answers a token request.
    pub(crate) fn token(&mut self, req: &Req) -> Reply {
        let tenant = req
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        let reply = self.grant(&tenant, req);
        reply.header("Cache-Control", "no-store, no-cache")
    }

    fn grant(&mut self, tenant: &str, req: &Req) -> Reply {
        if req.method != "POST" {
            return oauth_error(
                405,
                "invalid_request",
                900561,
                "The endpoint only accepts POST requests.",
            );
        }
        if !tenant.eq_ignore_ascii_case(&self.env.options.tenant) {
            return oauth_error(
                400,
                "invalid_request",
                90002,
                &format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
                ),
            );
        }
        let media = req
            .header("content-type")
            .and_then(|c| c.split(';').next())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media != "application/x-www-form-urlencoded" {
            return oauth_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            );
        }
        let form: Vec<(String, String)> = form_urlencoded::parse(&req.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        for name in ["grant_type", "client_id"] {
            if field(name).is_none() {
                return oauth_error(
                    400,
                    "invalid_request",
                    900144,
                    &format!("The request body must contain the following parameter: '{name}'."),
                );
            }
        }
        let grant = field("grant_type").unwrap_or_default();
        if grant != "client_credentials" {
            return oauth_error(
                400,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{grant}'."),
            );
        }
        let client_id = field("client_id").unwrap_or_default();
        if client_id != self.env.options.client_id {
            return oauth_error(
                400,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
                ),
            );
        }
        let Some(secret) = field("client_secret") else {
            return oauth_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            );
        };
        if secret != self.env.options.client_secret {
            return oauth_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.",
            );
        }
        let Some(scope) = field("scope") else {
            return oauth_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            );
        };
        let scopes: Vec<&str> = scope.split_whitespace().collect();
        if scopes.len() != 1 || !scopes[0].ends_with("/.default") {
            return oauth_error(
                400,
                "invalid_scope",
                1002012,
                &format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            );
        }
        let token = format!("{}{}", util::random_hex(32), util::random_hex(32));
        self.tokens.insert(token.clone());
        Reply::json(
            200,
            json!({
                "token_type": "Bearer",
                "expires_in": EXPIRES_IN,
                "ext_expires_in": EXPIRES_IN,
                "access_token": token,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::state;

    fn request(tenant: &str, body: &str) -> Req {
        Req {
            method: "POST".into(),
            path: format!("/{tenant}/oauth2/v2.0/token"),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: body.to_string().into_bytes().into(),
            ..Req::default()
        }
    }

    const TENANT: &str = "00000000-0000-0000-0000-0000000000aa";
    const GOOD: &str = "client_id=infrakit-test-client&client_secret=infrakit-test-secret&grant_type=client_credentials&scope=https%3A%2F%2Fmanagement.azure.com%2F.default";

    #[test]
    fn paths() {
        assert!(is_token_path("/t/oauth2/v2.0/token"));
        assert!(!is_token_path("/t/oauth2/token"));
        assert!(!is_token_path("//oauth2/v2.0/token"));
        assert!(!is_token_path("/subscriptions/s/resourceGroups/rg"));
    }

    #[test]
    fn client_credentials() {
        let mut st = state(1);
        let r = st.token(&request(TENANT, GOOD));
        assert_eq!(r.status, 200);
        let body = r.body.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3599);
        assert!(st.tokens.contains(body["access_token"].as_str().unwrap()));
    }

    #[test]
    fn refusals() {
        let mut st = state(1);
        let check = |st: &mut State, req: Req, status: u16, error: &str, code: u32| {
            let r = st.token(&req);
            assert_eq!(r.status, status);
            let body = r.body.unwrap();
            assert_eq!(body["error"], error);
            assert_eq!(body["error_codes"][0], code);
            let description = body["error_description"].as_str().unwrap();
            // azure_identity borrows the description: nothing to escape.
            assert!(!serde_json::to_string(description).unwrap()[1..].contains('\\'));
        };
        check(
            &mut st,
            request("other", GOOD),
            400,
            "invalid_request",
            90002,
        );
        check(
            &mut st,
            request(TENANT, &GOOD.replace("infrakit-test-secret", "nope")),
            401,
            "invalid_client",
            7000215,
        );
        check(
            &mut st,
            request(TENANT, &GOOD.replace("infrakit-test-client", "nope")),
            400,
            "unauthorized_client",
            700016,
        );
        check(
            &mut st,
            request(TENANT, &GOOD.replace("client_credentials", "password")),
            400,
            "unsupported_grant_type",
            70003,
        );
        check(
            &mut st,
            request(TENANT, &GOOD.replace("%2F.default", "")),
            400,
            "invalid_scope",
            1002012,
        );
        let mut req = request(TENANT, GOOD);
        req.headers.clear();
        check(&mut st, req, 400, "invalid_request", 900144);
        assert!(st.tokens.is_empty());
    }
}
