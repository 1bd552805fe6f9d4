//! `[[fleet]]`: on a lifecycle host, the fleet servers' repositories whose
//! lifecycle it applies with its own (deleting) credentials
//! (docs/IMMUTABLE.md, docs/INSTALL.md). Each names the folder its
//! repository has under every `[[target]]` URL, and the key file that
//! opens it. `Config::for_fleet` makes the config of one of them: the
//! host's targets, rules, key service and agent, that repository's folder
//! and key, and a state folder of its own.

use serde::Deserialize;
use std::path::PathBuf;

use super::ConfigFile;
use crate::error::Result;

/// One fleet server's repository, as a lifecycle host knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRepository {
    /// A short name (`web01`): `--fleet NAME`, and its state folder.
    pub name: String,
    /// Its folder under every target's URL (`web01`, `fleet/web01`).
    pub prefix: String,
    /// The fleet server's key file, which opens its repository.
    pub key_file: PathBuf,
}

/// A `[[fleet]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    name: String,
    prefix: String,
    key_file: PathBuf,
}

/// The fleet's repositories, checked: names unique and plain, prefixes
/// folder paths (no empty, `.` or `..` part), key files resolved against
/// the config's folder.
pub(super) fn parse(raw: Vec<RawFleet>, file: &ConfigFile) -> Result<Vec<FleetRepository>> {
    let mut out: Vec<FleetRepository> = Vec::with_capacity(raw.len());
    for f in raw {
        let err = |m: String| file.error(format!("[[fleet]] {:?}: {m}", f.name));
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if f.name.is_empty() || f.name.starts_with('.') || !f.name.chars().all(plain) {
            return Err(err(
                "name: letters, digits, '-', '_' and '.' only (it names a folder)".into(),
            ));
        }
        if out.iter().any(|o| o.name == f.name) {
            return Err(err("appears twice".into()));
        }
        if f.prefix
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(err(format!(
                "prefix {:?}: a folder path like \"web01\" or \"fleet/web01\", without empty, '.' or '..' parts",
                f.prefix
            )));
        }
        if out.iter().any(|o| o.prefix == f.prefix) {
            return Err(err(format!("prefix {:?} is another [[fleet]]'s", f.prefix)));
        }
        out.push(FleetRepository {
            key_file: file.resolve(f.key_file),
            name: f.name,
            prefix: f.prefix,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    fn host(fleet: &str) -> String {
        format!(
            "[agent]\nhost = \"lifecycle01\"\nstate_dir = \"/var/lib/gallra\"\n\n[[target]]\nname = \"offsite\"\nurl = \"s3://fleet-backups\"\n\n{fleet}"
        )
    }

    const TWO: &str = "[[fleet]]\nname = \"web01\"\nprefix = \"web01\"\nkey_file = \"keys/web01.key\"\n\n[[fleet]]\nname = \"web02\"\nprefix = \"fleet/web02\"\nkey_file = \"/etc/gallra/keys/web02.key\"\n";

    #[test]
    fn each_fleet_repository_is_the_hosts_config_on_its_folder_with_its_key() {
        let c = parse(&host(TWO)).unwrap();
        assert_eq!(c.fleet.len(), 2);
        let web01 = c.for_fleet("web01").unwrap();
        assert_eq!(web01.targets[0].url, "s3://fleet-backups/web01");
        assert_eq!(
            web01.key.master,
            crate::crypto::KeySource::File("/etc/gallra/keys/web01.key".into())
        );
        assert_eq!(
            web01.agent.state_dir,
            std::path::Path::new("/var/lib/gallra/fleet/web01")
        );
        assert_eq!(web01.agent.host, "lifecycle01");
        assert_eq!(web01.fleet_repository.as_deref(), Some("web01"));
        assert!(web01.fleet.is_empty());
        let web02 = c.for_fleet("web02").unwrap();
        assert_eq!(web02.targets[0].url, "s3://fleet-backups/fleet/web02");
        let e = c.for_fleet("web03").unwrap_err().to_string();
        assert!(e.contains("web03") && e.contains("web01, web02"), "{e}");
    }

    #[test]
    fn fleet_names_and_prefixes_are_checked() {
        let one = |name: &str, prefix: &str| {
            format!("[[fleet]]\nname = {name:?}\nprefix = {prefix:?}\nkey_file = \"k\"\n")
        };
        refused(
            &host(&one("web/01", "web01")),
            &["[[fleet]] \"web/01\"", "letters, digits"],
        );
        refused(&host(&one("web01", "")), &["prefix \"\"", "folder path"]);
        refused(&host(&one("web01", "a/../b")), &["prefix \"a/../b\""]);
        refused(&host(&one("web01", "/web01")), &["prefix \"/web01\""]);
        refused(
            &host(&format!("{}{}", one("web01", "a"), one("web01", "b"))),
            &["appears twice"],
        );
        refused(
            &host(&format!("{}{}", one("web01", "a"), one("web02", "a"))),
            &["prefix \"a\" is another"],
        );
    }
}
