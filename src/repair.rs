//! `gallra repair-target`: rebuild a lost or emptied target by shipping
//! to it, from another target that holds the repository.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::ship::{self, ShipOptions, ShipReport};
use crate::store::Store;

/// The target to copy from: `from` when given, else the first other
/// target (in config order) that holds a repository.
pub fn repair_source(config: &Config, name: &str, from: Option<&str>) -> Result<Store> {
    match from {
        Some(f) if f == name => Err(Error::Usage(format!(
            "--from {f}: a target cannot be repaired from itself"
        ))),
        Some(f) => Store::open(config.target(f)?, false),
        None => {
            for t in config.targets.iter().filter(|t| t.name != name) {
                if let Ok(store) = Store::open(t, false)
                    && store.size_of(crate::repo::CONFIG_PATH)?.is_some()
                {
                    return Ok(store);
                }
            }
            Err(Error::Usage(format!(
                "no target other than {name} holds a repository to repair it from"
            )))
        }
    }
}

/// Ships everything to target `name` from `from` (see `repair_source`),
/// creating the repository there if it lacks one and replacing objects
/// whose bytes do not match their name. `opts` gives verify, progress and
/// host; the rest is set here.
pub fn repair_target(
    config: &Config,
    name: &str,
    from: Option<&str>,
    opts: ShipOptions,
) -> Result<ShipReport> {
    let dst_target = config.target(name)?;
    let src = repair_source(config, name, from)?;
    // Only someone holding the key may rebuild a target from it.
    let src = Repository::open(src, &config.key)?;
    let dst = Store::open(dst_target, true)?;
    ship::ship(
        &src,
        &dst,
        &ShipOptions {
            tenants: Vec::new(),
            replace_damaged: true,
            initialise: true,
            ..opts
        },
    )
}
