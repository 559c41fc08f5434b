//! Using secrets at run time: resolve `$Token{KEY}` references in a configuration, or
//! check beforehand that they would resolve. All referenced secrets come in one request.

use foldhash::{HashMap, HashMapExt};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

use super::Secrets;
use crate::access::{self, Context};
use crate::error::Error;
use crate::references;
use crate::validate::{self, SecretKey};

/// The app and environment a configuration is resolved for.
#[derive(Clone, Debug, Default)]
pub struct ResolveOptions {
    /// The app tag (checked against each secret's `scope`).
    pub app: Option<String>,
    /// The environment slug (checked against each secret's `envs`).
    pub env: Option<String>,
    /// For `check`: report secrets expiring within this window as warnings (default 7 days).
    pub expiring_within: Option<Duration>,
}

impl ResolveOptions {
    pub fn new(app: Option<&str>, env: Option<&str>) -> Self {
        ResolveOptions {
            app: app.map(str::to_owned),
            env: env.map(str::to_owned),
            expiring_within: None,
        }
    }

    fn validated(&self) -> Result<(), Error> {
        if let Some(a) = &self.app {
            validate::check_tags("app", vec![a.clone()])?;
        }
        if let Some(e) = &self.env {
            validate::check_tags("env", vec![e.clone()])?;
        }
        Ok(())
    }
}

/// Default window for expiry warnings.
pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);

/// One reference in a check report. Never holds a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckItem {
    pub key: String,
    /// Whether it would resolve.
    pub ok: bool,
    /// Why not: the machine code, HTTP status and the DESIGN.md §5 message.
    pub code: Option<String>,
    pub status: Option<u16>,
    pub message: Option<String>,
    pub expires_at: Option<i64>,
    /// Set when the secret resolves now but expires within the warning window.
    pub warning: Option<String>,
}

/// The answer of `check`: every reference and whether it would resolve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// True when every reference would resolve (warnings do not count).
    pub ok: bool,
    pub references: Vec<CheckItem>,
}

