//! The ship job: the retry after a failed ship.

use crate::agent::Done;
use crate::cancel::Cancel;
use crate::config::Config;
use crate::error::Result;
use crate::ship::ShipOptions;

/// Ships every tenant to every secondary: the retry after a failed ship.
pub(super) fn ship_all(config: &Config, cancel: Cancel) -> Result<Done> {
    let secondaries: Vec<&crate::config::Target> = config.secondaries().collect();
    let (reports, failed) = crate::ship::ship_to(
        config.primary(),
        &config.key,
        &secondaries,
        &ShipOptions {
            cancel,
            ..config.ship_options()
        },
    )?;
    let shipped_to = reports
        .iter()
        .filter(|r| r.ok())
        .map(|r| {
            tracing::info!(target_name = %r.target, objects = r.copied, bytes = r.copied_bytes, "shipped");
            r.target.clone()
        })
        .collect();
    Ok(Done::Ship { shipped_to, failed })
}
