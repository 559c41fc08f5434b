//! What a session holds to seal and open values: format 1's workspace key, or format 2's
//! keyring with the binding keys granted to this access key.

use foldhash::{HashMap, HashMapExt};
use std::sync::{Arc, Mutex};

#[cfg(feature = "client")]
use crate::crypto::keyring::open_legacy;
use crate::crypto::keyring::{
    binding_id, malformed_secret, open_binding_from, open_upgrade_key, Binding, DataKey,
};
use crate::crypto::wrap::RecipientSecret;
use crate::crypto::WrappedKey;
use crate::crypto::{
    sha256_hex, AccessGrants, AccessKey, Envelope, KeyId, Keyring, Plaintext, SealedSecret,
    SealedView, WorkspaceKey,
};
use crate::error::{Error, ErrorCode};
use crate::validate::SecretKey;
use crate::wire::{AccessKeyInfo, AddWrap, PendingWraps, SessionResponse, WorkspaceInfo};

/// What `init()` learns: the workspace and what opens its values, unwrapped locally.
pub struct Session {
    pub(crate) workspace: WorkspaceInfo,
    pub(crate) access_key: AccessKeyInfo,
    pub(crate) keys: SessionKeys,
}

/// Refuses a session answer about another access key than the one that asked.
pub(crate) fn answered_for(info: &AccessKeyInfo, ak: &AccessKey) -> Result<(), Error> {
    if info.id != ak.id() {
        return Err(Error::new(
            ErrorCode::Protocol,
            "the server answered for another access key",
        ));
    }
    Ok(())
}

/// Format 1: the workspace key, unwrapped with the access key.
pub(crate) fn unwrap_workspace_key(
    text: &str,
    workspace: &WorkspaceInfo,
    ak: &AccessKey,
) -> Result<WorkspaceKey, Error> {
    let wrapped = WrappedKey::parse(text).ok_or_else(|| {
        Error::new(
            ErrorCode::Protocol,
            "the server sent a malformed wrapped workspace key",
        )
    })?;
    let key = wrapped.unwrap_key(ak.unwrap_bytes(), &workspace.workspace_id, ak.id())?;
    if key.id().as_str() != workspace.key_id {
        return Err(Error::new(
            ErrorCode::Integrity,
            "the workspace key does not match the workspace's key id",
        ));
    }
    Ok(key)
}

impl Session {
    /// Opens the keys of a `GET /v1/session` answer with the access key, here: the
    /// workspace key (format 1) or this key's binding keys (format 2). A format-1 key in an
    /// upgraded workspace must first take its grant, which needs the server: the client's
    /// `init()` does that, and this refuses it.
    pub fn open(resp: SessionResponse, ak: &AccessKey) -> Result<Session, Error> {
        answered_for(&resp.access_key, ak)?;
        let ws = &resp.workspace.workspace_id;
        let keys = match resp.keyring {
            Some(_) if resp.wrapped_key.starts_with(WrappedKey::PREFIX) => {
                return Err(Error::new(
                    ErrorCode::UpgradeRequired,
                    "this access key predates the workspace's format 2: use it once with a Ductape SDK or the CLI (it converts itself), then sign in here",
                ))
            }
            Some(ring) => {
                ring.check()?;
                SessionKeys::Ring(Ring::open(
                    ring,
                    &resp.wrapped_key,
                    ws,
                    ak,
                    &resp.workspace.key_id,
                )?)
            }
            None => SessionKeys::Workspace(unwrap_workspace_key(
                &resp.wrapped_key,
                &resp.workspace,
                ak,
            )?),
        };
        Ok(Session {
            workspace: resp.workspace,
            access_key: resp.access_key,
            keys,
        })
    }

    /// The workspace the session is in.
    pub fn workspace(&self) -> &WorkspaceInfo {
        &self.workspace
    }

    /// What the server says of the access key: its name, permissions and binding.
    pub fn access_key(&self) -> &AccessKeyInfo {
        &self.access_key
    }

