//! The status behind the metrics, refreshed in the background.

use jiff::Timestamp;

use super::{Agent, Done, blocking};

impl Agent {
    /// Recomputes the status (reads every target) for metrics, unless a
    /// refresh runs already; then once more after it.
    pub(super) fn refresh_status(&mut self) {
        if self.status_running || self.cancel.is_cancelled() {
            self.status_wanted = true;
            return;
        }
        self.status_running = true;
        self.status_wanted = false;
        let config = self.config.clone();
        self.tasks.spawn(async move {
            let status = blocking(move || crate::status::collect(&config, Timestamp::now())).await;
            (None, Done::Status(Box::new(status)))
        });
    }
}

pub(super) fn write_textfile(file: &std::path::Path, text: &str) {
    // node_exporter runs as another user and must read it.
    if let Err(e) = crate::files::replace_file_with_mode(file, text.as_bytes(), 0o644) {
        tracing::warn!("metrics textfile {}: {e}", file.display());
    }
}
