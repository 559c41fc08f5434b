//! Fuzzing the parsers that take untrusted input: value envelopes, access keys, bearer
//! credentials, `$Token{}` references and JSON bodies' fields. Inputs are random strings and
//! mutations of the seed corpora in `tests/corpus/`. Properties: never a panic; a rejection
//! is the typed error (its code and status), and its message never repeats the input.
//!
//! The test suite runs a bounded number of cases; `scripts/fuzz` runs many more
//! (`PROPTEST_CASES`).

use ductape::crypto::{split_bearer, WrappedKey};
use ductape::validate::{self, MetadataInput};
use ductape::{references, AccessKey, Envelope, ErrorCode, SecretKey};
use proptest::prelude::*;
use serde_json::Value;

fn corpus(name: &str) -> Vec<String> {
    let path = format!("{}/tests/corpus/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .expect("seed corpus")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A seed from the corpus with a few random edits (insert, delete, replace a character).
fn mutated(seeds: Vec<String>) -> impl Strategy<Value = String> {
    let edits = prop::collection::vec((any::<usize>(), 0u8..3, any::<char>()), 0..6);
    (prop::sample::select(seeds), edits).prop_map(|(seed, edits)| {
        let mut chars: Vec<char> = seed.chars().collect();
        for (at, op, c) in edits {
            let i = if chars.is_empty() {
                0
            } else {
                at % chars.len()
            };
            match op {
                0 => chars.insert(i, c),
                1 if !chars.is_empty() => {
                    chars.remove(i);
                }
                _ if !chars.is_empty() => chars[i] = c,
                _ => chars.push(c),
            }
        }
        chars.into_iter().collect()
    })
}

/// A marker planted in half the inputs: a message that repeats input would show it.
const CANARY: &str = "QZXJ";

fn input(corpus_name: &str) -> impl Strategy<Value = String> {
    let raw = prop_oneof![
        mutated(corpus(corpus_name)),
        any::<String>(),
        "[ -~]{0,120}",
    ];
    (raw, any::<bool>(), any::<bool>()).prop_map(|(s, mark, front)| match (mark, front) {
        (false, _) => s,
        (true, true) => format!("{CANARY}{s}"),
        (true, false) => format!("{s}{CANARY}"),
    })
}

/// The message of a rejection must not carry the (possibly secret) input.
fn quiet(message: &str, _input: &str) -> bool {
    !message.contains(CANARY)
}

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn envelopes_parse_or_are_refused_and_what_parses_round_trips(s in input("envelope")) {
        if let Some(e) = Envelope::parse(&s) {
            let again = Envelope::parse(&e.to_string()).expect("a parsed envelope prints parseable");
            prop_assert_eq!(again.to_string(), e.to_string());
        }
        if let Some(w) = WrappedKey::parse(&s) {
            prop_assert!(WrappedKey::parse(&w.to_string()).is_some());
        }
    }

    #[test]
    fn access_keys_parse_or_fail_with_the_config_error(s in input("access_key")) {
        match s.parse::<AccessKey>() {
            Ok(k) => {
                let again: AccessKey = k.expose().parse().expect("a parsed key prints parseable");
                prop_assert_eq!(again.id(), k.id());
                let shown = format!("{:?}", k);
                prop_assert!(!shown.contains(k.secret()));
            }
            Err(e) => {
                prop_assert_eq!(e.code(), ErrorCode::Config);
                prop_assert!(quiet(e.message(), &s));
            }
        }
        if let Some((id, secret)) = split_bearer(&s) {
            prop_assert_eq!(id.len(), 16);
            prop_assert!(!secret.is_empty() && secret.len() <= 64);
        }
    }

    #[test]
    fn references_resolve_or_fail_with_422_naming_no_text(s in input("references")) {
        let config = Value::String(s.clone());
        match references::find(&config) {
            Ok(keys) => {
                // Substituting every key found succeeds and leaves no reference behind.
                let out = references::substitute(&config, &|k: &str| Some(format!("<{k}>")))
                    .expect("found keys substitute");
                prop_assert!(out.is_string());
                for k in keys {
                    prop_assert!(SecretKey::parse(k.as_str()).is_ok());
                }
            }
            Err(e) => {
                prop_assert_eq!(e.code(), ErrorCode::InvalidField);
                prop_assert_eq!(e.status(), Some(422));
                prop_assert!(quiet(e.message(), &s));
            }
        }
    }

    #[test]
    fn secret_keys_parse_or_fail_with_422(s in input("references")) {
        match SecretKey::parse(&s) {
            Ok(k) => prop_assert_eq!(k.as_str(), s.as_str()),
            Err(e) => {
                prop_assert_eq!(e.status(), Some(422));
                prop_assert!(quiet(e.message(), &s));
            }
        }
    }

    #[test]
    fn json_bodies_validate_or_fail_with_422(s in input("json_body"), v in json_value()) {
        for body in [serde_json::from_str::<Value>(&s).ok(), Some(v)].into_iter().flatten() {
            let Value::Object(obj) = body else { continue };
            let checks = [
                MetadataInput::from_object(&obj).err(),
                validate::expected_version(&obj).err(),
                validate::reject_unknown_fields(&obj, &["key", "ciphertext"]).err(),
                validate::required_string(&obj, "key").err(),
                validate::optional_tag(&obj, "app").err(),
                validate::optional_tags(&obj, "envs").err(),
            ];
            for e in checks.into_iter().flatten() {
                prop_assert_eq!(e.status(), Some(422), "{}", e.message());
            }
        }
    }
}

/// Arbitrary JSON objects whose fields are the ones bodies carry.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[A-Za-z0-9_.-]{0,70}".prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let field = prop::sample::select(vec![
        "key",
        "ciphertext",
        "description",
        "token_type",
        "scope",
        "envs",
        "expires_at",
        "expected_version",
        "app",
        "value",
    ]);
    prop::collection::btree_map(field.prop_map(str::to_owned), value, 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}
