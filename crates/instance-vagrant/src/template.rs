//! The Vagrantfile template: the built-in one or the user's (`--template FILE`), rendered with
//! minijinja for each instance.
//!
//! Variables ([`Context`]): `id`, `plugin`, `dir`, `provider`, `box`, `image`, `cmd`, `cpus`,
//! `memory`, `env`, `networks` (each `{type, options}`), `init`, `tags`, `logical_id`, `vars`.
//! A value that is not set is `none`. Using a variable that does not exist is an error when the
//! template is loaded; using an undefined attribute is an error when it is rendered.
//!
//! Values reach Ruby through two filters, so no property can inject code into the Vagrantfile:
//! `ruby` writes any value as a Ruby literal (strings single-quoted, so `#{...}` is not
//! interpolated; lists, maps, numbers, booleans, `nil`), and `ruby_kwargs` writes a map as
//! keyword arguments (`ip: '10.0.0.2', auto_config: false`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use infrakit_spi::{Error, Result, Tags};
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::properties::{Machine, Network};

/// Environment variable holding the instance ID (in the container, or the `Init` provisioner).
pub const ENV_INSTANCE_ID: &str = "INFRAKIT_INSTANCE_ID";
/// Environment variable holding the logical ID (empty for cattle).
pub const ENV_LOGICAL_ID: &str = "INFRAKIT_LOGICAL_ID";
/// Environment variable holding the `infrakit.group` tag (empty if absent).
pub const ENV_GROUP: &str = "INFRAKIT_GROUP";

/// The built-in template.
pub const DEFAULT_TEMPLATE: &str = include_str!("default.Vagrantfile.j2");

/// The variables a template may use.
pub const VARIABLES: &[&str] = &[
    "id",
    "plugin",
    "dir",
    "provider",
    "box",
    "image",
    "cmd",
    "cpus",
    "memory",
    "env",
    "networks",
    "init",
    "tags",
    "logical_id",
    "vars",
];

const NAME: &str = "Vagrantfile";

/// A loaded, checked template.
#[derive(Debug)]
pub struct Template {
    env: Environment<'static>,
    /// Where it came from, for error messages (`built-in` or the file's path).
    origin: String,
}

/// Everything a template sees when one instance is rendered.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    /// The instance ID (also the directory name, and the container name in the built-in
    /// template).
    pub id: String,
    /// The plugin's name.
    pub plugin: String,
    /// The instance's directory (absolute when the plugin's directory is).
    pub dir: String,
    /// The Vagrant provider.
    pub provider: String,
    /// The box (VM providers).
    #[serde(rename = "box")]
    pub r#box: Option<String>,
    /// The image (docker).
    pub image: Option<String>,
    /// The container's command (docker).
    pub cmd: Option<Vec<String>>,
    /// CPUs, defaults applied.
    pub cpus: Option<u32>,
    /// Memory in MiB, defaults applied.
    pub memory: Option<u64>,
    /// Environment: the properties' `Env` plus `INFRAKIT_INSTANCE_ID`, `INFRAKIT_LOGICAL_ID`
    /// and `INFRAKIT_GROUP`.
    pub env: BTreeMap<String, String>,
    /// Networks, with the logical ID's address filled in (see [`complete_networks`]).
    pub networks: Vec<NetworkContext>,
    /// The spec's `Init` script (empty when it is only whitespace).
    pub init: String,
    /// The instance's tags (with `infrakit.logical_id` for a pet).
    pub tags: Tags,
    /// The logical ID, `none` for cattle.
    pub logical_id: Option<String>,
    /// The properties' `Vars`.
    pub vars: Map<String, Value>,
}

/// One network as the template sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkContext {
    /// `private_network`, `public_network` or `forwarded_port`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Vagrant's options for it.
    pub options: Map<String, Value>,
}

