use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use std::fmt;
use zeroize::Zeroizing;

use super::{b64, unb64, KeyId, Plaintext, WorkspaceKey};
use crate::error::{Error, ErrorCode};
use crate::ids::random_bytes;
use crate::validate::SecretKey;

pub(crate) const NONCE_LEN: usize = 24;
pub(crate) const TAG_LEN: usize = 16;
/// Longest envelope string a server accepts: a 64 KiB value sealed, with room to spare.
pub const MAX_ENVELOPE_LEN: usize = 90_000;

/// An encrypted secret value: `dv1.xc20p.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`.
///
/// Self-describing (format version, algorithm, which workspace key) so the format can
/// evolve. XChaCha20-Poly1305 with a random 192-bit nonce per seal, so nonces never need
/// coordinating. The associated data binds the workspace id and the secret key: a
/// ciphertext moved to another secret, or another workspace, fails to open.
///
/// ```
/// use ductape::{Envelope, Plaintext, SecretKey, WorkspaceKey};
/// let wk = WorkspaceKey::generate();
/// let key = SecretKey::parse("API_KEY").unwrap();
/// let sealed = Envelope::seal(&wk, "ws_1", &key, &Plaintext::from("s3cret"));
/// let parsed = Envelope::parse(&sealed.to_string()).unwrap();
/// assert_eq!(parsed.open(&wk, "ws_1", &key).unwrap().expose(), "s3cret");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    key_id: KeyId,
    nonce: [u8; NONCE_LEN],
    sealed: Vec<u8>,
}

impl Envelope {
    pub const PREFIX: &'static str = "dv1.xc20p.";

    /// Encrypts `value` for the secret `key` of workspace `workspace_id`.
    pub fn seal(wk: &WorkspaceKey, workspace_id: &str, key: &SecretKey, value: &Plaintext) -> Self {
        let aad = value_aad(workspace_id, key.as_str(), wk.id());
        let (nonce, sealed) = seal_raw(wk.bytes(), &aad, value.expose().as_bytes());
        Envelope {
            key_id: wk.id().clone(),
            nonce,
            sealed,
        }
    }

    /// Decrypts, checking that this ciphertext belongs to `key` in `workspace_id`.
    pub fn open(
        &self,
        wk: &WorkspaceKey,
        workspace_id: &str,
        key: &SecretKey,
    ) -> Result<Plaintext, Error> {
        if &self.key_id != wk.id() {
            return Err(Error::new(
                ErrorCode::Integrity,
                format!(
                    "Secret '{key}' is encrypted under workspace key {} but this client holds {}",
                    self.key_id,
                    wk.id()
                ),
            ));
        }
        let aad = value_aad(workspace_id, key.as_str(), wk.id());
        let joined = [self.nonce.as_slice(), &self.sealed].concat();
        open_value(wk.bytes(), &aad, joined, key)
    }

    /// Parses the string form. `None` when it is not an envelope of a version we know.
    pub fn parse(s: &str) -> Option<Envelope> {
        if s.len() > MAX_ENVELOPE_LEN {
            return None;
        }
        let rest = s.strip_prefix(Self::PREFIX)?;
        let (kid, body) = rest.split_once('.')?;
        let key_id = KeyId::parse(kid)?;
        let raw = unb64(body)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&raw[..NONCE_LEN]);
        Some(Envelope {
            key_id,
            nonce,
            sealed: raw[NONCE_LEN..].to_vec(),
        })
    }

    /// Which workspace key sealed it.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }
}

impl fmt::Display for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(NONCE_LEN + self.sealed.len());
        raw.extend_from_slice(&self.nonce);
        raw.extend_from_slice(&self.sealed);
        write!(f, "{}{}.{}", Self::PREFIX, self.key_id, b64(&raw))
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("alg", &"xchacha20poly1305")
            .field("key_id", &self.key_id.as_str())
            .field("len", &self.sealed.len())
            .finish()
    }
}

/// The workspace key encrypted under one access key's unwrap key:
/// `dwk1.xc20p.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`. The server keeps one per
/// access key; only the holder of that access key can open it.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey(Envelope);

impl WrappedKey {
    pub const PREFIX: &'static str = "dwk1.xc20p.";

    /// Wraps `wk` for the access key `access_key_id` of `workspace_id`.
    pub fn wrap(
        wk: &WorkspaceKey,
        unwrap_key: &[u8; 32],
        workspace_id: &str,
        access_key_id: &str,
    ) -> Self {
        let aad = wrap_aad(workspace_id, access_key_id, wk.id());
        let (nonce, sealed) = seal_raw(unwrap_key, &aad, wk.bytes());
        WrappedKey(Envelope {
            key_id: wk.id().clone(),
            nonce,
            sealed,
        })
    }

