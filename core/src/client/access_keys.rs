use reqwest::Method;
use serde_json::{json, Value};

use super::keys::SessionKeys;
use super::transport::Idempotency;
use super::{Ductape, Session};
pub use crate::args::AccessKeyOptions;
use crate::crypto::AccessKey;
use crate::error::{Error, ErrorCode};
use crate::session::BindingState;
use crate::wire::{AccessKeyInfo, AddWrapsResponse, DeletedResponse, PendingWraps};

/// A freshly made access key: `key` is shown to the user once and never stored by the server.
#[derive(Debug)]
pub struct CreatedAccessKey {
    pub key: AccessKey,
    pub info: AccessKeyInfo,
}

/// Access-key operations. Only a holder of the workspace key can issue keys, because the
/// new key's copy of the workspace key is wrapped here.
pub struct AccessKeys<'a> {
    client: &'a Ductape,
}

impl<'a> AccessKeys<'a> {
    pub(crate) fn new(client: &'a Ductape) -> Self {
        AccessKeys { client }
    }

    pub async fn create(&self, opts: AccessKeyOptions) -> Result<CreatedAccessKey, Error> {
        self.create_with_progress(opts, |_, _| {}).await
    }

    /// Like [`AccessKeys::create`], reporting progress as `(secrets looked at, total)`: in a
    /// format-2 workspace a key with a binding not used before first has every secret that
    /// binding may read wrapped to it (resumable: run it again after an interruption).
    pub async fn create_with_progress(
        &self,
        opts: AccessKeyOptions,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<CreatedAccessKey, Error> {
        let envs = opts.checked_envs()?;
        let key = AccessKey::generate();
        let mut refreshed = false;
        loop {
            let answer = self.register_key(&key, &opts, &envs, &mut progress).await;
            match answer {
                // The keyring moved on (a rotation began): refresh the session, grant again.
                Err(e) if e.code() == ErrorCode::KeyringChanged && !refreshed => {
                    refreshed = true;
                    self.client.open_session().await?;
                }
                other => return other.map(|info| CreatedAccessKey { key, info }),
            }
        }
    }

    /// Wraps the workspace key (format 1) or grants the binding (format 2) to `key`, and
    /// registers it.
    async fn register_key(
        &self,
        key: &AccessKey,
        opts: &AccessKeyOptions,
        envs: &[String],
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<AccessKeyInfo, Error> {
        if let SessionKeys::Ring(_) = &self.client.session()?.keys {
            self.prepare_binding(opts.app.as_deref(), envs, progress)
                .await?;
        }
        let body = self.client.session()?.access_key_body(key, opts, envs)?;
        self.client
            .transport()
            .call(
                Method::POST,
                "/v1/access-keys",
                Some(&body),
                super::transport::Idempotency::NotIdempotent,
            )
            .await
    }

    /// Format 2: the binding `(app, envs)` in the keyring and ready, registering it and
    /// wrapping its secrets to it first when it is new (or left half done).
    async fn prepare_binding(
        &self,
        app: Option<&str>,
        envs: &[String],
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<(), Error> {
        let mut session = self.client.session()?;
        if let BindingState::Missing(_) = session.binding_state(app, envs) {
            let body = session.register_binding_body(app, envs)?;
            let registered = self
                .client
                .transport()
                .call::<Value>(
                    Method::POST,
                    "/v1/keyring/bindings",
                    Some(&body),
                    Idempotency::NotIdempotent,
                )
                .await;
            self.client.open_session().await?;
            session = self.client.session()?;
            match registered {
                // Registered meanwhile by someone else: theirs is as good.
                Err(e)
                    if e.code() == ErrorCode::Conflict
                        && !matches!(
                            session.binding_state(app, envs),
                            BindingState::Missing(_)
                        ) => {}
                other => other.map(|_| ())?,
            }
        }
        match session.binding_state(app, envs) {
            BindingState::Ready => Ok(()),
            BindingState::Missing(id) => Err(Error::new(
                ErrorCode::Protocol,
                format!("binding {id} was not registered"),
            )),
            BindingState::Pending(id) => {
                self.wrap_to_binding(&session, &id, progress).await?;
                self.client
                    .transport()
                    .call::<Value>(
                        Method::POST,
                        &format!("/v1/keyring/bindings/{id}/ready"),
                        None,
                        Idempotency::Idempotent,
                    )
                    .await?;
                // The session's keyring shows the binding ready from now on.
                self.client.init().await
            }
        }
    }

    /// The grant scan: wraps the data key of every secret binding `id` may read but is not
    /// wrapped to, page by page as the server lists them.
    async fn wrap_to_binding(
        &self,
        session: &Session,
        id: &str,
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<(), Error> {
        let path = format!("/v1/keyring/bindings/{id}");
        let mut after: Option<String> = None;
        let (mut seen, mut total) = (0u64, 0u64);
        loop {
            let page: PendingWraps = self
                .client
                .transport()
                .call(
                    Method::POST,
                    &format!("{path}/pending"),
                    Some(&json!({ "after": after })),
                    Idempotency::Idempotent,
                )
                .await?;
            total = page.total.unwrap_or(total);
            seen += page.scanned;
            let wraps = session.binding_wraps(id, &page)?;
            // A page holds every stored value of its keys (earlier versions, trash): it can
            // be longer than one request may carry.
            for chunk in wraps.chunks(PendingWraps::MAX_SECRETS) {
                let _: AddWrapsResponse = self
                    .client
                    .transport()
                    .call(
                        Method::POST,
                        &format!("{path}/wraps"),
                        Some(&json!({ "wraps": chunk })),
                        Idempotency::Idempotent,
                    )
                    .await?;
            }
            progress(seen.min(total.max(seen)), total.max(seen));
            match page.next_after {
                Some(a) => after = Some(a),
                None => return Ok(()),
            }
        }
    }

    pub async fn list(&self) -> Result<Vec<AccessKeyInfo>, Error> {
        self.client
            .transport()
            .call(
                Method::GET,
                "/v1/access-keys",
                None,
                Idempotency::Idempotent,
            )
            .await
    }

    /// The id of the access key `id_or_name` names: an id as it is, else the one key with
    /// that name (not found, or several with it: an error that says which).
    pub async fn find_id(&self, id_or_name: &str) -> Result<String, Error> {
        if is_key_id(id_or_name) {
            return Ok(id_or_name.to_owned());
        }
        let named: Vec<AccessKeyInfo> = self
            .list()
            .await?
            .into_iter()
            .filter(|k| k.name == id_or_name)
            .collect();
        match named.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(Error::new(
                ErrorCode::NotFound,
                format!("no access key has the id or name '{id_or_name}' (`ductape access-keys list` shows them)"),
            )),
            several => Err(Error::invalid_field(format!(
                "{} access keys are named '{id_or_name}': give the id of one ({})",
                several.len(),
                several.iter().map(|k| k.id.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Deletes an access key and its wrapped copy of the workspace key.
    pub async fn delete(&self, id: &str) -> Result<bool, Error> {
        if !is_key_id(id) {
            return Err(Error::invalid_field(
                "access key id must be 16 hex characters",
            ));
        }
        let resp: DeletedResponse = self
            .client
            .transport()
            .call::<DeletedResponse>(
                Method::DELETE,
                &format!("/v1/access-keys/{id}"),
                None::<&Value>,
                Idempotency::Idempotent,
            )
            .await?;
        Ok(resp.deleted)
    }
}

/// An access key's id: 16 hex characters.
fn is_key_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
