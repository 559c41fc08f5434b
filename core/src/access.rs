//! The access rules of DESIGN.md §5, in their order, with their exact messages.
//!
//! The server applies them before returning any ciphertext; the client's resolver reports
//! them. Both call [`check`], so the rule and its wording exist once.

use crate::error::{Error, ErrorCode};
use crate::wire::{SealedValue, SecretRecord, SecretStatus};

/// Who is asking: the app tag and environment a read is for (either may be unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context<'a> {
    pub app: Option<&'a str>,
    /// Environments the reader is in; the secret must be available in one of them.
    pub envs: &'a [String],
}

/// Checks, in order: the secret exists; it is not revoked; it is not expired; its scope is
/// empty or holds the app; its `envs` is empty or holds the environment.
///
/// ```
/// use ductape::access::{check, Context};
/// let e = check("MY_SECRET", None, Context::default(), 0).unwrap_err();
/// assert_eq!(e.message(), "Secret 'MY_SECRET' not found");
/// ```
pub fn check(
    key: &str,
    secret: Option<&SecretRecord>,
    ctx: Context<'_>,
    now_secs: i64,
) -> Result<(), Error> {
    check_rules(key, secret.map(Rules::from), ctx, now_secs)
}

/// The fields of a secret that [`check`] reads: from its whole record, or from the
/// compact answer of a batch read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules<'a> {
    pub status: SecretStatus,
    pub expires_at: Option<i64>,
    pub scope: &'a [String],
    pub envs: &'a [String],
}

impl<'a> From<&'a SecretRecord> for Rules<'a> {
    fn from(r: &'a SecretRecord) -> Self {
        Rules {
            status: r.status,
            expires_at: r.expires_at,
            scope: &r.scope,
            envs: &r.envs,
        }
    }
}

impl<'a, S> From<&'a SealedValue<S>> for Rules<'a> {
    fn from(v: &'a SealedValue<S>) -> Self {
        Rules {
            status: v.status,
            expires_at: v.expires_at,
            scope: &v.scope,
            envs: &v.envs,
        }
    }
}

/// [`check`] of a secret's [`Rules`] (`None`: it does not exist).
pub fn check_rules(
    key: &str,
    secret: Option<Rules<'_>>,
    ctx: Context<'_>,
    now_secs: i64,
) -> Result<(), Error> {
    let Some(s) = secret else {
        return Err(Error::new(
            ErrorCode::SecretNotFound,
            format!("Secret '{key}' not found"),
        ));
    };
    let revoked = s.status == SecretStatus::Revoked;
    match SecretStatus::derive(revoked, s.expires_at, now_secs) {
        SecretStatus::Revoked => {
            return Err(Error::new(
                ErrorCode::SecretRevoked,
                format!("Secret '{key}' has been revoked"),
            ))
        }
        SecretStatus::Expired => {
            return Err(Error::new(
                ErrorCode::SecretExpired,
                format!("Secret '{key}' has expired"),
            ))
        }
        SecretStatus::Active => {}
    }
    check_scope(key, s.scope, s.envs, ctx)
}

/// The scope and environment rules alone: whether a reader in `ctx` may see the secret at
/// all (used to filter listings for app/env-bound access keys).
pub fn check_scope(
    key: &str,
    scope: &[String],
    envs: &[String],
    ctx: Context<'_>,
) -> Result<(), Error> {
    if let Some(app) = ctx.app {
        if !scope.is_empty() && !scope.iter().any(|a| a == app) {
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                format!("Secret '{key}' is not accessible by app '{app}'"),
            ));
        }
    }
    if !ctx.envs.is_empty() && !envs.is_empty() && !ctx.envs.iter().any(|e| envs.contains(e)) {
        return Err(Error::new(
            ErrorCode::PermissionDenied,
            format!(
                "Secret '{key}' is not available in environment '{}'",
                ctx.envs.join(",")
            ),
        ));
    }
    Ok(())
}

/// What an access key is bound to: an app tag and environments (either may be open).
///
/// Reads use [`check_scope`] with the binding (a key sees what its app and environments
/// may read, shared secrets included). Writes are stricter, see [`check_write_within`].
pub type Binding<'a> = Context<'a>;

impl Context<'_> {
    /// Whether this context constrains anything (a key bound to an app or environments).
    pub fn is_bound(&self) -> bool {
        self.app.is_some() || !self.envs.is_empty()
    }

    /// Whether a secret with this scope and these environments is visible at all.
    pub fn can_see(&self, scope: &[String], envs: &[String]) -> bool {
        check_scope("", scope, envs, *self).is_ok()
    }
}

/// A bound key's write must leave the secret inside its binding: readable by no app other
/// than the key's and in no environment outside the key's. An empty `scope` (every app) or
/// empty `envs` (every environment) is wider than any binding, so a bound key can neither
/// make nor change such a secret; nor can it widen a secret's audience beyond itself.
///
/// ```
/// use ductape::access::{check_write_within, Context};
/// let prd = vec!["prd".to_string()];
/// let bound = Context { app: Some("web"), envs: &prd };
/// assert!(check_write_within("K", &["web".into()], &prd, bound).is_ok());
/// assert!(check_write_within("K", &[], &prd, bound).is_err()); // every app could read it
/// assert!(check_write_within("K", &["web".into(), "api".into()], &prd, bound).is_err());
/// ```
pub fn check_write_within(
    key: &str,
    scope: &[String],
    envs: &[String],
    binding: Binding<'_>,
) -> Result<(), Error> {
    if let Some(app) = binding.app {
        if scope.is_empty() || scope.iter().any(|a| a != app) {
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                format!(
                    "Secret '{key}' must stay within app '{app}' (this access key is bound to it): its scope must be exactly ['{app}']"
                ),
            ));
        }
    }
    if !binding.envs.is_empty()
        && (envs.is_empty() || envs.iter().any(|e| !binding.envs.contains(e)))
    {
        return Err(Error::new(
            ErrorCode::PermissionDenied,
            format!(
                "Secret '{key}' must stay within environments '{}' (this access key is bound to them): its envs must be a non-empty subset",
                binding.envs.join(",")
            ),
        ));
    }
    Ok(())
}

