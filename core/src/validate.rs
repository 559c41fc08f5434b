//! Validation of everything a caller can send, shared by the server and every client so
//! that the rules (and their messages) exist once.
//!
//! Messages name the field and the rule, never the offending value: a value put in the
//! wrong field may be a secret.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

use crate::error::{Error, ErrorCode};

/// Longest secret key, in characters.
pub const MAX_KEY_LEN: usize = 256;
/// Largest plaintext value, in bytes (64 KiB).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Longest app tag or environment slug, in characters.
pub const MAX_TAG_LEN: usize = 64;
/// Most entries in `scope` or `envs`.
pub const MAX_TAGS: usize = 100;

/// A validated secret key: 1 to 256 characters of `A-Z a-z 0-9 _ . -`, starting with a
/// letter, digit or `_`; case-sensitive.
///
/// ```
/// use ductape::SecretKey;
/// assert!(SecretKey::parse("STRIPE_API_KEY").is_ok());
/// assert!(SecretKey::parse("has space").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SecretKey(String);

impl SecretKey {
    pub fn parse(s: &str) -> Result<SecretKey, Error> {
        Self::check(s)?;
        Ok(Self::checked(s))
    }

    /// A key from text that [`SecretKey::check`] has passed.
    pub(crate) fn checked(s: &str) -> SecretKey {
        debug_assert!(Self::check(s).is_ok());
        SecretKey(s.to_owned())
    }

