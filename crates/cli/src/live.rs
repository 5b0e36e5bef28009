//! Live views on a terminal: blocks of text redrawn in place, each optionally followed by a
//! rollout progress bar (indicatif), with a blank line after each block. Callers print plain
//! lines instead when stdout is not a terminal.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::signal::unix::{signal, Signal, SignalKind};

use infrakit_spi::group::RolloutStatus;

use crate::style;

/// One block of a live view: lines of text and, while a rollout is under way, its bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Identifies the block between redraws (a group ID, or `header`).
    pub key: String,
    /// The text.
    pub lines: Vec<String>,
    /// The rollout to show as a progress bar under the text.
    pub rollout: Option<RolloutStatus>,
}

struct Block {
    key: String,
    text: ProgressBar,
    rollout: Option<ProgressBar>,
}

/// A screen of [`Section`]s redrawn in place.
pub struct LiveView {
    multi: MultiProgress,
    blocks: Vec<Block>,
}

impl Default for LiveView {
    fn default() -> Self {
        LiveView::new()
    }
}

impl LiveView {
    /// A live view drawing on stdout.
    pub fn new() -> LiveView {
        LiveView {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            blocks: Vec::new(),
        }
    }

    /// Redraws the screen with `sections`.
    pub fn update(&mut self, sections: &[Section]) {
        let same_layout = sections.len() == self.blocks.len()
            && sections
                .iter()
                .zip(&self.blocks)
                .all(|(s, b)| s.key == b.key);
        if !same_layout {
            for b in self.blocks.drain(..) {
                if let Some(r) = b.rollout {
                    self.multi.remove(&r);
                }
                self.multi.remove(&b.text);
            }
            for s in sections {
                let text = self.multi.add(ProgressBar::new(0).with_style(text_style()));
                self.blocks.push(Block {
                    key: s.key.clone(),
                    text,
                    rollout: None,
                });
            }
        }
        for (s, b) in sections.iter().zip(self.blocks.iter_mut()) {
            // The blank line after the block: after the bar when there is one.
            let gap = if s.rollout.is_some() { "" } else { "\n" };
            b.text.set_message(format!("{}{gap}", s.lines.join("\n")));
            match (&s.rollout, &b.rollout) {
                (Some(r), Some(bar)) => set_rollout(bar, &s.key, r),
                (Some(r), None) => {
                    let bar = self
                        .multi
                        .insert_after(&b.text, ProgressBar::new(r.total as u64));
                    bar.set_style(rollout_style(true));
                    set_rollout(&bar, &s.key, r);
                    b.rollout = Some(bar);
                }
                (None, Some(bar)) => {
                    self.multi.remove(bar);
                    b.rollout = None;
                }
                (None, None) => {}
            }
        }
    }
}

fn text_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// The style of rollout bars: `web: rollout [####>.....] 2/5 updated, progressing`, followed
/// by a blank line when `gap`.
pub fn rollout_style(gap: bool) -> ProgressStyle {
    let mut template = if style::colors_enabled() {
        "{prefix}: rollout [{bar:30.cyan/blue}] {pos}/{len} updated, {msg}".to_string()
    } else {
        "{prefix}: rollout [{bar:30}] {pos}/{len} updated, {msg}".to_string()
    };
    if gap {
        template.push('\n');
    }
    ProgressStyle::with_template(&template)
        .map(|s| s.progress_chars("#>."))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Sets a rollout bar to `r`.
pub fn set_rollout(bar: &ProgressBar, id: &str, r: &RolloutStatus) {
    bar.set_prefix(id.to_string());
    bar.set_length(r.total as u64);
    bar.set_position(r.updated.min(r.total) as u64);
    let mut msg = style::paint(r.phase.as_str(), style::phase_color(r.phase));
    if !r.reason.is_empty() {
        msg.push_str(&format!(" ({})", r.reason));
    }
    bar.set_message(msg);
}

/// SIGINT and SIGTERM, listened for from the moment this is created (so a Ctrl-C right after
/// the first screen is drawn is not lost to the default handler).
pub struct Interrupt {
    int: tokio::sync::Mutex<Signal>,
    term: tokio::sync::Mutex<Signal>,
}

impl Interrupt {
    /// Starts listening.
    pub fn new() -> std::io::Result<Interrupt> {
        Ok(Interrupt {
            int: tokio::sync::Mutex::new(signal(SignalKind::interrupt())?),
            term: tokio::sync::Mutex::new(signal(SignalKind::terminate())?),
        })
    }

    /// Waits for the next SIGINT or SIGTERM.
    pub async fn recv(&self) {
        let (mut int, mut term) = (self.int.lock().await, self.term.lock().await);
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
}

/// True while a rollout is under way (worth a progress bar).
pub fn in_progress(r: &RolloutStatus) -> bool {
    r.phase.in_progress()
}