    /// Unwraps the workspace key.
    pub fn unwrap_key(
        &self,
        unwrap_key: &[u8; 32],
        workspace_id: &str,
        access_key_id: &str,
    ) -> Result<WorkspaceKey, Error> {
        let e = &self.0;
        let aad = wrap_aad(workspace_id, access_key_id, &e.key_id);
        let bytes = open_raw(unwrap_key, &aad, &e.nonce, &e.sealed)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::Integrity,
                    "the workspace key sent by the server does not open with this access key",
                )
            })?;
        let mut arr = [0u8; 32];
        arr.copy_from_slice(&bytes);
        Ok(WorkspaceKey::from_parts(arr, e.key_id.clone()))
    }

    pub fn parse(s: &str) -> Option<WrappedKey> {
        let rest = s.strip_prefix(Self::PREFIX)?;
        Envelope::parse(&format!("{}{}", Envelope::PREFIX, rest)).map(WrappedKey)
    }

    pub fn key_id(&self) -> &KeyId {
        &self.0.key_id
    }
}

impl fmt::Display for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.to_string();
        write!(f, "{}{}", Self::PREFIX, &s[Envelope::PREFIX.len()..])
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WrappedKey")
            .field(&self.0.key_id.as_str())
            .finish()
    }
}

fn value_aad(workspace_id: &str, key: &str, kid: &KeyId) -> Vec<u8> {
    [
        b"ductape/value/v1".as_slice(),
        workspace_id.as_bytes(),
        key.as_bytes(),
        kid.as_str().as_bytes(),
    ]
    .join(&0u8)
}

fn wrap_aad(workspace_id: &str, access_key_id: &str, kid: &KeyId) -> Vec<u8> {
    [
        b"ductape/wrap/v1".as_slice(),
        workspace_id.as_bytes(),
        access_key_id.as_bytes(),
        kid.as_str().as_bytes(),
    ]
    .join(&0u8)
}

pub(crate) fn seal_raw(key: &[u8; 32], aad: &[u8], msg: &[u8]) -> ([u8; NONCE_LEN], Vec<u8>) {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce: [u8; NONCE_LEN] = random_bytes();
    let sealed = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg, aad })
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
    (nonce, sealed)
}

/// `nonce ‖ ciphertext ‖ tag` in one buffer: how format 2 stores what it seals.
pub(crate) fn seal_joined(key: &[u8; 32], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    let (nonce, sealed) = seal_raw(key, aad, msg);
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    out
}

/// The nonce and the sealed rest of [`seal_joined`]'s output; `None` when too short to
/// hold a nonce and a tag.
pub(crate) fn split_joined(raw: &[u8]) -> Option<(&[u8; NONCE_LEN], &[u8])> {
    if raw.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, sealed) = raw.split_at(NONCE_LEN);
    Some((nonce.try_into().ok()?, sealed))
}

/// Opens a 32-byte key sealed by [`seal_joined`]; `None` when it does not open or is not
/// 32 bytes.
pub(crate) fn open_joined_key(
    key: &[u8; 32],
    aad: &[u8],
    raw: &[u8],
) -> Option<Zeroizing<[u8; 32]>> {
    let (nonce, sealed) = split_joined(raw)?;
    let opened = open_raw(key, aad, nonce, sealed)?;
    let bytes: &[u8; 32] = opened.as_slice().try_into().ok()?;
    Some(Zeroizing::new(*bytes))
}

/// Opens a sealed value of `key` (both envelope formats): an integrity error names the
/// secret when the ciphertext does not open or is not UTF-8.
pub(crate) fn open_value(
    key_bytes: &[u8; 32],
    aad: &[u8],
    joined: Vec<u8>,
    key: &SecretKey,
) -> Result<Plaintext, Error> {
    // Opened in place: the buffer that held the nonce, ciphertext and tag ends up holding
    // the value, so no second copy of it is made (and it is zeroized if it is not one).
    let mut buf = Zeroizing::new(joined);
    if buf.len() < NONCE_LEN + TAG_LEN {
        return Err(crate::crypto::keyring::malformed_secret(key));
    }
    let (nonce, rest) = buf.split_at_mut(NONCE_LEN);
    let (text, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    XChaCha20Poly1305::new(key_bytes.into())
        .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, text, Tag::from_slice(tag))
        .map_err(|_| {
            Error::new(
                ErrorCode::Integrity,
                format!("Secret '{key}' failed its integrity check: the ciphertext was altered or does not belong to this secret"),
            )
        })?;
    let len = text.len();
    buf.copy_within(NONCE_LEN..NONCE_LEN + len, 0);
    buf.truncate(len);
    // The whole capacity is zeroized when the value is dropped (see `Plaintext`).
    let text = String::from_utf8(std::mem::take(&mut *buf)).map_err(|e| {
        drop(Zeroizing::new(e.into_bytes()));
        Error::new(
            ErrorCode::Integrity,
            format!("Secret '{key}' is not valid UTF-8"),
        )
    })?;
    Ok(Plaintext::new(text))
}

