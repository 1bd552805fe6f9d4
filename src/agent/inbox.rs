//! The inbox poll: new event files start a lifecycle run.

use super::{Agent, Job};

impl Agent {
    pub(super) fn look_in_inbox(&mut self) {
        if self.running.contains(&Job::Lifecycle) {
            return;
        }
        let inbox = crate::lifecycle::journal::inbox_dir(&self.config.agent.state_dir);
        let pending = crate::lifecycle::journal::pending(&inbox);
        if let Ok(files) = &pending {
            // Forget what left the inbox, so that a later file of the same
            // name is taken in.
            self.inbox_tried.retain(|f| files.contains(f));
        }
        match pending {
            // A file that could not be recorded (a target down) stays in
            // the inbox; it is tried again with the next scheduled run, not
            // at every poll.
            Ok(files) if files.iter().any(|f| !self.inbox_tried.contains(f)) => {
                tracing::info!(files = files.len(), "events in the inbox");
                self.inbox_tried = files.into_iter().collect();
                self.start(Job::Lifecycle);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("inbox {}: {e}", inbox.display()),
        }
    }
}
