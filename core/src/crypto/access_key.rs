use std::fmt;
use std::str::FromStr;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{b64, hash_secret, unb64};
use crate::error::{Error, ErrorCode};
use crate::ids::random_bytes;

/// The prefix of every access key, so secret scanners can recognise a leaked one.
pub const ACCESS_KEY_PREFIX: &str = "dtpk_";

/// A parsed access key: `dtpk_<id>.<secret>.<unwrap key>`.
///
/// - `id` (16 hex): public, names the key in logs and the audit trail;
/// - `secret` (32 random bytes): proves possession; the server keeps only its SHA-256;
/// - `unwrap key` (32 random bytes): never leaves the client; it opens this key's copy of
///   the workspace key.
///
/// `Debug` shows the id only.
///
/// ```
/// use ductape::AccessKey;
/// let k = AccessKey::generate();
/// let parsed: AccessKey = k.expose().parse().unwrap();
/// assert_eq!(parsed.id(), k.id());
/// assert!(!format!("{parsed:?}").contains(&k.expose()[20..]));
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AccessKey {
    #[zeroize(skip)]
    id: String,
    secret: String,
    unwrap: [u8; 32],
}

impl AccessKey {
    /// A new random access key.
    pub fn generate() -> Self {
        AccessKey {
            id: hex::encode(random_bytes::<8>()),
            secret: b64(&random_bytes::<32>()),
            unwrap: random_bytes(),
        }
    }

    /// The public id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `Authorization: Bearer` credential: `<id>.<secret>` (never the unwrap key).
    pub fn bearer(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{}.{}", self.id, self.secret))
    }

    /// What the server stores to check the secret.
    pub fn secret_hash(&self) -> String {
        hash_secret(&self.secret)
    }

    /// The secret part, sent once when the key is registered with the server.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Format 1's unwrap key (the client's use only).
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) fn unwrap_bytes(&self) -> &[u8; 32] {
        &self.unwrap
    }

    /// This key's X25519 pair (format 2), derived from its unwrap key: grants are wrapped
    /// to its public half, which the server holds; the private half exists only here.
    pub fn recipient(&self) -> super::wrap::RecipientSecret {
        super::wrap::RecipientSecret::derive(&self.unwrap)
    }

    /// Seals bytes kept on this machine for this key only (the client's snapshot): under a
    /// key derived (HKDF-SHA256) from the unwrap key, which never leaves the client, with
    /// `aad` bound in. Useless without the access key.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) fn seal_local(&self, aad: &[u8], msg: &[u8]) -> Vec<u8> {
        super::envelope::seal_joined(&self.local_key(), aad, msg)
    }

    /// Opens what [`AccessKey::seal_local`] sealed with the same `aad`; `None` if it was
    /// altered, sealed for another key, or bound to other data.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) fn open_local(&self, aad: &[u8], raw: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (nonce, sealed) = super::envelope::split_joined(raw)?;
        super::envelope::open_raw(&self.local_key(), aad, nonce, sealed)
    }

    fn local_key(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(None, &self.unwrap)
            .expand(b"ductape/local-snapshot/v1", out.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }

    /// The whole key as text, to show the user once.
    pub fn expose(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{ACCESS_KEY_PREFIX}{}.{}.{}",
            self.id,
            self.secret,
            b64(&self.unwrap)
        ))
    }
}

impl FromStr for AccessKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        // The message never repeats the input: it may be a real key with a typo.
        let bad = || {
            Error::new(
                ErrorCode::Config,
                "malformed access key: expected 'dtpk_<id>.<secret>.<unwrap key>' as printed by `ductape init` or `ductape access-keys create`",
            )
        };
        let rest = s.trim().strip_prefix(ACCESS_KEY_PREFIX).ok_or_else(bad)?;
        let mut parts = rest.split('.');
        let (Some(id), Some(secret), Some(unwrap), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let id_ok = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
        let secret_ok = unb64(secret).is_some_and(|b| b.len() == 32);
        let unwrap = Zeroizing::new(unb64(unwrap).ok_or_else(bad)?);
        if !id_ok || !secret_ok || unwrap.len() != 32 {
            return Err(bad());
        }
        let mut arr = [0u8; 32];
        arr.copy_from_slice(&unwrap);
        Ok(AccessKey {
            id: id.to_ascii_lowercase(),
            secret: secret.to_owned(),
            unwrap: arr,
        })
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Splits a bearer credential `<id>.<secret>` (server side). `None` when malformed.
pub fn split_bearer(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    (id.len() == 16 && !secret.is_empty() && secret.len() <= 64).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_debug_hides_the_secret_parts() {
        let k = AccessKey::generate();
        let text = k.expose();
        assert!(text.starts_with("dtpk_"));
        let back: AccessKey = text.parse().unwrap();
        assert_eq!(back.id(), k.id());
        assert_eq!(back.secret_hash(), k.secret_hash());
        assert_eq!(back.unwrap_bytes(), k.unwrap_bytes());
        let dbg = format!("{back:?}");
        assert!(!dbg.contains(k.secret()));
        assert!(dbg.contains(k.id()));
    }

    #[test]
    fn malformed_keys_are_config_errors_that_do_not_echo_the_input() {
        let k = AccessKey::generate();
        let text = k.expose();
        let cut = &text[..text.len() - 2];
        for bad in ["", "nope", "dtpk_", cut, &format!("{}.x", text.as_str())] {
            let e = bad.parse::<AccessKey>().unwrap_err();
            assert_eq!(e.code(), ErrorCode::Config);
            assert!(!e.message().contains(k.secret()));
        }
    }

    #[test]
    fn bearer_tokens_split_into_id_and_secret() {
        let k = AccessKey::generate();
        let bearer = k.bearer();
        assert_eq!(split_bearer(&bearer), Some((k.id(), k.secret())));
        assert_eq!(split_bearer("short.x"), None);
    }
}
