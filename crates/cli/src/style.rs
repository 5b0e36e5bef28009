//! Colours and styles: only when stdout is a terminal, never with `NO_COLOR` set (non-empty)
//! or `TERM=dumb`.

use std::io::IsTerminal;
use std::sync::OnceLock;

use comfy_table::{Attribute, Cell, Color};
use infrakit_spi::group::RolloutPhase;

/// Whether output to stdout may carry colours (decided once per process).
pub fn colors_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        colors_allowed(
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var_os("TERM").as_deref(),
            std::io::stdout().is_terminal(),
        )
    })
}

/// The rule behind [`colors_enabled`]: a terminal, `NO_COLOR` unset or empty, `TERM` not `dumb`.
pub fn colors_allowed(
    no_color: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
    is_terminal: bool,
) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

/// The colour of a health word: green healthy, red unhealthy, yellow anything else.
pub fn health_color(health: &str) -> Color {
    match health {
        "healthy" => Color::Green,
        "unhealthy" => Color::Red,
        _ => Color::Yellow,
    }
}

/// The colour of a rollout phase.
pub fn phase_color(phase: RolloutPhase) -> Color {
    match phase {
        RolloutPhase::Complete => Color::Green,
        RolloutPhase::Progressing | RolloutPhase::RollingBack => Color::Cyan,
        RolloutPhase::RolledBack => Color::Red,
        RolloutPhase::Paused | RolloutPhase::Unknown => Color::Yellow,
    }
}

/// A table cell in `color` (comfy-table leaves it plain when the table is not styled).
pub fn colored(text: impl Into<String>, color: Color) -> Cell {
    Cell::new(text.into()).fg(color)
}

/// A header cell: bold when styled.
pub fn header(text: &str) -> Cell {
    Cell::new(text).add_attribute(Attribute::Bold)
}

/// `text` in `color` as ANSI escapes when colours are enabled, else as it is.
pub fn paint(text: &str, color: Color) -> String {
    if !colors_enabled() {
        return text.to_string();
    }
    let code = match color {
        Color::Red => 31,
        Color::Green => 32,
        Color::Yellow => 33,
        Color::Blue => 34,
        Color::Magenta => 35,
        Color::Cyan => 36,
        _ => return text.to_string(),
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colours_need_a_terminal_and_no_no_color() {
        assert!(colors_allowed(None, None, true));
        assert!(colors_allowed(
            Some(OsStr::new("")),
            Some(OsStr::new("xterm")),
            true
        ));
        assert!(!colors_allowed(None, None, false));
        assert!(!colors_allowed(Some(OsStr::new("1")), None, true));
        assert!(!colors_allowed(None, Some(OsStr::new("dumb")), true));
    }

    #[test]
    fn health_words_have_colours() {
        assert_eq!(health_color("healthy"), Color::Green);
        assert_eq!(health_color("unhealthy"), Color::Red);
        assert_eq!(health_color("unknown"), Color::Yellow);
    }
}
