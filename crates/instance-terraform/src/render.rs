//! The instance file: how one instance's properties become `<id>.tf.json`.
//!
//! Rendering is pure. Given the validated properties and the instance's ID, tags, logical ID
//! and `Init`, it
//! * renames the primary resource to the instance ID (`terraform_data.vm` becomes
//!   `terraform_data.<id>`) and every other resource and data source to `<id>-<name>`, and
//!   rewrites the references between them ([`rewrite_references`]), so instances never collide;
//! * replaces InfraKit's template variables `{{ var "/self/instId" }}` and
//!   `{{ var "/self/logicalId" }}`, and the value `INSTANCE_LOGICAL_ID`, in every string;
//! * merges the tags into the primary resource's `tags` when it has them (or its type has a
//!   `tags` map, [`TAGGED_TYPES`]), with `Name=<id>` on AWS resources that have no name;
//! * puts `Init` where the type runs a boot script ([`init_field`]); for `terraform_data` it
//!   becomes a `local-exec` provisioner run when the resource is created;
//! * adds `INFRAKIT_INSTANCE_ID`, `INFRAKIT_LOGICAL_ID` and `INFRAKIT_GROUP` to the environment
//!   of every `local-exec` provisioner of the instance;
//! * records the instance as the Terraform output `infrakit_<id>` ([`Record`]): its ID, logical
//!   ID, tags and primary address. Outputs live in Terraform's state, so `DescribeInstances`
//!   reads tags and logical IDs from the state, next to the resources Terraform actually created.
//!
//! Values the plugin injects are escaped for Terraform's template syntax (`${` becomes `$${`),
//! so an `Init` script or a tag can hold shell variables.

use infrakit_spi::instance::GROUP_TAG;
use infrakit_spi::{Error, Result, Tags};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::properties::{Blocks, Body, TerraformProperties};

/// Prefix of the Terraform output recording an instance.
pub const OUTPUT_PREFIX: &str = "infrakit_";
/// Environment variable holding the instance ID in `local-exec` provisioners.
pub const ENV_INSTANCE_ID: &str = "INFRAKIT_INSTANCE_ID";
/// Environment variable holding the logical ID (empty for cattle) in `local-exec` provisioners.
pub const ENV_LOGICAL_ID: &str = "INFRAKIT_LOGICAL_ID";
/// Environment variable holding the `infrakit.group` tag (empty if absent).
pub const ENV_GROUP: &str = "INFRAKIT_GROUP";
/// The value that is replaced by the logical ID wherever a string equals it (as in InfraKit,
/// e.g. `"private_ip": "INSTANCE_LOGICAL_ID"`).
pub const LOGICAL_ID_PLACEHOLDER: &str = "INSTANCE_LOGICAL_ID";

/// Resource types whose `tags` attribute is a string map; the tags are merged into it.
pub const TAGGED_TYPES: &[&str] = &[
    "aws_instance",
    "azurerm_virtual_machine",
    "azurerm_linux_virtual_machine",
    "azurerm_windows_virtual_machine",
];

/// The Terraform output name recording instance `id`.
pub fn output_name(id: &str) -> String {
    format!("{OUTPUT_PREFIX}{id}")
}

/// What the plugin records about an instance, as the value of output `infrakit_<id>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The instance ID (also the primary resource's name and the file's name).
    #[serde(rename = "ID")]
    pub id: String,
    /// The logical ID, empty for cattle.
    #[serde(rename = "LogicalID", default)]
    pub logical_id: String,
    /// The instance's tags.
    #[serde(rename = "Tags", default)]
    pub tags: Tags,
    /// The primary resource's address, `<type>.<id>`.
    #[serde(rename = "Primary")]
    pub primary: String,
}

/// An existing resource for a new instance to take over instead of creating one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportSource {
    /// Import the resource with this provider import ID (an `import` block).
    Id(String),
    /// Move the resource at this address of the directory's state (a `moved` block); its
    /// declaration must have been removed from the user's files.
    Address(String),
}

/// What the instance is made of besides its properties.
#[derive(Debug, Clone, Copy)]
pub struct InstanceInput<'a> {
    /// The instance ID.
    pub id: &'a str,
    /// The logical ID, if a pet.
    pub logical_id: Option<&'a str>,
    /// The tags to record (and put on the resource where it has tags).
    pub tags: &'a Tags,
    /// The boot script, empty for none.
    pub init: &'a str,
}

