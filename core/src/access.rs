//! The access rules of DESIGN.md §5, in their order, with their exact messages.
//!
//! The server applies them before returning any ciphertext; the client's resolver reports
//! them. Both call [`check`], so the rule and its wording exist once.

use crate::error::{Error, ErrorCode};
use crate::wire::{SecretRecord, SecretStatus};

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
    check_scope(key, &s.scope, &s.envs, ctx)
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
    fn empty_scope_and_envs_allow_everyone() {
        let rec = record(&[], &[], SecretStatus::Active, Some(1000));
        assert!(check("K", Some(&rec), ctx(Some("any"), &["dev".to_string()]), 100).is_ok());
        let rec = record(&["a", "b"], &["dev", "prd"], SecretStatus::Active, None);
        assert!(check("K", Some(&rec), ctx(Some("b"), &["prd".to_string()]), 100).is_ok());
    }
}
