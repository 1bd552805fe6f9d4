//! Keys and the one place that seals and opens.
//!
//! Every encrypted thing gallra writes is AES-256-GCM with a random 96-bit
//! nonce, laid out as `nonce || ciphertext || tag`, and authenticated together
//! with associated data that binds it to its kind and name, so that an object
//! cannot be swapped for another. Key material lives in [`SecretKey`], which
//! is zeroized on drop and never printed.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed message adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// 32 bytes of key material, zeroized on drop, never shown.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub fn random() -> Self {
        SecretKey(random_bytes())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// HKDF-SHA256 expansion of this key into a subkey for one purpose.
    pub fn derive(&self, salt: &[u8], info: &[u8]) -> SecretKey {
        let hk = Hkdf::<Sha256>::new(Some(salt), &self.0);
        let mut out = [0u8; 32];
        hk.expand(info, &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        SecretKey(out)
    }

    pub fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.0).expect("AES-256 key is 32 bytes")
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::rng().fill_bytes(&mut out);
    out
}

/// The authentication of a sealed message failed: wrong key, wrong associated
/// data (a swapped object) or altered bytes. Callers add the object's name.
#[derive(Debug, PartialEq, Eq)]
pub struct AuthError;

/// Appends `nonce || AES-256-GCM(plaintext) || tag` to `out`.
pub fn seal_into(cipher: &Aes256Gcm, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
    let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
    let start = out.len();
    out.reserve(SEAL_OVERHEAD + plaintext.len());
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(plaintext);
    seal_tail_in_place(cipher, aad, out, start);
}

/// Encrypts in place the bytes of `buf` after `buf[start..start + 12]`, which
/// must already hold a fresh nonce, and appends the tag.
fn seal_tail_in_place(cipher: &Aes256Gcm, aad: &[u8], buf: &mut Vec<u8>, start: usize) {
    let (head, body) = buf[start..].split_at_mut(NONCE_LEN);
    let nonce = Nonce::try_from(&head[..]).expect("nonce is 12 bytes");
    let tag = cipher
        .encrypt_inout_detached(&nonce, aad, body.into())
        .expect("AES-GCM accepts messages below 64 GiB");
    buf.extend_from_slice(tag.as_slice());
}

/// Seals a message whose plaintext the caller has already placed in `buf`
/// after 12 reserved bytes at `start`: the nonce is written there. This spares
/// a copy of the plaintext on the backup hot path.
pub fn seal_reserved(cipher: &Aes256Gcm, aad: &[u8], buf: &mut Vec<u8>, start: usize) {
    let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
    buf[start..start + NONCE_LEN].copy_from_slice(&nonce_bytes);
    seal_tail_in_place(cipher, aad, buf, start);
}

/// Opens `nonce || ciphertext || tag`, returning the plaintext.
pub fn open(cipher: &Aes256Gcm, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(AuthError);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let nonce = Nonce::try_from(nonce).map_err(|_| AuthError)?;
    let tag = Tag::try_from(tag).map_err(|_| AuthError)?;
    let mut plaintext = ciphertext.to_vec();
    cipher
        .decrypt_inout_detached(&nonce, aad, plaintext.as_mut_slice().into(), &tag)
        .map_err(|_| AuthError)?;
    Ok(plaintext)
}

/// HMAC-SHA256 under a tenant's chunk-id key: the id of a blob.
pub fn keyed_id(mac_key: &SecretKey, data: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(mac_key.as_bytes()).expect("any key size");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Argon2id cost parameters, stored in each passphrase key slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl Default for Argon2Params {
    /// 64 MiB, 3 passes, 1 lane: OWASP's second recommended setting, about a
    /// quarter of a second on a server core.
    fn default() -> Self {
        Argon2Params {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl Argon2Params {
    /// At most 4 GiB, 64 passes and 16 lanes: far above any sane setting,
    /// low enough that a forged slot cannot stall an agent indefinitely.
    pub fn is_reasonable(&self) -> bool {
        (8..=4 << 20).contains(&self.m_cost_kib)
            && (1..=64).contains(&self.t_cost)
            && (1..=16).contains(&self.p_cost)
    }
}

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
                Ok(SecretKey(out))
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
        return Some(SecretKey(key));
    }
    let text = raw.trim_ascii();
    if text.len() == 64 && hex::decode_to_slice(text, &mut key).is_ok() {
        return Some(SecretKey(key));
    }
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?,
    );
    if decoded.len() == 32 {
        key.copy_from_slice(&decoded);
        return Some(SecretKey(key));
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
    fn seal_open_round_trip_and_aad_binding() {
        let key = SecretKey::random();
        let cipher = key.cipher();
        let mut sealed = Vec::new();
        seal_into(&cipher, b"kind=1 id=abc", b"hello", &mut sealed);
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(open(&cipher, b"kind=1 id=abc", &sealed).unwrap(), b"hello");
        assert_eq!(open(&cipher, b"kind=1 id=abd", &sealed), Err(AuthError));
        let other = SecretKey::random().cipher();
        assert_eq!(open(&other, b"kind=1 id=abc", &sealed), Err(AuthError));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(open(&cipher, b"kind=1 id=abc", &bad), Err(AuthError));
        }
    }

    #[test]
    fn nonces_differ() {
        let cipher = SecretKey::random().cipher();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        seal_into(&cipher, b"", b"same", &mut a);
        seal_into(&cipher, b"", b"same", &mut b);
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
    }

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

    #[test]
    fn debug_never_shows_key() {
        let key = SecretKey::from_bytes([0xab; 32]);
        assert_eq!(format!("{key:?}"), "SecretKey(..)");
    }
}
