//! The documented arguments of `create` and `update`, and a create's arguments checked and
//! sealed: shared by the client and the browser build (no HTTP here).

use serde_json::{Map, Value};

use crate::crypto::Plaintext;
use crate::error::Error;
use crate::session::Session;
use crate::validate::{self, MetadataInput, Patch, SecretKey, TokenType};
use crate::wire::Permission;

/// Arguments of `secrets().create(...)`: the documented fields.
///
/// ```
/// use ductape::{CreateSecret, TokenType};
/// let args = CreateSecret::new("STRIPE_API_KEY", "sk_live_51ABC123")
///     .description("Production Stripe API key")
///     .token_type(TokenType::Api)
///     .scope(["stripe_payments"])
///     .envs(["prd", "staging"])
///     .expires_at(1735689600);
/// assert!(!format!("{args:?}").contains("sk_live"));
/// ```
#[derive(Clone, Debug)]
pub struct CreateSecret {
    pub key: String,
    pub value: Plaintext,
    pub metadata: MetadataInput,
}

impl CreateSecret {
    pub fn new(key: impl Into<String>, value: impl Into<Plaintext>) -> Self {
        CreateSecret {
            key: key.into(),
            value: value.into(),
            metadata: MetadataInput::default(),
        }
    }

    /// Reads the documented argument object (`{key, value, description, ...}`), checking
    /// every field's type; used by the bindings so that they all say the same thing.
    pub fn from_json(args: &Value) -> Result<Self, Error> {
        let obj = validate::json_object(args)?;
        validate::reject_unknown_fields(
            obj,
            &[&["key", "value"][..], &validate::METADATA_FIELDS].concat(),
        )?;
        let key = validate::required_string(obj, "key")?.to_owned();
        let value = Plaintext::from(validate::required_string(obj, "value")?);
        Ok(CreateSecret {
            key,
            value,
            metadata: MetadataInput::from_object(obj)?,
        })
    }
}

/// Arguments of `secrets().update(key, ...)`: a new value and/or metadata changes.
///
/// ```
/// use ductape::UpdateSecret;
/// let rotate = UpdateSecret::new().value("sk_live_NEW").expires_at(1767225600);
/// let widen = UpdateSecret::new().scope(["a", "b"]).envs(["dev", "prd"]);
/// # let _ = (rotate, widen);
/// ```
#[derive(Clone, Debug, Default)]
pub struct UpdateSecret {
    pub value: Option<Plaintext>,
    pub metadata: MetadataInput,
    /// Fail with 409 `version_conflict` unless the secret is still at this version.
    pub expected_version: Option<i64>,
}

impl UpdateSecret {
    pub fn new() -> Self {
        UpdateSecret::default()
    }

    /// Reads the documented update object; `null` clears a metadata field.
    pub fn from_json(args: &Value) -> Result<Self, Error> {
        let obj = validate::json_object(args)?;
        validate::reject_unknown_fields(
            obj,
            &[
                &["value", "expected_version", "if_version"][..],
                &validate::METADATA_FIELDS,
            ]
            .concat(),
        )?;
        let value = match obj.get("value") {
            None | Some(Value::Null) => None,
            Some(_) => Some(Plaintext::from(validate::required_string(obj, "value")?)),
        };
        // `if_version` (the SDKs' name, as for delete/revoke/restore) or `expected_version`.
        let expected_version = match (
            validate::expected_version(obj)?,
            validate::version_field(obj, "if_version")?,
        ) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::invalid_field(
                    "fields 'if_version' and 'expected_version' disagree",
                ))
            }
            (a, b) => a.or(b),
        };
        Ok(UpdateSecret {
            value,
            metadata: MetadataInput::from_object(obj)?,
            expected_version,
        })
    }

    pub fn value(mut self, v: impl Into<Plaintext>) -> Self {
        self.value = Some(v.into());
        self
    }

    /// Removes the expiry.
    pub fn no_expiry(mut self) -> Self {
        self.metadata.expires_at = Patch::Clear;
        self
    }

    pub fn expected_version(mut self, v: i64) -> Self {
        self.expected_version = Some(v);
        self
    }
}

