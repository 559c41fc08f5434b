//! Keys wrapped to a public key: the building block of cryptographic least privilege (see
//! "Cryptographic least privilege" in docs/architecture.md), used by format 2's values and
//! grants (`keyring.rs`).
//!
//! A 32-byte key is sealed to a recipient's X25519 public key with HPKE (RFC 9180) in base
//! mode — DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305 — through the `hpke`
//! crate. Every wrap is bound to what it is for ([`WrapContext`]: workspace, key generation,
//! subject, recipient): a wrap copied to another context does not open. An access key's
//! X25519 pair is derived from its unwrap key (RFC 9180 `DeriveKeyPair`), so the private half
//! lives only in the access-key string and an admin can grant to the public half.
//!
//! ```
//! use ductape::crypto::wrap::{RecipientSecret, WrapContext, WrappedTo};
//! let recipient = RecipientSecret::derive(&[7u8; 32]);
//! let ctx = WrapContext { workspace: "ws_1", generation: 1, subject: "binding:web/prd", recipient: "k1" };
//! let sealed = WrappedTo::seal(&recipient.public(), &[42u8; 32], &ctx);
//! assert_eq!(*sealed.open(&recipient, &ctx).unwrap(), [42u8; 32]);
//! ```

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use std::fmt;
use zeroize::Zeroizing;

use super::{b64, unb64};
use crate::error::{Error, ErrorCode};

type Suite = X25519HkdfSha256;

/// Bytes of an X25519 public key, an encapsulated key, and a ChaCha20-Poly1305 tag.
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// What a wrap is for; all of it is bound into the wrap (HPKE `info`).
#[derive(Clone, Copy, Debug)]
pub struct WrapContext<'a> {
    pub workspace: &'a str,
    pub generation: u32,
    /// What the wrapped key opens, e.g. `secret:STRIPE_KEY` or `binding:web/prd`.
    pub subject: &'a str,
    /// Who may open it: an access-key id or a binding id.
    pub recipient: &'a str,
}

impl WrapContext<'_> {
    /// Length-prefixed fields, so that no two contexts encode alike.
    fn info(&self) -> Vec<u8> {
        let mut out = b"ductape wrap v2".to_vec();
        for field in [
            self.workspace.as_bytes(),
            &self.generation.to_be_bytes(),
            self.subject.as_bytes(),
            self.recipient.as_bytes(),
        ] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    }
}

/// A recipient's public key (what the server may store and anyone may wrap to).
#[derive(Clone, PartialEq, Eq)]
pub struct RecipientKey(<Suite as Kem>::PublicKey);

impl RecipientKey {
    /// Reads the base64url form.
    pub fn parse(s: &str) -> Option<Self> {
        let raw = unb64(s)?;
        <Suite as Kem>::PublicKey::from_bytes(&raw)
            .ok()
            .map(RecipientKey)
    }
}

impl fmt::Display for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&b64(&self.0.to_bytes()))
    }
}

impl fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecipientKey({self})")
    }
}

/// A recipient's private key. `Debug` hides it; the `hpke` type zeroizes on drop.
pub struct RecipientSecret {
    secret: <Suite as Kem>::PrivateKey,
    public: <Suite as Kem>::PublicKey,
}

impl RecipientSecret {
    /// The pair derived from key material (an access key's unwrap key): the same input
    /// always gives the same pair.
    pub fn derive(ikm: &[u8; 32]) -> Self {
        let (secret, public) = Suite::derive_keypair(ikm);
        RecipientSecret { secret, public }
    }

    /// A fresh random pair (a binding's or a generation's key).
    pub fn generate() -> Self {
        let (secret, public) = Suite::gen_keypair(&mut rand_core::UnwrapErr(rand_core::OsRng));
        RecipientSecret { secret, public }
    }

    pub fn public(&self) -> RecipientKey {
        RecipientKey(self.public.clone())
    }

    /// The private key's bytes, to be wrapped in turn (a binding key wrapped to access keys).
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&self.secret.to_bytes());
        out
    }

    /// The symmetric key of shared wraps to this pair, derived from its private key.
    fn shared_key(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(None, self.to_bytes().as_slice())
            .expand(b"ductape shared wrap v2", out.as_mut_slice())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }

    /// The pair whose private key is `bytes` (as from [`RecipientSecret::to_bytes`]).
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        let secret = <Suite as Kem>::PrivateKey::from_bytes(bytes).ok()?;
        let public = Suite::sk_to_pk(&secret);
        Some(RecipientSecret { secret, public })
    }
}

