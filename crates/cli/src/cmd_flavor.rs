//! `infrakit flavor ...`: a flavor plugin from the command line.

use anyhow::{Context, Result};

use infrakit_rpc::{dir, Plugins};
use infrakit_spi::{Allocation, Description, Index, Spec};

use crate::cli::{AllocationArgs, FlavorArgs, FlavorCommand};
use crate::io;

fn allocation(a: &AllocationArgs) -> Allocation {
    if a.logical_ids.is_empty() {
        Allocation::size(a.size)
    } else {
        Allocation {
            size: 0,
            logical_ids: Some(a.logical_ids.clone()),
        }
    }
}

/// Runs a flavor command.
pub async fn run(args: FlavorArgs) -> Result<()> {
    let plugins = Plugins::new(dir::plugins_dir());
    let plugin = plugins.flavor(&args.name)?;
    match args.command {
        FlavorCommand::Validate {
            file,
            allocation: a,
        } => {
            let props = io::read_document(&file)?;
            plugin.validate(&props, &allocation(&a)).await?;
            outln!("validate:ok");
        }
        FlavorCommand::Prepare {
            flavor,
            spec,
            allocation: a,
        } => {
            let props = io::read_document(&flavor)?;
            let doc = io::read_document(&spec)?;
            let spec: Spec = infrakit_spi::error::decode_at("", &doc)
                .with_context(|| format!("{} is not an instance spec", spec))?;
            let alloc = allocation(&a);
            let index = Index {
                group: String::new(),
                sequence: alloc.desired() as u64,
            };
            let out = plugin.prepare(&props, spec, &alloc, &index).await?;
            outln!("{}", serde_json::to_string_pretty(&out)?);
        }
        FlavorCommand::Healthy {
            flavor,
            id,
            logical_id,
            tags,
        } => {
            let props = io::read_document(&flavor)?;
            let d = Description {
                id,
                logical_id,
                tags: io::parse_tags(&tags)?,
                properties: None,
                created: None,
            };
            outln!("{}", plugin.healthy(&props, &d).await?);
        }
    }
    Ok(())
}
