//! Spec templates: every file the CLI reads as a spec is rendered with minijinja before it is
//! parsed as JSON or YAML (see `docs/templates.md`). A library of its own so the fuzz target
//! renders exactly what the CLI renders.
//!
//! - Variables come from `--var name=value` (strings), the environment from `env.NAME` or
//!   `env("NAME"[, default])`.
//! - `{% include "file" %}` is relative to the including file and may not leave the directory of
//!   the rendered file; `load("file")` reads a JSON or YAML file into a value (relative the same
//!   way, not rendered); filters `tojson`, `toyaml`, `fromjson` and `fromyaml` convert.
//! - Undefined variables are errors, reported with the file and line.
//! - Placeholders that plugins fill in per instance (`{{ LogicalID }}`, `{{ Tags.port }}`,
//!   `{{ var "/self/instId" }}`, ...) are left as they are, and so is the shell's `${#var}`.
//! - A file without `{{`, `{%` or `{#` is returned unchanged, byte for byte.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::value::{from_args, Object, ObjectRepr, Serde, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};

/// Template variables: `--var` names and their values.
pub type Vars = BTreeMap<String, String>;

/// Names that plugins fill in when they render a spec for one instance (flavor-vanilla's
/// `ID`, `LogicalID`, `Group`, `Index`, `Tags`, `Properties`; InfraKit's `var`). A `{{ ... }}`
/// starting with one of them is kept for the plugin.
pub const PLUGIN_PLACEHOLDERS: &[&str] = &[
    "ID",
    "LogicalID",
    "Group",
    "Index",
    "Tags",
    "Properties",
    "var",
];

/// A `--var` that is not a usable `name=value` pair.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VarError(String);

/// Parses `name=value` pairs. Names are identifiers and may not be plugin placeholders.
pub fn parse_vars(pairs: &[String]) -> Result<Vars, VarError> {
    let mut vars = Vars::new();
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(VarError(format!(
                "--var '{pair}' must look like name=value"
            )));
        };
        if !is_identifier(name) {
            return Err(VarError(format!(
                "--var '{pair}': '{name}' is not a variable name (letters, digits and _, not starting with a digit)"
            )));
        }
        if PLUGIN_PLACEHOLDERS.contains(&name) || name == "env" || name == "load" {
            return Err(VarError(format!(
                "--var '{pair}': '{name}' is reserved (see docs/templates.md)"
            )));
        }
        vars.insert(name.to_string(), value.to_string());
    }
    Ok(vars)
}

/// A document that is neither JSON nor YAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DocumentError(String);

/// Parses JSON, or YAML when the text is not JSON.
pub fn parse_document(text: &str) -> Result<serde_json::Value, DocumentError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        if let Ok(v) = serde_json::from_str(text) {
            return Ok(v);
        }
    }
    match serde_saphyr::from_str::<serde_json::Value>(text) {
        Ok(v) => Ok(v),
        Err(yaml_err) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => Ok(v),
            Err(json_err) if trimmed.starts_with('{') => {
                Err(DocumentError(format!("invalid JSON: {json_err}")))
            }
            Err(_) => Err(DocumentError(format!("invalid YAML: {yaml_err}"))),
        },
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Where a template came from: how to name it in errors and where its includes are.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The file as the user named it (`<stdin>` for standard input).
    pub display: String,
    /// The directory includes and `load` are resolved in, and may not leave.
    pub dir: PathBuf,
    /// The template's name inside that directory.
    pub name: String,
}

impl Origin {
    /// A file given on the command line.
    pub fn file(path: &str) -> Origin {
        let p = Path::new(path);
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.to_string());
        Origin {
            display: path.to_string(),
            dir,
            name,
        }
    }

    /// Standard input: includes are relative to the working directory.
    pub fn stdin() -> Origin {
        Origin {
            display: "<stdin>".into(),
            dir: PathBuf::from("."),
            name: "<stdin>".into(),
        }
    }

    /// How to show the template called `name` (the top one, or an include) to the user.
    fn display_of(&self, name: &str) -> String {
        if name == self.name {
            self.display.clone()
        } else if self.dir == Path::new(".") {
            name.to_string()
        } else {
            self.dir.join(name).display().to_string()
        }
    }
}

