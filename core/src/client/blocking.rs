//! A blocking client for programs without an async runtime: the same operations, each
//! run to completion on a private single-threaded tokio runtime.
//!
//! ```no_run
//! # fn demo() -> Result<(), ductape::Error> {
//! let ductape = ductape::blocking::Ductape::from_env()?;
//! ductape.init()?;
//! let secret = ductape.secrets().fetch("STRIPE_API_KEY")?;
//! # let _ = secret; Ok(()) }
//! ```

use crate::error::{Error, ErrorCode};
use crate::wire::{AccessKeyInfo, SecretRecord};
use crate::SecretKey;

use super::{
    AccessKeyOptions, Config, CreateSecret, CreatedAccessKey, FetchedSecret, UpdateSecret,
};

/// The blocking twin of [`crate::Ductape`]. Do not use it inside an async runtime.
#[derive(Debug)]
pub struct Ductape {
    inner: super::Ductape,
    rt: tokio::runtime::Runtime,
}

impl Ductape {
    pub fn new(config: Config) -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::new(ErrorCode::Config, format!("cannot start a runtime: {e}")))?;
        Ok(Ductape {
            inner: super::Ductape::new(config)?,
            rt,
        })
    }

    pub fn from_env() -> Result<Self, Error> {
        Ductape::new(Config::resolve(None, None)?)
    }

    pub fn init(&self) -> Result<(), Error> {
        self.rt.block_on(self.inner.init())
    }

    pub fn secrets(&self) -> Secrets<'_> {
        Secrets { d: self }
    }

    pub fn access_keys(&self) -> AccessKeys<'_> {
        AccessKeys { d: self }
    }

    /// The audit trail (admin).
    pub fn audit(&self, query: &super::AuditQuery) -> Result<crate::wire::AuditPage, Error> {
        self.rt.block_on(self.inner.audit(query))
    }

    /// The async client underneath.
    pub fn as_async(&self) -> &super::Ductape {
        &self.inner
    }
}

/// Blocking secret operations.
pub struct Secrets<'a> {
    d: &'a Ductape,
}

impl Secrets<'_> {
    pub fn create(&self, args: CreateSecret) -> Result<SecretRecord, Error> {
        self.d.rt.block_on(self.d.inner.secrets().create(args))
    }

    pub fn fetch_all(&self) -> Result<Vec<SecretRecord>, Error> {
        self.d.rt.block_on(self.d.inner.secrets().fetch_all())
    }

    pub fn fetch(&self, key: &str) -> Result<FetchedSecret, Error> {
        self.d.rt.block_on(self.d.inner.secrets().fetch(key))
    }

    pub fn update(&self, key: &str, args: UpdateSecret) -> Result<SecretRecord, Error> {
        self.d.rt.block_on(self.d.inner.secrets().update(key, args))
    }

    pub fn delete(&self, key: &str) -> Result<bool, Error> {
        self.d.rt.block_on(self.d.inner.secrets().delete(key))
    }

    pub fn revoke(&self, key: &str) -> Result<bool, Error> {
        self.d.rt.block_on(self.d.inner.secrets().revoke(key))
    }

    pub fn restore(&self, key: &str) -> Result<SecretRecord, Error> {
        self.d.rt.block_on(self.d.inner.secrets().restore(key))
    }

    pub fn resolve(
        &self,
        config: &serde_json::Value,
        opts: &super::ResolveOptions,
    ) -> Result<serde_json::Value, Error> {
        self.d
            .rt
            .block_on(self.d.inner.secrets().resolve(config, opts))
    }

    pub fn check(
        &self,
        config: &serde_json::Value,
        opts: &super::ResolveOptions,
    ) -> Result<super::CheckReport, Error> {
        self.d
            .rt
            .block_on(self.d.inner.secrets().check(config, opts))
    }

    pub fn usage(&self, key: &str) -> Result<Vec<crate::wire::UsageEntry>, Error> {
        self.d.rt.block_on(self.d.inner.secrets().usage(key))
    }

    pub fn batch_get(
        &self,
        keys: &[SecretKey],
        app: Option<&str>,
        env: Option<&str>,
    ) -> Result<Vec<super::secrets::BatchResult>, Error> {
        self.d
            .rt
            .block_on(self.d.inner.secrets().batch_get(keys, app, env))
    }
}

/// Blocking access-key operations.
pub struct AccessKeys<'a> {
    d: &'a Ductape,
}

impl AccessKeys<'_> {
    pub fn create(&self, opts: AccessKeyOptions) -> Result<CreatedAccessKey, Error> {
        self.d.rt.block_on(self.d.inner.access_keys().create(opts))
    }

    pub fn list(&self) -> Result<Vec<AccessKeyInfo>, Error> {
        self.d.rt.block_on(self.d.inner.access_keys().list())
    }

    pub fn delete(&self, id: &str) -> Result<bool, Error> {
        self.d.rt.block_on(self.d.inner.access_keys().delete(id))
    }
}