impl fmt::Debug for RecipientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RecipientSecret(public: {}, secret: <redacted>)",
            self.public()
        )
    }
}

/// A 32-byte key sealed to one recipient: `dk2.<base64url(raw)>`, one of two kinds told
/// apart by length:
///
/// - **to the public key** (80 bytes: `enc ‖ ciphertext ‖ tag`): HPKE, what anyone can make;
/// - **shared** (72 bytes: `nonce ‖ ciphertext ‖ tag`): XChaCha20-Poly1305 under a key
///   derived (HKDF-SHA256) from the recipient's *private* key, what a writer already holding
///   that key makes instead (a microsecond, not an X25519 key agreement). Exactly the holders
///   of the private key open either kind; the context is the associated data of both.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedTo {
    raw: Vec<u8>,
}

/// Bytes of a shared wrap: XChaCha20 nonce, the 32-byte key, the tag.
const SHARED_LEN: usize = 24 + 32 + TAG_LEN;
/// Bytes of a wrap to a public key: encapsulated key, the 32-byte key, the tag.
const PUBLIC_LEN: usize = KEY_LEN + 32 + TAG_LEN;

impl WrappedTo {
    pub const PREFIX: &'static str = "dk2.";

    /// Seals `key` to `to` for `ctx`.
    pub fn seal(to: &RecipientKey, key: &[u8; 32], ctx: &WrapContext<'_>) -> Self {
        let mut buf = key.to_vec();
        let (enc, tag) =
            hpke::single_shot_seal_in_place_detached::<ChaCha20Poly1305, HkdfSha256, Suite, _>(
                &OpModeS::Base,
                &to.0,
                &ctx.info(),
                &mut buf,
                &[],
                &mut rand_core::UnwrapErr(rand_core::OsRng),
            )
            // Only a low-order public key fails to encapsulate; RecipientKey::parse rejects none,
            // but such a key came from somewhere broken: a wrap to it would never open anyway.
            .expect("HPKE encapsulation to a valid X25519 public key");
        let mut raw = enc.to_bytes().to_vec();
        raw.extend_from_slice(&buf);
        raw.extend_from_slice(&tag.to_bytes());
        WrappedTo { raw }
    }

    /// Seals `key` for the holders of `to`'s private key, which the caller holds too: a
    /// shared wrap (see the type).
    pub fn seal_shared(to: &RecipientSecret, key: &[u8; 32], ctx: &WrapContext<'_>) -> Self {
        WrappedTo {
            raw: super::envelope::seal_joined(&to.shared_key(), &ctx.info(), key.as_slice()),
        }
    }

    /// Opens the wrap with the recipient's private key, for the same context.
    pub fn open(
        &self,
        with: &RecipientSecret,
        ctx: &WrapContext<'_>,
    ) -> Result<Zeroizing<[u8; 32]>, Error> {
        let refused = || {
            Error::new(
                ErrorCode::Integrity,
                format!(
                    "a key wrapped for '{}' does not open with this key",
                    ctx.subject
                ),
            )
        };
        if self.raw.len() == SHARED_LEN {
            return super::envelope::open_joined_key(&with.shared_key(), &ctx.info(), &self.raw)
                .ok_or_else(refused);
        }
        if self.raw.len() != PUBLIC_LEN {
            return Err(refused());
        }
        let (enc, rest) = self.raw.split_at(KEY_LEN);
        let (ct, tag) = rest.split_at(32);
        let enc = <Suite as Kem>::EncappedKey::from_bytes(enc).map_err(|_| refused())?;
        let tag =
            hpke::aead::AeadTag::<ChaCha20Poly1305>::from_bytes(tag).map_err(|_| refused())?;
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(ct);
        hpke::single_shot_open_in_place_detached::<ChaCha20Poly1305, HkdfSha256, Suite>(
            &OpModeR::Base,
            &with.secret,
            &enc,
            &ctx.info(),
            out.as_mut_slice(),
            &[],
            &tag,
        )
        .map_err(|_| refused())?;
        Ok(out)
    }

    /// Reads the text form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::from_raw_b64(s.strip_prefix(Self::PREFIX)?)
    }

    /// Reads the bare base64url form (inside a larger self-describing text).
    pub fn from_raw_b64(s: &str) -> Option<Self> {
        let raw = unb64(s)?;
        (raw.len() == PUBLIC_LEN || raw.len() == SHARED_LEN).then_some(WrappedTo { raw })
    }

    /// The bare base64url form, without the prefix.
    pub fn raw_b64(&self) -> String {
        b64(&self.raw)
    }
}

