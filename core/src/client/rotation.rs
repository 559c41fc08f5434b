//! Key rotation, and the upgrade of a format-1 workspace to format 2: the same three steps.
//!
//! 1. **Start**: a fresh generation (a new X25519 pair per binding in use), and a grant of
//!    it to every access key's public key, stored in one transaction. From then on every
//!    write is sealed under it (the server refuses older generations), and every key can
//!    read both generations.
//! 2. **Reseal**: every value not under the new generation yet is opened and sealed anew
//!    (new data key) for its readers, page by page, each replacing the stored value only if
//!    it is unchanged (compare-and-swap), so concurrent writers win and nothing is lost.
//! 3. **Finish**: once a full pass finds nothing older, the server drops the old
//!    generations and their grants (and, for the upgrade, the old workspace key's wrap).
//!
//! All state is on the server: killed at any point, running it again resumes at the step
//! it was in.

use reqwest::Method;
use serde_json::{json, Value};

use super::keys::{Ring, SessionKeys};
use super::transport::Idempotency;
use super::{Ductape, Session};
use crate::crypto::keyring::{seal_legacy, wrap_upgrade_key, Generation};
use crate::crypto::{sha256_hex, AccessGrants, WorkspaceKey};
use crate::error::{Error, ErrorCode};
use crate::validate::SecretKey;
use crate::wire::{
    AccessKeyInfo, AddWrapsResponse, GrantTo, Grantee, PendingWraps, Permission, Reseal,
};

/// What a rotation (or upgrade) did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rotation {
    /// The key generation the workspace is at now.
    pub generation: u32,
    /// Values this run sealed anew (a resumed run counts only its own).
    pub resealed: u64,
    /// Whether this run started the new generation (false: it resumed one, or found
    /// nothing to do).
    pub started: bool,
}

/// Rotation reads and reseals every value: an unbound admin key only.
pub(crate) fn can_rotate(key: &AccessKeyInfo) -> bool {
    key.permissions.contains(&Permission::Admin) && key.app.is_none() && key.envs.is_empty()
}

/// Tries of the whole loop when another client changes the keyring meanwhile.
const TRIES: usize = 5;

impl Ductape {
    /// Rotates the workspace keys: a new key generation, every value re-encrypted under
    /// it, every remaining access key granted it (from its public key alone: no other key
    /// holder's secret is needed), then the old generation retired. Run it after deleting
    /// a leaked key: the key and a database dump open nothing written or resealed since.
    /// Resumable: after an interruption, running it again finishes the rotation under way.
    /// Takes an unbound admin key.
    pub async fn rotate_key(&self) -> Result<Rotation, Error> {
        self.rotate_key_with_progress(|_, _| {}).await
    }

    /// [`Ductape::rotate_key`], reporting `(secrets looked at, total)` while resealing.
    pub async fn rotate_key_with_progress(
        &self,
        progress: impl FnMut(u64, u64),
    ) -> Result<Rotation, Error> {
        self.transition(true, progress).await
    }

    /// Upgrades a format-1 workspace (one workspace key) to format 2 (keys per binding),
    /// or finishes an upgrade left half done; nothing when there is none to do. `init()`
    /// with an unbound admin key does this. Format-1 keys keep working: each takes its
    /// grant on its first use by a current client.
    pub async fn upgrade_with_progress(
        &self,
        progress: impl FnMut(u64, u64),
    ) -> Result<Rotation, Error> {
        self.transition(false, progress).await
    }

