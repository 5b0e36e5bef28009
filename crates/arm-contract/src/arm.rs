//! The ARM front door: routing, throttling, authentication, api-version, subscription and
//! resource group checks, paging, operation status URLs and the headers every answer carries.

use serde_json::{json, Value};

use crate::options::{Logged, ResourceGroup, COMPUTE_API, DISK_API, NETWORK_API};
use crate::reply::{ArmError, Reply};
pub(crate) use crate::request::Req;
use crate::state::{key, Action, Kind, Outcome, State};
use crate::token;
use crate::util::{self, normalize_location, percent_decode};

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    /// `/subscriptions/{s}/providers/{ns}/locations/{loc}/operations|operationResults/{id}`.
    Operation {
        sub: String,
        namespace: String,
        location: String,
        id: String,
        results: bool,
    },
    /// A list, in a resource group or in the whole subscription.
    List {
        sub: String,
        rg: Option<String>,
        kind: Kind,
    },
    /// One resource, or a child path of it (`instanceView`).
    Resource {
        sub: String,
        rg: String,
        kind: Kind,
        name: String,
        child: Option<String>,
    },
}

impl Route {
    fn sub(&self) -> &str {
        match self {
            Route::Operation { sub, .. }
            | Route::List { sub, .. }
            | Route::Resource { sub, .. } => sub,
        }
    }

    /// The api-versions accepted.
    fn api_versions(&self) -> Vec<&'static str> {
        match self {
            Route::Operation { namespace, .. } => {
                if namespace.eq_ignore_ascii_case("Microsoft.Network") {
                    vec![NETWORK_API]
                } else {
                    vec![COMPUTE_API, DISK_API]
                }
            }
            Route::List { kind, .. } | Route::Resource { kind, .. } => vec![kind.api()],
        }
    }
}

fn not_found_uri(path: &str) -> ArmError {
    ArmError::new(
        404,
        "NotFound",
        format!("No HTTP resource was found that matches the request URI '{path}'."),
    )
}

fn kind_of(namespace: &str, type_name: &str, api: &str) -> Result<Kind, ArmError> {
    if let Some(kind) = Kind::from_segments(namespace, type_name) {
        return Ok(kind);
    }
    let known = ["Microsoft.Compute", "Microsoft.Network"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(namespace));
    if known {
        Err(ArmError::bad(
            "InvalidResourceType",
            format!(
                "The resource type '{type_name}' could not be found in the namespace '{namespace}' for api version '{api}'."
            ),
        ))
    } else {
        Err(ArmError::new(
            404,
            "InvalidResourceNamespace",
            format!("The resource namespace '{namespace}' is invalid."),
        ))
    }
}

fn route(path: &str, api: &str) -> Result<Route, ArmError> {
    let trimmed = path.trim_start_matches('/').trim_end_matches('/');
    let segs: Vec<String> = trimmed.split('/').map(percent_decode).collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let is = |i: usize, want: &str| s.get(i).is_some_and(|x| x.eq_ignore_ascii_case(want));
    if s.len() < 2 || !is(0, "subscriptions") || s.iter().any(|x| x.is_empty()) {
        return Err(not_found_uri(path));
    }
    let sub = s[1].to_string();
    if is(2, "providers") {
        if s.len() == 8 && is(4, "locations") && (is(6, "operations") || is(6, "operationResults"))
        {
            return Ok(Route::Operation {
                sub,
                namespace: s[3].to_string(),
                location: s[5].to_string(),
                id: s[7].to_string(),
                results: is(6, "operationResults"),
            });
        }
        if s.len() == 5 {
            return Ok(Route::List {
                sub,
                rg: None,
                kind: kind_of(s[3], s[4], api)?,
            });
        }
        return Err(not_found_uri(path));
    }
    if is(2, "resourceGroups") && is(4, "providers") && (7..=9).contains(&s.len()) {
        let rg = s[3].to_string();
        let kind = kind_of(s[5], s[6], api)?;
        if s.len() == 7 {
            return Ok(Route::List {
                sub,
                rg: Some(rg),
                kind,
            });
        }
        return Ok(Route::Resource {
            sub,
            rg,
            kind,
            name: s[7].to_string(),
            child: s.get(8).map(|c| c.to_string()),
        });
    }
    Err(not_found_uri(path))
}

