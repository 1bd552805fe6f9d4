//! The key service that holds a repository's epoch keys (docs/SECURITY.md,
//! "Erasure against copies that survive"): a service speaking the AWS KMS
//! API. gallra keeps only the service's ciphertext of an epoch key; the
//! plaintext lives in memory, for one process, and a rotation destroys the
//! service key (`ScheduleKeyDeletion`) so that no copy of anything wrapped
//! by it opens again.
//!
//! The client is small on purpose: five operations of the KMS JSON
//! protocol, signed by `aws-sigv4` (the AWS SDK's own signer), over the
//! HTTP stack object_store already brings. The full SDK doubled the build
//! for five calls (docs/SECURITY.md, "The client").

mod aws_kms;

use std::path::PathBuf;
use std::time::Duration;

pub use aws_kms::{KeyService, ServiceKeyState};

/// The only kind of key service: the AWS KMS API, as AWS and the providers
/// that speak it serve it.
pub const AWS_KMS: &str = "aws-kms";

/// `[key_service]`: where the epoch keys live and how they rotate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyServiceSettings {
    /// `https://kms.<region>.amazonaws.com` unless the config names another.
    pub endpoint: String,
    pub region: String,
    /// `AWS_ACCESS_KEY_ID=` / `AWS_SECRET_ACCESS_KEY=` (/ `AWS_SESSION_TOKEN=`)
    /// lines, mode 0600; otherwise the same names in the environment.
    pub credentials_file: Option<PathBuf>,
    /// The waiting period of a scheduled key deletion, 7 to 30 days: until
    /// it ends the deletion role can cancel it, after it nobody can.
    pub deletion_wait_days: u32,
    /// The least time between two rotations: erasures wait for the next,
    /// so a fleet makes at most one service key a day per repository.
    pub rotate_after: Duration,
    /// Longest one request may take.
    pub timeout: Duration,
}

impl KeyServiceSettings {
    /// How the service is named in messages and records.
    pub fn describe(&self) -> String {
        format!("key service {} ({})", self.endpoint, self.region)
    }
}