/// The networks as rendered: a `private_network` with neither an `ip` nor a `type` option gets
/// `ip: <logical ID>` when the logical ID is an IP address and `type: dhcp` otherwise, as
/// InfraKit's Vagrant plugin did.
pub fn complete_networks(networks: &[Network], logical_id: Option<&str>) -> Vec<NetworkContext> {
    networks
        .iter()
        .map(|n| {
            let mut options = n.options.clone();
            if n.kind == "private_network"
                && !options.contains_key("ip")
                && !options.contains_key("type")
            {
                match logical_id.filter(|l| l.parse::<IpAddr>().is_ok()) {
                    Some(ip) => options.insert("ip".into(), Value::String(ip.to_string())),
                    None => options.insert("type".into(), Value::String("dhcp".into())),
                };
            }
            NetworkContext {
                kind: n.kind.clone(),
                options,
            }
        })
        .collect()
}

impl Context {
    /// The context for instance `id` of plugin `plugin`, in `dir`.
    pub fn new(
        id: &str,
        plugin: &str,
        dir: &Path,
        machine: &Machine,
        spec_init: &str,
        tags: &Tags,
        logical_id: Option<&str>,
    ) -> Context {
        let mut env = machine.env.clone();
        env.insert(ENV_INSTANCE_ID.into(), id.into());
        env.insert(ENV_LOGICAL_ID.into(), logical_id.unwrap_or_default().into());
        env.insert(
            ENV_GROUP.into(),
            tags.get(infrakit_spi::instance::GROUP_TAG)
                .map(str::to_string)
                .unwrap_or_default(),
        );
        Context {
            id: id.into(),
            plugin: plugin.into(),
            dir: dir.display().to_string(),
            provider: machine.provider.clone(),
            r#box: machine.r#box.clone(),
            image: machine.image.clone(),
            cmd: machine.cmd.clone(),
            cpus: machine.cpus,
            memory: machine.memory,
            env,
            networks: complete_networks(&machine.networks, logical_id),
            init: if spec_init.trim().is_empty() {
                String::new()
            } else {
                spec_init.to_string()
            },
            tags: tags.clone(),
            logical_id: logical_id.map(str::to_string),
            vars: machine.vars.clone(),
        }
    }
}

/// `s` as a single-quoted Ruby string: only `\` and `'` need escaping there, and nothing is
/// interpolated.
fn ruby_string(s: &str, out: &mut String) {
    out.push('\'');
    for c in s.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
}

/// True when `k` can be written as a bare symbol key (`k: v`).
fn bare_symbol(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn ruby_key(k: &str, out: &mut String) {
    if bare_symbol(k) {
        out.push_str(k);
    } else {
        ruby_string(k, out);
    }
    out.push_str(": ");
}

/// `v` as a Ruby literal.
pub fn ruby_literal(v: &Value) -> String {
    let mut out = String::new();
    write_ruby(v, &mut out);
    out
}

fn write_ruby(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("nil"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => ruby_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_ruby(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push_str("{ ");
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                ruby_string(k, out);
                out.push_str(" => ");
                write_ruby(item, out);
            }
            out.push_str(" }");
        }
    }
}

/// `map` as Ruby keyword arguments: `ip: '10.0.0.2', 'odd-key': 1`.
pub fn ruby_kwargs(map: &Map<String, Value>) -> String {
    let mut out = String::new();
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        ruby_key(k, &mut out);
        write_ruby(v, &mut out);
    }
    out
}

fn to_json(value: &minijinja::Value) -> std::result::Result<Value, minijinja::Error> {
    if value.is_undefined() {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::UndefinedError,
            "cannot write an undefined value as Ruby",
        ));
    }
    serde_json::to_value(value).map_err(|e| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("cannot write this value as Ruby: {e}"),
        )
    })
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("the default syntax with trailing newlines kept"),
    );
    env.add_filter("ruby", |value: minijinja::Value| {
        to_json(&value).map(|v| ruby_literal(&v))
    });
    env.add_filter("ruby_kwargs", |value: minijinja::Value| {
        match to_json(&value)? {
            Value::Object(map) => Ok(ruby_kwargs(&map)),
            Value::Null => Ok(String::new()),
            _ => Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                "ruby_kwargs needs a map",
            )),
        }
    });
    env
}