impl State {
    /// Answers one request, token or ARM, adds the headers every answer carries and logs it.
    pub(crate) fn handle(&mut self, req: &Req) -> Reply {
        let reply = if token::is_token_path(&req.path) {
            self.token(req)
        } else {
            self.arm(req)
        };
        let correlation = req
            .header("x-ms-correlation-request-id")
            .map(str::to_string)
            .unwrap_or_else(util::new_uuid);
        let mut reply = reply
            .header("x-ms-request-id", util::new_uuid())
            .header("x-ms-correlation-request-id", correlation);
        if let Some(client) = req.header("x-ms-client-request-id") {
            reply = reply.header("x-ms-client-request-id", client);
        }
        tracing::debug!(method = %req.method, path = %req.path, status = reply.status, "ARM contract request");
        self.log.push(Logged {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            status: reply.status,
        });
        reply
    }

    fn arm(&mut self, req: &Req) -> Reply {
        if let Some((left, secs)) = self.throttle {
            self.throttle = (left > 1).then_some((left - 1, secs));
            let operation = match req.method.as_str() {
                "GET" | "HEAD" => "Read_ARM",
                "DELETE" => "Delete_ARM",
                _ => "Write_ARM",
            };
            let e = ArmError::new(
                429,
                "TooManyRequests",
                format!(
                    "The request is being throttled as the limit has been reached for operation type - {operation}. For more information, see - https://aka.ms/armthrottling"
                ),
            );
            return Reply::from(e).header("Retry-After", secs.to_string());
        }
        let mut reply = match self.arm_checked(req) {
            Ok(reply) => reply,
            Err(reply) => reply,
        };
        let budget = match req.method.as_str() {
            "GET" | "HEAD" => Some(("x-ms-ratelimit-remaining-subscription-reads", "11999")),
            "DELETE" => Some(("x-ms-ratelimit-remaining-subscription-deletes", "14999")),
            "PUT" | "PATCH" | "POST" => {
                Some(("x-ms-ratelimit-remaining-subscription-writes", "1199"))
            }
            _ => None,
        };
        if let Some((name, value)) = budget {
            reply = reply.header(name, value);
        }
        reply
    }

    fn unauthorized(&self, code: &str, message: &str) -> Reply {
        Reply::from(ArmError::new(401, code, message)).header(
            "WWW-Authenticate",
            format!(
                "Bearer authorization_uri=\"{}/{}\", error=\"invalid_token\", error_description=\"{message}\"",
                self.env.endpoint, self.env.options.tenant
            ),
        )
    }