/// A template that did not render: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// The file (the top one or an include), as the user would name it.
    pub file: String,
    /// The line in that file, when known.
    pub line: Option<usize>,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "template error in {} line {line}: {}",
                self.file, self.message
            ),
            None => write!(f, "template error in {}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for TemplateError {}

/// True when `text` contains template syntax.
pub fn has_template_syntax(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// Renders `text` (from `origin`) with `vars`. Text without template syntax comes back as it is.
pub fn render(text: &str, origin: &Origin, vars: &Vars) -> Result<String, TemplateError> {
    render_with_fuel(text, origin, vars, TEMPLATE_FUEL)
}

/// [`render`] with at most `fuel` template instructions (the fuzz target uses less).
pub fn render_with_fuel(
    text: &str,
    origin: &Origin,
    vars: &Vars,
    fuel: u64,
) -> Result<String, TemplateError> {
    if !has_template_syntax(text) {
        return Ok(text.to_string());
    }
    let mut env = environment(origin);
    env.set_fuel(Some(fuel));
    env.add_template_owned(origin.name.clone(), protect(text))
        .map_err(|e| describe(&e, origin))?;
    let template = env
        .get_template(&origin.name)
        .map_err(|e| describe(&e, origin))?;
    let mut out = template
        .render(Value::from(Serde(vars)))
        .map_err(|e| describe(&e, origin))?;
    // Templates lose their last newline (so an `{% include %}` on its own line adds exactly the
    // included lines); the top file keeps its own.
    if text.ends_with('\n') && !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Instructions a template may run: far more than any spec needs (a loop over 100,000 items
/// takes a few hundred thousand), and a template that loops for ever (or for hours) fails
/// instead of hanging the command.
pub const TEMPLATE_FUEL: u64 = 50_000_000;

/// The environment: strict, no auto-escaping, the helpers. Whitespace is Jinja's default (no
/// `trim_blocks`): a `{% ... %}` in the middle of a line never eats its newline; `{%-` and `-%}`
/// trim explicitly.
fn environment(origin: &Origin) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_debug(true);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_path_join_callback(|name, parent| Cow::Owned(join(name, parent)));
    let dir = origin.dir.clone();
    let shown = origin.clone();
    env.set_loader(move |name| {
        let path = resolve(&dir, name, &shown)?;
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(protect(&text))),
            Err(e) => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("cannot include {}: {e}", shown.display_of(name)),
            )),
        }
    });
    env.add_global("env", Value::from_object(EnvVars));
    let dir = origin.dir.clone();
    let shown = origin.clone();
    env.add_function("load", move |state: &State, file: &str| {
        let name = join(file, state.name());
        let path = resolve(&dir, &name, &shown)?;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("cannot load {}: {e}", shown.display_of(&name)),
            )
        })?;
        let value = parse_document(&text).map_err(|e| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("cannot load {}: {e}", shown.display_of(&name)),
            )
        })?;
        Ok(Value::from(Serde(value)))
    });
    env.add_filter("tojson", tojson);
    env.add_filter("toyaml", toyaml);
    env.add_filter("fromjson", fromjson);
    env.add_filter("fromyaml", fromyaml);
    env
}

/// Joins an include name to the name of the including template, both relative to the top
/// template's directory. A result starting with `../` (or `/`) leaves that directory.
fn join(name: &str, parent: &str) -> String {
    if name.starts_with('/') {
        return name.to_string();
    }
    let mut parts: Vec<&str> = parent.split('/').collect();
    parts.pop();
    let mut above = 0usize;
    for segment in name.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    above += 1;
                }
            }
            s => parts.push(s),
        }
    }
    let mut joined = "../".repeat(above);
    joined.push_str(&parts.join("/"));
    joined
}