    /// Whether `s` is a well-formed key ([`SecretKey::parse`] without the copy).
    pub fn check(s: &str) -> Result<(), Error> {
        // The common case in one pass over the bytes (every character a key may hold is
        // ASCII); anything else goes through the checks below, which name what is wrong.
        let fine = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
        if s.len() <= MAX_KEY_LEN
            && s.as_bytes()
                .first()
                .is_some_and(|b| fine(b) && !matches!(b, b'.' | b'-'))
            && s.as_bytes().iter().all(fine)
        {
            return Ok(());
        }
        if s.is_empty() {
            return Err(Error::invalid_field("field 'key' must not be empty"));
        }
        if s.chars().count() > MAX_KEY_LEN {
            return Err(Error::invalid_field(format!(
                "field 'key' must be at most {MAX_KEY_LEN} characters"
            )));
        }
        // The first character may not be '.' or '-': keys travel in URL paths, where
        // "." and ".." have meanings of their own.
        let first_ok = s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok || !s.chars().all(is_name_char) {
            return Err(Error::invalid_field(
                "field 'key' may contain only letters, digits, '_', '.' and '-', and must start with a letter, digit or '_'",
            ));
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Looked up by its text in maps keyed by it (hashes and compares as its `str`).
impl std::borrow::Borrow<str> for SecretKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// [`SecretKey::parse`] of a string already owned, kept rather than copied.
impl TryFrom<String> for SecretKey {
    type Error = Error;

    fn try_from(s: String) -> Result<SecretKey, Error> {
        Self::check(&s)?;
        Ok(SecretKey(s))
    }
}

impl<'de> Deserialize<'de> for SecretKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SecretKey::try_from(String::deserialize(d)?)
            .map_err(|e| serde::de::Error::custom(e.message()))
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// The documented token types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Api,
    Access,
}

impl TokenType {
    pub fn parse(s: &str) -> Result<TokenType, Error> {
        match s {
            "api" => Ok(TokenType::Api),
            "access" => Ok(TokenType::Access),
            _ => Err(Error::invalid_field(
                "field 'token_type' must be 'api' or 'access'",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Api => "api",
            TokenType::Access => "access",
        }
    }
}

/// Checks a plaintext value's size.
pub fn check_value(value: &str) -> Result<(), Error> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::new(
            ErrorCode::PayloadTooLarge,
            format!("field 'value' must be at most {MAX_VALUE_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Validates `scope` / `envs` entries; drops repeats, keeping the first.
pub fn check_tags(field: &str, tags: Vec<String>) -> Result<Vec<String>, Error> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid_field(format!(
            "field '{field}' may hold at most {MAX_TAGS} entries"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        if tag.is_empty() || tag.chars().count() > MAX_TAG_LEN || !tag.chars().all(is_name_char) {
            return Err(Error::invalid_field(format!(
                "field '{field}' entries must be 1 to {MAX_TAG_LEN} letters, digits, '_', '.' or '-'"
            )));
        }
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    Ok(out)
}

/// Validates a description's length.
pub fn check_description(d: &str) -> Result<(), Error> {
    if d.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(Error::invalid_field(format!(
            "field 'description' must be at most {MAX_DESCRIPTION_LEN} characters"
        )));
    }
    Ok(())
}

/// Validates an expiry: a positive whole number of Unix seconds.
pub fn check_expires_at(t: i64) -> Result<(), Error> {
    if t <= 0 {
        return Err(Error::invalid_field(
            "field 'expires_at' must be a positive integer (Unix seconds) or null",
        ));
    }
    Ok(())
}

/// A change to a field that may be cleared: absent, set to null, or set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T> Patch<T> {
    pub fn is_keep(&self) -> bool {
        matches!(self, Patch::Keep)
    }

    /// Applies the patch to the current value.
    pub fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Patch::Keep => current,
            Patch::Clear => None,
            Patch::Set(v) => Some(v),
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Patch<U> {
        match self {
            Patch::Keep => Patch::Keep,
            Patch::Clear => Patch::Clear,
            Patch::Set(v) => Patch::Set(f(v)),
        }
    }
}

impl<T> Patch<Vec<T>> {
    /// The list as set (not set, or cleared: the empty list), as a create reads it.
    pub fn as_slice(&self) -> &[T] {
        match self {
            Patch::Set(v) => v,
            _ => &[],
        }
    }

    /// For list fields, where cleared means the empty list.
    pub fn apply_list(self, current: Vec<T>) -> Vec<T> {
        self.apply(Some(current)).unwrap_or_default()
    }
}

/// The metadata fields of a secret as a caller sends them, validated.
///
/// On create, an absent or null field means "not set"; on update, absent means "keep" and
/// null means "clear" (for `scope`/`envs`, clear means the empty list: all apps, all envs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataInput {
    pub description: Patch<String>,
    pub token_type: Patch<TokenType>,
    pub scope: Patch<Vec<String>>,
    pub envs: Patch<Vec<String>>,
    pub expires_at: Patch<i64>,
}

impl MetadataInput {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        self.description.is_keep()
            && self.token_type.is_keep()
            && self.scope.is_keep()
            && self.envs.is_keep()
            && self.expires_at.is_keep()
    }

    /// Reads the metadata fields from a JSON object (other fields are left to the caller).
    pub fn from_object(obj: &Map<String, Value>) -> Result<MetadataInput, Error> {
        Ok(MetadataInput {
            description: patch_field(obj, "description", |v| {
                let s = v
                    .as_str()
                    .ok_or_else(|| type_error("description", "a string"))?;
                check_description(s)?;
                Ok(s.to_owned())
            })?,
            token_type: patch_field(obj, "token_type", |v| {
                let s = v
                    .as_str()
                    .ok_or_else(|| type_error("token_type", "'api' or 'access'"))?;
                TokenType::parse(s)
            })?,
            scope: patch_field(obj, "scope", |v| tags_field("scope", v))?,
            envs: patch_field(obj, "envs", |v| tags_field("envs", v))?,
            expires_at: patch_field(obj, "expires_at", |v| {
                let t = json_integer(v).ok_or_else(|| {
                    Error::invalid_field(
                        "field 'expires_at' must be a positive integer (Unix seconds) or null",
                    )
                })?;
                check_expires_at(t)?;
                Ok(t)
            })?,
        })
    }
}

impl MetadataInput {
    /// Writes the fields into a request body: set as values, cleared as null, kept absent.
    pub fn write_to(&self, obj: &mut Map<String, Value>) {
        fn put<T: Serialize>(obj: &mut Map<String, Value>, field: &str, p: &Patch<T>) {
            match p {
                Patch::Keep => {}
                Patch::Clear => {
                    obj.insert(field.to_owned(), Value::Null);
                }
                Patch::Set(v) => {
                    obj.insert(
                        field.to_owned(),
                        serde_json::to_value(v).unwrap_or(Value::Null),
                    );
                }
            }
        }
        put(obj, "description", &self.description);
        put(obj, "token_type", &self.token_type);
        put(obj, "scope", &self.scope);
        put(obj, "envs", &self.envs);
        put(obj, "expires_at", &self.expires_at);
    }
}

/// The metadata field names, for composing the lists of allowed fields.
pub const METADATA_FIELDS: [&str; 5] = ["description", "token_type", "scope", "envs", "expires_at"];

/// Reads the optional `expected_version` (optimistic concurrency) of an update.
pub fn expected_version(obj: &Map<String, Value>) -> Result<Option<i64>, Error> {
    version_field(obj, "expected_version")
}

/// Reads an optional positive version number from field `name`.
pub fn version_field(obj: &Map<String, Value>, name: &str) -> Result<Option<i64>, Error> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => json_integer(v).filter(|n| *n > 0).map(Some).ok_or_else(|| {
            Error::invalid_field(format!("field '{name}' must be a positive integer"))
        }),
    }
}

/// The body must be a JSON object; returns it.
pub fn json_object(v: &Value) -> Result<&Map<String, Value>, Error> {
    v.as_object().ok_or_else(|| {
        Error::new(
            ErrorCode::MalformedBody,
            "the request body must be a JSON object",
        )
    })
}

/// Rejects fields outside `allowed` (a misspelt `expiresAt` must not be silently ignored).
pub fn reject_unknown_fields(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), Error> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        // The name is not repeated: a value pasted where a name belongs may be a secret.
        Some(_) => Err(Error::invalid_field(format!(
            "the body has a field that is not allowed here (allowed: {})",
            allowed.join(", ")
        ))),
    }
}

