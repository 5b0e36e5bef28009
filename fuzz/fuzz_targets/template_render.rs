//! Spec templates: arbitrary template text rendered by minijinja with the settings the CLI uses
//! for spec files (strict undefined, no auto-escaping, includes and `load()` relative to the
//! including file and refused outside the template's directory, the JSON/YAML helpers), and a
//! fixed set of variables and files.
//!
//! Checked for every input: no panic, and no include or `load()` ever resolves to a file outside
//! the template directory. Rendering is bounded with minijinja's fuel, so a template that loops
//! for ever ends with an error rather than a fuzzer timeout.
#![no_main]

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};

/// The template directory: a few files to include and load.
static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("infrakit-fuzz-templates-{}", std::process::id()));
    let files = [
        ("part.j2", "name={{ name }}\n"),
        (
            "sub/inner.j2",
            "{% include \"../part.j2\" %} size={{ size }}\n",
        ),
        ("vars.yaml", "size: 3\nimage: nginx\ntags: [a, b]\n"),
        (
            "vars.json",
            "{\"ports\": [80, 443], \"nested\": {\"k\": \"v\"}}",
        ),
        ("loop.j2", "{% include \"loop.j2\" %}"),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
});

/// The include name `name` seen from template `parent`, relative to the top directory (as the
/// CLI joins them): a result starting with `../` or `/` leaves the directory.
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

/// The file of a joined name, refusing names outside the directory; asserts the refusal holds.
fn resolve(name: &str) -> Result<PathBuf, Error> {
    if name.starts_with('/') || name.starts_with("../") || name == ".." {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("'{name}' is outside the template directory"),
        ));
    }
    let path = DIR.join(name);
    let escapes = path
        .strip_prefix(&*DIR)
        .map(|rest| {
            rest.components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        })
        .unwrap_or(true);
    assert!(
        !escapes,
        "'{name}' resolved outside the directory: {}",
        path.display()
    );
    Ok(path)
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("cannot read: {e}")))
}

fn document(text: &str) -> Result<serde_json::Value, Error> {
    serde_json::from_str(text)
        .or_else(|_| serde_saphyr::from_str(text))
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("not JSON or YAML: {e}"),
            )
        })
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_debug(true);
    env.set_fuel(Some(50_000));
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_path_join_callback(|name, parent| Cow::Owned(join(name, parent)));
    env.set_loader(|name| read(&resolve(name)?).map(Some));
    env.add_function("load", |state: &State, file: &str| {
        let path = resolve(&join(file, state.name()))?;
        Ok(Value::from(Serde(document(&read(&path)?)?)))
    });
    env.add_filter("tojson", |v: Value| {
        serde_json::to_string(&v)
            .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
    });
    env.add_filter("toyaml", |v: Value| {
        serde_saphyr::to_string(&v)
            .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
    });
    env.add_filter("fromjson", |s: &str| {
        serde_json::from_str::<serde_json::Value>(s)
            .map(|v| Value::from(Serde(v)))
            .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
    });
    env.add_filter("fromyaml", |s: &str| {
        document(s).map(|v| Value::from(Serde(v)))
    });
    env
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut env = environment();
    if env
        .add_template_owned("spec.yaml", text.to_string())
        .is_err()
    {
        return;
    }
    let Ok(template) = env.get_template("spec.yaml") else {
        return;
    };
    let vars = minijinja::context! {
        name => "web",
        size => "3",
        image => "nginx:1.27",
        items => vec!["a", "b", "c"],
    };
    let _ = template.render(vars);
});
