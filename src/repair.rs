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
        Some(f) => Store::open(config.target(f)?),
        None => {
            for t in config.targets.iter().filter(|t| t.name != name) {
                if let Ok(store) = Store::open(t)
                    && store.size_of(crate::layout::CONFIG_PATH)?.is_some()
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
    as_of: Option<jiff::Timestamp>,
    opts: ShipOptions,
) -> Result<ShipReport> {
    let dst_target = config.target(name)?;
    let src = repair_source(config, name, from)?;
    // After an attack on the source: copy what it held at a time before.
    let src = match as_of {
        Some(at) => src.as_of(at)?,
        None => src,
    };
    // Only someone holding the key may rebuild a target from it.
    let src = Repository::open(src, &config.key)?;
    let dst = Store::open_or_create(dst_target)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Targets a (primary), b and c, each a folder under `dir`; those in
    /// `holding` get a repository config object.
    fn config(dir: &std::path::Path, holding: &[&str]) -> Config {
        let mut text = format!(
            "[agent]\nhost = \"h\"\nstate_dir = \"{0}/state\"\n\n[key]\nfile = \"{0}/key\"\n\n",
            dir.display()
        );
        for name in ["a", "b", "c"] {
            let folder = dir.join(name);
            std::fs::create_dir_all(&folder).unwrap();
            if holding.contains(&name) {
                std::fs::write(folder.join(crate::layout::CONFIG_PATH), b"x").unwrap();
            }
            text += &format!(
                "[[target]]\nname = \"{name}\"\nurl = \"file://{}\"\nprimary = {}\n\n",
                folder.display(),
                name == "a"
            );
        }
        Config::parse(&text, &dir.join("agent.toml")).unwrap()
    }

    #[test]
    fn the_default_source_is_the_first_other_target_holding_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &["a", "c"]);
        assert_eq!(repair_source(&config, "a", None).unwrap().name(), "c");
        assert_eq!(repair_source(&config, "b", None).unwrap().name(), "a");
    }

    #[test]
    fn from_names_the_source_but_never_the_target_itself() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &["a"]);
        assert_eq!(repair_source(&config, "a", Some("b")).unwrap().name(), "b");
        let e = repair_source(&config, "a", Some("a")).err().unwrap();
        assert_eq!(
            e.to_string(),
            "--from a: a target cannot be repaired from itself"
        );
    }

    #[test]
    fn no_other_target_holding_the_repository_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &["a"]);
        let e = repair_source(&config, "a", None).err().unwrap();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        assert_eq!(
            e.to_string(),
            "no target other than a holds a repository to repair it from"
        );
    }
}