/// Escapes `s` for a Terraform JSON string: `${` and `%{` start templates, `$${` and `%%{`
/// are literal.
pub fn escape(s: &str) -> String {
    s.replace("${", "$${").replace("%{", "%%{")
}

/// Undoes [`escape`].
pub fn unescape(s: &str) -> String {
    s.replace("$${", "${").replace("%%{", "%{")
}

fn escaped_tags(tags: &Tags) -> Map<String, Value> {
    tags.iter()
        .map(|(k, v)| (escape(k), Value::String(escape(v))))
        .collect()
}

/// Where `Init` goes for resource type `kind`: the attribute path in the primary resource, or
/// `None` when the type has no boot script field. `terraform_data` is handled separately (a
/// provisioner).
pub fn init_field(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "aws_instance" | "digitalocean_droplet" => &["user_data"],
        "azurerm_linux_virtual_machine" => &["custom_data"],
        "azurerm_virtual_machine" => &["os_profile", "custom_data"],
        "google_compute_instance" => &["metadata_startup_script"],
        "softlayer_virtual_guest" | "ibm_compute_vm_instance" => &["user_metadata"],
        _ => return None,
    })
}

/// Types whose `Init` must be base64-encoded.
fn init_is_base64(kind: &str) -> bool {
    kind.starts_with("azurerm_")
}

fn base64(data: &[u8]) -> String {
    data_encoding::BASE64.encode(data)
}

/// Rewrites references to the fragment's own resources in `s`: each `(old, new)` address is
/// replaced where it stands as a whole reference (not preceded by an identifier character or
/// `.`, not followed by an identifier character), so `${terraform_data.db.output}` becomes
/// `${terraform_data.<id>-db.output}` while `data.terraform_data.db` or `terraform_data.dbx`
/// are left alone.
pub fn rewrite_references(s: &str, renames: &[(String, String)]) -> String {
    fn ident(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_' || c == '-'
    }
    let mut out = String::with_capacity(s.len());
    let mut prev: Option<char> = None;
    let mut i = 0;
    'scan: while i < s.len() {
        let rest = &s[i..];
        if prev.is_none_or(|p| !ident(p) && p != '.') {
            for (old, new) in renames {
                if let Some(after) = rest.strip_prefix(old.as_str()) {
                    if after.chars().next().is_none_or(|c| !ident(c)) {
                        out.push_str(new);
                        i += old.len();
                        prev = old.chars().last();
                        continue 'scan;
                    }
                }
            }
        }
        let c = rest.chars().next().expect("i is on a char boundary");
        out.push(c);
        prev = Some(c);
        i += c.len_utf8();
    }
    out
}

/// Applies `f` to every string in `v`, recursively (object keys are left alone).
fn map_strings(v: &mut Value, f: &dyn Fn(&str) -> String) {
    match v {
        Value::String(s) => *s = f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| map_strings(x, f)),
        Value::Object(m) => m.values_mut().for_each(|x| map_strings(x, f)),
        _ => {}
    }
}