    /// Seals `value` of secret `key` for the readers of `scope`/`envs`.
    pub fn seal(
        &self,
        key: &SecretKey,
        value: &Plaintext,
        scope: &[String],
        envs: &[String],
    ) -> Result<String, Error> {
        self.keys
            .seal(&self.workspace.workspace_id, key, value, scope, envs)
    }

    /// Opens a stored value of secret `key`.
    pub fn open_value(&self, key: &SecretKey, text: &str) -> Result<Plaintext, Error> {
        self.keys.open(&self.workspace.workspace_id, key, text)
    }

    /// The body of `POST /v1/access-keys` registering `key` with `opts` (`envs` as
    /// [`crate::args::AccessKeyOptions::checked_envs`] gives them): the workspace key
    /// wrapped to it (format 1), or the grant of its binding in every generation holding
    /// it (format 2: during a rotation the key also reads the values not resealed yet).
    /// The binding must be in the keyring and ready: the client registers a new one and
    /// wraps its secrets to it first; elsewhere that is refused with how to do it.
    pub fn access_key_body(
        &self,
        key: &AccessKey,
        opts: &crate::args::AccessKeyOptions,
        envs: &[String],
    ) -> Result<serde_json::Value, Error> {
        let ws = &self.workspace.workspace_id;
        let wrapped_key = match &self.keys {
            SessionKeys::Workspace(wk) => {
                WrappedKey::wrap(wk, key.unwrap_bytes(), ws, key.id()).to_string()
            }
            SessionKeys::Ring(ring) => {
                let id = binding_id(opts.app.as_deref(), envs);
                if ring
                    .keyring
                    .current()
                    .binding(&id)
                    .is_none_or(|b| b.pending)
                {
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        format!(
                            "no key has been made for app {} and envs {} yet: its binding must be registered and every secret it may read wrapped to it first (creating the key with the SDKs, the CLI or the console does that)",
                            opts.app.as_deref().unwrap_or("*"),
                            if envs.is_empty() { "*".to_owned() } else { envs.join(",") }
                        ),
                    ));
                }
                let mut grants = AccessGrants::new(&key.recipient().public());
                for g in ring
                    .keyring
                    .generations
                    .iter()
                    .filter(|g| g.binding(&id).is_some())
                {
                    let secret = ring.binding_secret(ws, g.generation, &id)?;
                    grants.grant(ws, key.id(), g.generation, &id, &secret)?;
                }
                grants.to_string()
            }
        };
        Ok(serde_json::json!({
            "id": key.id(),
            "secret": key.secret(),
            "wrapped_key": wrapped_key,
            "name": opts.name,
            "permissions": opts.permissions,
            "app": opts.app,
            "envs": envs,
        }))
    }

    /// Format 2: where the binding `(app, envs)` stands before its first access key can be
    /// made (format 1 has no bindings: always ready).
    pub fn binding_state(&self, app: Option<&str>, envs: &[String]) -> BindingState {
        let SessionKeys::Ring(ring) = &self.keys else {
            return BindingState::Ready;
        };
        let id = binding_id(app, envs);
        match ring.keyring.current().binding(&id) {
            None => BindingState::Missing(id),
            Some(b) if b.pending => BindingState::Pending(id),
            Some(_) => BindingState::Ready,
        }
    }

    /// The body of `POST /v1/keyring/bindings` registering binding `(app, envs)`: a new key
    /// pair, its private key wrapped to every wider binding (so their holders open it),
    /// pending until every secret it may read is wrapped to it.
    pub fn register_binding_body(
        &self,
        app: Option<&str>,
        envs: &[String],
    ) -> Result<serde_json::Value, Error> {
        let ring = self.ring()?;
        let current = ring.keyring.current();
        let pair = RecipientSecret::generate();
        let mut binding = Binding::new(
            &self.workspace.workspace_id,
            current.generation,
            app,
            envs,
            &pair,
            &current.bindings,
        )?;
        binding.pending = true;
        Ok(serde_json::json!({ "generation": current.generation, "binding": binding }))
    }

    /// One page of a new binding's grant scan answered: the data key of each secret on it
    /// wrapped to binding `id` (each tied to the SHA-256 of the value it opens, so a value
    /// changed meanwhile gets no wrap of its old key).
    pub fn binding_wraps(&self, id: &str, page: &PendingWraps) -> Result<Vec<AddWrap>, Error> {
        let ring = self.ring()?;
        let ws = &self.workspace.workspace_id;
        let binding = ring.keyring.current().binding(id).ok_or_else(|| {
            Error::new(
                ErrorCode::Protocol,
                format!("binding {id} was not registered"),
            )
        })?;
        page.secrets
            .iter()
            .map(|s| {
                let key = SecretKey::parse(&s.key)?;
                let sealed =
                    SealedSecret::parse(&s.ciphertext).ok_or_else(|| malformed_secret(&key))?;
                let view =
                    SealedView::parse(&s.ciphertext).ok_or_else(|| malformed_secret(&key))?;
                let dk = ring.data_key(ws, &key, &view)?;
                let held = ring.holding(ws, sealed.generation, id);
                Ok(AddWrap {
                    key: s.key.clone(),
                    of: sha256_hex(&s.ciphertext),
                    wrap: sealed.wrap_for(ws, &key, binding, &dk, held.as_deref())?,
                })
            })
            .collect()
    }

    fn ring(&self) -> Result<&Ring, Error> {
        match &self.keys {
            SessionKeys::Ring(ring) => Ok(ring),
            SessionKeys::Workspace(_) => Err(Error::new(
                ErrorCode::Protocol,
                "the workspace is in format 1: it has no bindings",
            )),
        }
    }

    /// The body of a create request: the arguments checked, the value sealed here.
    pub fn create_body(
        &self,
        args: crate::args::CreateSecret,
    ) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
        crate::args::CheckedCreate::new(args)?.seal(self)
    }
}

