//! The cache's optional snapshot on disk ([`CacheOptions::snapshot`](super::CacheOptions)),
//! for starting while the server is unreachable. It holds only what the server holds: the
//! session answer (the key's wrapped grants, the public keyring) and, per cached answer,
//! the metadata and the *ciphertext*, never a value in clear. Each part is sealed
//! (XChaCha20-Poly1305) under a key derived from the access key's unwrap key, with the
//! access key id and the question it answers (secret key, version, resolve context) bound
//! in: without the access key it is useless, an altered byte is an integrity error, and an
//! entry can never answer another question.
//!
//! Written after each answer that changes it: a new file beside the old one, fsynced,
//! renamed over it (atomic), the directory fsynced; mode 0600. A process killed mid-write
//! leaves the previous snapshot whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::cache::CacheKey;
use crate::crypto::AccessKey;
use crate::error::{Error, ErrorCode};
use crate::wire::{SecretRecord, SessionResponse};

/// One cached answer as kept on disk (sealed).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Kept {
    pub(crate) record: SecretRecord,
    /// The value as the server stores it (sealed for the key's readers).
    pub(crate) ciphertext: String,
    pub(crate) etag: Option<String>,
    /// When the server last confirmed it (Unix milliseconds).
    pub(crate) confirmed_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    key: String,
    version: Option<i64>,
    context: Option<(Option<String>, Option<String>)>,
    sealed: String,
}

#[derive(Serialize, Deserialize)]
struct File {
    format: u32,
    access_key_id: String,
    session: String,
    entries: Vec<FileEntry>,
}

/// The snapshot file and what it holds now.
pub(crate) struct Snapshot {
    path: PathBuf,
    key: AccessKey,
    /// Most answers kept (the cache's entry bound); the oldest confirmed go first.
    limit: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    session: Option<SessionResponse>,
    entries: BTreeMap<String, (CacheKey, Kept)>,
}

/// What a snapshot read at start holds.
pub(crate) struct Loaded {
    pub(crate) session: SessionResponse,
    pub(crate) entries: Vec<(CacheKey, Kept)>,
}

fn label(k: &CacheKey) -> String {
    serde_json::to_string(&(&k.key, k.version, &k.context)).unwrap_or_default()
}

fn aad(access_key_id: &str, what: &str) -> Vec<u8> {
    format!("ductape/snapshot/v1\0{access_key_id}\0{what}").into_bytes()
}

fn b64(raw: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

impl Snapshot {
    pub(crate) fn new(path: PathBuf, key: AccessKey, limit: usize) -> Self {
        Snapshot {
            path,
            key,
            limit: limit.max(1),
            state: Mutex::default(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn tampered(&self) -> Error {
        Error::new(
            ErrorCode::Integrity,
            format!(
                "the snapshot at {} failed its integrity check (altered, or written for another access key): delete it, or start with the server reachable",
                self.path.display()
            ),
        )
    }

    /// Reads and opens the snapshot: `None` if there is none; an integrity error if any
    /// part of it does not open for this key and its question.
    pub(crate) fn load(&self) -> Result<Option<Loaded>, Error> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::new(
                    ErrorCode::Config,
                    format!("cannot read the snapshot at {}: {e}", self.path.display()),
                ))
            }
        };
        let file: File = serde_json::from_slice(&text).map_err(|_| self.tampered())?;
        let id = self.key.id();
        if file.format != 1 || file.access_key_id != id {
            return Err(self.tampered());
        }
        let open = |what: &str, sealed: &str| {
            unb64(sealed)
                .and_then(|raw| self.key.open_local(&aad(id, what), &raw))
                .ok_or_else(|| self.tampered())
        };
        let session: SessionResponse = serde_json::from_slice(&open("session", &file.session)?)
            .map_err(|_| self.tampered())?;
        let mut entries = Vec::with_capacity(file.entries.len());
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for e in file.entries {
            let k = CacheKey {
                key: e.key,
                version: e.version,
                context: e.context,
            };
            let kept: Kept = serde_json::from_slice(&open(&label(&k), &e.sealed)?)
                .map_err(|_| self.tampered())?;
            if kept.record.key != k.key {
                return Err(self.tampered());
            }
            state.entries.insert(label(&k), (k.clone(), kept.clone()));
            entries.push((k, kept));
        }
        state.session = Some(session.clone());
        Ok(Some(Loaded { session, entries }))
    }

    pub(crate) fn set_session(&self, session: &SessionResponse) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.session = Some(session.clone());
        self.write(&state);
    }

    /// New answers in and refused ones out, written once (a batch read answers many).
    pub(crate) fn apply(&self, puts: Vec<(CacheKey, Kept)>, forgets: &[CacheKey]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = !puts.is_empty();
        for (k, kept) in puts {
            state.entries.insert(label(&k), (k, kept));
        }
        for k in forgets {
            changed |= state.entries.remove(&label(k)).is_some();
        }
        while state.entries.len() > self.limit {
            let oldest = state
                .entries
                .iter()
                .min_by_key(|(_, (_, kept))| kept.confirmed_ms)
                .map(|(l, _)| l.clone());
            match oldest {
                Some(l) => state.entries.remove(&l),
                None => break,
            };
        }
        if changed {
            self.write(&state);
        }
    }

    /// Drops every answer about the secret `key`.
    pub(crate) fn forget_secret(&self, key: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let before = state.entries.len();
        state.entries.retain(|_, (k, _)| k.key != key);
        if state.entries.len() != before {
            self.write(&state);
        }
    }

    pub(crate) fn clear(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.entries.clear();
        self.write(&state);
    }

    /// Writes the snapshot (nothing before a session is known). A failure is logged: the
    /// snapshot is a fallback, never a reason for a read to fail.
    fn write(&self, state: &State) {
        let Some(session) = &state.session else {
            return;
        };
        let id = self.key.id();
        let seal = |what: &str, bytes: Vec<u8>| b64(&self.key.seal_local(&aad(id, what), &bytes));
        let file = File {
            format: 1,
            access_key_id: id.to_owned(),
            session: seal("session", serde_json::to_vec(session).unwrap_or_default()),
            entries: state
                .entries
                .values()
                .map(|(k, kept)| FileEntry {
                    key: k.key.clone(),
                    version: k.version,
                    context: k.context.clone(),
                    sealed: seal(&label(k), serde_json::to_vec(kept).unwrap_or_default()),
                })
                .collect(),
        };
        if let Err(e) =
            super::replace_private_file(&self.path, &serde_json::to_vec(&file).unwrap_or_default())
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the snapshot");
        }
    }
}
