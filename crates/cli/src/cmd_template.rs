//! `infrakit template render FILE`: prints a spec file as the CLI sees it after rendering.

use anyhow::Result;

use crate::cli::{TemplateArgs, TemplateCommand};
use crate::{io, template};

/// Runs a template command.
pub fn run(args: TemplateArgs) -> Result<()> {
    match args.command {
        TemplateCommand::Render { file } => {
            let text = io::render_source(&file, template::global_vars())?;
            io::write_stdout(text.as_bytes())
        }
    }
}