/// Where a binding stands (by its id): in the keyring and ready for keys, not in it,
/// or registered with its grant scan not finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindingState {
    Ready,
    Missing(String),
    Pending(String),
}

/// Data keys opened this session, by their wrap: a repeated fetch of an unchanged value
/// costs no key agreement. Bounded; cleared when full.
const DATA_KEY_CACHE: usize = 4096;

/// How many bytes of values (with their sealed bodies) the data-key cache keeps beside the
/// keys, so that reading an unchanged value again costs no decryption either.
const OPENED_VALUES_BYTES: usize = 1 << 20;

pub(crate) enum SessionKeys {
    /// Format 1: one workspace key opens every value.
    Workspace(WorkspaceKey),
    /// Format 2: the keyring and this key's binding keys.
    Ring(Ring),
}

/// A binding's private key as this session holds it (`None`: it cannot open it).
type Held = Option<Arc<RecipientSecret>>;

pub(crate) struct Ring {
    pub(crate) keyring: Keyring,
    /// (generation, binding id, its private key) granted to this access key.
    held: Vec<(u32, String, RecipientSecret)>,
    cache: Mutex<DataKeys>,
    /// Binding private keys opened this session (or found not openable: `None`), by
    /// generation and binding: a writer wraps shared to the bindings it holds.
    opened: Mutex<HashMap<(u32, String), Held>>,
    /// While a format-1 workspace is upgraded: the old workspace key, to open the `dv1`
    /// values not resealed yet (held by unbound keys, and by format-1 keys converting).
    workspace_key: Option<WorkspaceKey>,
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
                let (sealed, _) = SealedSecret::seal_holding(
                    workspace,
                    key,
                    g.generation,
                    value,
                    g.audience(scope, envs),
                    |b| ring.holding(workspace, g.generation, &b.id),
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
                .ok_or_else(|| malformed_secret(key))?
                .open(wk, workspace, key),
            SessionKeys::Ring(ring) if text.starts_with(Envelope::PREFIX) => {
                let wk = ring.workspace_key.as_ref().ok_or_else(|| {
                    Error::new(
                        ErrorCode::KeyringChanged,
                        format!("Secret '{key}' is still sealed in format 1 while the workspace is upgraded: try again when the upgrade has finished"),
                    )
                })?;
                Envelope::parse(text)
                    .ok_or_else(|| malformed_secret(key))?
                    .open(wk, workspace, key)
            }
            SessionKeys::Ring(ring) => {
                let sealed = SealedView::parse(text).ok_or_else(|| malformed_secret(key))?;
                ring.open_value(workspace, key, &sealed)
            }
        }
    }
}

