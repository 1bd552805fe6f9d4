//! `[key]`: where the master key comes from: a key file, a passphrase in
//! the environment, or a systemd credential. Exactly one.

use serde::Deserialize;
use std::path::PathBuf;

use super::ConfigFile;
use crate::crypto::KeySource;
use crate::error::Result;

/// The `[key]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    file: Option<PathBuf>,
    passphrase_env: Option<String>,
    credential: Option<String>,
}

pub(super) fn parse(raw: Option<RawKey>, file: &ConfigFile) -> Result<KeySource> {
    let err = |message: String| file.error(message);
    Ok(match raw {
        Some(RawKey {
            file: Some(f),
            passphrase_env: None,
            credential: None,
        }) => KeySource::File(file.resolve(f)),
        Some(RawKey {
            file: None,
            passphrase_env: Some(v),
            credential: None,
        }) => KeySource::PassphraseEnv(v),
        // A credential is a name in $CREDENTIALS_DIRECTORY, never a path.
        Some(RawKey {
            file: None,
            passphrase_env: None,
            credential: Some(name),
        }) if crate::format::tree::is_safe_name(name.as_bytes()) => KeySource::Credential(name),
        Some(RawKey {
            credential: Some(name),
            file: None,
            passphrase_env: None,
        }) => {
            return Err(err(format!(
                "[key] credential {name:?}: must be a plain file name, as in LoadCredential=NAME:PATH"
            )));
        }
        Some(_) => {
            return Err(err(
                "[key]: give exactly one of `file`, `credential` and `passphrase_env`".into(),
            ));
        }
        None => {
            return Err(err(
                "missing [key] section (file, credential or passphrase_env)".into(),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::crypto::KeySource;

    /// MINIMAL with its `[key]` table replaced by one holding `lines`.
    fn with_key(lines: &str) -> String {
        MINIMAL.replace("[key]\nfile = \"key\"\n", &format!("[key]\n{lines}\n"))
    }

    #[test]
    fn the_key_may_be_a_systemd_credential() {
        let c = parse(&with_key("credential = \"gallra.key\"")).unwrap();
        assert_eq!(c.key.master, KeySource::Credential("gallra.key".into()));
        let c = parse(&with_key("passphrase_env = \"GALLRA_PASSPHRASE\"")).unwrap();
        assert_eq!(
            c.key.master,
            KeySource::PassphraseEnv("GALLRA_PASSPHRASE".into())
        );

        for name in ["keys/gallra.key", "/etc/gallra/key", "..", ".", ""] {
            refused(
                &with_key(&format!("credential = {name:?}")),
                &["[key] credential", "plain file name"],
            );
        }
        for two in [
            "file = \"key\"\ncredential = \"gallra.key\"",
            "credential = \"gallra.key\"\npassphrase_env = \"P\"",
            "file = \"key\"\npassphrase_env = \"P\"",
            "file = \"key\"\ncredential = \"gallra/key\"",
            "",
        ] {
            refused(&with_key(two), &["[key]", "exactly one"]);
        }
        refused(
            &MINIMAL.replace("[key]\nfile = \"key\"\n", ""),
            &["missing [key]"],
        );
    }
}
