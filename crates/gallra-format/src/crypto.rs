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
use zeroize::{Zeroize, ZeroizeOnDrop};

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
    fn debug_never_shows_key() {
        let key = SecretKey::from_bytes([0xab; 32]);
        assert_eq!(format!("{key:?}"), "SecretKey(..)");
    }
}