impl Ring {
    /// Opens this access key's grants with the pair its unwrap key derives.
    pub(crate) fn open(
        keyring: Keyring,
        grants: &str,
        workspace: &str,
        ak: &AccessKey,
        key_id: &str,
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
        let mut ring = Ring {
            keyring,
            held,
            cache: Mutex::default(),
            opened: Mutex::new(HashMap::new()),
            workspace_key: None,
        };
        if let Some(text) = &ring.keyring.upgrade_key {
            let current = ring.keyring.current().generation;
            let unbound = binding_id(None, &[]);
            if let Some((_, _, secret)) = ring
                .held
                .iter()
                .find(|(g, b, _)| *g == current && *b == unbound)
            {
                let key_id = KeyId::parse(key_id).ok_or_else(|| {
                    Error::new(ErrorCode::Protocol, "the workspace key id is malformed")
                })?;
                ring.workspace_key = Some(open_upgrade_key(
                    text, workspace, current, &unbound, secret, &key_id,
                )?);
            }
        }
        Ok(ring)
    }

    /// A format-1 key's first session in an upgraded workspace: its binding's key from the
    /// upgrade wrap under the old workspace key `wk`, and the grant of it to this key's
    /// own public key that the client then stores (so it needs `wk` no more).
    #[cfg(feature = "client")]
    pub(crate) fn converted(
        keyring: Keyring,
        workspace: &str,
        ak: &AccessKey,
        app: Option<&str>,
        envs: &[String],
        wk: WorkspaceKey,
    ) -> Result<(Ring, AccessGrants), Error> {
        let current = keyring.current();
        let generation = current.generation;
        let id = binding_id(app, envs);
        let binding = current.binding(&id).ok_or_else(|| {
            Error::new(
                ErrorCode::Protocol,
                format!("this key's binding {id} is not in the keyring"),
            )
        })?;
        let secret = open_legacy(&wk, workspace, generation, binding)?;
        let mut grants = AccessGrants::new(&ak.recipient().public());
        grants.grant(workspace, ak.id(), generation, &id, &secret)?;
        let ring = Ring {
            keyring,
            held: vec![(generation, id, secret)],
            cache: Mutex::default(),
            opened: Mutex::new(HashMap::new()),
            workspace_key: Some(wk),
        };
        Ok((ring, grants))
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

    /// The private key of binding `id` in `generation` if this session can open it (cached,
    /// so each is opened once a session).
    pub(crate) fn holding(
        &self,
        workspace: &str,
        generation: u32,
        id: &str,
    ) -> Option<Arc<RecipientSecret>> {
        let slot = (generation, id.to_owned());
        if let Some(found) = self
            .opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&slot)
        {
            return found.clone();
        }
        let found = self
            .binding_secret(workspace, generation, id)
            .ok()
            .map(Arc::new);
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(slot, found.clone());
        found
    }

    /// The data key of a sealed value, from the cache or opened with a held binding key.
    pub(crate) fn data_key(
        &self,
        workspace: &str,
        key: &SecretKey,
        sealed: &SealedView<'_>,
    ) -> Result<DataKey, Error> {
        let (wrap, binding, secret) = self.held_wrap(key, sealed)?;
        if let Some(opened) = self.cache().keys.get(wrap) {
            return Ok(opened.key.clone());
        }
        let dk = sealed.open_key(workspace, key, binding, secret)?;
        self.cache().insert(wrap, dk.clone(), None);
        Ok(dk)
    }