impl Secrets<'_> {
    /// Returns a copy of `config` with every `$Token{KEY}` replaced by the secret's value.
    /// Fails with the reason of each reference that cannot be resolved (all of them, when
    /// several fail), in the words of DESIGN.md §5.
    ///
    /// ```no_run
    /// # async fn demo(d: ductape::Ductape) -> Result<(), ductape::Error> {
    /// use ductape::client::ResolveOptions;
    /// let config = serde_json::json!({"headers": {"Authorization": "Bearer $Token{STRIPE_KEY}"}});
    /// let resolved = d.secrets().resolve(&config, &ResolveOptions::new(Some("payments"), Some("prd"))).await?;
    /// # let _ = resolved; Ok(()) }
    /// ```
    pub async fn resolve(&self, config: &Value, opts: &ResolveOptions) -> Result<Value, Error> {
        opts.validated()?;
        let values = self.values_of(references::find(config)?, opts).await?;
        references::substitute(config, &|k| values.get(k))
    }

    /// The values of `keys` as `opts` may use them: what [`Secrets::resolve`] puts in for
    /// each reference, for a binding that walks a configuration of its own language with
    /// [`references::Found`] and [`references::substitute_text`]. Fails as `resolve` does.
    pub async fn values_of(
        &self,
        keys: Vec<SecretKey>,
        opts: &ResolveOptions,
    ) -> Result<Values, Error> {
        opts.validated()?;
        let envs: Vec<String> = opts.env.iter().cloned().collect();
        let ctx = Context {
            app: opts.app.as_deref(),
            envs: &envs,
        };
        let mut got = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_BATCH) {
            got.extend(self.resolve_batch(chunk, ctx).await?);
        }
        let mut values = HashMap::with_capacity(keys.len());
        let mut failures = Vec::new();
        for (key, value) in keys.into_iter().zip(got) {
            match value {
                Ok(v) => {
                    values.insert(key, v);
                }
                Err(e) => failures.push(e),
            }
        }
        if !failures.is_empty() {
            return Err(Error::from_failures(failures));
        }
        Ok(Values(values))
    }

    /// The values of `keys`, in their order, as `ctx` may use them. The server applied the
    /// rules; they are checked again here so that a misbehaving server cannot hand out what
    /// they forbid.
    async fn resolve_batch(
        &self,
        keys: &[SecretKey],
        ctx: Context<'_>,
    ) -> Result<Vec<Result<crate::Plaintext, Error>>, Error> {
        if self.client.cache().is_none() {
            return self.batch_values(keys, ctx).await;
        }
        // The cache keeps whole records (its entries answer `batch_get` as well), so a
        // cached client reads them whole.
        let now = crate::ids::now_secs();
        let env = ctx.envs.first().map(String::as_str);
        Ok(self
            .batch_get(keys, ctx.app, env)
            .await?
            .into_iter()
            .map(|(key, got)| {
                got.and_then(|s| {
                    access::check(key.as_str(), Some(&s.record), ctx, now).map(|()| s.value)
                })
            })
            .collect())
    }

    /// Reports every reference in `config` and whether it would resolve, without reading
    /// any value (for CI before a deploy). Secrets expiring soon carry a warning.
    pub async fn check(&self, config: &Value, opts: &ResolveOptions) -> Result<CheckReport, Error> {
        self.check_keys(&references::find(config)?, opts).await
    }

    /// [`Secrets::check`] of the keys a configuration references (see
    /// [`Secrets::values_of`]).
    pub async fn check_keys(
        &self,
        keys: &[SecretKey],
        opts: &ResolveOptions,
    ) -> Result<CheckReport, Error> {
        opts.validated()?;
        let window = opts
            .expiring_within
            .unwrap_or(DEFAULT_EXPIRY_WARNING)
            .as_secs() as i64;
        let now = crate::ids::now_secs();
        let mut items = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_BATCH) {
            for item in self
                .batch_metadata(chunk, opts.app.as_deref(), opts.env.as_deref())
                .await?
            {
                items.push(match item {
                    (key, Ok(record)) => CheckItem {
                        key: key.to_string(),
                        ok: true,
                        code: None,
                        status: None,
                        message: None,
                        expires_at: record.expires_at,
                        warning: record.expires_at.filter(|t| t - now <= window).map(|t| {
                            format!("Secret '{key}' expires in {}", human_duration(t - now))
                        }),
                    },
                    (key, Err(e)) => CheckItem {
                        key: key.to_string(),
                        ok: false,
                        code: Some(e.code_str().to_owned()),
                        status: e.status(),
                        message: Some(e.message().to_owned()),
                        expires_at: None,
                        warning: None,
                    },
                });
            }
        }
        Ok(CheckReport {
            ok: items.iter().all(|i| i.ok),
            references: items,
        })
    }
}

/// The values a resolve puts in, by key. Never shows them (`Debug` lists the keys alone).
pub struct Values(HashMap<SecretKey, crate::Plaintext>);

impl Values {
    /// The value of `key`, if it was asked for.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(crate::Plaintext::expose)
    }
}

impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Most keys per batch request (the server's limit).
pub const MAX_BATCH: usize = 1000;

fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s >= 2 * 86400 => format!("{} days", s / 86400),
        s if s >= 2 * 3600 => format!("{} hours", s / 3600),
        s if s >= 120 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_show_their_keys_never_their_values() {
        let canary = "canary-3f9a1c-value";
        let key = SecretKey::parse("STRIPE_KEY").unwrap();
        let values = Values(
            [(key, crate::Plaintext::from(canary))]
                .into_iter()
                .collect(),
        );
        assert_eq!(values.get("STRIPE_KEY"), Some(canary));
        assert_eq!(values.get("OTHER"), None);
        let shown = format!("{values:?} {values:#?}");
        assert!(
            shown.contains("STRIPE_KEY") && !shown.contains(canary),
            "{shown}"
        );
    }
}
