//! The vanilla flavor's properties: what they look like on the wire and how they are checked.
//!
//! ```json
//! {
//!   "Init": ["echo hello", "echo world"],
//!   "Tags": {"tier": "web"},
//!   "Attachments": [{"ID": "data", "Type": "volume"}],
//!   "Health": {"HTTP": {"URL": "http://127.0.0.1:{{ Tags.port }}/health"}, "Interval": "2s"}
//! }
//! ```
//!
//! Every field is optional and may be `null`; unknown fields are rejected with their path
//! (e.g. `Properties.Health.Intervall: unknown field ...`). Attachment IDs and tag values may be
//! templates using `LogicalID`, `Group` and `Index` (rendered by Prepare); their syntax and the
//! names they use are checked here.

use std::fmt;
use std::time::Duration;

use infrakit_spi::error::decode_at;
use infrakit_spi::{Attachment, Error, Result, Tags};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::template;

/// Path prefix of every error reported while parsing properties.
const PREFIX: &str = "Properties";

/// The parsed, validated properties of the vanilla flavor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VanillaProperties {
    /// Lines appended to the instance's init script. On the wire a list of strings, or a single
    /// string.
    pub init: Vec<String>,
    /// Tags added to the instance; they win over tags of the same name already in the spec.
    /// Values are templates (`member-{{ Index }}`), rendered by Prepare.
    pub tags: Tags,
    /// Attachments appended to the instance spec. IDs are templates (`data-{{ LogicalID }}`),
    /// rendered by Prepare.
    pub attachments: Vec<Attachment>,
    /// How to check the instance's health; `None` means healthy while it runs.
    pub health: Option<HealthProbe>,
}

/// How to check an instance's health, and how often.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthProbe {
    /// What to check.
    pub check: ProbeCheck,
    /// How long a result stays fresh: the flavor probes an instance again only once its last
    /// result is older than this.
    pub interval: Duration,
    /// How long one probe may take; a slower probe counts as unhealthy.
    pub timeout: Duration,
}

/// One kind of health check. Strings are templates (see the crate docs for the placeholders).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProbeCheck {
    /// Run a command (no shell unless asked for, e.g. `["sh", "-c", "..."]`); exit status 0 is
    /// healthy.
    Exec(Vec<String>),
    /// Open a TCP connection to `host:port`; success is healthy.
    Tcp(String),
    /// Send `GET` to an `http://` URL; the expected status is healthy.
    Http {
        /// The URL to get.
        url: String,
        /// The status code that counts as healthy.
        status: u16,
    },
}

impl HealthProbe {
    /// Interval used when the properties give none.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
    /// Timeout used when the properties give none.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    /// Status expected from an HTTP probe when the properties give none.
    pub const DEFAULT_HTTP_STATUS: u16 = 200;

