//! Placeholders in probe targets, rendered with minijinja.
//!
//! A probe string may refer to the instance being checked:
//!
//! | placeholder | value |
//! | --- | --- |
//! | `{{ ID }}` | the instance ID |
//! | `{{ LogicalID }}` | the logical ID, empty for cattle |
//! | `{{ Group }}` | the `infrakit.group` tag, empty if absent |
//! | `{{ Tags.port }}`, `{{ Tags["a.b"] }}` | the instance's tags |
//! | `{{ Properties.State }}` | the provider state the instance plugin reported |
//!
//! Undefined values are errors (a missing tag must not quietly yield `127.0.0.1:`), and nothing
//! is escaped.

use std::sync::OnceLock;

use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::Description;
use minijinja::value::Serde;
use minijinja::{context, AutoEscape, Environment, UndefinedBehavior, Value};

fn new_environment<'a>() -> Environment<'a> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(new_environment)
}

/// Checks that `source` is a well-formed template; the error text says what is wrong.
pub(crate) fn check(source: &str) -> Result<(), String> {
    new_environment()
        .template_from_str(source)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The values the placeholders of one instance resolve to.
pub(crate) fn instance_context(instance: &Description) -> Value {
    context! {
        ID => instance.id.clone(),
        LogicalID => instance.logical_id().unwrap_or_default().to_string(),
        Group => instance.tags.get(GROUP_TAG).cloned().unwrap_or_default(),
        Tags => Serde(&instance.tags),
        Properties => Serde(instance.properties.as_ref().unwrap_or(&serde_json::Value::Null)),
    }
}

/// Renders `source` against `ctx` (from [`instance_context`]).
pub(crate) fn render(source: &str, ctx: &Value) -> Result<String, minijinja::Error> {
    // Plain strings need no template engine; this also keeps exec arguments exact.
    if !source.contains("{{") && !source.contains("{%") && !source.contains("{#") {
        return Ok(source.to_string());
    }
    environment().render_str(source, ctx.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn instance() -> Description {
        serde_json::from_value(json!({
            "ID": "i-1",
            "LogicalID": null,
            "Tags": {"infrakit.group": "web", "port": "8080", "a.b": "c"},
            "Properties": {"State": "running", "Pid": 7}
        }))
        .unwrap()
    }

    #[test]
    fn placeholders_resolve() {
        let ctx = instance_context(&instance());
        let r = |s: &str| render(s, &ctx).unwrap();
        assert_eq!(r("{{ID}}/{{ Group }}/[{{LogicalID}}]"), "i-1/web/[]");
        assert_eq!(r("127.0.0.1:{{ Tags.port }}"), "127.0.0.1:8080");
        assert_eq!(r("{{ Tags[\"a.b\"] }}"), "c");
        assert_eq!(
            r("{{ Properties.State }}-{{ Properties.Pid }}"),
            "running-7"
        );
        assert_eq!(r("<&>"), "<&>");
        assert_eq!(r("{{ '<&>' }}"), "<&>");
    }

    #[test]
    fn undefined_values_are_errors() {
        let ctx = instance_context(&instance());
        assert!(render("{{ Tags.missing }}", &ctx).is_err());
        assert!(render("{{ Nope }}", &ctx).is_err());
    }
}
