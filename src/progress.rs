//! The progress bar of the steps that move a customer's bytes (backup's
//! reads, ship's copies), shared here so that neither imports the other.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of bytes done out of `total`, labelled `label`, drawn on stderr
/// only when stderr is a terminal: a log file or a pipe gets no escape
/// codes. A run that asked for no bar uses [`ProgressBar::hidden`].
pub(crate) fn bytes_bar(label: String, total: u64) -> ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(label);
    bar
}