    fn authenticate(&self, req: &Req) -> Result<(), Reply> {
        let Some(header) = req.header("authorization") else {
            return Err(self.unauthorized(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            ));
        };
        let token = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(self.unauthorized(
                "AuthenticationFailedInvalidHeader",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            ));
        };
        if !self.tokens.contains(token) {
            return Err(
                self.unauthorized("InvalidAuthenticationToken", "The access token is invalid.")
            );
        }
        Ok(())
    }

    fn arm_checked(&mut self, req: &Req) -> Result<Reply, Reply> {
        self.authenticate(req)?;
        let api = req.param("api-version");
        let route = route(&req.path, api.as_deref().unwrap_or(""))?;
        let accepted = route.api_versions();
        match api.as_deref() {
            None | Some("") => {
                return Err(ArmError::bad(
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
                .into())
            }
            Some(v) if !accepted.contains(&v) => {
                return Err(ArmError::bad(
                    "InvalidApiVersionParameter",
                    format!(
                        "The api-version '{v}' is invalid. The supported versions are '{}'.",
                        accepted.join(",")
                    ),
                )
                .into())
            }
            Some(_) => {}
        }
        if !route.sub().eq_ignore_ascii_case(self.sub()) {
            return Err(ArmError::new(
                404,
                "SubscriptionNotFound",
                format!("The subscription '{}' could not be found.", route.sub()),
            )
            .into());
        }
        let result = match route {
            Route::Operation {
                namespace,
                location,
                id,
                results,
                ..
            } => {
                if req.method != "GET" {
                    return Err(method_not_allowed(&req.method).into());
                }
                let monitor = req
                    .param("monitor")
                    .is_some_and(|m| m.eq_ignore_ascii_case("true"));
                self.operation(&namespace, &location, &id, results || monitor)
            }
            Route::List { rg, kind, .. } => {
                let rg = match rg {
                    Some(name) => Some(self.resource_group(&name)?),
                    None => None,
                };
                if req.method != "GET" {
                    return Err(method_not_allowed(&req.method).into());
                }
                self.list(kind, rg.as_ref(), req)
            }
            Route::Resource {
                rg,
                kind,
                name,
                child,
                ..
            } => {
                let rg = self.resource_group(&rg)?;
                self.resource(kind, &rg, &name, child.as_deref(), req)
            }
        };
        result.map_err(Reply::from)
    }

    fn resource_group(&self, name: &str) -> Result<ResourceGroup, ArmError> {
        self.rg(name).cloned().ok_or_else(|| {
            ArmError::new(
                404,
                "ResourceGroupNotFound",
                format!("Resource group '{name}' could not be found."),
            )
        })
    }

    fn resource(
        &mut self,
        kind: Kind,
        rg: &ResourceGroup,
        name: &str,
        child: Option<&str>,
        req: &Req,
    ) -> Result<Reply, ArmError> {
        let method = req.method.as_str();
        if let Some(child) = child {
            if kind == Kind::Vm && child.eq_ignore_ascii_case("instanceView") {
                if method != "GET" {
                    return Err(method_not_allowed(method));
                }
                return self.vm_instance_view(rg, name);
            }
            return Err(not_found_uri(&req.path));
        }
        if matches!(method, "PUT" | "PATCH") {
            content_type(req)?;
        }
        match (kind, method) {
            (_, "GET") => self.get(kind, rg, name, req),
            (Kind::Vm, "PUT") => self.put_vm(rg, name, req),
            (Kind::Vm, "PATCH") => self.patch_vm(rg, name, req),
            (Kind::Vm, "DELETE") => self.delete_vm(rg, name, req),
            (Kind::Disk, "PUT") => self.put_disk(rg, name, req),
            (Kind::Disk, "PATCH") => self.patch_disk(rg, name, req),
            (Kind::Disk, "DELETE") => self.delete_disk(rg, name),
            (Kind::Nic, "PUT") => self.put_nic(rg, name, req),
            (Kind::Nic, "DELETE") => self.delete_nic(rg, name),
            (Kind::PublicIp, "PUT") => self.put_public_ip(rg, name, req),
            (Kind::PublicIp, "DELETE") => self.delete_public_ip(rg, name),
            (Kind::Nic | Kind::PublicIp, "PATCH") => self.patch_network_tags(kind, rg, name, req),
            _ => Err(method_not_allowed(method)),
        }
    }

    /// The body of a resource as GET answers it.
    pub(crate) fn render(&self, kind: Kind, key: &crate::state::Key) -> Value {
        match kind {
            Kind::PublicIp => self.render_public_ip(key),
            Kind::Nic => self.render_nic(key),
            Kind::Disk => self.render_disk(key),
            Kind::Vm => self.render_vm(key, false),
        }
    }

    fn get(
        &mut self,
        kind: Kind,
        rg: &ResourceGroup,
        name: &str,
        req: &Req,
    ) -> Result<Reply, ArmError> {
        let k = key(&rg.name, name);
        if self.meta(kind, &k).is_none() {
            return Err(self.not_found(kind, &rg.name, name));
        }
        if kind == Kind::Vm {
            return self.get_vm(&k, req);
        }
        Ok(Reply::json(200, self.render(kind, &k)))
    }

    fn list(
        &mut self,
        kind: Kind,
        rg: Option<&ResourceGroup>,
        req: &Req,
    ) -> Result<Reply, ArmError> {
        if kind == Kind::Vm {
            if let Some(filter) = req.param("$filter") {
                return Err(ArmError::invalid_parameter(
                    "$filter",
                    format!("The $filter '{filter}' is not supported."),
                ));
            }
            if req.param("$expand").is_some() {
                return Err(ArmError::invalid_parameter(
                    "$expand",
                    "The $expand=instanceView query can only be specified if a valid $filter option is specified.",
                ));
            }
        }
        let skip = match req.param("$skiptoken") {
            None => 0,
            Some(t) => t.parse::<usize>().map_err(|_| {
                ArmError::bad(
                    "InvalidSkipToken",
                    format!("The skip token '{t}' is not valid."),
                )
            })?,
        };
        let keys = self.keys(kind, rg.map(|g| g.name.as_str()));
        let page = self.env.options.page_size.max(1);
        let value: Vec<Value> = keys
            .iter()
            .skip(skip)
            .take(page)
            .map(|k| self.render(kind, k))
            .collect();
        let mut body = json!({ "value": value });
        if skip + page < keys.len() {
            body["nextLink"] = json!(format!(
                "{}{}?api-version={}&$skiptoken={}",
                self.env.endpoint,
                req.path,
                kind.api(),
                skip + page
            ));
        }
        Ok(Reply::json(200, body))
    }

    fn operation(
        &mut self,
        namespace: &str,
        location: &str,
        id: &str,
        results: bool,
    ) -> Result<Reply, ArmError> {
        let found = self.ops.get(id).is_some_and(|op| {
            op.kind.namespace().eq_ignore_ascii_case(namespace)
                && op.location == normalize_location(location)
        });
        if !found {
            return Err(ArmError::new(
                404,
                "NotFound",
                format!("The operation '{id}' could not be found in location '{location}'."),
            ));
        }
        let retry = self.env.options.retry_after_secs.to_string();
        let Some(op) = self.poll(id).cloned() else {
            return Err(ArmError::new(404, "NotFound", "The operation is gone."));
        };
        if !results {
            let reply = Reply::json(200, op.body());
            return Ok(if op.outcome.is_none() {
                reply.header("Retry-After", retry)
            } else {
                reply
            });
        }
        match &op.outcome {
            None => Ok(Reply::empty(202)
                .header("Location", self.location_url(id))
                .header("Retry-After", retry)),
            Some(Outcome::Succeeded) => {
                if op.action == Action::Delete || self.meta(op.kind, &op.key).is_none() {
                    Ok(Reply::empty(204))
                } else {
                    Ok(Reply::json(200, self.render(op.kind, &op.key)))
                }
            }
            Some(Outcome::Failed(code, message) | Outcome::Canceled(code, message)) => {
                Err(ArmError::bad(code, message.clone()))
            }
        }
    }
}

