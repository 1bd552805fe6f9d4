//! Where keys come from: key files, systemd credentials and passphrases,
//! and the key-encryption key each gives a key slot. The primitives (keys,
//! sealing, ids) are the format's, in `gallra_format::crypto`, re-exported
//! here so that `crate::crypto::` names both.

use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

pub use gallra_format::crypto::*;

use crate::error::{Error, Result};

/// Where the key that opens a master-key slot comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    PassphraseEnv(String),
    /// A key file handed over by systemd (`LoadCredential=NAME:PATH`), read
    /// from `$CREDENTIALS_DIRECTORY/NAME`: only the service can read it.
    Credential(String),
}

impl KeySource {
    pub fn describe(&self) -> String {
        match self {
            KeySource::File(p) => format!("key file {}", p.display()),
            KeySource::PassphraseEnv(v) => format!("the passphrase in ${v}"),
            KeySource::Credential(name) => format!("systemd credential {name}"),
        }
    }
}

/// Secret input to a key slot's key-encryption key: key file bytes or a passphrase.
pub enum KeyMaterial {
    File(SecretKey),
    Passphrase(Zeroizing<Vec<u8>>),
}

impl KeyMaterial {
    pub fn load(source: &KeySource) -> Result<Self> {
        match source {
            KeySource::File(path) => Ok(KeyMaterial::File(read_key_file(path)?)),
            KeySource::Credential(name) => match std::env::var_os("CREDENTIALS_DIRECTORY") {
                // systemd 254 and later grant the service a credential by
                // ACL, which shows as group read (0440) in the mode; the
                // folder itself is the service's alone.
                Some(dir) => Ok(KeyMaterial::File(read_key_file_with(
                    &PathBuf::from(dir).join(name),
                    0o037,
                )?)),
                None => Err(Error::KeyFile {
                    file: PathBuf::from(name),
                    message: format!(
                        "[key] credential: $CREDENTIALS_DIRECTORY is not set; run under systemd with LoadCredential={name}:/etc/gallra/key, or name the key with [key] file"
                    ),
                }),
            },
            KeySource::PassphraseEnv(var) => {
                let value = std::env::var_os(var).unwrap_or_default();
                if value.is_empty() {
                    return Err(Error::PassphraseEnv { var: var.clone() });
                }
                Ok(KeyMaterial::Passphrase(Zeroizing::new(
                    value.into_encoded_bytes(),
                )))
            }
        }
    }

    /// The key-encryption key for a slot with this salt (and, for a
    /// passphrase, these Argon2id costs).
    pub fn kek(&self, salt: &[u8; 16], params: Argon2Params) -> Result<SecretKey> {
        match self {
            KeyMaterial::File(key) => Ok(key.derive(salt, b"gallra key file kek v1")),
            KeyMaterial::Passphrase(pass) => {
                let argon_params =
                    argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
                        .map_err(|e| Error::Usage(format!("argon2 parameters: {e}")))?;
                let argon = argon2::Argon2::new(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    argon_params,
                );
                let mut out = [0u8; 32];
                argon
                    .hash_password_into(pass, salt, &mut out)
                    .map_err(|e| Error::Usage(format!("argon2: {e}")))?;
                Ok(SecretKey::from_bytes(out))
            }
        }
    }
}

/// Reads a key file: 32 raw bytes, 64 hex digits or 44 characters of base64
/// (surrounding whitespace ignored). A file readable by group or others is
/// refused, since whoever reads it can open every backup.
pub fn read_key_file(path: &Path) -> Result<SecretKey> {
    read_key_file_with(path, 0o077)
}

/// The most a key file holds: 32 raw bytes, or their hex or base64 with
/// some whitespace. Anything longer is not a key, and is not read whole.
const KEY_FILE_MAX: u64 = 4096;

/// Reads a key file: a regular file (not a symlink or FIFO) owned by this
/// user or root, whose mode has none of the `refused` bits.
fn read_key_file_with(path: &Path, refused: u32) -> Result<SecretKey> {
    let key_err = |message: String| Error::KeyFile {
        file: path.to_path_buf(),
        message,
    };
    let hint = if refused == 0o077 {
        format!(
            "the key file must be 0600 or 0400 (chmod 600 {})",
            path.display()
        )
    } else {
        "the key file must be readable by its owner (and group) only".to_string()
    };
    let mut file = crate::files::open_private(path, refused, &hint).map_err(key_err)?;
    let raw = Zeroizing::new(
        crate::files::read_capped(&mut file, KEY_FILE_MAX)
            .map_err(|e| key_err(e.to_string()))?
            .ok_or_else(|| key_err(format!("larger than {KEY_FILE_MAX} bytes: not a key")))?,
    );
    parse_key_bytes(&raw).ok_or_else(|| {
        key_err("not a key: expected 32 raw bytes, 64 hex digits or 32 bytes in base64".into())
    })
}

fn parse_key_bytes(raw: &[u8]) -> Option<SecretKey> {
    use base64::Engine;
    let mut key = [0u8; 32];
    if raw.len() == 32 {
        key.copy_from_slice(raw);
        return Some(SecretKey::from_bytes(key));
    }
    let text = raw.trim_ascii();
    if text.len() == 64 && hex::decode_to_slice(text, &mut key).is_ok() {
        return Some(SecretKey::from_bytes(key));
    }
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?,
    );
    if decoded.len() == 32 {
        key.copy_from_slice(&decoded);
        return Some(SecretKey::from_bytes(key));
    }
    key.zeroize();
    None
}

/// Writes a new random key file as 64 hex digits, mode 0600. Never overwrites.
pub fn generate_key_file(path: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = SecretKey::random();
    let mut text = Zeroizing::new(hex::encode(key.as_bytes()));
    text.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::KeyFile {
            file: path.to_path_buf(),
            message: if e.kind() == std::io::ErrorKind::AlreadyExists {
                "already exists; refusing to overwrite a key".into()
            } else {
                e.to_string()
            },
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_formats() {
        let raw = [7u8; 32];
        assert_eq!(parse_key_bytes(&raw).unwrap().as_bytes(), &raw);
        let hex_text = format!("{}\n", hex::encode(raw));
        assert_eq!(
            parse_key_bytes(hex_text.as_bytes()).unwrap().as_bytes(),
            &raw
        );
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        assert_eq!(parse_key_bytes(b64.as_bytes()).unwrap().as_bytes(), &raw);
        assert!(parse_key_bytes(b"short").is_none());
    }

    #[test]
    fn key_file_permissions_enforced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        generate_key_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(read_key_file(&path).is_ok());
        assert!(generate_key_file(&path).is_err(), "must not overwrite");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_key_file(&path).unwrap_err().to_string();
        assert!(err.contains("0644") && err.contains("key"), "{err}");
    }
}