    /// A sealed value of `key`, opened; or, when this session opened the very same text of
    /// the same key's value before, that value again. The value's AEAD binds the workspace
    /// (this session's), the key and the generation, so the memo is found by those and the
    /// exact wrap and body: a server that hands one secret's ciphertext under another's name
    /// is refused as it is without the memo, by the tag that fails to open.
    pub(crate) fn open_value(
        &self,
        workspace: &str,
        key: &SecretKey,
        sealed: &SealedView<'_>,
    ) -> Result<Plaintext, Error> {
        let (wrap, binding, secret) = self.held_wrap(key, sealed)?;
        let cached = match self.cache().keys.get(wrap) {
            Some(opened) => match &opened.last {
                Some(last) if last.is(key, sealed) => return Ok(last.value.clone()),
                _ => Some(opened.key.clone()),
            },
            None => None,
        };
        let dk = match cached {
            Some(dk) => dk,
            None => sealed.open_key(workspace, key, binding, secret)?,
        };
        let value = sealed.open_value(workspace, key, &dk)?;
        let last = OpenedValue {
            key: key.clone(),
            generation: sealed.generation,
            body: sealed.body.into(),
            value: value.clone(),
        };
        self.cache().insert(wrap, dk, Some(last));
        Ok(value)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, DataKeys> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The wrap of a sealed value to a binding this session holds (the first, as the
    /// bindings were granted), with that binding and its private key.
    fn held_wrap<'s>(
        &self,
        key: &SecretKey,
        sealed: &SealedView<'s>,
    ) -> Result<(&'s str, &str, &RecipientSecret), Error> {
        let found = self.held.iter().find_map(|(g, b, secret)| {
            (*g == sealed.generation)
                .then(|| sealed.wrap_to(b))
                .flatten()
                .map(|wrap| (wrap, b.as_str(), secret))
        });
        if let Some(found) = found {
            return Ok(found);
        }
        if !self.held.iter().any(|(g, _, _)| *g >= sealed.generation) {
            // Resealed by a rotation this session has not seen: a new session holds it.
            return Err(Error::new(
                ErrorCode::KeyringChanged,
                format!(
                    "Secret '{key}' is sealed under key generation {}, newer than this session's",
                    sealed.generation
                ),
            ));
        }
        Err(Error::new(
            ErrorCode::Integrity,
            format!("Secret '{key}' is not encrypted for this access key's binding"),
        ))
    }
}

/// The data keys this session opened, by wrap, each with the last value it opened while
/// those fit in [`OPENED_VALUES_BYTES`].
#[derive(Default)]
struct DataKeys {
    keys: HashMap<String, OpenedKey>,
    /// The bytes the kept values and their bodies take.
    value_bytes: usize,
}

struct OpenedKey {
    key: DataKey,
    last: Option<OpenedValue>,
}

/// A value as this session opened it, with what its AEAD was checked against.
struct OpenedValue {
    key: SecretKey,
    generation: u32,
    body: Box<str>,
    value: Plaintext,
}

impl OpenedValue {
    fn is(&self, key: &SecretKey, sealed: &SealedView<'_>) -> bool {
        self.generation == sealed.generation && *self.body == *sealed.body && self.key == *key
    }

