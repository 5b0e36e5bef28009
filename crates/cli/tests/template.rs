//! Spec files are templates: `infrakit template render` and a templated spec committed through
//! the real binary.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{eventually, Home};

/// Writes `content` to `dir/name`, creating parent directories.
fn write(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    p.display().to_string()
}

#[test]
fn variables_environment_includes_and_helpers_render() {
    let home = Home::new();
    let dir = home.path().join("specs");
    let top = write(
        &dir,
        "web.yaml",
        concat!(
            "ID: {{ name }}\n",
            "Properties:\n",
            "  Allocation: {Size: {{ size }}}\n",
            "  Instance:\n",
            "{% include \"parts/instance.yaml\" %}\n",
            "  Flavor:\n",
            "    Plugin: flavor-vanilla\n",
            "    Properties:\n",
            "      Tags: {{ load(\"vars.yaml\").tags | tojson }}\n",
            "      Attachments: [{ID: \"data-{{ LogicalID }}\", Type: volume}]\n",
            "# {{ env.INFRAKIT_TEST_REGION }} {{ env(\"INFRAKIT_TEST_UNSET\", \"fallback\") }}\n",
        ),
    );
    // Includes resolve relative to the including file: parts/instance.yaml includes env.yaml
    // from parts/, and ../vars.yaml from the top directory.
    write(
        &dir,
        "parts/instance.yaml",
        concat!(
            "    Plugin: instance-file\n",
            "    Properties:\n",
            "      Note: \"{{ load('../vars.yaml').note }}\"\n",
            "{% include \"env.yaml\" %}",
        ),
    );
    write(
        &dir,
        "parts/env.yaml",
        "      Env:\n{{ {'REGION': env.INFRAKIT_TEST_REGION} | toyaml | indent(8, true) }}\n",
    );
    write(&dir, "vars.yaml", "tags: {tier: web}\nnote: from vars\n");

    let out = home
        .command(&[
            "template", "render", &top, "--var", "name=web", "--var", "size=3",
        ])
        .env("INFRAKIT_TEST_REGION", "eu-west")
        .env_remove("INFRAKIT_TEST_UNSET")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        concat!(
            "ID: web\n",
            "Properties:\n",
            "  Allocation: {Size: 3}\n",
            "  Instance:\n",
            "    Plugin: instance-file\n",
            "    Properties:\n",
            "      Note: \"from vars\"\n",
            "      Env:\n",
            "        REGION: eu-west\n",
            "  Flavor:\n",
            "    Plugin: flavor-vanilla\n",
            "    Properties:\n",
            "      Tags: {\"tier\":\"web\"}\n",
            "      Attachments: [{ID: \"data-{{ LogicalID }}\", Type: volume}]\n",
            "# eu-west fallback\n",
        )
    );

    // Standard input works too, with includes relative to the working directory.
    let mut child = home
        .command(&["template", "render", "-", "--var", "x=1"])
        .current_dir(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a: {{ x }}\nb: {{ load('vars.yaml').note }}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a: 1\nb: from vars\n");
}

#[test]
fn errors_name_the_file_and_line_and_exit_1() {
    let home = Home::new();
    let dir = home.path().join("specs");
    let top = write(
        &dir,
        "spec.yaml",
        "ID: web\nProperties:\n{% include \"sub/props.yaml\" %}\n",
    );
    write(
        &dir,
        "sub/props.yaml",
        "  Allocation:\n    Size: 2\n  Instance:\n    Plugin: {{ plugin }}\n",
    );
    let props = dir.join("sub/props.yaml").display().to_string();
    let out = home.run(&["template", "render", &top]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("error: template error in {props} line 4: undefined variable 'plugin'")
    );
    assert!(out.stdout.is_empty());

    let bad = write(&dir, "bad.yaml", "a: 1\nb: {{ size\n");
    let err = home.fails(&["template", "render", &bad]);
    assert!(
        err.contains(&format!("template error in {bad} line 2: syntax error")),
        "{err}"
    );
    let escape = write(&dir, "escape.yaml", "{% include '../../etc/passwd' %}\n");
    let err = home.fails(&["template", "render", &escape]);
    assert!(err.contains("outside the directory of"), "{err}");
    let err = home.fails(&["template", "render", &top, "--var", "novalue"]);
    assert!(err.contains("name=value"), "{err}");
}

#[test]
fn specs_without_template_syntax_render_to_themselves() {
    let home = Home::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let out = home.ok(&["template", "render", path.to_str().unwrap()]);
        assert_eq!(
            out,
            std::fs::read_to_string(&path).unwrap(),
            "{} renders to itself",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 4, "the examples were found");
}

#[test]
fn a_templated_spec_is_committed_and_a_broken_one_changes_nothing() {
    let home = Home::new();
    let files = home.path().join("files");
    home.ok(&["plugin", "start", "group", "flavor-vanilla"]);
    home.ok(&[
        "plugin",
        "start",
        "instance-file",
        "--dir",
        files.to_str().unwrap(),
    ]);
    let dir = home.path().join("specs");
    write(
        &dir,
        "common/instance.json",
        "{\"Plugin\": \"instance-file\", \"Properties\": {\"Note\": \"{{ note }}\"}}",
    );
    let spec = write(
        &dir,
        "group.yaml",
        concat!(
            "ID: {{ env.INFRAKIT_TEST_GROUP }}\n",
            "Properties:\n",
            "  Allocation: {Size: {{ size }}}\n",
            "  Instance: {% include \"common/instance.json\" %}\n",
            "  Flavor: {Plugin: flavor-vanilla, Properties: {Tags: {member: \"m-{{ Index }}\"}}}\n",
        ),
    );
    let commit = |extra: &[&str]| {
        let mut args = vec!["group", "commit", spec.as_str()];
        args.extend_from_slice(extra);
        home.command(&args)
            .env("INFRAKIT_TEST_GROUP", "templated")
            .output()
            .unwrap()
    };
    let out = commit(&["--var", "size=2", "--var", "note=v1"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Committed templated: Managing 2 instances"
    );
    eventually("2 instances", Duration::from_secs(20), || {
        (home.lines(&["group", "describe", "templated", "-q"]).len() == 2).then_some(())
    });
    let inspect = home.json(&["group", "inspect", "templated"]);
    assert_eq!(inspect["Properties"]["Allocation"]["Size"], 2);
    assert_eq!(
        inspect["Properties"]["Instance"]["Properties"]["Note"],
        "v1"
    );
    assert_eq!(
        inspect["Properties"]["Flavor"]["Properties"]["Tags"]["member"], "m-{{ Index }}",
        "plugin placeholders reach the flavor untouched"
    );

    // A variable missing: exit 1, the template error, nothing changed.
    let before = home.ok(&["group", "inspect", "templated"]);
    let out = commit(&["--var", "size=5"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("common/instance.json line 1: undefined variable 'note'"),
        "{err}"
    );
    assert_eq!(home.ok(&["group", "inspect", "templated"]), before);
    assert_eq!(
        home.lines(&["group", "describe", "templated", "-q"]).len(),
        2
    );
    home.ok(&["group", "destroy", "templated"]);
}
