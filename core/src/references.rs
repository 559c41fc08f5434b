//! `$Token{KEY}` references inside JSON-like configuration.
//!
//! Any string anywhere in the value (object values, array items, nested) may hold any
//! number of references: `"Bearer $Token{STRIPE_KEY}"`. Object keys, numbers, booleans and
//! null are left alone. `$$Token{` stands for a literal `$Token{` (the escape), so a
//! config can carry the text itself. A reference that is not well formed (`$Token{` with
//! no `}`, `$Token{}`, a key with characters keys cannot have) is an error, never text
//! silently left in place.
//!
//! ```
//! use ductape::references::{find, substitute};
//! use serde_json::json;
//! let config = json!({"headers": {"Authorization": "Bearer $Token{STRIPE_KEY}"}, "retries": 3});
//! let keys = find(&config).unwrap();
//! assert_eq!(keys[0].as_str(), "STRIPE_KEY");
//! let out = substitute(&config, &|k| (k == "STRIPE_KEY").then(|| "sk_live_1".to_string())).unwrap();
//! assert_eq!(out["headers"]["Authorization"], "Bearer sk_live_1");
//! ```

use indexmap::IndexSet;
use serde_json::Value;

use crate::error::Error;
use crate::validate::SecretKey;

const OPEN: &str = "$Token{";
const ESCAPED: &str = "$$Token{";

/// One piece of a string: literal text or a reference (a well-formed key name).
enum Piece<'a> {
    Text(&'a str),
    Ref(&'a str),
}

/// Where a string sits in the configuration, as a JSON pointer. Kept as its segments and
/// written out only for an error: resolving a large configuration builds no paths.
#[derive(Default)]
struct Path<'a>(Vec<Segment<'a>>);

/// One step down a configuration: an object's key or an array's index.
#[derive(Clone, Copy)]
pub enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// The JSON pointer of a place in a configuration (`/` for the whole of it), as errors
/// name it.
pub fn pointer<'a>(segments: impl IntoIterator<Item = Segment<'a>>) -> String {
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        match segment {
            Segment::Key(k) => out.push_str(&k.replace('~', "~0").replace('/', "~1")),
            Segment::Index(i) => out.push_str(&i.to_string()),
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

impl Path<'_> {
    fn render(&self) -> String {
        pointer(self.0.iter().copied())
    }
}

fn malformed(place: &dyn Fn() -> String, what: &str) -> Error {
    // The string itself is not repeated: the text around a reference may be sensitive.
    Error::invalid_field(format!("malformed secret reference at {}: {what}", place()))
}

/// Whether a string may hold a reference (or an escape): one without a `$` holds none, and
/// is its own substitute.
pub fn may_reference(s: &str) -> bool {
    s.contains('$')
}

/// The key of a string that is one reference and nothing else (`"$Token{KEY}"`, the common
/// case), read without the general walk; `None` for anything else, which [`each_piece`]
/// reads (errors included).
fn sole_reference(s: &str) -> Option<&str> {
    let name = s.strip_prefix(OPEN)?.strip_suffix('}')?;
    SecretKey::check(name).ok().map(|()| name)
}

fn no_value(key: &str) -> Error {
    Error::invalid_field(format!("no value for secret '{key}'"))
}

/// Calls `f` on each piece of `s` in order (empty text left out); `place` names where `s`
/// is, for errors.
fn each_piece<'a>(
    s: &'a str,
    place: &dyn Fn() -> String,
    mut f: impl FnMut(Piece<'a>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut emit = |piece: Piece<'a>| match piece {
        Piece::Text("") => Ok(()),
        piece => f(piece),
    };
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        let (before, from) = rest.split_at(i);
        emit(Piece::Text(before))?;
        if let Some(after) = from.strip_prefix(ESCAPED) {
            emit(Piece::Text(OPEN))?;
            rest = after;
        } else if let Some(after) = from.strip_prefix(OPEN) {
            let end = after
                .find('}')
                .ok_or_else(|| malformed(place, "'$Token{' has no closing '}'"))?;
            let name = &after[..end];
            if name.is_empty() {
                return Err(malformed(place, "'$Token{}' names no secret"));
            }
            SecretKey::check(name).map_err(|_| {
                malformed(
                    place,
                    "a secret key may contain only letters, digits, '_', '.' and '-'",
                )
            })?;
            emit(Piece::Ref(name))?;
            rest = &after[end + 1..];
        } else {
            emit(Piece::Text("$"))?;
            rest = &from[1..];
        }
    }
    emit(Piece::Text(rest))
}

