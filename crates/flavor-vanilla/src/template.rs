//! Placeholders in probe targets and in what Prepare adds to a spec, rendered with minijinja.
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
//! Attachment IDs and tag values added by Prepare may refer to the instance being prepared:
//!
//! | placeholder | value |
//! | --- | --- |
//! | `{{ LogicalID }}` | the spec's logical ID, empty for cattle |
//! | `{{ Group }}` | the group ID of the `Index` |
//! | `{{ Index }}` | the sequence number of the `Index` |
//!
//! Undefined values are errors (a missing tag must not quietly yield `127.0.0.1:`), and nothing
//! is escaped. Strings without `{{`, `{%` or `{#` are not templates and are used as they are.

use std::sync::OnceLock;

use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::{Description, Index};
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

/// The names a Prepare-time template may use (see [`prepare_context`]).
pub(crate) const PREPARE_NAMES: &[&str] = &["LogicalID", "Group", "Index"];

/// True when `source` needs the template engine at all.
fn is_template(source: &str) -> bool {
    source.contains("{{") || source.contains("{%") || source.contains("{#")
}

/// Checks that `source` is a well-formed template; the error text says what is wrong.
pub(crate) fn check(source: &str) -> Result<(), String> {
    if !is_template(source) {
        return Ok(());
    }
    new_environment()
        .template_from_str(source)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Checks that `source` is a well-formed template that refers to no value other than `names`
/// (and the engine's own globals, such as `range`).
pub(crate) fn check_names(source: &str, names: &[&str]) -> Result<(), String> {
    if !is_template(source) {
        return Ok(());
    }
    let env = new_environment();
    let template = env.template_from_str(source).map_err(|e| e.to_string())?;
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !names.contains(&v.as_str()) && !env.globals().any(|(g, _)| g == v))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    Err(format!(
        "unknown placeholder {}; only {} can be used here",
        unknown.join(", "),
        names.join(", ")
    ))
}

/// The values the placeholders of Prepare-time templates resolve to.
pub(crate) fn prepare_context(logical_id: Option<&str>, index: &Index) -> Value {
    context! {
        LogicalID => logical_id.unwrap_or_default().to_string(),
        Group => index.group.clone(),
        Index => index.sequence,
    }
}

/// The values the placeholders of one instance resolve to.
pub(crate) fn instance_context(instance: &Description) -> Value {
    context! {
        ID => instance.id.clone(),
        LogicalID => instance.logical_id().unwrap_or_default().to_string(),
        Group => instance.tags.get(GROUP_TAG).map(str::to_string).unwrap_or_default(),
        Tags => Serde(&instance.tags),
        // As a value: the properties' own serialisation is for serde_json only.
        Properties => Serde(instance.properties.as_ref().map(|p| p.to_value()).unwrap_or_default()),
    }
}

/// Renders `source` against `ctx` (from [`instance_context`]).
pub(crate) fn render(source: &str, ctx: &Value) -> Result<String, minijinja::Error> {
    // Plain strings need no template engine; this also keeps exec arguments exact.
    if !is_template(source) {
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
    fn prepare_placeholders_resolve_and_are_checked() {
        let index = Index {
            group: "db".into(),
            sequence: 3,
        };
        let ctx = prepare_context(Some("db2"), &index);
        let r = |s: &str| render(s, &ctx).unwrap();
        assert_eq!(
            r("data-{{ LogicalID }}-{{ Group }}-{{ Index }}"),
            "data-db2-db-3"
        );
        assert_eq!(r("{{ Index + 1 }}"), "4");
        let cattle = prepare_context(None, &Index::default());
        assert_eq!(
            render("[{{ LogicalID }}{{ Group }}]", &cattle).unwrap(),
            "[]"
        );
        assert!(render("{{ Tags.x }}", &ctx).is_err());

        assert!(check_names("data-{{ LogicalID }}", PREPARE_NAMES).is_ok());
        assert!(check_names("plain {not a template}", PREPARE_NAMES).is_ok());
        assert!(check_names(
            "{% for i in range(Index) %}{{ i }}{% endfor %}",
            PREPARE_NAMES
        )
        .is_ok());
        let e = check_names("{{ ID }}-{{ Tags.x }}", PREPARE_NAMES).unwrap_err();
        assert!(e.contains("ID, Tags") && e.contains("LogicalID"), "{e}");
        assert!(check_names("{{ LogicalID", PREPARE_NAMES).is_err());
    }

    #[test]
    fn undefined_values_are_errors() {
        let ctx = instance_context(&instance());
        assert!(render("{{ Tags.missing }}", &ctx).is_err());
        assert!(render("{{ Nope }}", &ctx).is_err());
    }
}