pub(crate) fn open_raw(
    key: &[u8; 32],
    aad: &[u8],
    nonce: &[u8; NONCE_LEN],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SecretKey {
        SecretKey::parse(s).unwrap()
    }

    #[test]
    fn a_value_opens_in_place_or_is_a_typed_integrity_error() {
        let (dk, aad, k) = ([7u8; 32], b"aad".as_slice(), key("K"));
        let open = |joined: Vec<u8>, aad: &[u8]| open_value(&dk, aad, joined, &k);
        let sealed = seal_joined(&dk, aad, "caf\u{e9} value".as_bytes());
        assert_eq!(
            open(sealed.clone(), aad).unwrap().expose(),
            "caf\u{e9} value"
        );
        // The empty value: a nonce and a tag and nothing between.
        let empty = seal_joined(&dk, aad, b"");
        assert_eq!(empty.len(), NONCE_LEN + TAG_LEN);
        assert_eq!(open(empty.clone(), aad).unwrap().expose(), "");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        let not_utf8 = seal_joined(&dk, aad, &[0xff, 0xfe]);
        for (joined, aad, why) in [
            (tampered, aad, "integrity check"),
            (sealed, b"other".as_slice(), "integrity check"),
            (empty[..NONCE_LEN + TAG_LEN - 1].to_vec(), aad, "malformed"),
            (not_utf8, aad, "not valid UTF-8"),
        ] {
            let err = open(joined, aad).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Integrity);
            assert!(
                err.message().contains(why) && err.message().contains("'K'"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_own_secret_and_workspace() {
        let wk = WorkspaceKey::generate();
        let e = Envelope::seal(&wk, "ws1", &key("A"), &Plaintext::from("canary-value"));
        let s = e.to_string();
        assert!(!s.contains("canary"));
        let parsed = Envelope::parse(&s).unwrap();
        assert_eq!(
            parsed.open(&wk, "ws1", &key("A")).unwrap().expose(),
            "canary-value"
        );
        let moved = parsed.open(&wk, "ws1", &key("B")).unwrap_err();
        assert_eq!(moved.code(), ErrorCode::Integrity);
        assert_eq!(
            parsed.open(&wk, "ws2", &key("A")).unwrap_err().code(),
            ErrorCode::Integrity
        );
    }

    #[test]
    fn a_flipped_bit_or_another_key_is_an_integrity_error() {
        let wk = WorkspaceKey::generate();
        let mut e = Envelope::seal(&wk, "ws", &key("A"), &Plaintext::from("v"));
        e.sealed[0] ^= 1;
        assert_eq!(
            e.open(&wk, "ws", &key("A")).unwrap_err().code(),
            ErrorCode::Integrity
        );
        let e = Envelope::seal(&wk, "ws", &key("A"), &Plaintext::from("v"));
        let other = WorkspaceKey::generate();
        assert_eq!(
            e.open(&other, "ws", &key("A")).unwrap_err().code(),
            ErrorCode::Integrity
        );
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let wk = WorkspaceKey::generate();
        let a = Envelope::seal(&wk, "ws", &key("A"), &Plaintext::from("same"));
        let b = Envelope::seal(&wk, "ws", &key("A"), &Plaintext::from("same"));
        assert_ne!(a.to_string(), b.to_string());
    }

    #[test]
    fn junk_does_not_parse_as_an_envelope() {
        for s in [
            "",
            "plaintext",
            "dv1.xc20p.",
            "dv1.xc20p.0123456789abcdef.",
            "dv2.xc20p.0123456789abcdef.AAAA",
            "dv1.xc20p.XYZ.AAAA",
        ] {
            assert!(Envelope::parse(s).is_none(), "{s}");
        }
    }

    #[test]
    fn wrapped_keys_open_only_with_their_access_key() {
        let wk = WorkspaceKey::generate();
        let unwrap: [u8; 32] = random_bytes();
        let w = WrappedKey::wrap(&wk, &unwrap, "ws", "ak1");
        let parsed = WrappedKey::parse(&w.to_string()).unwrap();
        let back = parsed.unwrap_key(&unwrap, "ws", "ak1").unwrap();
        assert_eq!(back.bytes(), wk.bytes());
        assert_eq!(back.id(), wk.id());
        assert!(parsed.unwrap_key(&unwrap, "ws", "ak2").is_err());
        assert!(parsed.unwrap_key(&random_bytes(), "ws", "ak1").is_err());
    }
}