/// Calls `f` on every string in `v` that may hold a reference (one with a `$`).
fn walk<'a>(
    v: &'a Value,
    path: &mut Path<'a>,
    f: &mut dyn FnMut(&'a str, &Path<'a>) -> Result<(), Error>,
) -> Result<(), Error> {
    match v {
        Value::String(s) if may_reference(s) => f(s, path),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.0.push(Segment::Index(i));
                walk(item, path, f)?;
                path.0.pop();
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, item) in map {
                path.0.push(Segment::Key(k));
                walk(item, path, f)?;
                path.0.pop();
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The keys a configuration references, gathered string by string as a walk finds them:
/// each distinct key once, in order of first appearance.
#[derive(Default)]
pub struct Found(IndexSet<SecretKey, foldhash::fast::RandomState>);

impl Found {
    /// Adds the keys `s` references; `place` names where `s` is, for an error.
    pub fn scan(&mut self, s: &str, place: &dyn Fn() -> String) -> Result<(), Error> {
        if let Some(name) = sole_reference(s) {
            self.add(name);
            return Ok(());
        }
        each_piece(s, place, |piece| {
            if let Piece::Ref(name) = piece {
                self.add(name);
            }
            Ok(())
        })
    }

    /// Adds a well-formed key name, unless it is there already.
    fn add(&mut self, name: &str) {
        if !self.0.contains(name) {
            self.0.insert(SecretKey::checked(name));
        }
    }

    pub fn into_keys(self) -> Vec<SecretKey> {
        self.0.into_iter().collect()
    }
}

/// Every distinct key referenced in `config`, in order of first appearance.
pub fn find(config: &Value) -> Result<Vec<SecretKey>, Error> {
    let mut found = Found::default();
    walk(config, &mut Path::default(), &mut |s, path| {
        found.scan(s, &|| path.render())
    })?;
    Ok(found.into_keys())
}

/// `s` with every reference replaced by `value_of(key)` and every escape unescaped; `place`
/// names where `s` is, for an error. A key with no value is an error (callers resolve
/// every key first).
pub fn substitute_text<V: AsRef<str>>(
    s: &str,
    place: &dyn Fn() -> String,
    value_of: &dyn Fn(&str) -> Option<V>,
) -> Result<String, Error> {
    if let Some(value) = substitute_sole(s, value_of) {
        return value.map(|v| v.as_ref().to_owned());
    }
    let mut out = String::new();
    each_piece(s, place, |piece| {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Ref(k) => out.push_str(value_of(k).ok_or_else(|| no_value(k))?.as_ref()),
        }
        Ok(())
    })?;
    Ok(out)
}

/// What [`substitute_text`] makes of `s` when `s` is one reference and nothing else: the
/// value itself, as `value_of` gives it (a binding builds its string from it without a copy
/// in between). `None` for any other string.
pub fn substitute_sole<V>(
    s: &str,
    value_of: &dyn Fn(&str) -> Option<V>,
) -> Option<Result<V, Error>> {
    let key = sole_reference(s)?;
    Some(value_of(key).ok_or_else(|| no_value(key)))
}

/// A copy of `config` with every string put through [`substitute_text`].
pub fn substitute<V: AsRef<str>>(
    config: &Value,
    value_of: &dyn Fn(&str) -> Option<V>,
) -> Result<Value, Error> {
    fn go<'a, V: AsRef<str>>(
        v: &'a Value,
        path: &mut Path<'a>,
        value_of: &dyn Fn(&str) -> Option<V>,
    ) -> Result<Value, Error> {
        Ok(match v {
            Value::String(s) if may_reference(s) => {
                Value::String(substitute_text(s, &|| path.render(), value_of)?)
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    path.0.push(Segment::Index(i));
                    out.push(go(item, path, value_of)?);
                    path.0.pop();
                }
                Value::Array(out)
            }
            Value::Object(map) => {
                // Collected, then built at once: the entries come in the map's own order,
                // which builds a map without a search per entry.
                let mut out = Vec::with_capacity(map.len());
                for (k, item) in map {
                    path.0.push(Segment::Key(k));
                    out.push((k.clone(), go(item, path, value_of)?));
                    path.0.pop();
                }
                Value::Object(out.into_iter().collect())
            }
            other => other.clone(),
        })
    }
    go(config, &mut Path::default(), value_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(v: Value) -> Vec<String> {
        find(&v)
            .unwrap()
            .into_iter()
            .map(|k| k.to_string())
            .collect()
    }

    #[test]
    fn references_are_found_anywhere_and_only_once() {
        let config = json!({
            "headers": {"Authorization": "Bearer $Token{STRIPE_KEY}", "X": "$Token{A}-$Token{B}"},
            "list": ["$Token{A}", 5, null, true, {"deep": "$Token{C}"}],
            "$Token{NOT_IN_KEYS}": "plain",
        });
        assert_eq!(keys(config), ["STRIPE_KEY", "A", "B", "C"]);
    }

    #[test]
    fn substitution_keeps_the_shape_and_other_values() {
        let config = json!({"a": "x $Token{K} y $Token{K}", "n": 3, "b": [true, "$Token{J}"]});
        let out = substitute(&config, &|k| Some(format!("<{k}>"))).unwrap();
        assert_eq!(out, json!({"a": "x <K> y <K>", "n": 3, "b": [true, "<J>"]}));
    }

    #[test]
    fn values_are_put_in_as_they_are_never_read_for_references() {
        let config = json!({"whole": "$Token{K}", "around": "[$Token{K}]", "n": ["$Token{K}"]});
        let out = substitute(&config, &|_| Some("$Token{OTHER} $$Token{")).unwrap();
        assert_eq!(
            out,
            json!({"whole": "$Token{OTHER} $$Token{", "around": "[$Token{OTHER} $$Token{]",
                   "n": ["$Token{OTHER} $$Token{"]})
        );
        let missing = substitute(&config, &|_| None::<String>).unwrap_err();
        assert_eq!(missing.message(), "no value for secret 'K'");
    }

    #[test]
    fn the_escape_gives_a_literal_reference() {
        let config = json!("literal $$Token{NOT_A_REF} and $Token{REAL} and $5 and $");
        assert_eq!(keys(config.clone()), ["REAL"]);
        let out = substitute(&config, &|_| Some("v")).unwrap();
        assert_eq!(out, json!("literal $Token{NOT_A_REF} and v and $5 and $"));
    }

    #[test]
    fn malformed_references_are_errors_naming_the_place_not_the_text() {
        for (bad, why) in [
            (json!({"h": "Bearer $Token{OPEN"}), "closing"),
            (json!({"h": ["ok", "$Token{}"]}), "names no secret"),
            (json!({"h": "$Token{bad key}"}), "letters, digits"),
        ] {
            let e = find(&bad).unwrap_err();
            assert_eq!(e.status(), Some(422));
            assert!(e.message().contains(why), "{}", e.message());
            assert!(e.message().contains("/h"), "{}", e.message());
            assert!(!e.message().contains("Bearer"));
        }
        // The place is a JSON pointer, written the same by both passes.
        let nested = json!({"a/b": {"c~d": ["ok", "$Token{}"]}});
        assert!(find(&nested)
            .unwrap_err()
            .message()
            .contains("at /a~1b/c~0d/1:"));
        let e = substitute(&nested, &|_| Some("v")).unwrap_err();
        assert!(e.message().contains("at /a~1b/c~0d/1:"), "{}", e.message());
        assert!(find(&json!("$Token{"))
            .unwrap_err()
            .message()
            .contains("at /:"));
    }

    #[test]
    fn a_walk_of_its_own_gathers_and_substitutes_string_by_string() {
        // What a binding does with its language's objects: each string scanned, keys kept
        // once in order of first appearance across strings, errors naming its place.
        let mut found = Found::default();
        let here = || pointer([Segment::Key("a"), Segment::Index(2)]);
        for s in [
            "$Token{B} and $Token{A}",
            "no reference",
            "$Token{A}$Token{C}",
        ] {
            found.scan(s, &here).unwrap();
        }
        let keys = found.into_keys();
        assert_eq!(
            keys.iter().map(SecretKey::as_str).collect::<Vec<_>>(),
            ["B", "A", "C"]
        );
        let e = Found::default().scan("x $Token{", &here).unwrap_err();
        assert!(e.message().contains("at /a/2:"), "{}", e.message());
        let out = substitute_text("$$Token{A}=$Token{A}", &here, &|k| {
            (k == "A").then_some("1")
        });
        assert_eq!(out.unwrap(), "$Token{A}=1");
        let e = substitute_text("$Token{Z}", &here, &|_| None::<&str>).unwrap_err();
        assert_eq!(e.message(), "no value for secret 'Z'");
        assert!(!may_reference("plain") && may_reference("$"));
        assert_eq!(pointer([]), "/");
    }

    #[test]
    fn a_string_that_is_one_reference_reads_as_the_general_walk_reads_it() {
        let value_of = |k: &str| match k {
            "A" => Some("va"),
            "B" => Some("vb"),
            "a.b-c_9" => Some("dotted"),
            _ => None,
        };
        let place = || "/x".to_owned();
        let cases = [
            ("$Token{A}", Some("va")),
            ("$Token{a.b-c_9}", Some("dotted")),
            ("$Token{A}}", None),
            ("$Token{A}$Token{B}", None),
            ("$$Token{A}", None),
            ("x$Token{A}", None),
            ("$Token{}", None),
            ("$Token{A", None),
        ];
        for (text, sole) in cases {
            let fast = substitute_sole(text, &value_of).map(|r| r.unwrap());
            assert_eq!(fast, sole, "{text}");
            // The whole substitution is the same with or without the shortcut.
            let mut general = String::new();
            let walked = each_piece(text, &place, |piece| {
                match piece {
                    Piece::Text(t) => general.push_str(t),
                    Piece::Ref(k) => general.push_str(value_of(k).ok_or_else(|| no_value(k))?),
                }
                Ok(())
            });
            match substitute_text(text, &place, &value_of) {
                Ok(out) => {
                    walked.unwrap();
                    assert_eq!(out, general, "{text}");
                }
                Err(e) => assert_eq!(
                    Some(e.message().to_owned()),
                    walked.err().map(|w| w.message().to_owned()),
                    "{text}"
                ),
            }
        }
        let missing = substitute_sole("$Token{MISSING}", &value_of)
            .unwrap()
            .unwrap_err();
        assert_eq!(missing.message(), "no value for secret 'MISSING'");
        let mut found = Found::default();
        found.scan("$Token{A}", &place).unwrap();
        found.scan("$Token{A}", &place).unwrap();
        found.scan("$Token{B} and $Token{A}", &place).unwrap();
        let keys: Vec<String> = found.into_keys().iter().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["A", "B"]);
    }
}