/// Reads a required string field.
pub fn required_string<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, Error> {
    match obj.get(field) {
        None | Some(Value::Null) => {
            Err(Error::invalid_field(format!("field '{field}' is required")))
        }
        Some(v) => v.as_str().ok_or_else(|| type_error(field, "a string")),
    }
}

fn patch_field<T>(
    obj: &Map<String, Value>,
    field: &str,
    parse: impl FnOnce(&Value) -> Result<T, Error>,
) -> Result<Patch<T>, Error> {
    match obj.get(field) {
        None => Ok(Patch::Keep),
        Some(Value::Null) => Ok(Patch::Clear),
        Some(v) => parse(v).map(Patch::Set),
    }
}

/// An access key's `permissions`: a non-empty array of permission names, each kept once in
/// the order given.
pub fn permissions(obj: &Map<String, Value>) -> Result<Vec<crate::wire::Permission>, Error> {
    let refused = || {
        Error::invalid_field(
            "field 'permissions' must be a non-empty array of: list, read, write, revoke, admin",
        )
    };
    let named = obj
        .get("permissions")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(refused)?;
    let mut out = Vec::with_capacity(named.len());
    for p in named {
        let p = p
            .as_str()
            .and_then(crate::wire::Permission::parse)
            .ok_or_else(refused)?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// An optional single tag (an app tag or environment slug): absent or null is `None`.
pub fn optional_tag(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, Error> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(check_tags(field, vec![s.clone()])?.pop()),
        Some(_) => Err(type_error(field, "a string or null")),
    }
}

/// An optional boolean: absent or null is `false`.
pub fn optional_flag(obj: &Map<String, Value>, field: &str) -> Result<bool, Error> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(type_error(field, "a boolean")),
    }
}

/// An optional list of tags: absent or null is the empty list.
pub fn optional_tags(obj: &Map<String, Value>, field: &str) -> Result<Vec<String>, Error> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => tags_field(field, v),
    }
}

fn tags_field(field: &str, v: &Value) -> Result<Vec<String>, Error> {
    let arr = v
        .as_array()
        .ok_or_else(|| type_error(field, "an array of strings"))?;
    let tags = arr
        .iter()
        .map(|t| t.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| type_error(field, "an array of strings"))?;
    check_tags(field, tags)
}

fn type_error(field: &str, expected: &str) -> Error {
    Error::invalid_field(format!("field '{field}' must be {expected}"))
}