    fn bytes(&self) -> usize {
        self.body.len() + self.value.len()
    }
}

impl DataKeys {
    /// Keeps `key` for `wrap` (and `last`, its value, while the budget allows), clearing
    /// everything first when the cache is full.
    fn insert(&mut self, wrap: &str, key: DataKey, last: Option<OpenedValue>) {
        if self.keys.len() >= DATA_KEY_CACHE && !self.keys.contains_key(wrap) {
            self.keys.clear();
            self.value_bytes = 0;
        }
        let last = last.filter(|v| self.value_bytes + v.bytes() <= OPENED_VALUES_BYTES);
        self.value_bytes += last.as_ref().map_or(0, OpenedValue::bytes);
        let replaced = self.keys.insert(wrap.to_owned(), OpenedKey { key, last });
        if let Some(old) = replaced.and_then(|o| o.last) {
            self.value_bytes -= old.bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> SecretKey {
        SecretKey::parse(s).unwrap()
    }

    /// An unbound key's ring over a fresh keyring, and a sealer for it.
    fn ring() -> (Ring, impl Fn(&str, &str) -> String) {
        let (keyring, secret) = Keyring::first();
        let unbound = keyring.current().bindings[0].clone();
        let ring = Ring {
            keyring,
            held: vec![(1, unbound.id.clone(), secret)],
            cache: Mutex::default(),
            opened: Mutex::new(HashMap::new()),
            workspace_key: None,
        };
        let seal = move |key: &str, value: &str| {
            let (sealed, _) =
                SealedSecret::seal("ws", &k(key), 1, &Plaintext::from(value), [&unbound]).unwrap();
            sealed.to_string()
        };
        (ring, seal)
    }

    fn open(ring: &Ring, key: &str, text: &str) -> Result<Plaintext, Error> {
        ring.open_value("ws", &k(key), &SealedView::parse(text).unwrap())
    }

    #[test]
    fn a_value_opened_again_comes_from_the_memo_of_exactly_that_text() {
        let (ring, seal) = ring();
        let first = seal("A", "one");
        assert_eq!(open(&ring, "A", &first).unwrap().expose(), "one");
        // The memo is what answers the same text again: planted with another value, that
        // value comes back, so no decryption took place.
        let wrap = SealedView::parse(&first)
            .unwrap()
            .wrap_to(&ring.held[0].1)
            .unwrap()
            .to_owned();
        ring.cache()
            .keys
            .get_mut(&wrap)
            .unwrap()
            .last
            .as_mut()
            .unwrap()
            .value = Plaintext::from("planted");
        assert_eq!(open(&ring, "A", &first).unwrap().expose(), "planted");
        // A new value of the same secret is opened, never answered from the old memo.
        let second = seal("A", "two");
        assert_eq!(open(&ring, "A", &second).unwrap().expose(), "two");
        assert_eq!(open(&ring, "A", &second).unwrap().expose(), "two");
        assert_eq!(ring.cache().keys.len(), 2);
    }

    #[test]
    fn a_memo_never_answers_for_another_secret_or_generation() {
        let (ring, seal) = ring();
        let a = seal("A", "value of A");
        assert_eq!(open(&ring, "A", &a).unwrap().expose(), "value of A");
        // A server handing A's ciphertext under B's name: refused as without the memo.
        let err = open(&ring, "B", &a).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Integrity, "{err}");
        assert!(!err.message().contains("value of A"));
        // The same body and wrap claimed for generation 2: this session holds none (a
        // newer generation than it knows), never the memo's value.
        let claimed = a.replacen("dv2.1.", "dv2.2.", 1);
        let err = open(&ring, "A", &claimed).unwrap_err();
        assert_eq!(err.code(), ErrorCode::KeyringChanged, "{err}");
        // And A still opens.
        assert_eq!(open(&ring, "A", &a).unwrap().expose(), "value of A");
    }

    #[test]
    fn the_memo_keeps_values_within_its_budget_and_counts_what_it_drops() {
        let memo = |key: &str, body: &str, value: &str| OpenedValue {
            key: k(key),
            generation: 1,
            body: body.into(),
            value: Plaintext::from(value),
        };
        let mut keys = DataKeys::default();
        keys.insert("w1", DataKey::generate(), Some(memo("A", "bbbb", "vv")));
        assert_eq!(keys.value_bytes, 6);
        // The same wrap again: the old value's bytes are given back.
        keys.insert("w1", DataKey::generate(), Some(memo("A", "cccc", "vvv")));
        assert_eq!(keys.value_bytes, 7);
        keys.insert("w1", DataKey::generate(), None);
        assert_eq!(keys.value_bytes, 0);
        // A value over the budget: the key is kept, the value is not.
        let big = "x".repeat(OPENED_VALUES_BYTES);
        keys.insert("w2", DataKey::generate(), Some(memo("B", "bb", &big)));
        assert!(keys.keys["w2"].last.is_none());
        assert_eq!(keys.value_bytes, 0);
        // Full: cleared at once, counts with it.
        keys.insert("w3", DataKey::generate(), Some(memo("C", "bb", "v")));
        for i in keys.keys.len()..DATA_KEY_CACHE {
            keys.insert(&format!("x{i}"), DataKey::generate(), None);
        }
        assert_eq!((keys.keys.len(), keys.value_bytes), (DATA_KEY_CACHE, 3));
        keys.insert("w4", DataKey::generate(), Some(memo("D", "bb", "vv")));
        assert_eq!((keys.keys.len(), keys.value_bytes), (1, 4));
    }
}