    /// A probe with the default interval and timeout.
    pub fn new(check: ProbeCheck) -> Self {
        HealthProbe {
            check,
            interval: Self::DEFAULT_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

impl VanillaProperties {
    /// Decodes and validates flavor properties. `null` means no properties at all.
    ///
    /// Errors name the offending field under `Properties`, e.g. `Properties.Health.TCP`.
    pub fn parse(properties: &Value) -> Result<VanillaProperties> {
        if properties.is_null() {
            return Ok(VanillaProperties::default());
        }
        if !properties.is_object() {
            return Err(Error::invalid(PREFIX, "must be an object"));
        }
        let raw: RawProperties = decode_at(PREFIX, properties)?;
        let health = match raw.health {
            None => None,
            Some(h) => Some(h.into_probe(&format!("{PREFIX}.Health"))?),
        };
        let tags = raw.tags.unwrap_or_default();
        for (key, value) in &tags {
            template::check_names(value, template::PREPARE_NAMES)
                .map_err(|e| Error::invalid(tag_path(key), e))?;
        }
        let attachments: Vec<Attachment> = raw
            .attachments
            .unwrap_or_default()
            .into_iter()
            .map(|a| Attachment {
                id: a.id,
                kind: a.kind.unwrap_or_default(),
            })
            .collect();
        for (i, a) in attachments.iter().enumerate() {
            template::check_names(&a.id, template::PREPARE_NAMES)
                .map_err(|e| Error::invalid(attachment_path(i), e))?;
        }
        Ok(VanillaProperties {
            init: raw.init.map(|l| l.0).unwrap_or_default(),
            tags,
            attachments,
            health,
        })
    }

    /// The properties in their wire form (durations as `humantime` strings); parsing the result
    /// gives back an equal value.
    pub fn to_value(&self) -> Value {
        // Serialising plain strings, maps and lists into a `Value` cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Path of the value of tag `key` in the properties.
pub(crate) fn tag_path(key: &str) -> String {
    format!("{PREFIX}.Tags.{key}")
}

/// Path of the ID of attachment `i` in the properties.
pub(crate) fn attachment_path(i: usize) -> String {
    format!("{PREFIX}.Attachments[{i}].ID")
}

impl Serialize for VanillaProperties {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        WireProperties {
            init: &self.init,
            tags: &self.tags,
            attachments: &self.attachments,
            health: self.health.as_ref(),
        }
        .serialize(s)
    }
}

impl Serialize for HealthProbe {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let (exec, tcp, http) = match &self.check {
            ProbeCheck::Exec(args) => (Some(args), None, None),
            ProbeCheck::Tcp(addr) => (None, Some(addr), None),
            ProbeCheck::Http { url, status } => (None, None, Some(WireHttp { url, status })),
        };
        WireProbe {
            exec,
            tcp,
            http,
            interval: humantime::format_duration(self.interval).to_string(),
            timeout: humantime::format_duration(self.timeout).to_string(),
        }
        .serialize(s)
    }
}

#[derive(Serialize)]
struct WireProperties<'a> {
    #[serde(rename = "Init")]
    init: &'a [String],
    #[serde(rename = "Tags")]
    tags: &'a Tags,
    #[serde(rename = "Attachments")]
    attachments: &'a [Attachment],
    #[serde(rename = "Health", skip_serializing_if = "Option::is_none")]
    health: Option<&'a HealthProbe>,
}

#[derive(Serialize)]
struct WireProbe<'a> {
    #[serde(rename = "Exec", skip_serializing_if = "Option::is_none")]
    exec: Option<&'a Vec<String>>,
    #[serde(rename = "TCP", skip_serializing_if = "Option::is_none")]
    tcp: Option<&'a String>,
    #[serde(rename = "HTTP", skip_serializing_if = "Option::is_none")]
    http: Option<WireHttp<'a>>,
    #[serde(rename = "Interval")]
    interval: String,
    #[serde(rename = "Timeout")]
    timeout: String,
}

#[derive(Serialize)]
struct WireHttp<'a> {
    #[serde(rename = "URL")]
    url: &'a String,
    #[serde(rename = "Status")]
    status: &'a u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProperties {
    #[serde(rename = "Init", default)]
    init: Option<InitLines>,
    #[serde(rename = "Tags", default)]
    tags: Option<Tags>,
    #[serde(rename = "Attachments", default)]
    attachments: Option<Vec<RawAttachment>>,
    #[serde(rename = "Health", default)]
    health: Option<RawProbe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttachment {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Type", default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    #[serde(rename = "Exec", default)]
    exec: Option<Vec<String>>,
    #[serde(rename = "TCP", default)]
    tcp: Option<String>,
    #[serde(rename = "HTTP", default)]
    http: Option<RawHttp>,
    #[serde(rename = "Interval", default)]
    interval: Option<String>,
    #[serde(rename = "Timeout", default)]
    timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(rename = "URL")]
    url: String,
    #[serde(rename = "Status", default)]
    status: Option<u16>,
}