impl Template {
    /// The built-in template.
    pub fn builtin() -> Template {
        Template::from_source("built-in template", DEFAULT_TEMPLATE.to_string())
            .expect("the built-in template is valid")
    }

    /// The template in file `path`, checked.
    pub fn from_file(path: &Path) -> Result<Template> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            Error::caused(
                format!("cannot read the Vagrantfile template {}", path.display()),
                e,
            )
        })?;
        Template::from_source(&format!("template {}", path.display()), source)
    }

    /// The template `source` (from `origin`, for messages), checked: it must parse and use no
    /// variable but [`VARIABLES`].
    pub fn from_source(origin: &str, source: String) -> Result<Template> {
        let mut env = environment();
        env.add_template_owned(NAME, source)
            .map_err(|e| Error::plugin(format!("{origin}: {e:#}")))?;
        let template = env
            .get_template(NAME)
            .map_err(|e| Error::plugin(format!("{origin}: {e:#}")))?;
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !VARIABLES.contains(&v.as_str()) && !env.globals().any(|(g, _)| g == v))
            .collect();
        if !unknown.is_empty() {
            unknown.sort();
            return Err(Error::plugin(format!(
                "{origin}: unknown variable {}; a Vagrantfile template can use {}",
                unknown.join(", "),
                VARIABLES.join(", ")
            )));
        }
        Ok(Template {
            env,
            origin: origin.to_string(),
        })
    }

    /// The Vagrantfile for `context`.
    pub fn render(&self, context: &Context) -> Result<String> {
        self.env
            .get_template(NAME)
            .and_then(|t| t.render(Serde(context)))
            .map_err(|e| {
                Error::plugin(format!(
                    "rendering the Vagrantfile ({}): {e:#}",
                    self.origin
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::properties::parse;
    use serde_json::json;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn render(props: Value, init: &str, logical_id: Option<&str>) -> String {
        let machine = parse(&props).unwrap();
        let ctx = Context::new(
            "web-abc12345",
            "instance-vagrant",
            Path::new("/var/lib/vagrant/web-abc12345"),
            &machine,
            init,
            &tags(&[("infrakit.group", "web"), ("tier", "it's")]),
            logical_id,
        );
        Template::builtin().render(&ctx).unwrap()
    }

    #[test]
    fn ruby_literals_are_not_interpolated() {
        assert_eq!(ruby_literal(&json!("a'b\\c #{x}")), r"'a\'b\\c #{x}'");
        assert_eq!(
            ruby_literal(&json!({"k": [1, true, null, "s"]})),
            "{ 'k' => [1, true, nil, 's'] }"
        );
        assert_eq!(ruby_literal(&json!({})), "{}");
        assert_eq!(
            ruby_kwargs(
                json!({"ip": "10.0.0.2", "auto-config": false})
                    .as_object()
                    .unwrap()
            ),
            "'auto-config': false, ip: '10.0.0.2'"
        );
    }

    #[test]
    fn docker_machine_with_init_and_cmd() {
        let out = render(
            json!({"Image": "busybox:latest", "Cmd": ["sleep", "3600"], "CPUs": 1, "Memory": 64, "Env": {"A": "b"}}),
            "echo 'hi' > /ready",
            None,
        );
        assert!(out.contains("  config.vm.provider \"docker\" do |d|\n    d.name = 'web-abc12345'\n    d.image = 'busybox:latest'\n"), "{out}");
        assert!(out.contains("d.has_ssh = false"), "{out}");
        assert!(
            out.contains(
                r#"d.cmd = ["/bin/sh", "-c", 'echo \'hi\' > /ready
exec "$@"', "init"] + ['sleep', '3600']"#
            ),
            "{out}"
        );
        assert!(
            out.contains("'--cpus', '1'") || out.contains("\"--cpus\", '1'"),
            "{out}"
        );
        assert!(out.contains("\"--memory\", '64m',"), "{out}");
        assert!(out.contains("\"--label\", 'tier=it\\'s',"), "{out}");
        assert!(
            out.contains("\"--label\", 'infrakit.plugin=instance-vagrant',"),
            "{out}"
        );
        assert!(
            out.contains("'INFRAKIT_INSTANCE_ID' => 'web-abc12345'"),
            "{out}"
        );
        assert!(out.contains("'INFRAKIT_GROUP' => 'web'"), "{out}");
        assert!(out.contains("'A' => 'b'"), "{out}");
        assert!(!out.contains("config.vm.box"), "{out}");
        assert!(out.ends_with("end\n"), "{out}");
    }

    #[test]
    fn docker_command_choices() {
        let init_only = render(json!({"Image": "i"}), "exec sleep 10", None);
        assert!(
            init_only.contains("d.cmd = [\"/bin/sh\", \"-c\", 'exec sleep 10']"),
            "{init_only}"
        );
        let cmd_only = render(json!({"Image": "i", "Cmd": ["top"]}), "  \n", None);
        assert!(cmd_only.contains("d.cmd = ['top']"), "{cmd_only}");
        let neither = render(json!({"Image": "i"}), "", None);
        assert!(!neither.contains("d.cmd"), "{neither}");
        assert!(
            !neither.contains("--cpus") && !neither.contains("--memory"),
            "{neither}"
        );
    }

    #[test]
    fn vm_machine_with_provisioner_and_networks() {
        let out = render(
            json!({"Provider": "virtualbox", "Box": "debian/bookworm64", "Networks": [
                {"Type": "private_network"},
                {"Type": "forwarded_port", "Options": {"guest": 80, "host": 8080}}
            ]}),
            "apt-get install -y nginx",
            Some("192.168.56.10"),
        );
        assert!(out.contains("config.vm.box = 'debian/bookworm64'"), "{out}");
        assert!(
            out.contains(
                "config.vm.provider 'virtualbox' do |vm|\n    vm.cpus = 2\n    vm.memory = 512\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("config.vm.network 'private_network', ip: '192.168.56.10'\n"),
            "{out}"
        );
        assert!(
            out.contains("config.vm.network 'forwarded_port', guest: 80, host: 8080\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "config.vm.provision \"shell\", inline: 'apt-get install -y nginx', env: {"
            ),
            "{out}"
        );
        assert!(
            out.contains("'INFRAKIT_LOGICAL_ID' => '192.168.56.10'"),
            "{out}"
        );
        assert!(!out.contains("d.image"), "{out}");
    }

    #[test]
    fn private_networks_without_address_use_dhcp_for_cattle() {
        let nets = complete_networks(
            &[Network {
                kind: "private_network".into(),
                options: Map::new(),
            }],
            Some("db1"),
        );
        assert_eq!(nets[0].options["type"], "dhcp");
        let nets = complete_networks(
            &[Network {
                kind: "private_network".into(),
                options: json!({"ip": "10.1.1.1"}).as_object().unwrap().clone(),
            }],
            Some("10.2.2.2"),
        );
        assert_eq!(nets[0].options["ip"], "10.1.1.1");
    }

    #[test]
    fn user_templates_are_checked_when_loaded_and_may_use_vars() {
        let e = Template::from_source("t", "{{ imgae }}".into()).unwrap_err();
        assert!(e.to_string().contains("unknown variable imgae"), "{e}");
        let e = Template::from_source("t", "{% if %}".into()).unwrap_err();
        assert!(e.to_string().starts_with("t: "), "{e}");
        let t = Template::from_source(
            "t",
            "box={{ box | ruby }} size={{ vars.size | ruby }}\n".into(),
        )
        .unwrap();
        let machine =
            parse(&json!({"Provider": "libvirt", "Box": "b", "Vars": {"size": "xl"}})).unwrap();
        let ctx = Context::new("i", "p", Path::new("/d"), &machine, "", &Tags::new(), None);
        assert_eq!(t.render(&ctx).unwrap(), "box='b' size='xl'\n");
        let t = Template::from_source("t", "{{ vars.missing | ruby }}".into()).unwrap();
        let e = t.render(&ctx).unwrap_err().to_string();
        assert!(e.starts_with("rendering the Vagrantfile (t):"), "{e}");
    }
}
