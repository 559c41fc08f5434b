//! Client-side cryptography: the workspace key, access keys, and the value envelope.
//!
//! The server never runs any of this on plaintext: it only checks that a ciphertext is
//! shaped like an [`Envelope`] for its workspace key.

mod access_key;
mod envelope;
pub mod keyring;
mod keys;
mod plaintext;
pub mod wrap;

pub use access_key::{split_bearer, AccessKey, ACCESS_KEY_PREFIX};
pub use envelope::{Envelope, WrappedKey, MAX_ENVELOPE_LEN};
pub use keyring::{AccessGrants, Keyring, SealedSecret, SealedView};
pub use keys::{KeyId, WorkspaceKey};
pub use plaintext::Plaintext;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn unb64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// SHA-256 of an access-key secret, hex: what the server stores instead of the secret.
pub fn hash_secret(secret: &str) -> String {
    sha256_hex(secret)
}

/// SHA-256 of a text, hex (also names the exact sealed value a wrap was made from).
pub fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Compares two hashes in constant time.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