/// The metadata setters, the same on [`CreateSecret`] and [`UpdateSecret`].
macro_rules! metadata_setters {
    ($t:ty) => {
        impl $t {
            pub fn description(mut self, d: impl Into<String>) -> Self {
                self.metadata.description = Patch::Set(d.into());
                self
            }

            pub fn token_type(mut self, t: TokenType) -> Self {
                self.metadata.token_type = Patch::Set(t);
                self
            }

            /// App tags that may use the secret (empty: all apps).
            pub fn scope<S: Into<String>>(mut self, apps: impl IntoIterator<Item = S>) -> Self {
                self.metadata.scope = Patch::Set(apps.into_iter().map(Into::into).collect());
                self
            }

            /// Environments where the secret is available (empty: all).
            pub fn envs<S: Into<String>>(mut self, envs: impl IntoIterator<Item = S>) -> Self {
                self.metadata.envs = Patch::Set(envs.into_iter().map(Into::into).collect());
                self
            }

            /// Expiry in Unix seconds.
            pub fn expires_at(mut self, unix_secs: i64) -> Self {
                self.metadata.expires_at = Patch::Set(unix_secs);
                self
            }
        }
    };
}

metadata_setters!(CreateSecret);
metadata_setters!(UpdateSecret);

/// A create's arguments, checked (before any request, even before `init`).
pub struct CheckedCreate {
    key: SecretKey,
    value: Plaintext,
    metadata: MetadataInput,
}

impl CheckedCreate {
    pub fn new(args: CreateSecret) -> Result<Self, Error> {
        let key = SecretKey::parse(&args.key)?;
        validate::check_value(args.value.expose())?;
        // Normalises and re-checks metadata built with the setters.
        let mut body = Map::new();
        args.metadata.write_to(&mut body);
        let metadata = MetadataInput::from_object(&body)?;
        Ok(CheckedCreate {
            key,
            value: args.value,
            metadata,
        })
    }

    /// The body of a create request, the value sealed for the secret's readers.
    pub fn seal(&self, session: &Session) -> Result<Map<String, Value>, Error> {
        let ciphertext = session.keys.seal(
            &session.workspace.workspace_id,
            &self.key,
            &self.value,
            self.metadata.scope.as_slice(),
            self.metadata.envs.as_slice(),
        )?;
        let mut body = Map::new();
        body.insert("key".into(), Value::String(self.key.to_string()));
        body.insert("ciphertext".into(), Value::String(ciphertext));
        self.metadata.write_to(&mut body);
        // Null on create means "not set": send only what is set.
        body.retain(|_, v| !v.is_null());
        Ok(body)
    }
}

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
    /// Reads the documented options: `name`, `permissions` (names), `app`, `envs`.
    pub fn from_json(args: &Value) -> Result<Self, Error> {
        let obj = validate::json_object(args)?;
        validate::reject_unknown_fields(obj, &["name", "permissions", "app", "envs"])?;
        let name = validate::required_string(obj, "name")?.to_owned();
        let permissions = validate::permissions(obj)?;
        let app = validate::optional_tag(obj, "app")?;
        let envs = validate::optional_tags(obj, "envs")?;
        Ok(AccessKeyOptions {
            name,
            permissions,
            app,
            envs,
        })
    }

    /// Checks the options (before any request): the key's environments, sorted and
    /// without repeats.
    pub fn checked_envs(&self) -> Result<Vec<String>, Error> {
        if self.name.trim().is_empty() || self.name.chars().count() > 128 {
            return Err(Error::invalid_field(
                "field 'name' must be 1 to 128 characters",
            ));
        }
        if self.permissions.is_empty() {
            return Err(Error::invalid_field(
                "field 'permissions' must not be empty",
            ));
        }
        if let Some(app) = &self.app {
            validate::check_tags("app", vec![app.clone()])?;
        }
        let mut envs = validate::check_tags("envs", self.envs.clone())?;
        envs.sort();
        envs.dedup();
        Ok(envs)
    }

    pub fn new(name: impl Into<String>, permissions: impl IntoIterator<Item = Permission>) -> Self {
        AccessKeyOptions {
            name: name.into(),
            permissions: permissions.into_iter().collect(),
            app: None,
            envs: Vec::new(),
        }
    }
}
