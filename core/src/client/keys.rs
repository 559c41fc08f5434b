//! What a session holds to seal and open values: format 1's workspace key, or format 2's
//! keyring with the binding keys granted to this access key.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::crypto::keyring::{open_binding_from, DataKey};
use crate::crypto::wrap::RecipientSecret;
use crate::crypto::{
    AccessGrants, AccessKey, Envelope, Keyring, Plaintext, SealedSecret, WorkspaceKey,
};
use crate::error::{Error, ErrorCode};
use crate::validate::SecretKey;

/// Data keys opened this session, by their wrap: a repeated fetch of an unchanged value
/// costs no key agreement. Bounded; cleared when full.
const DATA_KEY_CACHE: usize = 4096;

pub(crate) enum SessionKeys {
    /// Format 1: one workspace key opens every value.
    Workspace(WorkspaceKey),
    /// Format 2: the keyring and this key's binding keys.
    Ring(Ring),
}

pub(crate) struct Ring {
    pub(crate) keyring: Keyring,
    /// (generation, binding id, its private key) granted to this access key.
    held: Vec<(u32, String, RecipientSecret)>,
    cache: Mutex<HashMap<String, DataKey>>,
}

impl SessionKeys {
    /// Seals a value of `key` for the readers of a secret with this scope and these envs.
    pub(crate) fn seal(
        &self,
        workspace: &str,
        key: &SecretKey,
        value: &Plaintext,
        scope: &[String],
        envs: &[String],
    ) -> Result<String, Error> {
        match self {
            SessionKeys::Workspace(wk) => Ok(Envelope::seal(wk, workspace, key, value).to_string()),
            SessionKeys::Ring(ring) => {
                let g = ring.keyring.current();
                let (sealed, _) = SealedSecret::seal(
                    workspace,
                    key,
                    g.generation,
                    value,
                    g.audience(scope, envs),
                )?;
                Ok(sealed.to_string())
            }
        }
    }

    /// Opens a stored value of `key`.
    pub(crate) fn open(
        &self,
        workspace: &str,
        key: &SecretKey,
        text: &str,
    ) -> Result<Plaintext, Error> {
        match self {
            SessionKeys::Workspace(wk) => Envelope::parse(text)
                .ok_or_else(|| malformed(key))?
                .open(wk, workspace, key),
            SessionKeys::Ring(ring) => {
                let sealed = SealedSecret::parse(text).ok_or_else(|| malformed(key))?;
                let dk = ring.data_key(workspace, key, &sealed)?;
                sealed.open_value(workspace, key, &dk)
            }
        }
    }
}

fn malformed(key: &SecretKey) -> Error {
    Error::new(
        ErrorCode::Integrity,
        format!("Secret '{key}' has a malformed ciphertext"),
    )
}

impl Ring {
    /// Opens this access key's grants with the pair its unwrap key derives.
    pub(crate) fn open(
        keyring: Keyring,
        grants: &str,
        workspace: &str,
        ak: &AccessKey,
    ) -> Result<Ring, Error> {
        let grants = AccessGrants::parse(grants).ok_or_else(|| {
            Error::new(
                ErrorCode::Protocol,
                "the server sent malformed access grants",
            )
        })?;
        let mine = ak.recipient();
        if grants.public_key != mine.public().to_string() {
            return Err(Error::new(
                ErrorCode::Integrity,
                "the server holds another public key for this access key",
            ));
        }
        let held = grants.open(workspace, ak.id(), &mine)?;
        Ok(Ring {
            keyring,
            held,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The private key of binding `id` in `generation`: granted to this key, or opened from
    /// its wrap to a wider binding that is.
    pub(crate) fn binding_secret(
        &self,
        workspace: &str,
        generation: u32,
        id: &str,
    ) -> Result<RecipientSecret, Error> {
        for (g, b, secret) in &self.held {
            if *g == generation && b == id {
                return RecipientSecret::from_bytes(&secret.to_bytes()).ok_or_else(|| {
                    Error::new(ErrorCode::Integrity, "a held binding key is malformed")
                });
            }
        }
        let binding = self
            .keyring
            .generation(generation)
            .and_then(|g| g.binding(id))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::Protocol,
                    format!("binding {id} is not in the keyring"),
                )
            })?;
        for (g, b, secret) in &self.held {
            if *g == generation && binding.wraps.contains_key(b) {
                return open_binding_from(workspace, generation, binding, b, secret);
            }
        }
        Err(Error::new(
            ErrorCode::PermissionDenied,
            format!("this access key cannot grant binding {id}: it is not within this key's own binding (an unbound admin key can)"),
        ))
    }

    /// The data key of a sealed value, from the cache or opened with a held binding key.
    pub(crate) fn data_key(
        &self,
        workspace: &str,
        key: &SecretKey,
        sealed: &SealedSecret,
    ) -> Result<DataKey, Error> {
        for (g, b, secret) in &self.held {
            if *g != sealed.generation {
                continue;
            }
            let Some((_, wrap)) = sealed.wraps.iter().find(|(id, _)| id == b) else {
                continue;
            };
            let cache_key = wrap.raw_b64();
            if let Some(dk) = self
                .cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&cache_key)
            {
                return Ok(dk.clone());
            }
            let dk = sealed.open_key(workspace, key, b, secret)?;
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= DATA_KEY_CACHE {
                cache.clear();
            }
            cache.insert(cache_key, dk.clone());
            return Ok(dk);
        }
        Err(Error::new(
            ErrorCode::Integrity,
            format!("Secret '{key}' is not encrypted for this access key's binding"),
        ))
    }
}