/// The file of a joined template name, refusing names outside the top template's directory.
fn resolve(dir: &Path, name: &str, origin: &Origin) -> Result<PathBuf, Error> {
    if name.starts_with('/') || name.starts_with("../") || name == ".." {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "'{name}' is outside the directory of {} (includes and load() may only use files in it)",
                origin.display
            ),
        ));
    }
    let path = dir.join(name);
    // Joined names never climb: checked in debug builds (and by the fuzz target).
    debug_assert!(
        path.strip_prefix(dir)
            .is_ok_and(|rest| rest.components().all(|c| matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            ))),
        "'{name}' resolved outside {}",
        dir.display()
    );
    Ok(path)
}

/// `env.NAME` and `env("NAME"[, default])`.
#[derive(Debug)]
struct EnvVars;

impl Object for EnvVars {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        std::env::var(key.as_str()?).ok().map(Value::from)
    }

    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let (name, default): (&str, Option<Value>) = from_args(args)?;
        match std::env::var(name) {
            Ok(v) => Ok(Value::from(v)),
            Err(_) => default.ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("environment variable '{name}' is not set"),
                )
            }),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<environment>")
    }
}

/// Fails on an undefined value anywhere inside `value` (strict mode lets a map or list literal
/// hold one).
fn check_defined(value: &Value) -> Result<(), Error> {
    if value.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            "an undefined variable inside this value",
        ));
    }
    if let Ok(items) = value.try_iter() {
        if value.kind() == minijinja::value::ValueKind::Map {
            for key in items {
                check_defined(&value.get_item(&key)?)?;
            }
        } else if value.kind() == minijinja::value::ValueKind::Seq {
            for item in items {
                check_defined(&item)?;
            }
        }
    }
    Ok(())
}

fn to_json(value: &Value) -> Result<serde_json::Value, Error> {
    check_defined(value)?;
    serde_json::to_value(value).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot convert to JSON: {e}"),
        )
    })
}

/// `{{ x | tojson }}`, `{{ x | tojson(2) }}`: compact or indented JSON.
fn tojson(value: &Value, indent: Option<usize>) -> Result<String, Error> {
    let json = to_json(value)?;
    let text = match indent {
        None => serde_json::to_string(&json),
        Some(n) => {
            let pad = vec![b' '; n];
            let mut out = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(&pad);
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            serde::Serialize::serialize(&json, &mut ser)
                .map(|_| String::from_utf8_lossy(&out).into_owned())
        }
    };
    text.map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))
}

/// `{{ x | toyaml }}`: block YAML without the trailing newline (indent it with `indent(n)`).
fn toyaml(value: &Value) -> Result<String, Error> {
    let json = to_json(value)?;
    serde_saphyr::to_string(&json)
        .map(|s| s.trim_end().to_string())
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("toyaml: {e}")))
}

/// `{{ text | fromjson }}`: a value from JSON text.
fn fromjson(text: &str) -> Result<Value, Error> {
    serde_json::from_str::<serde_json::Value>(text)
        .map(|v| Value::from(Serde(v)))
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("fromjson: {e}")))
}

/// `{{ text | fromyaml }}`: a value from YAML text.
fn fromyaml(text: &str) -> Result<Value, Error> {
    serde_saphyr::from_str::<serde_json::Value>(text)
        .map(|v| Value::from(Serde(v)))
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("fromyaml: {e}")))
}

