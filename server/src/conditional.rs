//! Conditional requests on a secret: `ETag` on reads, `If-None-Match` (304 when the client
//! holds the current value), `If-Match` on changes (409 `version_conflict` when stale).
//!
//! The tag is `"<version>-<12 hex of SHA-256 of the stored value>"`: the version says which
//! value, the hash changes when a rotation reseals the same value (a client holding the old
//! ciphertext must fetch the new one). `If-Match` compares versions only (`"<version>"` or
//! a full tag this server sent), since a reseal does not change the value.

use axum::http::{HeaderMap, HeaderValue};
use ductape::crypto::sha256_hex;
use ductape::ErrorCode;

use crate::error::ApiError;

/// The entity tag of a secret at `version` whose stored value is `ciphertext`.
pub fn etag(version: i64, ciphertext: &str) -> HeaderValue {
    let tag = format!("\"{version}-{}\"", &sha256_hex(ciphertext)[..12]);
    HeaderValue::from_str(&tag).expect("digits, hex and quotes are a valid header value")
}

/// The answer to a read that passed its checks and audit: the secret with its `ETag`, or
/// 304 (no body) when `If-None-Match` names the copy the client holds.
pub fn read_answer(
    headers: &HeaderMap,
    s: ductape::wire::SecretWithCiphertext,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let tag = etag(s.record.version, &s.ciphertext);
    let mut response = if none_match(headers, &tag) {
        axum::http::StatusCode::NOT_MODIFIED.into_response()
    } else {
        axum::Json(s).into_response()
    };
    response.headers_mut().insert(axum::http::header::ETAG, tag);
    response
}

/// Whether `If-None-Match` names `current` (or is `*`): the client's copy is current.
pub fn none_match(headers: &HeaderMap, current: &HeaderValue) -> bool {
    let current = current.to_str().unwrap_or_default();
    headers
        .get_all(axum::http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == current)
}

/// The version `If-Match` requires, if the header is given (`*`: any, so none).
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            ErrorCode::InvalidField,
            "header 'If-Match' must be one entity tag this server sent (e.g. \"3\" or \"3-0a1b2c3d4e5f\") or *",
        )
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    // `*` (any version), or an empty header (as if absent: some clients send one for "no
    // condition"): no version required.
    if text == "*" || text.is_empty() {
        return Ok(None);
    }
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or_else(bad)?;
    let version = inner.split_once('-').map_or(inner, |(v, _)| v);
    version
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .map(Some)
        .ok_or_else(bad)
}

/// The version a change must find: `If-Match` or the body's `expected_version`. Both given
/// and different: no version satisfies them, so the change is refused as a conflict.
pub fn required_version(
    headers: &HeaderMap,
    from_body: Option<i64>,
) -> Result<Option<i64>, ApiError> {
    match (if_match(headers)?, from_body) {
        (Some(h), Some(b)) if h != b => Err(ApiError::new(
            ErrorCode::VersionConflict,
            format!("header 'If-Match' ({h}) and field 'expected_version' ({b}) cannot both hold"),
        )),
        (h, b) => Ok(h.or(b)),
    }
}

/// 409 unless the secret `key` is at `want` (when a version is required).
pub fn check_version(key: &str, want: Option<i64>, have: i64) -> Result<(), ApiError> {
    match want {
        Some(v) if v != have => Err(ApiError::new(
            ErrorCode::VersionConflict,
            format!("Secret '{key}' is at version {have}, not {v}: read it again and retry"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: axum::http::HeaderName, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn if_match_takes_a_version_or_a_tag_and_refuses_junk() {
        use axum::http::header::IF_MATCH;
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        assert_eq!(if_match(&headers(IF_MATCH, "\"3\"")).unwrap(), Some(3));
        assert_eq!(
            if_match(&headers(IF_MATCH, "\"12-0a1b2c3d4e5f\"")).unwrap(),
            Some(12)
        );
        assert_eq!(if_match(&headers(IF_MATCH, "*")).unwrap(), None);
        assert_eq!(if_match(&headers(IF_MATCH, "")).unwrap(), None);
        for junk in ["3", "\"x\"", "\"0\"", "\"-1\"", "\"\""] {
            assert_eq!(
                if_match(&headers(IF_MATCH, junk)).unwrap_err().code,
                ErrorCode::InvalidField,
                "{junk}"
            );
        }
    }

    #[test]
    fn if_none_match_is_met_by_the_current_tag_only() {
        use axum::http::header::IF_NONE_MATCH;
        let tag = etag(4, "dv2.1.AAAA.x:y");
        let t = tag.to_str().unwrap();
        assert!(none_match(&headers(IF_NONE_MATCH, t), &tag));
        assert!(none_match(
            &headers(IF_NONE_MATCH, &format!("\"1-x\", {t}")),
            &tag
        ));
        assert!(none_match(&headers(IF_NONE_MATCH, "*"), &tag));
        assert!(!none_match(&headers(IF_NONE_MATCH, "\"4\""), &tag));
        assert!(!none_match(&HeaderMap::new(), &tag));
        assert_ne!(etag(4, "dv2.2.BBBB.x:y"), tag, "a reseal changes the tag");
    }
}
