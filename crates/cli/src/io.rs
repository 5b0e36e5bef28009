//! Reading specs (templates rendered to JSON or YAML, file or stdin) and printing results
//! (tables, JSON, YAML).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;
use serde_json::Value;

use crate::cli::Format;
use crate::style;
use crate::template::{self, Origin};

/// `println!` for command output. A reader that went away (`infrakit plugin ls | head -1`) ends
/// the command quietly with success, as it does for `ls` or `rg`, instead of a panic.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::io::print_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for command output, with [`outln!`]'s handling of a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::io::print_fmt(format_args!($($arg)*))
    };
}

/// Sets up logging to stderr, or to `file` when given.
pub fn init_logging(filter: &str, file: Option<&Path>) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let env_filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_target(false);
    let _ = match file.and_then(|f| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(f)
            .ok()
    }) {
        Some(f) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}

/// Reads `source` (a path, or `-` for stdin), renders it as a template with the global
/// `--var` variables, and parses the result as JSON, or else as YAML.
pub fn read_document(source: &str) -> Result<Value> {
    let text = render_source(source, template::global_vars())?;
    parse_document(&text).with_context(|| format!("parsing {source}"))
}

/// Reads `source` (a path, or `-` for stdin) and renders it as a template with `vars`.
pub fn render_source(source: &str, vars: &template::Vars) -> Result<String> {
    let (text, origin) = if source == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        (s, Origin::stdin())
    } else {
        let text = std::fs::read_to_string(source).with_context(|| format!("reading {source}"))?;
        (text, Origin::file(source))
    };
    Ok(template::render(&text, &origin, vars)?)
}

pub use infrakit_template::parse_document;

/// Prints a value as JSON or YAML.
pub fn print_value<T: Serialize>(value: &T, format: Format) -> Result<()> {
    match format {
        Format::Yaml => out!(
            "{}",
            serde_saphyr::to_string(value).context("encoding YAML")?
        ),
        Format::Json | Format::Table => outln!("{}", serde_json::to_string_pretty(value)?),
    }
    Ok(())
}

/// A borderless table with a header row, like `kubectl get`: every table the CLI prints.
/// Cells are coloured (`style::colored`) only when colours are enabled.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(|h| style::header(h)));
    t.style_text_only();
    if style::colors_enabled() {
        t.enforce_styling();
    } else {
        t.force_no_tty();
    }
    t
}

/// A table's lines, without the padding at either end.
pub fn table_lines(t: &Table) -> Vec<String> {
    t.to_string()
        .lines()
        .map(|l| l.trim_end().trim_start_matches(' ').to_string())
        .collect()
}

/// Writes formatted output to stdout for [`outln!`] and [`out!`]: a closed pipe ends the
/// process with success, any other write error with a one-line message and exit code 1.
pub fn print_fmt(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        stdout_failed(&e)
    }
}

/// Ends the process after stdout failed: quietly when the reader closed the pipe.
pub fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: writing to stdout: {e}");
    std::process::exit(1)
}

/// Whether an error is stdout's reader going away (a closed pipe), which ends a command quietly.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes `bytes` to stdout; a closed pipe (`infrakit man | head`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Prints a table with its trailing spaces trimmed.
pub fn print_table(t: &Table) {
    for line in table_lines(t) {
        outln!("{line}");
    }
}

/// Parses `k=v` pairs.
pub fn parse_tags(pairs: &[String]) -> Result<infrakit_spi::Tags> {
    pairs
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("tag '{p}' must look like key=value"))
        })
        .collect()
}

/// Tags as sorted `k=v` joined by commas.
pub fn tags_text(tags: &infrakit_spi::Tags) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A duration in the largest sensible unit: `42s`, `3m`, `5h`, `2d`.
pub fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_parse_as_json_or_yaml() {
        let j =
            parse_document(r#"{"ID": "a", "Properties": {"Allocation": {"Size": 2}}}"#).unwrap();
        let y = parse_document("ID: a\nProperties:\n  Allocation:\n    Size: 2\n").unwrap();
        assert_eq!(j, y);
        assert!(parse_document("{\"ID\": ")
            .unwrap_err()
            .to_string()
            .contains("JSON"));
    }

    #[test]
    fn tags_parse_and_print() {
        let t = parse_tags(&["a=1".into(), "b=x=y".into()]).unwrap();
        assert_eq!(tags_text(&t), "a=1,b=x=y");
        assert!(parse_tags(&["nope".into()]).is_err());
    }
}