impl RawProbe {
    fn into_probe(self, path: &str) -> Result<HealthProbe> {
        let given = [self.exec.is_some(), self.tcp.is_some(), self.http.is_some()];
        let check = match (self.exec, self.tcp, self.http) {
            (Some(args), None, None) => {
                let at = format!("{path}.Exec");
                if args.is_empty() || args[0].trim().is_empty() {
                    return Err(Error::invalid(at, "must name a command to run"));
                }
                for (i, arg) in args.iter().enumerate() {
                    template::check(arg).map_err(|e| Error::invalid(format!("{at}[{i}]"), e))?;
                }
                ProbeCheck::Exec(args)
            }
            (None, Some(addr), None) => {
                let at = format!("{path}.TCP");
                if addr.trim().is_empty() {
                    return Err(Error::invalid(at, "must be an address like host:port"));
                }
                template::check(&addr).map_err(|e| Error::invalid(at, e))?;
                ProbeCheck::Tcp(addr)
            }
            (None, None, Some(http)) => {
                let at = format!("{path}.HTTP.URL");
                if !http.url.starts_with("http://") {
                    return Err(Error::invalid(
                        at,
                        format!("'{}' must start with http://", http.url),
                    ));
                }
                template::check(&http.url).map_err(|e| Error::invalid(&at, e))?;
                let status = http.status.unwrap_or(HealthProbe::DEFAULT_HTTP_STATUS);
                if !(100..=599).contains(&status) {
                    return Err(Error::invalid(
                        format!("{path}.HTTP.Status"),
                        format!("{status} is not an HTTP status code"),
                    ));
                }
                ProbeCheck::Http {
                    url: http.url,
                    status,
                }
            }
            _ => {
                let n = given.iter().filter(|g| **g).count();
                return Err(Error::invalid(
                    path,
                    format!("exactly one of Exec, TCP or HTTP must be given, found {n}"),
                ));
            }
        };
        let interval = duration(
            &format!("{path}.Interval"),
            self.interval,
            HealthProbe::DEFAULT_INTERVAL,
        )?;
        let timeout = duration(
            &format!("{path}.Timeout"),
            self.timeout,
            HealthProbe::DEFAULT_TIMEOUT,
        )?;
        if timeout.is_zero() {
            return Err(Error::invalid(
                format!("{path}.Timeout"),
                "must be longer than zero",
            ));
        }
        Ok(HealthProbe {
            check,
            interval,
            timeout,
        })
    }
}

fn duration(path: &str, text: Option<String>, default: Duration) -> Result<Duration> {
    match text {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t.trim()).map_err(|e| {
            Error::invalid(
                path,
                format!("'{t}' is not a duration like \"1s\" or \"500ms\": {e}"),
            )
        }),
    }
}

/// Init lines: a list of strings, or one string (empty means none).
struct InitLines(Vec<String>);

impl<'de> Deserialize<'de> for InitLines {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct LinesVisitor;

        impl<'de> Visitor<'de> for LinesVisitor {
            type Value = InitLines;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<InitLines, E> {
                Ok(InitLines(if v.is_empty() {
                    Vec::new()
                } else {
                    vec![v.to_string()]
                }))
            }

            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<InitLines, A::Error> {
                let mut lines = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(line) = seq.next_element::<String>()? {
                    lines.push(line);
                }
                Ok(InitLines(lines))
            }
        }

        d.deserialize_any(LinesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        VanillaProperties::parse(&v).unwrap_err().to_string()
    }

    #[test]
    fn null_and_empty_properties_are_empty() {
        assert_eq!(
            VanillaProperties::parse(&Value::Null).unwrap(),
            VanillaProperties::default()
        );
        let all_null = json!({"Init": null, "Tags": null, "Attachments": null, "Health": null});
        assert_eq!(
            VanillaProperties::parse(&all_null).unwrap(),
            VanillaProperties::default()
        );
    }

    #[test]
    fn init_may_be_one_string() {
        let p = VanillaProperties::parse(&json!({"Init": "echo hi"})).unwrap();
        assert_eq!(p.init, vec!["echo hi".to_string()]);
        let p = VanillaProperties::parse(&json!({"Init": ""})).unwrap();
        assert!(p.init.is_empty());
        assert!(err(json!({"Init": 3})).starts_with("Properties.Init:"));
        assert!(err(json!({"Init": ["a", 3]})).starts_with("Properties.Init[1]:"));
    }

    #[test]
    fn probe_defaults_apply() {
        let p =
            VanillaProperties::parse(&json!({"Health": {"HTTP": {"URL": "http://x/"}}})).unwrap();
        assert_eq!(
            p.health,
            Some(HealthProbe::new(ProbeCheck::Http {
                url: "http://x/".into(),
                status: 200
            }))
        );
        let p = VanillaProperties::parse(
            &json!({"Health": {"TCP": "h:1", "Interval": "500ms", "Timeout": "2s"}}),
        )
        .unwrap();
        let h = p.health.unwrap();
        assert_eq!(h.interval, Duration::from_millis(500));
        assert_eq!(h.timeout, Duration::from_secs(2));
    }

