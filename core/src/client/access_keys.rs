use reqwest::Method;
use serde_json::{json, Value};

use super::transport::Idempotency;
use super::Ductape;
use crate::crypto::{AccessKey, WrappedKey};
use crate::error::Error;
use crate::validate;
use crate::wire::{AccessKeyInfo, DeletedResponse, Permission};

/// What a new access key may do and where.
#[derive(Clone, Debug)]
pub struct AccessKeyOptions {
    pub name: String,
    pub permissions: Vec<Permission>,
    /// Bind the key to one app tag: it reads only secrets whose scope is empty or holds it.
    pub app: Option<String>,
    /// Bind the key to environments: it reads only secrets available in one of them.
    pub envs: Vec<String>,
}

impl AccessKeyOptions {
    pub fn new(name: impl Into<String>, permissions: impl IntoIterator<Item = Permission>) -> Self {
        AccessKeyOptions {
            name: name.into(),
            permissions: permissions.into_iter().collect(),
            app: None,
            envs: Vec::new(),
        }
    }
}

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
        if opts.name.trim().is_empty() || opts.name.chars().count() > 128 {
            return Err(Error::invalid_field(
                "field 'name' must be 1 to 128 characters",
            ));
        }
        if opts.permissions.is_empty() {
            return Err(Error::invalid_field(
                "field 'permissions' must not be empty",
            ));
        }
        if let Some(app) = &opts.app {
            validate::check_tags("app", vec![app.clone()])?;
        }
        let envs = validate::check_tags("envs", opts.envs)?;
        let session = self.client.session()?;
        let key = AccessKey::generate();
        let wrapped = WrappedKey::wrap(
            &session.key,
            key.unwrap_bytes(),
            &session.workspace.workspace_id,
            key.id(),
        );
        let body = json!({
            "id": key.id(),
            "secret": key.secret(),
            "wrapped_key": wrapped.to_string(),
            "name": opts.name,
            "permissions": opts.permissions,
            "app": opts.app,
            "envs": envs,
        });
        let info: AccessKeyInfo = self
            .client
            .transport()
            .call(
                Method::POST,
                "/v1/access-keys",
                Some(&body),
                super::transport::Idempotency::NotIdempotent,
            )
            .await?;
        Ok(CreatedAccessKey { key, info })
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

    /// Deletes an access key and its wrapped copy of the workspace key.
    pub async fn delete(&self, id: &str) -> Result<bool, Error> {
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
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
