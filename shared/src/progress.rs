//! Progress bars for long work, one constructor for every command: on a terminal the bar
//! redraws on stderr; elsewhere (logs, CI) it is hidden and the command's own log lines
//! say how far it got.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of `len` steps counted in `unit` ("tiles", "steps", "samples"): elapsed time,
/// position, rate, ETA and the message the caller sets (e.g. the loss).
pub fn bar(len: u64, unit: &str) -> ProgressBar {
    styled(Some(len), &format!("{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit}  {{per_sec}}  ETA {{eta}}  {{msg}}"))
}

/// A bar with the caller's [indicatif template](indicatif::ProgressStyle::with_template).
///
/// # Panics
/// If `template` is not a valid template (a programming error: templates are literals).
pub fn styled(len: Option<u64>, template: &str) -> ProgressBar {
    // indicatif hides a stderr bar that is not a terminal.
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template(template).expect("a valid progress template").progress_chars("=> "));
    bar
}