/// Whether a new access key (its app and environments) is no wider than `binding`: a bound
/// key can only issue keys bound at least as narrowly as itself.
///
/// ```
/// use ductape::access::{key_within, Context};
/// let prd = vec!["prd".to_string()];
/// let bound = Context { app: Some("web"), envs: &prd };
/// assert!(key_within(Some("web"), &prd, bound));
/// assert!(!key_within(None, &prd, bound)); // an unbound key would open every app
/// assert!(!key_within(Some("web"), &[], bound));
/// ```
pub fn key_within(app: Option<&str>, envs: &[String], binding: Binding<'_>) -> bool {
    let app_ok = match binding.app {
        Some(b) => app == Some(b),
        None => true,
    };
    let envs_ok = binding.envs.is_empty()
        || (!envs.is_empty() && envs.iter().all(|e| binding.envs.contains(e)));
    app_ok && envs_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        scope: &[&str],
        envs: &[&str],
        status: SecretStatus,
        expires_at: Option<i64>,
    ) -> SecretRecord {
        SecretRecord {
            id: "0".repeat(24),
            workspace_id: "ws".into(),
            key: "K".into(),
            description: None,
            token_type: None,
            scope: scope.iter().map(|s| s.to_string()).collect(),
            envs: envs.iter().map(|s| s.to_string()).collect(),
            expires_at,
            created_at: String::new(),
            updated_at: String::new(),
            version: 1,
            status,
        }
    }

    fn ctx<'a>(app: Option<&'a str>, envs: &'a [String]) -> Context<'a> {
        Context { app, envs }
    }

    #[test]
    fn the_messages_are_the_documented_ones() {
        let dev = vec!["dev".to_string()];
        let active = SecretStatus::Active;
        let cases = [
            (
                record(&["stripe_app"], &[], active, None),
                ctx(Some("other_app"), &[]),
                "Secret 'K' is not accessible by app 'other_app'",
            ),
            (
                record(&[], &["prd"], active, None),
                ctx(None, &dev),
                "Secret 'K' is not available in environment 'dev'",
            ),
            (
                record(&[], &[], active, Some(10)),
                ctx(None, &[]),
                "Secret 'K' has expired",
            ),
            (
                record(&[], &[], SecretStatus::Revoked, None),
                ctx(None, &[]),
                "Secret 'K' has been revoked",
            ),
        ];
        for (rec, c, msg) in cases {
            assert_eq!(check("K", Some(&rec), c, 100).unwrap_err().message(), msg);
        }
    }

    #[test]
    fn revoked_is_reported_before_expired_and_scope() {
        let rec = record(&["a"], &["prd"], SecretStatus::Revoked, Some(1));
        let e = check("K", Some(&rec), ctx(Some("b"), &["dev".to_string()]), 100).unwrap_err();
        assert_eq!(e.code(), ErrorCode::SecretRevoked);
    }

    #[test]
    fn a_bound_write_must_stay_inside_the_binding() {
        let prd = vec!["prd".to_string()];
        let both = vec!["prd".to_string(), "dev".to_string()];
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let bound = ctx(Some("a"), &prd);
        assert!(check_write_within("K", &s(&["a"]), &prd, bound).is_ok());
        for (scope, envs) in [
            (s(&[]), prd.clone()),
            (s(&["b"]), prd.clone()),
            (s(&["a", "b"]), prd.clone()),
            (s(&["a"]), vec![]),
            (s(&["a"]), both.clone()),
        ] {
            let e = check_write_within("K", &scope, &envs, bound).unwrap_err();
            assert_eq!(e.code(), ErrorCode::PermissionDenied, "{scope:?} {envs:?}");
        }
        // An unbound key writes anything; an app-only binding leaves envs open.
        assert!(check_write_within("K", &[], &[], Context::default()).is_ok());
        assert!(check_write_within("K", &s(&["a"]), &[], ctx(Some("a"), &[])).is_ok());
    }

    #[test]
    fn a_bound_key_issues_keys_no_wider_than_itself() {
        let prd = vec!["prd".to_string()];
        let both = vec!["prd".to_string(), "dev".to_string()];
        let bound = ctx(Some("a"), &prd);
        assert!(key_within(Some("a"), &prd, bound));
        assert!(!key_within(Some("b"), &prd, bound));
        assert!(!key_within(None, &prd, bound));
        assert!(!key_within(Some("a"), &both, bound));
        assert!(!key_within(Some("a"), &[], bound));
        assert!(key_within(None, &[], Context::default()));
        assert!(key_within(Some("a"), &both, ctx(Some("a"), &[])));
    }

    #[test]
    fn empty_scope_and_envs_allow_everyone() {
        let rec = record(&[], &[], SecretStatus::Active, Some(1000));
        assert!(check("K", Some(&rec), ctx(Some("any"), &["dev".to_string()]), 100).is_ok());
        let rec = record(&["a", "b"], &["dev", "prd"], SecretStatus::Active, None);
        assert!(check("K", Some(&rec), ctx(Some("b"), &["prd".to_string()]), 100).is_ok());
    }
}