    #[test]
    fn wire_form_round_trips() {
        let v = json!({
            "Init": ["a", "b"],
            "Tags": {"k": "v"},
            "Attachments": [{"ID": "d", "Type": "volume"}],
            "Health": {"Exec": ["true"], "Interval": "3s", "Timeout": "250ms"}
        });
        let p = VanillaProperties::parse(&v).unwrap();
        assert_eq!(p.to_value(), v);
        assert_eq!(VanillaProperties::parse(&p.to_value()).unwrap(), p);
    }

    #[test]
    fn bad_probes_name_the_field() {
        assert!(err(json!({"Health": {}})).starts_with("Properties.Health: exactly one"));
        assert!(err(json!({"Health": {"TCP": "a:1", "Exec": ["x"]}}))
            .starts_with("Properties.Health: exactly one"));
        assert!(err(json!({"Health": {"Exec": []}})).starts_with("Properties.Health.Exec:"));
        assert!(err(json!({"Health": {"TCP": " "}})).starts_with("Properties.Health.TCP:"));
        assert!(err(json!({"Health": {"TCP": "{{ ID"}})).starts_with("Properties.Health.TCP:"));
        assert!(err(json!({"Health": {"Exec": ["x", "{% if %}"]}}))
            .starts_with("Properties.Health.Exec[1]:"));
        assert!(err(json!({"Health": {"HTTP": {"URL": "https://x"}}}))
            .starts_with("Properties.Health.HTTP.URL:"));
        assert!(
            err(json!({"Health": {"HTTP": {"URL": "http://x", "Status": 42}}}))
                .starts_with("Properties.Health.HTTP.Status:")
        );
        assert!(err(json!({"Health": {"HTTP": {"Url": "http://x"}}}))
            .starts_with("Properties.Health.HTTP.Url: unknown field"));
        assert!(err(json!({"Health": {"TCP": "a:1", "Interval": "soon"}}))
            .starts_with("Properties.Health.Interval:"));
        assert!(err(json!({"Health": {"TCP": "a:1", "Timeout": "0s"}}))
            .starts_with("Properties.Health.Timeout:"));
        assert!(err(json!({"Health": {"TCP": "a:1", "Timeout": 5}}))
            .starts_with("Properties.Health.Timeout:"));
    }

    #[test]
    fn unknown_and_mistyped_fields_name_the_path() {
        assert!(err(json!({"Inits": []})).starts_with("Properties.Inits: unknown field"));
        assert!(err(json!({"Tags": {"a": 1}})).starts_with("Properties.Tags.a:"));
        assert!(err(json!({"Attachments": [{"ID": "x", "Kind": "y"}]}))
            .starts_with("Properties.Attachments[0].Kind: unknown field"));
        assert!(
            err(json!({"Attachments": [{"Type": "y"}]})).starts_with("Properties.Attachments[0]:")
        );
        assert!(err(json!(["x"])).starts_with("Properties: must be an object"));
    }

    #[test]
    fn templated_ids_and_tags_are_checked() {
        let p = VanillaProperties::parse(&json!({
            "Tags": {"role": "member-{{ Index }}", "plain": "{x}"},
            "Attachments": [{"ID": "data-{{ LogicalID }}", "Type": "volume"}]
        }))
        .unwrap();
        assert_eq!(
            p.attachments[0].id, "data-{{ LogicalID }}",
            "kept as written"
        );
        assert_eq!(&p.tags["role"], "member-{{ Index }}");

        assert!(
            err(json!({"Attachments": [{"ID": "a"}, {"ID": "data-{{ LogicalID"}]}))
                .starts_with("Properties.Attachments[1].ID:")
        );
        assert!(err(json!({"Attachments": [{"ID": "{{ Tags.x }}"}]}))
            .starts_with("Properties.Attachments[0].ID: unknown placeholder Tags"));
        assert!(err(json!({"Tags": {"role": "{% if %}"}})).starts_with("Properties.Tags.role:"));
        assert!(err(json!({"Tags": {"a.b": "{{ ID }}"}}))
            .starts_with("Properties.Tags.a.b: unknown placeholder ID"));
    }
}