/// Wraps what the CLI must not render in `{%+ raw +%}` (the `+` keep the whitespace around it
/// despite `trim_blocks` and `lstrip_blocks`): `{{ ... }}` starting with a plugin placeholder,
/// and the shell's `${#`. Line numbers do not change. User `{% raw %}` blocks, comments and
/// statements are copied as they are.
pub fn protect(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + 32);
    let mut rest = src;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(len) = raw_block_len(rest) {
            out.push_str(&rest[..len]);
            rest = &rest[len..];
        } else if rest.starts_with("{#") {
            if out.ends_with('$') {
                out.push_str("{%+ raw +%}{#{%+ endraw +%}");
                rest = &rest[2..];
            } else {
                let len = rest.find("#}").map(|i| i + 2).unwrap_or(rest.len());
                out.push_str(&rest[..len]);
                rest = &rest[len..];
            }
        } else if rest.starts_with("{%") {
            let len = rest.find("%}").map(|i| i + 2).unwrap_or(rest.len());
            out.push_str(&rest[..len]);
            rest = &rest[len..];
        } else if rest.starts_with("{{") {
            // The expression runs to the closing `}}`, or to the end when there is none.
            let close = rest.find("}}").unwrap_or(rest.len());
            let len = (close + 2).min(rest.len());
            let block = &rest[..len];
            if is_placeholder_expr(&rest[2..close]) {
                out.push_str("{%+ raw +%}");
                out.push_str(block);
                out.push_str("{%+ endraw +%}");
            } else {
                out.push_str(block);
            }
            rest = &rest[len..];
        } else {
            out.push('{');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The length of a `{% raw %}...{% endraw %}` block at the start of `s`, if one starts there.
fn raw_block_len(s: &str) -> Option<usize> {
    let end_of_tag = s.find("%}")?;
    let tag = s.get(2..end_of_tag)?;
    if !s.starts_with("{%") || tag.trim_matches(['-', '+']).trim() != "raw" {
        return None;
    }
    let body = &s[end_of_tag + 2..];
    let mut offset = 0;
    while let Some(i) = body[offset..].find("{%") {
        let start = offset + i;
        // The closing `%}` comes after the opening `{%` (in `{%}` they overlap).
        let close = body[start + 2..].find("%}")? + start + 2;
        let inner = body[start + 2..close].trim_matches(['-', '+']);
        if inner.trim() == "endraw" {
            return Some(end_of_tag + 2 + close + 2);
        }
        offset = close + 2;
    }
    None
}

/// True for the inside of `{{ ... }}` that starts with a plugin placeholder name.
fn is_placeholder_expr(inner: &str) -> bool {
    let inner = inner.trim_start_matches(['-', '+']).trim_start();
    let ident_len = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    PLUGIN_PLACEHOLDERS.contains(&&inner[..ident_len])
}

/// A minijinja error as a [`TemplateError`], from the innermost include that failed.
fn describe(err: &Error, origin: &Origin) -> TemplateError {
    let mut innermost = err;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    let mut other_cause = None;
    while let Some(c) = cause {
        match c.downcast_ref::<Error>() {
            Some(e) => innermost = e,
            None => {
                other_cause = Some(c.to_string());
                break;
            }
        }
        cause = c.source();
    }
    let file = innermost
        .name()
        .map(|n| origin.display_of(n))
        .unwrap_or_else(|| origin.display.clone());
    let mut message = message_of(innermost);
    if let Some(c) = other_cause {
        message.push_str(&format!(": {c}"));
    }
    TemplateError {
        file,
        line: innermost.line(),
        message,
    }
}

fn message_of(err: &Error) -> String {
    let detail = err.detail().unwrap_or("");
    match err.kind() {
        ErrorKind::UndefinedError => {
            let name = detail
                .strip_prefix('`')
                .and_then(|d| d.strip_suffix("` is undefined"));
            match name {
                Some(n) if n.starts_with("env.") => {
                    format!("environment variable '{}' is not set", &n[4..])
                }
                Some(n) if is_placeholder_expr(n) => format!(
                    "undefined variable '{n}' (plugin placeholders are kept only as a whole \
                     {{{{ ... }}}}; wrap this part in {{% raw %}}...{{% endraw %}})"
                ),
                Some(n) => format!("undefined variable '{n}'"),
                None if detail.is_empty() => "undefined value".to_string(),
                None => detail.to_string(),
            }
        }
        ErrorKind::InvalidOperation if !detail.is_empty() => detail.to_string(),
        kind if detail.is_empty() => kind.to_string(),
        kind => format!("{kind}: {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn origin() -> Origin {
        Origin::file("specs/web.yaml")
    }

    #[test]
    fn text_without_syntax_is_unchanged() {
        let text = "ID: web\nProperties: {a: [1, 2]}\n\n";
        assert_eq!(render(text, &origin(), &Vars::new()).unwrap(), text);
    }

    #[test]
    fn variables_render_and_trailing_newlines_stay() {
        let out = render(
            "Size: {{ size }}\nName: {{ name | upper }}\n",
            &origin(),
            &vars(&[("size", "3"), ("name", "web")]),
        )
        .unwrap();
        assert_eq!(out, "Size: 3\nName: WEB\n");
    }

    #[test]
    fn whitespace_is_kept_unless_trimmed() {
        let out = render(
            "a:\n{% for i in [1, 2] %}\n  - {{ i }}\n{% endfor %}\nb: {% if true %}1{% endif %}\nc: 2\n",
            &origin(),
            &Vars::new(),
        )
        .unwrap();
        assert_eq!(out, "a:\n\n  - 1\n\n  - 2\n\nb: 1\nc: 2\n");
        let out = render(
            "a:\n{%- for i in [1, 2] %}\n  - {{ i }}\n{%- endfor %}\nb: 1\n",
            &origin(),
            &Vars::new(),
        )
        .unwrap();
        assert_eq!(out, "a:\n  - 1\n  - 2\nb: 1\n");
    }

    #[test]
    fn undefined_variables_name_the_file_and_line() {
        let err = render("a: 1\nb: {{ x }}\n", &origin(), &Vars::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "template error in specs/web.yaml line 2: undefined variable 'x'"
        );
        let err = render("{{ y.z }}", &origin(), &vars(&[("y", "s")])).unwrap_err();
        assert!(err.message.contains("'y.z'"), "{err}");
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let err = render("a\nb\n{{ x", &origin(), &Vars::new()).unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.starts_with("syntax error"), "{err}");
    }

    #[test]
    fn environment_variables() {
        std::env::set_var("INFRAKIT_TEMPLATE_UNIT", "from-env");
        std::env::remove_var("INFRAKIT_TEMPLATE_UNSET");
        let out = render(
            "{{ env.INFRAKIT_TEMPLATE_UNIT }} {{ env('INFRAKIT_TEMPLATE_UNIT') }} \
             {{ env('INFRAKIT_TEMPLATE_UNSET', 'dflt') }} {{ env.INFRAKIT_TEMPLATE_UNSET | default('d2') }}",
            &origin(),
            &Vars::new(),
        )
        .unwrap();
        assert_eq!(out, "from-env from-env dflt d2");
        let err = render(
            "\n{{ env.INFRAKIT_TEMPLATE_UNSET }}",
            &origin(),
            &Vars::new(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "template error in specs/web.yaml line 2: environment variable 'INFRAKIT_TEMPLATE_UNSET' is not set"
        );
        let err = render(
            "{{ env('INFRAKIT_TEMPLATE_UNSET') }}",
            &origin(),
            &Vars::new(),
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("environment variable 'INFRAKIT_TEMPLATE_UNSET' is not set"),
            "{err}"
        );
    }

    #[test]
    fn plugin_placeholders_pass_through() {
        let text = concat!(
            "ID: \"data-{{ LogicalID }}\"\n",
            "URL: http://127.0.0.1:{{ Tags.port }}/x\n",
            "Name: \"{{ var \\\"/self/instId\\\" }}\"\n",
            "Tag: \"{{- Index -}}\"\n",
            "Init: echo ${#PATH} {{ n }}\n",
            "{# a comment with {{ LogicalID }} #}\n",
            "Raw: {% raw %}{{ anything }}{% endraw %}\n",
            "  {{ LogicalID }}\n",
            "end\n",
        );
        let out = render(text, &origin(), &vars(&[("n", "1")])).unwrap();
        assert_eq!(
            out,
            concat!(
                "ID: \"data-{{ LogicalID }}\"\n",
                "URL: http://127.0.0.1:{{ Tags.port }}/x\n",
                "Name: \"{{ var \\\"/self/instId\\\" }}\"\n",
                "Tag: \"{{- Index -}}\"\n",
                "Init: echo ${#PATH} 1\n",
                "\n",
                "Raw: {{ anything }}\n",
                "  {{ LogicalID }}\n",
                "end\n",
            )
        );
        let err = render("{% if LogicalID %}x{% endif %}", &origin(), &Vars::new()).unwrap_err();
        assert!(err.message.contains("{% raw %}"), "{err}");
    }

    #[test]
    fn helpers_convert_values() {
        let out = render(
            "{{ {'a': [1, 'b']} | tojson }}|{{ {'a': 1} | tojson(2) }}|{{ {'a': [1]} | toyaml }}|{{ ('{\"k\": 2}' | fromjson).k }}|{{ ('k: 3' | fromyaml).k }}",
            &origin(),
            &Vars::new(),
        )
        .unwrap();
        assert_eq!(out, "{\"a\":[1,\"b\"]}|{\n  \"a\": 1\n}|a:\n- 1|2|3");
    }

    #[test]
    fn undefined_values_inside_literals_are_errors() {
        let err = render(
            "a: 1\nb: {{ {'k': nope} | tojson }}\n",
            &origin(),
            &Vars::new(),
        )
        .unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("undefined"), "{err}");
    }

    #[test]
    fn endless_templates_run_out_of_fuel() {
        let err = render(
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            &origin(),
            &Vars::new(),
        )
        .unwrap_err();
        assert!(err.message.contains("fuel"), "{err}");
    }

    #[test]
    fn include_names_join_relative_to_the_parent() {
        assert_eq!(join("b.yaml", "sub/a.yaml"), "sub/b.yaml");
        assert_eq!(join("../c.yaml", "sub/a.yaml"), "c.yaml");
        assert_eq!(join("./d/e.yaml", "top.yaml"), "d/e.yaml");
        assert_eq!(join("../x.yaml", "top.yaml"), "../x.yaml");
        assert_eq!(join("x.yaml", "<stdin>"), "x.yaml");
        assert!(resolve(Path::new("."), "../x.yaml", &origin()).is_err());
        assert!(resolve(Path::new("."), "/etc/passwd", &origin()).is_err());
    }

    #[test]
    fn vars_parse_and_refuse_bad_names() {
        let v = parse_vars(&["a=1".into(), "b_2=x=y".into(), "e=".into()]).unwrap();
        assert_eq!(v, vars(&[("a", "1"), ("b_2", "x=y"), ("e", "")]));
        assert!(parse_vars(&["nope".into()]).is_err());
        assert!(parse_vars(&["1a=x".into()]).is_err());
        assert!(parse_vars(&["a-b=x".into()]).is_err());
        assert!(parse_vars(&["LogicalID=x".into()]).is_err());
        assert!(parse_vars(&["env=x".into()]).is_err());
    }

    #[test]
    fn protect_keeps_line_numbers() {
        let text = "a {{ LogicalID }}\n{{ x }}\n";
        assert_eq!(protect(text).lines().count(), text.lines().count());
        assert_eq!(
            protect(text),
            "a {%+ raw +%}{{ LogicalID }}{%+ endraw +%}\n{{ x }}\n"
        );
    }
}