/// Calls `f` on the body of every `local-exec` provisioner in a resource body, whichever JSON
/// shape the provisioners use (`{"local-exec": {...}}`, `{"local-exec": [{...}]}` or a list of
/// those).
fn for_each_local_exec(body: &mut Body, f: &dyn Fn(&mut Map<String, Value>)) {
    fn visit(v: &mut Value, f: &dyn Fn(&mut Map<String, Value>)) {
        match v {
            Value::Array(a) => a.iter_mut().for_each(|x| visit(x, f)),
            Value::Object(m) => {
                for (kind, block) in m.iter_mut() {
                    if kind != "local-exec" {
                        continue;
                    }
                    match block {
                        Value::Object(b) => f(b),
                        Value::Array(list) => {
                            list.iter_mut().filter_map(Value::as_object_mut).for_each(f)
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(p) = body.get_mut("provisioner") {
        visit(p, f);
    }
}

/// Renders the instance file of `input` from `props`, optionally adopting an existing resource.
pub fn render(
    props: &TerraformProperties,
    input: &InstanceInput<'_>,
    adopt: Option<&ImportSource>,
) -> Result<Value> {
    let id = input.id;
    let (ptype, pname) = (&props.primary.0, &props.primary.1);
    let new_name = |kind: &str, name: &str| -> String {
        if kind == ptype && name == pname {
            id.to_string()
        } else {
            format!("{id}-{name}")
        }
    };
    let mut renames: Vec<(String, String)> = Vec::new();
    for (kind, named) in &props.resources {
        for name in named.keys() {
            renames.push((
                format!("{kind}.{name}"),
                format!("{kind}.{}", new_name(kind, name)),
            ));
        }
    }
    for (kind, named) in &props.data {
        for name in named.keys() {
            renames.push((
                format!("data.{kind}.{name}"),
                format!("data.{kind}.{id}-{name}"),
            ));
        }
    }
    // Longest first, so `a.bc` is not taken for `a.b` followed by `c`.
    renames.sort_by_key(|r| std::cmp::Reverse(r.0.len()));

    let logical_id = input.logical_id.unwrap_or("");
    let (esc_id, esc_lid) = (escape(id), escape(logical_id));
    let substitute = |s: &str| -> String {
        if s == LOGICAL_ID_PLACEHOLDER && input.logical_id.is_some() {
            return esc_lid.clone();
        }
        let s = template_vars(s, &esc_id, &esc_lid);
        rewrite_references(&s, &renames)
    };
    let group = input.tags.get(GROUP_TAG).unwrap_or("");
    let env = json!({
        ENV_INSTANCE_ID: esc_id,
        ENV_LOGICAL_ID: esc_lid,
        ENV_GROUP: escape(group),
    });
    let add_env = |b: &mut Map<String, Value>| {
        let e = b
            .entry("environment")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(e) = e {
            for (k, v) in env.as_object().expect("env is an object") {
                e.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    };

    let mut resources = Map::new();
    for (kind, named) in &props.resources {
        let mut out = Map::new();
        for (name, body) in named {
            let mut body = Value::Object(body.clone());
            map_strings(&mut body, &substitute);
            let Value::Object(mut body) = body else {
                unreachable!("a body stays an object")
            };
            let is_primary = kind == ptype && name == pname;
            if is_primary {
                inject_tags(kind, &mut body, input.tags, id);
                inject_init(props, &mut body, input.init)?;
            }
            for_each_local_exec(&mut body, &add_env);
            out.insert(new_name(kind, name), Value::Object(body));
        }
        resources.insert(kind.clone(), Value::Object(out));
    }
    let mut file = Map::new();
    file.insert(
        "//".into(),
        json!(
            "Written by infrakit's terraform instance plugin; edit the group spec, not this file."
        ),
    );
    file.insert("resource".into(), Value::Object(resources));
    if !props.data.is_empty() {
        file.insert("data".into(), render_data(&props.data, id, &substitute));
    }
    let primary = format!("{ptype}.{id}");
    let record = json!({
        "ID": esc_id,
        "LogicalID": esc_lid,
        "Tags": escaped_tags(input.tags),
        "Primary": primary,
    });
    file.insert(
        "output".into(),
        json!({ output_name(id): {"value": record} }),
    );
    match adopt {
        Some(ImportSource::Id(import_id)) => {
            file.insert(
                "import".into(),
                json!([{"to": primary, "id": escape(import_id)}]),
            );
        }
        Some(ImportSource::Address(from)) => {
            file.insert("moved".into(), json!([{"from": from, "to": primary}]));
        }
        None => {}
    }
    Ok(Value::Object(file))
}

fn render_data(data: &Blocks, id: &str, substitute: &dyn Fn(&str) -> String) -> Value {
    let mut out = Map::new();
    for (kind, named) in data {
        let mut m = Map::new();
        for (name, body) in named {
            let mut body = Value::Object(body.clone());
            map_strings(&mut body, substitute);
            m.insert(format!("{id}-{name}"), body);
        }
        out.insert(kind.clone(), Value::Object(m));
    }
    Value::Object(out)
}

/// Replaces InfraKit's `{{ var "/self/instId" }}` and `{{ var "/self/logicalId" }}`.
fn template_vars(s: &str, id: &str, logical_id: &str) -> String {
    if !s.contains("{{") {
        return s.to_string();
    }
    static VARS: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = VARS.get_or_init(|| {
        regex::Regex::new(r#"\{\{\s*var\s+"/self/(instId|logicalId)"\s*\}\}"#)
            .expect("the template variable pattern is valid")
    });
    re.replace_all(s, |c: &regex::Captures<'_>| {
        if &c[1] == "instId" {
            id.to_string()
        } else {
            logical_id.to_string()
        }
    })
    .into_owned()
}

fn inject_tags(kind: &str, body: &mut Body, tags: &Tags, id: &str) {
    let has_map = body.get("tags").is_some_and(Value::is_object);
    if !has_map && !TAGGED_TYPES.contains(&kind) {
        return;
    }
    let entry = body
        .entry("tags")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        // A computed expression: leave it to the user.
        return;
    }
    let map = entry.as_object_mut().expect("checked to be an object");
    map.extend(escaped_tags(tags));
    if kind.starts_with("aws_") && !map.contains_key("Name") {
        map.insert("Name".into(), Value::String(escape(id)));
    }
}

fn inject_init(props: &TerraformProperties, body: &mut Body, init: &str) -> Result<()> {
    if init.is_empty() {
        return Ok(());
    }
    let kind = props.primary_type();
    if kind == "terraform_data" {
        let provisioner = json!({"local-exec": {
            "command": escape(init),
            "interpreter": ["/bin/sh", "-c"],
        }});
        let list = match body.remove("provisioner") {
            None => vec![provisioner],
            Some(Value::Array(mut a)) => {
                a.push(provisioner);
                a
            }
            Some(Value::Object(m)) => {
                let mut a: Vec<Value> = m.into_iter().map(|(k, v)| json!({ k: v })).collect();
                a.push(provisioner);
                a
            }
            Some(other) => {
                return Err(Error::invalid(
                    format!("{}.provisioner", props.primary_path()),
                    format!("expected an object or a list of provisioners, not {other}"),
                ))
            }
        };
        body.insert("provisioner".into(), Value::Array(list));
        return Ok(());
    }
    let Some(path) = init_field(kind) else {
        return Err(Error::invalid(
            "Spec.Init",
            format!(
                "resource type {kind} has no known boot script field; leave Init empty and put \
                 the script in the resource's own attributes"
            ),
        ));
    };
    let value = if init_is_base64(kind) {
        base64(init.as_bytes())
    } else {
        escape(init)
    };
    let (last, parents) = path.split_last().expect("paths are not empty");
    let mut at = body;
    for p in parents {
        let slot = at
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        // A nested block may be written as a list of one.
        let slot = if slot.as_array().is_some_and(|a| !a.is_empty()) {
            &mut slot[0]
        } else {
            slot
        };
        let Value::Object(m) = slot else {
            return Err(Error::invalid(
                format!("{}.{p}", props.primary_path()),
                "expected an object, to put Init in",
            ));
        };
        at = m;
    }
    at.insert(last.to_string(), Value::String(value));
    Ok(())
}

/// The record in a rendered instance file, unescaped.
pub fn record_of(file: &Value, id: &str) -> Option<Record> {
    let v = file.get("output")?.get(output_name(id))?.get("value")?;
    let mut r: Record = serde_json::from_value(v.clone()).ok()?;
    r.id = unescape(&r.id);
    r.logical_id = unescape(&r.logical_id);
    r.tags = r
        .tags
        .iter()
        .map(|(k, v)| (unescape(k), unescape(v)))
        .collect();
    Some(r)
}

/// The instance file with `labels` merged into the recorded tags and, where the primary
/// resource has a tag map, into it.
pub fn with_labels(file: &Value, id: &str, labels: &Tags) -> Option<Value> {
    let mut file = file.clone();
    let record = file
        .get_mut("output")?
        .get_mut(output_name(id))?
        .get_mut("value")?;
    let primary = record.get("Primary")?.as_str()?.to_string();
    let tags = record.get_mut("Tags")?.as_object_mut()?;
    tags.extend(escaped_tags(labels));
    let (kind, name) = primary.split_once('.')?;
    if let Some(Value::Object(t)) = file
        .get_mut("resource")
        .and_then(|r| r.get_mut(kind))
        .and_then(|r| r.get_mut(name))
        .and_then(|b| b.get_mut("tags"))
    {
        t.extend(escaped_tags(labels));
    }
    Some(file)
}

/// The destroy-time provisioners of a resource body (`when = "destroy"`), as a list.
fn destroy_provisioners(body: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut visit = |kind: &String, block: &Value| {
        let blocks = match block {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        for b in blocks {
            if b.get("when").and_then(Value::as_str) == Some("destroy") {
                out.push(json!({ kind.clone(): b }));
            }
        }
    };
    match body.get("provisioner") {
        Some(Value::Object(m)) => m.iter().for_each(|(k, b)| visit(k, b)),
        Some(Value::Array(list)) => {
            for item in list {
                if let Value::Object(m) = item {
                    m.iter().for_each(|(k, b)| visit(k, b));
                }
            }
        }
        _ => {}
    }
    out
}

/// The tombstone that replaces an instance file on `Destroy`: a `removed` block per resource,
/// with the resource's destroy-time provisioners (and `connection`), so that Terraform runs them
/// (it would not if the resource just disappeared from the configuration).
pub fn tombstone(file: &Value) -> Value {
    let mut removed = Vec::new();
    if let Some(Value::Object(types)) = file.get("resource") {
        for (kind, named) in types {
            let Value::Object(named) = named else {
                continue;
            };
            for (name, body) in named {
                let mut block = json!({
                    "from": format!("{kind}.{name}"),
                    "lifecycle": {"destroy": true},
                });
                let provisioners = destroy_provisioners(body);
                if !provisioners.is_empty() {
                    block["provisioner"] = Value::Array(provisioners);
                    if let Some(c) = body.get("connection") {
                        block["connection"] = c.clone();
                    }
                }
                removed.push(block);
            }
        }
    }
    json!({
        "//": "Being destroyed by infrakit's terraform instance plugin.",
        "removed": removed,
    })
}

/// The instance file without its `import` and `moved` blocks (once the adoption is done).
pub fn without_adoption(file: &Value) -> Value {
    let mut file = file.clone();
    if let Value::Object(m) = &mut file {
        m.remove("import");
        m.remove("moved");
    }
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn props(v: Value) -> TerraformProperties {
        TerraformProperties::parse(&v).unwrap()
    }

    #[test]
    fn references_are_rewritten_as_whole_addresses_only() {
        let renames = vec![
            (
                "terraform_data.db".to_string(),
                "terraform_data.i-1-db".to_string(),
            ),
            (
                "terraform_data.vm".to_string(),
                "terraform_data.i-1".to_string(),
            ),
            (
                "data.external.cfg".to_string(),
                "data.external.i-1-cfg".to_string(),
            ),
        ];
        let cases = [
            (
                "${terraform_data.db.output}",
                "${terraform_data.i-1-db.output}",
            ),
            ("terraform_data.db", "terraform_data.i-1-db"),
            ("${terraform_data.dbx.id}", "${terraform_data.dbx.id}"),
            (
                "${data.terraform_data.db.id}",
                "${data.terraform_data.db.id}",
            ),
            ("${my_terraform_data.db.id}", "${my_terraform_data.db.id}"),
            (
                "${data.external.cfg.result}",
                "${data.external.i-1-cfg.result}",
            ),
            (
                "${terraform_data.vm.id}-${terraform_data.db.id}",
                "${terraform_data.i-1.id}-${terraform_data.i-1-db.id}",
            ),
            (
                "${join(\",\", [terraform_data.db.id])}",
                "${join(\",\", [terraform_data.i-1-db.id])}",
            ),
            ("${terraform_data.db[0]}", "${terraform_data.i-1-db[0]}"),
            ("héllo terraform_data.db", "héllo terraform_data.i-1-db"),
        ];
        for (input, want) in cases {
            assert_eq!(rewrite_references(input, &renames), want, "{input}");
        }
    }

    #[test]
    fn a_fragment_is_namespaced_per_instance() {
        let p = props(json!({
            "primary": "terraform_data.vm",
            "resource": {"terraform_data": {
                "vm": {"input": "${terraform_data.disk.id}", "depends_on": ["terraform_data.disk"]},
                "disk": {"input": "{{ var \"/self/instId\" }}/{{var \"/self/logicalId\"}}"}
            }},
            "data": {"external": {"cfg": {"program": ["echo", "${terraform_data.vm.id}"]}}}
        }));
        let t = tags(&[("infrakit.group", "g"), ("tier", "${web}")]);
        let f = render(
            &p,
            &InstanceInput {
                id: "i-1",
                logical_id: Some("db1"),
                tags: &t,
                init: "",
            },
            None,
        )
        .unwrap();
        let r = &f["resource"]["terraform_data"];
        assert_eq!(r["i-1"]["input"], "${terraform_data.i-1-disk.id}");
        assert_eq!(r["i-1"]["depends_on"], json!(["terraform_data.i-1-disk"]));
        assert_eq!(r["i-1-disk"]["input"], "i-1/db1");
        assert_eq!(
            f["data"]["external"]["i-1-cfg"]["program"][1],
            "${terraform_data.i-1.id}"
        );
        let rec = &f["output"]["infrakit_i-1"]["value"];
        assert_eq!(rec["Primary"], "terraform_data.i-1");
        assert_eq!(rec["LogicalID"], "db1");
        assert_eq!(
            rec["Tags"]["tier"], "$${web}",
            "injected values are escaped"
        );
        let back = record_of(&f, "i-1").unwrap();
        assert_eq!(back.tags, t);
        assert!(r["i-1"].get("tags").is_none(), "terraform_data has no tags");
    }

    #[test]
    fn tags_and_init_go_where_the_type_has_them() {
        let p = props(
            json!({"type": "aws_instance", "value": {"ami": "a", "private_ip": "INSTANCE_LOGICAL_ID"}}),
        );
        let t = tags(&[("tier", "web")]);
        let f = render(
            &p,
            &InstanceInput {
                id: "i-2",
                logical_id: Some("10.0.0.5"),
                tags: &t,
                init: "echo ${HOME}",
            },
            None,
        )
        .unwrap();
        let vm = &f["resource"]["aws_instance"]["i-2"];
        assert_eq!(vm["tags"], json!({"tier": "web", "Name": "i-2"}));
        assert_eq!(vm["user_data"], "echo $${HOME}");
        assert_eq!(vm["private_ip"], "10.0.0.5");

        let p = props(
            json!({"resource": {"azurerm_virtual_machine": {"vm": {"os_profile": [{"admin_username": "x"}]}}}}),
        );
        let f = render(
            &p,
            &InstanceInput {
                id: "i-3",
                logical_id: None,
                tags: &t,
                init: "hi",
            },
            None,
        )
        .unwrap();
        let vm = &f["resource"]["azurerm_virtual_machine"]["i-3"];
        assert_eq!(vm["os_profile"][0]["custom_data"], "aGk=");
        assert_eq!(vm["tags"]["tier"], "web");

        let p = props(json!({"resource": {"null_resource": {"x": {}}}}));
        let e = render(
            &p,
            &InstanceInput {
                id: "i-4",
                logical_id: None,
                tags: &t,
                init: "hi",
            },
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("Spec.Init: resource type null_resource"),
            "{e}"
        );
    }

    #[test]
    fn init_of_terraform_data_is_a_provisioner_and_local_exec_sees_the_ids() {
        let p = props(json!({"resource": {"terraform_data": {"vm": {
            "provisioner": {"local-exec": {"command": "echo first", "environment": {"INFRAKIT_GROUP": "mine"}}}
        }}}}));
        let t = tags(&[("infrakit.group", "web")]);
        let f = render(
            &p,
            &InstanceInput {
                id: "i-5",
                logical_id: None,
                tags: &t,
                init: "echo $X",
            },
            None,
        )
        .unwrap();
        let prov = &f["resource"]["terraform_data"]["i-5"]["provisioner"];
        assert_eq!(prov[0]["local-exec"]["command"], "echo first");
        assert_eq!(
            prov[0]["local-exec"]["environment"]["INFRAKIT_GROUP"], "mine",
            "the user's value wins"
        );
        assert_eq!(
            prov[0]["local-exec"]["environment"]["INFRAKIT_INSTANCE_ID"],
            "i-5"
        );
        assert_eq!(prov[1]["local-exec"]["command"], "echo $X");
        assert_eq!(
            prov[1]["local-exec"]["environment"]["INFRAKIT_GROUP"],
            "web"
        );
        assert_eq!(
            prov[1]["local-exec"]["environment"]["INFRAKIT_LOGICAL_ID"],
            ""
        );
    }

    #[test]
    fn labels_merge_into_the_record_and_the_tag_map() {
        let p = props(json!({"type": "aws_instance", "value": {}}));
        let t = tags(&[("a", "1")]);
        let f = render(
            &p,
            &InstanceInput {
                id: "i-6",
                logical_id: None,
                tags: &t,
                init: "",
            },
            None,
        )
        .unwrap();
        let g = with_labels(&f, "i-6", &tags(&[("b", "2"), ("a", "3")])).unwrap();
        assert_eq!(
            record_of(&g, "i-6").unwrap().tags,
            tags(&[("a", "3"), ("b", "2")])
        );
        assert_eq!(g["resource"]["aws_instance"]["i-6"]["tags"]["b"], "2");
    }

    #[test]
    fn adoption_blocks() {
        let p = props(json!({"resource": {"terraform_data": {"vm": {}}}}));
        let t = Tags::new();
        let input = InstanceInput {
            id: "i-7",
            logical_id: None,
            tags: &t,
            init: "",
        };
        let f = render(&p, &input, Some(&ImportSource::Id("abc".into()))).unwrap();
        assert_eq!(
            f["import"],
            json!([{"to": "terraform_data.i-7", "id": "abc"}])
        );
        let f = render(
            &p,
            &input,
            Some(&ImportSource::Address("terraform_data.old".into())),
        )
        .unwrap();
        assert_eq!(
            f["moved"],
            json!([{"from": "terraform_data.old", "to": "terraform_data.i-7"}])
        );
        assert!(without_adoption(&f).get("moved").is_none());
    }

    #[test]
    fn a_tombstone_keeps_the_destroy_time_provisioners() {
        let p = props(
            json!({"primary": "terraform_data.vm", "resource": {"terraform_data": {
                "vm": {"provisioner": [
                    {"local-exec": {"command": "start"}},
                    {"local-exec": {"when": "destroy", "command": "stop ${self.id}"}}
                ], "connection": {"host": "h"}},
                "disk": {"provisioner": {"local-exec": [{"when": "destroy", "command": "a"}, {"command": "b"}]}},
                "net": {}
            }}}),
        );
        let t = Tags::new();
        let f = render(
            &p,
            &InstanceInput {
                id: "i-8",
                logical_id: None,
                tags: &t,
                init: "",
            },
            None,
        )
        .unwrap();
        let stone = tombstone(&f);
        let removed = stone["removed"].as_array().unwrap();
        assert_eq!(removed.len(), 3);
        let by_from = |from: &str| removed.iter().find(|r| r["from"] == from).unwrap().clone();
        let vm = by_from("terraform_data.i-8");
        assert_eq!(vm["lifecycle"]["destroy"], true);
        assert_eq!(vm["provisioner"].as_array().unwrap().len(), 1);
        assert_eq!(
            vm["provisioner"][0]["local-exec"]["command"],
            "stop ${self.id}"
        );
        assert_eq!(
            vm["provisioner"][0]["local-exec"]["environment"]["INFRAKIT_INSTANCE_ID"],
            "i-8"
        );
        assert_eq!(vm["connection"]["host"], "h");
        let disk = by_from("terraform_data.i-8-disk");
        assert_eq!(
            disk["provisioner"],
            json!([{"local-exec": {"when": "destroy", "command": "a",
            "environment": {"INFRAKIT_GROUP": "", "INFRAKIT_INSTANCE_ID": "i-8", "INFRAKIT_LOGICAL_ID": ""}}}])
        );
        assert!(by_from("terraform_data.i-8-net")
            .get("provisioner")
            .is_none());
        assert!(stone.get("output").is_none());
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"#!/bin/sh\n"), "IyEvYmluL3NoCg==");
    }
}