fn method_not_allowed(method: &str) -> ArmError {
    ArmError::new(
        405,
        "MethodNotAllowed",
        format!("The requested resource does not support http method '{method}'."),
    )
}

/// ARM accepts request bodies in JSON only.
fn content_type(req: &Req) -> Result<(), ArmError> {
    let ct = req.header("content-type").unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json")
        || media.to_ascii_lowercase().ends_with("+json")
    {
        return Ok(());
    }
    Err(ArmError::new(
        415,
        "UnsupportedMediaType",
        format!("The content media type '{media}' is not supported. Only 'application/json' is supported."),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = route(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
            "x",
        )
        .unwrap();
        assert_eq!(
            r,
            Route::Resource {
                sub: "s".into(),
                rg: "rg".into(),
                kind: Kind::Vm,
                name: "vm".into(),
                child: None
            }
        );
        let r = route(
            "/SUBSCRIPTIONS/s/resourcegroups/rg/providers/microsoft.network/NETWORKINTERFACES",
            "x",
        )
        .unwrap();
        assert_eq!(
            r,
            Route::List {
                sub: "s".into(),
                rg: Some("rg".into()),
                kind: Kind::Nic
            }
        );
        let r = route(
            "/subscriptions/s/providers/Microsoft.Compute/locations/westeurope/operations/abc",
            "x",
        )
        .unwrap();
        assert!(matches!(r, Route::Operation { results: false, .. }));
        assert_eq!(r.api_versions(), vec![COMPUTE_API, DISK_API]);
        let r = route(
            "/subscriptions/s/providers/Microsoft.Network/locations/westeurope/operationResults/abc",
            "x",
        )
        .unwrap();
        assert!(matches!(r, Route::Operation { results: true, .. }));
        assert_eq!(r.api_versions(), vec![NETWORK_API]);
        let r = route(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm/instanceView",
            "x",
        )
        .unwrap();
        assert!(matches!(r, Route::Resource { child: Some(_), .. }));
        let e = route(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/gadgets/g",
            "2025-04-01",
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidResourceType");
        let e = route(
            "/subscriptions/s/resourceGroups/rg/providers/Contoso.Things/gadgets/g",
            "x",
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidResourceNamespace");
        assert_eq!(route("/foo", "x").unwrap_err().status, 404);
        assert_eq!(
            route("/subscriptions/s/resourceGroups//providers/a/b", "x")
                .unwrap_err()
                .status,
            404
        );
    }

    #[test]
    fn query_parameters() {
        let req = Req {
            query: "api-version=2025-04-01&%24skiptoken=2&$expand=instanceView".into(),
            ..Req::default()
        };
        assert_eq!(req.param("API-VERSION").as_deref(), Some("2025-04-01"));
        assert_eq!(req.param("$skiptoken").as_deref(), Some("2"));
        assert_eq!(req.param("$expand").as_deref(), Some("instanceView"));
        assert_eq!(req.param("nope"), None);
    }

    #[test]
    fn media_types() {
        let mut req = Req::default();
        assert_eq!(content_type(&req).unwrap_err().status, 415);
        req.headers.push((
            "content-type".into(),
            "application/json; charset=utf-8".into(),
        ));
        assert!(content_type(&req).is_ok());
    }
}
