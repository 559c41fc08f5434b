use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::ids::random_bytes;

/// The 256-bit workspace key that encrypts every value of a workspace. Made by a client,
/// never sent in clear; zeroized on drop; redacted in `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct WorkspaceKey {
    bytes: [u8; 32],
    #[zeroize(skip)]
    id: KeyId,
}

impl WorkspaceKey {
    /// A fresh random key with a fresh id.
    pub fn generate() -> Self {
        WorkspaceKey {
            bytes: random_bytes(),
            id: KeyId::generate(),
        }
    }

    pub(crate) fn from_parts(bytes: [u8; 32], id: KeyId) -> Self {
        WorkspaceKey { bytes, id }
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The key's public id, written into every envelope it seals.
    pub fn id(&self) -> &KeyId {
        &self.id
    }
}

impl fmt::Debug for WorkspaceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkspaceKey")
            .field("id", &self.id.as_str())
            .field("bytes", &"[redacted]")
            .finish()
    }
}

/// A workspace key's public id: 16 lowercase hex characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn generate() -> Self {
        KeyId(hex::encode(random_bytes::<8>()))
    }

    pub fn parse(s: &str) -> Option<KeyId> {
        (s.len() == 16
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| KeyId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
