//! `infrakit instance ...`: an instance plugin from the command line.

use anyhow::{Context, Result};

use infrakit_rpc::{dir, Plugins};
use infrakit_spi::{DestroyContext, Spec};

use crate::cli::{Format, InstanceArgs, InstanceCommand};
use crate::io;

/// Runs an instance command.
pub async fn run(args: InstanceArgs) -> Result<()> {
    let plugins = Plugins::new(dir::plugins_dir());
    let plugin = plugins.instance(&args.name)?;
    match args.command {
        InstanceCommand::Describe {
            tags,
            properties,
            out,
        } => {
            let tags = io::parse_tags(&tags)?;
            let list = plugin.describe_instances(&tags, properties).await?;
            if out.quiet {
                for d in &list {
                    println!("{}", d.id);
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
                                .map(|p| p.to_string())
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
            println!("{}", plugin.provision(spec).await?);
        }
        InstanceCommand::Destroy { ids } => {
            for id in ids {
                plugin
                    .destroy(&id, &DestroyContext::reason("terminate"))
                    .await?;
                println!("destroyed {id}");
            }
        }
        InstanceCommand::Validate { file } => {
            let doc = io::read_document(&file)?;
            plugin.validate(&doc).await?;
            println!("validate:ok");
        }
    }
    Ok(())
}