impl fmt::Display for WrappedTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.raw_b64())
    }
}

impl fmt::Debug for WrappedTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedTo({} bytes)", self.raw.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(subject: &str) -> WrapContext<'_> {
        WrapContext {
            workspace: "ws_1",
            generation: 1,
            subject,
            recipient: "k1",
        }
    }

    #[test]
    fn a_shared_wrap_opens_only_with_the_private_key_and_its_context() {
        let alice = RecipientSecret::derive(&[1; 32]);
        let bob = RecipientSecret::derive(&[2; 32]);
        let key = [9u8; 32];
        let wrap = WrappedTo::seal_shared(&alice, &key, &ctx("secret:A"));
        let text = wrap.to_string();
        let back = WrappedTo::parse(&text).unwrap();
        assert_eq!(*back.open(&alice, &ctx("secret:A")).unwrap(), key);
        assert!(back.open(&bob, &ctx("secret:A")).is_err(), "another key");
        assert!(
            back.open(&alice, &ctx("secret:B")).is_err(),
            "another context"
        );
        // Not the public key: the symmetric key is derived from the private one.
        assert!(!text.contains(&alice.public().to_string()));
        let mut raw = unb64(text.strip_prefix(WrappedTo::PREFIX).unwrap()).unwrap();
        raw[30] ^= 1;
        let tampered = WrappedTo::from_raw_b64(&b64(&raw)).unwrap();
        assert!(tampered.open(&alice, &ctx("secret:A")).is_err(), "altered");
        assert!(
            WrappedTo::from_raw_b64(&b64(&raw[..70])).is_none(),
            "neither length"
        );
    }

    #[test]
    fn a_wrap_opens_only_with_its_recipient_and_its_context() {
        let alice = RecipientSecret::derive(&[1; 32]);
        let bob = RecipientSecret::derive(&[2; 32]);
        let key = [9u8; 32];
        let wrap = WrappedTo::seal(&alice.public(), &key, &ctx("secret:A"));
        assert_eq!(*wrap.open(&alice, &ctx("secret:A")).unwrap(), key);
        assert!(
            wrap.open(&bob, &ctx("secret:A")).is_err(),
            "another recipient"
        );
        assert!(
            wrap.open(&alice, &ctx("secret:B")).is_err(),
            "moved to another secret"
        );
        let other_generation = WrapContext {
            generation: 2,
            ..ctx("secret:A")
        };
        assert!(
            wrap.open(&alice, &other_generation).is_err(),
            "another generation"
        );
        let other_workspace = WrapContext {
            workspace: "ws_2",
            ..ctx("secret:A")
        };
        assert!(
            wrap.open(&alice, &other_workspace).is_err(),
            "another workspace"
        );
        // Text form round trip; any flipped byte refuses to open.
        let text = wrap.to_string();
        assert!(text.starts_with("dk2."));
        let back = WrappedTo::parse(&text).unwrap();
        assert_eq!(*back.open(&alice, &ctx("secret:A")).unwrap(), key);
        for i in 0..back.raw.len() {
            let mut bad = back.clone();
            bad.raw[i] ^= 1;
            assert!(bad.open(&alice, &ctx("secret:A")).is_err(), "byte {i}");
        }
        assert!(WrappedTo::parse("dk2.AAAA").is_none());
        assert!(WrappedTo::parse(&text.replace("dk2.", "dk1.")).is_none());
    }

    #[test]
    fn derived_pairs_are_stable_and_private_halves_never_show() {
        let a = RecipientSecret::derive(&[5; 32]);
        let again = RecipientSecret::derive(&[5; 32]);
        assert_eq!(a.public(), again.public());
        assert_ne!(a.public(), RecipientSecret::derive(&[6; 32]).public());
        assert_eq!(
            RecipientKey::parse(&a.public().to_string()),
            Some(a.public())
        );
        let restored = RecipientSecret::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(restored.public(), a.public());
        let shown = format!("{a:?}");
        assert!(shown.contains("redacted"));
        assert!(!shown.contains(&b64(&*a.to_bytes())));
        let fresh = RecipientSecret::generate();
        assert_ne!(fresh.public(), RecipientSecret::generate().public());
    }
}
