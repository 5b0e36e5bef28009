//! Spec templates: arbitrary template text rendered by `infrakit_template`, exactly as the CLI
//! renders spec files (placeholders kept for plugins, strict undefined, includes and `load()`
//! relative to the including file and refused outside the template's directory, the JSON/YAML
//! helpers), with a fixed set of variables and files.
//!
//! Checked for every input: no panic, and no include or `load()` ever resolves to a file outside
//! the template directory (a debug assertion in the library, on in fuzz builds). Rendering is
//! bounded with less fuel than the CLI's, so a template that loops for ever ends with an error
//! rather than a fuzzer timeout.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use infrakit_template::{render_with_fuel, Origin, Vars};
use libfuzzer_sys::fuzz_target;

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

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = Origin {
        display: "spec.yaml".into(),
        dir: DIR.clone(),
        name: "spec.yaml".into(),
    };
    let vars: Vars = [("name", "web"), ("size", "3"), ("image", "nginx:1.27")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let _ = render_with_fuel(text, &origin, &vars, 50_000);
});