/// An integer as JSON Schema counts them: `5` or `5.0` (not `5.5`, not out of range).
fn json_integer(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// An expiry as people write it, as Unix seconds: Unix seconds (`2082758400`), an RFC 3339
/// date-time (`2027-01-01T09:00:00Z`, `2027-01-01T09:00:00+02:00`), a date (`2027-01-01`:
/// its first second, UTC), or a duration from `now` (`90d`, `12h`, `2w`, `1y`, `1h30m`:
/// humantime's units). The result is checked as any `expires_at` is, when sent.
///
/// ```
/// use ductape::validate::parse_expiry;
/// assert_eq!(parse_expiry("2082758400", 0).unwrap(), 2082758400);
/// assert_eq!(parse_expiry("2027-01-01", 0).unwrap(), 1798761600);
/// assert_eq!(parse_expiry("90d", 1_000).unwrap(), 1_000 + 90 * 86_400);
/// assert!(parse_expiry("next tuesday", 0).is_err());
/// ```
pub fn parse_expiry(text: &str, now: i64) -> Result<i64, Error> {
    use time::format_description::well_known::Rfc3339;
    let text = text.trim();
    let bad = || {
        Error::invalid_field(
            "expires_at must be Unix seconds, an RFC 3339 date (2027-01-01) or date-time \
             (2027-01-01T09:00:00Z), or a duration from now (90d, 12h, 2w)",
        )
    };
    if text.is_empty() {
        return Err(bad());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| bad());
    }
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let date = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(text, &date) {
        return Ok(d.midnight().assume_utc().unix_timestamp());
    }
    let span = humantime::parse_duration(text).map_err(|_| bad())?;
    i64::try_from(span.as_secs())
        .ok()
        .and_then(|s| now.checked_add(s))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_people_write_and_the_ones_refused() {
        let now = 1_800_000_000;
        assert_eq!(parse_expiry(" 2082758400 ", now).unwrap(), 2_082_758_400);
        assert_eq!(
            parse_expiry("2027-01-01T09:00:00+02:00", now).unwrap(),
            1_798_761_600 + 7 * 3600
        );
        assert_eq!(
            parse_expiry("2027-01-01T09:00:00.5Z", now).unwrap(),
            1_798_794_000
        );
        assert_eq!(parse_expiry("12h", now).unwrap(), now + 12 * 3600);
        assert_eq!(parse_expiry("1h 30m", now).unwrap(), now + 5400);
        assert_eq!(parse_expiry("2w", now).unwrap(), now + 14 * 86_400);
        for bad in [
            "",
            "-5d",
            "2027-13-01",
            "2027-01-01 09:00",
            "tomorrow",
            "99999999999999999999",
            "9999999999999999999y",
        ] {
            let e = parse_expiry(bad, now).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidField, "{bad:?}");
            if !bad.is_empty() {
                assert!(
                    !e.message().contains(bad),
                    "the text is not echoed: {bad:?}"
                );
            }
        }
    }
    use serde_json::json;

    #[test]
    fn secret_keys_accept_the_documented_names_and_reject_the_rest() {
        for ok in [
            "STRIPE_API_KEY",
            "db.password-staging",
            "a",
            "_under",
            "9lives",
            &"K".repeat(256),
        ] {
            assert!(SecretKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "has space",
            "slash/key",
            "ü",
            &"K".repeat(257),
            "a$b",
            ".",
            "..",
            "-x",
            "x\u{0}",
            &"é".repeat(100),
        ] {
            let e = SecretKey::parse(bad).unwrap_err();
            assert_eq!(e.status(), Some(422));
            assert!(e.message().contains("'key'"));
        }
    }

    #[test]
    fn metadata_distinguishes_absent_null_and_set() {
        let m = MetadataInput::from_object(
            json!({"description": null, "scope": ["a", "b", "a"], "expires_at": 5})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(m.description, Patch::Clear);
        assert_eq!(m.scope, Patch::Set(vec!["a".into(), "b".into()]));
        assert_eq!(m.envs, Patch::Keep);
        assert_eq!(m.expires_at, Patch::Set(5));
    }

    #[test]
    fn metadata_type_errors_name_the_field_but_not_the_value() {
        let cases = [
            (json!({"scope": "sk_live_canary"}), "'scope'"),
            (json!({"envs": [1]}), "'envs'"),
            (json!({"token_type": "sk_live_canary"}), "'token_type'"),
            (json!({"expires_at": -1}), "'expires_at'"),
            (json!({"expires_at": 1.5}), "'expires_at'"),
            (json!({"expires_at": "sk_live_canary"}), "'expires_at'"),
            (json!({"description": 7}), "'description'"),
        ];
        for (body, field) in cases {
            let e = MetadataInput::from_object(body.as_object().unwrap()).unwrap_err();
            assert_eq!(e.status(), Some(422), "{body}");
            assert!(e.message().contains(field), "{}", e.message());
            assert!(!e.message().contains("canary"));
        }
    }

    #[test]
    fn oversized_values_are_413() {
        assert!(check_value(&"x".repeat(MAX_VALUE_BYTES)).is_ok());
        let e = check_value(&"x".repeat(MAX_VALUE_BYTES + 1)).unwrap_err();
        assert_eq!(e.status(), Some(413));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let body = json!({"key": "A", "expiresAt": 5});
        let e =
            reject_unknown_fields(body.as_object().unwrap(), &["key", "expires_at"]).unwrap_err();
        assert!(e.message().contains("allowed: key, expires_at"));
        assert!(!e.message().contains("expiresAt"));
    }
}
