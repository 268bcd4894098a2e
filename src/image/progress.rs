//! Progress bars for pull and push, one per blob, drawn only when stderr is a terminal and
//! `-q` was not given; otherwise every call is a no-op.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let shown = !quiet && std::io::stderr().is_terminal();
        Progress {
            multi: shown.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// A bar for one blob: `label` is what is moving (`sha256:0123456789ab`), `total` its size.
    pub fn bar(&self, label: &str, total: u64) -> Bar {
        let Some(multi) = &self.multi else {
            return Bar(None);
        };
        let bar = multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Bar(Some(bar))
    }
}

/// One blob's bar (or nothing).
pub struct Bar(Option<ProgressBar>);

impl Bar {
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    /// Leaves the bar on screen, full, with a last word (`done`, `exists`).
    pub fn finish(&self, message: &'static str) {
        if let Some(b) = &self.0 {
            if let Some(len) = b.length() {
                b.set_position(len);
            }
            b.finish_with_message(message);
        }
    }

    pub fn abandon(&self, message: &'static str) {
        if let Some(b) = &self.0 {
            b.abandon_with_message(message);
        }
    }
}
