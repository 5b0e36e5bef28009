//! `infrakit instance ...`: an instance plugin from the command line.

use anyhow::{bail, Context, Result};

use infrakit_group::Settings;
use infrakit_instance_terraform::{ImportRequest, ImportSource, TerraformOptions, TerraformPlugin};
use infrakit_rpc::{dir, Plugins};
use infrakit_spi::instance::{CONFIG_HASH_TAG, GROUP_TAG};
use infrakit_spi::{DestroyContext, Group, Spec, Tags};

use crate::cli::{Format, ImportArgs, InstanceArgs, InstanceCommand};
use crate::io;

/// Runs an instance command.
pub async fn run(args: InstanceArgs) -> Result<()> {
    if let InstanceCommand::Import(import) = args.command {
        return import_terraform(import).await;
    }
    let plugins = Plugins::new(dir::plugins_dir());
    let plugin = plugins.instance(&args.name)?;
    match args.command {
        InstanceCommand::Describe {
            tags,
            properties,
            out,
        } => {
            let tags = io::parse_tags(&tags)?;
            let mut list = plugin.describe_instances(&tags, properties).await?;
            // Provider properties may hold credentials or user data: never shown.
            for d in &mut list {
                d.properties = d
                    .properties
                    .as_ref()
                    .map(infrakit_spi::secret::redact_properties);
            }
            if out.quiet {
                for d in &list {
                    outln!("{}", d.id);
                }
            } else if out.output != Format::Table {
                io::print_value(&list, out.output)?;
            } else {
                let mut header = vec!["ID", "LOGICAL", "TAGS"];
                if properties {
                    header.push("PROPERTIES");
                }
                let mut t = io::table(&header);
                for d in &list {
                    let mut row = vec![
                        d.id.clone(),
                        d.logical_id().unwrap_or("-").to_string(),
                        io::tags_text(&d.tags),
                    ];
                    if properties {
                        row.push(
                            d.properties
                                .as_ref()
                                .map(|p| p.as_json().to_string())
                                .unwrap_or_default(),
                        );
                    }
                    t.add_row(row);
                }
                io::print_table(&t);
            }
        }
        InstanceCommand::Provision { file } => {
            let doc = io::read_document(&file)?;
            let spec: Spec = infrakit_spi::error::decode_at("", &doc)
                .with_context(|| format!("{file} is not an instance spec"))?;
            outln!("{}", plugin.provision(spec).await?);
        }
        InstanceCommand::Destroy { ids } => {
            for id in ids {
                plugin
                    .destroy(&id, &DestroyContext::reason("terminate"))
                    .await?;
                outln!("destroyed {id}");
            }
        }
        InstanceCommand::Validate { file } => {
            let doc = io::read_document(&file)?;
            plugin.validate(&doc).await?;
            outln!("validate:ok");
        }
        InstanceCommand::Import(_) => unreachable!("handled above"),
    }
    Ok(())
}

/// `infrakit instance import`: adopts an existing resource into a Terraform working directory,
/// tagged as a member of `--group` if given.
async fn import_terraform(args: ImportArgs) -> Result<()> {
    let mut tags = Tags::new();
    let mut properties = match &args.properties {
        Some(file) => Some(io::read_document(file)?),
        None => None,
    };
    let spec = match (&args.group, &args.spec) {
        (Some(group), _) => Some(
            crate::cmd_group::client(&args.group_plugin)?
                .inspect_groups()
                .await?
                .into_iter()
                .find(|s| &s.id == group)
                .with_context(|| {
                    format!("{} does not manage a group {group}", args.group_plugin)
                })?,
        ),
        (None, Some(file)) => Some(crate::cmd_group::read_spec(file)?),
        (None, None) => None,
    };
    if let Some(spec) = spec {
        let settings = Settings::parse(&spec)?;
        tags.insert(GROUP_TAG, settings.id.clone());
        tags.insert(CONFIG_HASH_TAG, settings.config_hash.clone());
        if properties.is_none() {
            properties = Some(settings.props.instance.properties.clone());
        }
    }
    let Some(properties) = properties else {
        bail!("say what the resource is: --properties FILE, or --group ID to use the group's");
    };
    let source = match (args.id, args.address) {
        (Some(id), _) => ImportSource::Id(id),
        (None, Some(address)) => ImportSource::Address(address),
        (None, None) => bail!("--id or --address is required"),
    };
    let plugin = TerraformPlugin::start(TerraformOptions::new(&args.dir))
        .await
        .with_context(|| format!("opening the Terraform directory {}", args.dir.display()))?;
    let id = plugin
        .import(ImportRequest {
            properties,
            source,
            tags,
            logical_id: args.logical_id,
        })
        .await?;
    outln!("{id}");
    Ok(())
}
