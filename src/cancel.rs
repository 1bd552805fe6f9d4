//! A stop request shared by the agent and the work it started: long jobs
//! look at it between files and objects and stop before committing, so a
//! shutdown never leaves a half-written snapshot.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Error::Cancelled)` once a stop was requested.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_sees_the_stop() {
        let c = Cancel::new();
        let seen_by_job = c.clone();
        assert!(seen_by_job.check().is_ok());
        c.cancel();
        assert!(matches!(seen_by_job.check(), Err(Error::Cancelled)));
    }
}