    async fn transition(
        &self,
        rotate: bool,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Rotation, Error> {
        if !self.is_initialized() {
            self.open_session().await?;
        }
        let mut report = Rotation::default();
        let mut last_err = None;
        for _ in 0..TRIES {
            let session = self.session()?;
            if !can_rotate(&session.access_key) {
                return Err(Error::new(
                    ErrorCode::PermissionDenied,
                    "rotating or upgrading the workspace keys reseals every secret: it takes an unbound admin key",
                ));
            }
            let step = match &session.keys {
                SessionKeys::Workspace(wk) => self.start(&session, Some(wk)).await.map(|()| false),
                SessionKeys::Ring(ring) if !ring.keyring.in_transition() => {
                    if !rotate || report.started {
                        report.generation = ring.keyring.current().generation;
                        return Ok(report);
                    }
                    self.start(&session, None).await.map(|()| false)
                }
                SessionKeys::Ring(ring) => self
                    .complete(&session, ring, &mut report, &mut progress)
                    .await
                    .map(|()| true),
            };
            match step {
                Ok(true) => return Ok(report),
                Ok(false) => report.started = true,
                // Another client started, or a key was made meanwhile: look again.
                Err(e) if e.code() == ErrorCode::KeyringChanged => last_err = Some(e),
                Err(e) => return Err(e),
            }
            self.open_session().await?;
        }
        Err(last_err.unwrap_or_else(|| {
            Error::new(
                ErrorCode::KeyringChanged,
                "the keyring kept changing during the rotation: run it again",
            )
        }))
    }

    /// Every access key as grants see it.
    async fn grantees(&self) -> Result<Vec<Grantee>, Error> {
        self.transport()
            .call(
                Method::GET,
                "/v1/keyring/grantees",
                None,
                Idempotency::Idempotent,
            )
            .await
    }

    /// Step 1: the next generation and its grants. `wk`: upgrading from format 1.
    async fn start(&self, session: &Session, wk: Option<&WorkspaceKey>) -> Result<(), Error> {
        let ws = &session.workspace.workspace_id;
        let me = self.config().access_key();
        let grantees = self.grantees().await?;
        if wk.is_none() {
            if let Some(g) = grantees
                .iter()
                .find(|g| g.public_key.is_none() && g.id != me.id())
            {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!("access key {} predates format 2 and has not been used by a current client yet (it takes its grant then): use it once, or delete it, then rotate", g.id),
                ));
            }
        }
        let number = match &session.keys {
            SessionKeys::Ring(ring) => ring.keyring.current().generation + 1,
            SessionKeys::Workspace(_) => 1,
        };
        let bound: Vec<(Option<String>, Vec<String>)> = grantees
            .iter()
            .map(|g| (g.app.clone(), g.envs.clone()))
            .collect();
        let (mut generation, secrets) = Generation::fresh(ws, number, &bound)?;
        let secret_of = |id: &str| {
            secrets
                .iter()
                .find(|(b, _)| b == id)
                .map(|(_, s)| s)
                .expect("every grantee's binding is in the generation")
        };
        let mut grants = Vec::new();
        for g in &grantees {
            let binding = crate::crypto::keyring::binding_id(g.app.as_deref(), &g.envs);
            let public_key = match (&g.public_key, g.id == me.id()) {
                (_, true) => me.recipient().public().to_string(),
                (Some(k), false) => k.clone(),
                (None, false) => {
                    // A format-1 key: it takes its grant itself, from the upgrade wrap.
                    if let (Some(wk), Some(b)) =
                        (wk, generation.bindings.iter_mut().find(|b| b.id == binding))
                    {
                        b.legacy = Some(seal_legacy(wk, ws, number, &binding, secret_of(&binding)));
                    }
                    continue;
                }
            };
            let mut text = AccessGrants {
                public_key,
                grants: Vec::new(),
            };
            text.grant(ws, &g.id, number, &binding, secret_of(&binding))?;
            grants.push(GrantTo {
                id: g.id.clone(),
                grants: text.to_string(),
            });
        }
        let upgrade_key = match wk {
            Some(wk) => {
                let unbound = generation
                    .bindings
                    .iter()
                    .find(|b| b.is_unbound())
                    .expect("a fresh generation holds the unbound binding");
                Some(wrap_upgrade_key(wk, ws, number, unbound)?)
            }
            None => None,
        };
        let body =
            json!({ "generation": generation, "grants": grants, "upgrade_key": upgrade_key });
        self.transport()
            .call::<Value>(
                Method::POST,
                "/v1/keyring/generations",
                Some(&body),
                Idempotency::NotIdempotent,
            )
            .await?;
        Ok(())
    }

    /// Steps 2 and 3: grants for keys made meanwhile, every value resealed, the end.
    async fn complete(
        &self,
        session: &Session,
        ring: &Ring,
        report: &mut Rotation,
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<(), Error> {
        let ws = &session.workspace.workspace_id;
        let current = ring.keyring.current().generation;
        let grantees = self.grantees().await?;
        let mut grants = Vec::new();
        for g in grantees
            .iter()
            .filter(|g| !g.generations.contains(&current))
        {
            let Some(public_key) = &g.public_key else {
                continue;
            };
            let binding = crate::crypto::keyring::binding_id(g.app.as_deref(), &g.envs);
            let secret = ring.binding_secret(ws, current, &binding)?;
            let mut text = AccessGrants {
                public_key: public_key.clone(),
                grants: Vec::new(),
            };
            text.grant(ws, &g.id, current, &binding, &secret)?;
            grants.push(GrantTo {
                id: g.id.clone(),
                grants: text.to_string(),
            });
        }
        for chunk in grants.chunks(1000) {
            self.transport()
                .call::<Value>(
                    Method::POST,
                    "/v1/keyring/grants",
                    Some(&json!({ "grants": chunk })),
                    Idempotency::Idempotent,
                )
                .await?;
        }
        self.reseal_all(session, progress, report).await?;
        let done: crate::crypto::Keyring = self
            .transport()
            .call(
                Method::POST,
                "/v1/keyring/finish",
                None,
                Idempotency::Idempotent,
            )
            .await?;
        report.generation = done.current().generation;
        self.open_session().await
    }

    /// Reseals, page by page, every value the server lists as not yet under the current
    /// generation.
    async fn reseal_all(
        &self,
        session: &Session,
        progress: &mut impl FnMut(u64, u64),
        report: &mut Rotation,
    ) -> Result<(), Error> {
        let ws = &session.workspace.workspace_id;
        let mut after: Option<String> = None;
        let (mut seen, mut total) = (0u64, 0u64);
        loop {
            let page: PendingWraps = self
                .transport()
                .call(
                    Method::POST,
                    "/v1/keyring/reseal/pending",
                    Some(&json!({ "after": after })),
                    Idempotency::Idempotent,
                )
                .await?;
            total = page.total.unwrap_or(total);
            seen += page.scanned;
            let mut reseals = Vec::with_capacity(page.secrets.len());
            for s in &page.secrets {
                let key = SecretKey::parse(&s.key)?;
                let value = session.keys.open(ws, &key, &s.ciphertext)?;
                reseals.push(Reseal {
                    key: s.key.clone(),
                    of: sha256_hex(&s.ciphertext),
                    ciphertext: session.keys.seal(ws, &key, &value, &s.scope, &s.envs)?,
                });
            }
            // A page holds every stored value of its keys (earlier versions, trash): it can
            // be longer than one request may carry.
            for chunk in reseals.chunks(PendingWraps::MAX_SECRETS) {
                let answer: AddWrapsResponse = self
                    .transport()
                    .call(
                        Method::POST,
                        "/v1/keyring/reseal",
                        Some(&json!({ "reseals": chunk })),
                        Idempotency::Idempotent,
                    )
                    .await?;
                report.resealed += answer.added;
            }
            progress(seen, total.max(seen));
            match page.next_after {
                Some(a) => after = Some(a),
                None => return Ok(()),
            }
        }
    }
}
