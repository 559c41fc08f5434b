//! The published OpenAPI document: what utoipa derives from the routes and wire types,
//! refined here, in one place, with what the derive cannot say: every field's limits (from
//! the same constants the validation uses), the error answers every operation can give,
//! and rules across fields. A schema-valid request is accepted; anything else gets one of
//! the documented errors (checked by schemathesis, see `scripts/test-api`).

use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use ductape::validate::{self, MAX_DESCRIPTION_LEN, MAX_KEY_LEN, MAX_TAGS, MAX_TAG_LEN};

use super::secrets::MAX_BATCH_KEYS;
use ductape::wire::BatchCreateBody;

/// A secret key: what `SecretKey::parse` accepts.
fn key_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_KEY_LEN,
           "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]*$"})
}

/// An app tag or environment slug: what `validate::check_tags` accepts.
fn tag_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_TAG_LEN,
           "pattern": "^[A-Za-z0-9_.-]+$"})
}

fn nullable(mut schema: Value) -> Value {
    if let Some(t) = schema.get("type").cloned() {
        schema["type"] = json!([t, "null"]);
    }
    schema
}

/// Rewrites each nullable schema with a `format` (`"type": ["integer", "null"], "format":
/// "int64"`) as `anyOf` the non-null schema and null. The same values are valid, but a
/// format constrains only values of its type, and fuzzers (schemathesis) took null for a
/// value breaking it and expected it refused.
fn format_only_the_non_null(v: &mut Value) {
    match v {
        Value::Object(o) => {
            let nullable_type = o.get("type").and_then(Value::as_array).and_then(|t| {
                let rest: Vec<&Value> = t.iter().filter(|x| *x != "null").collect();
                (rest.len() == 1 && t.len() == 2).then(|| rest[0].clone())
            });
            if let (Some(t), true) = (nullable_type, o.contains_key("format")) {
                let mut inner = std::mem::take(o);
                inner.insert("type".into(), t);
                let description = inner.remove("description");
                o.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                if let Some(d) = description {
                    o.insert("description".into(), d);
                }
                return;
            }
            o.values_mut().for_each(format_only_the_non_null);
        }
        Value::Array(a) => a.iter_mut().for_each(format_only_the_non_null),
        _ => {}
    }
}

fn tags_schema() -> Value {
    json!({"type": "array", "items": tag_schema(), "maxItems": MAX_TAGS})
}

/// The secret fields a create or update may set, with their limits.
/// `null` clears a field on update, and means "not set" on create.
fn metadata_fields(props: &mut Map<String, Value>) {
    props.insert(
        "ciphertext".into(),
        json!({"type": "string", "format": "ductape-envelope", "maxLength": ductape::crypto::keyring::MAX_SEALED_LEN,
               "description": "The value sealed by a Ductape client: format 2, 'dv2' wrapped to exactly the bindings that may read it; format 1, a 'dv1' envelope under the workspace key"}),
    );
    props.insert(
        "description".into(),
        nullable(json!({"type": "string", "maxLength": MAX_DESCRIPTION_LEN})),
    );
    props.insert("scope".into(), nullable(tags_schema()));
    props.insert("envs".into(), nullable(tags_schema()));
    props.insert(
        "expires_at".into(),
        nullable(json!({"type": "integer", "format": "int64", "minimum": 1,
                     "description": "Unix seconds; on create it must be in the future"})),
    );
}

fn name_schema() -> Value {
    // 1 to 128 characters, not all blank, no control characters.
    json!({"type": "string", "minLength": 1, "maxLength": 128,
           "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"})
}

fn props<'a>(
    schemas: &'a mut Map<String, Value>,
    name: &str,
) -> Option<&'a mut Map<String, Value>> {
    schemas
        .get_mut(name)
        .and_then(|s| s.get_mut("properties"))
        .and_then(Value::as_object_mut)
}

fn refine_schemas(schemas: &mut Map<String, Value>) {
    if let Some(p) = props(schemas, "CreateSecretBody") {
        p.insert("key".into(), key_schema());
        metadata_fields(p);
    }
    if let Some(p) = props(schemas, "UpdateSecretBody") {
        metadata_fields(p);
        p.insert("ciphertext".into(), {
            let mut c = p["ciphertext"].clone();
            c["description"] = json!("A new value's envelope");
            c
        });
        p.insert(
            "expected_version".into(),
            nullable(json!({"type": "integer", "format": "int64", "minimum": 1})),
        );
    }
    if let Some(s) = schemas.get_mut("UpdateSecretBody") {
        // At least one thing to change (a version alone changes nothing).
        let one_of_each: Vec<Value> = std::iter::once("ciphertext")
            .chain(validate::METADATA_FIELDS)
            .map(|f| json!({"required": [f]}))
            .collect();
        s["anyOf"] = Value::Array(one_of_each);
        s["additionalProperties"] = json!(false);
        // Format 2: who can decrypt follows scope and envs, so changing either re-seals.
        s["dependentRequired"] = json!({"scope": ["ciphertext"], "envs": ["ciphertext"]});
    }
    if let Some(p) = props(schemas, "RollbackBody") {
        let mut fields = Map::new();
        metadata_fields(&mut fields);
        p.insert("ciphertext".into(), nullable(fields["ciphertext"].clone()));
        p.insert(
            "version".into(),
            json!({"type": "integer", "format": "int64", "minimum": 1}),
        );
        p.insert(
            "expected_version".into(),
            nullable(json!({"type": "integer", "format": "int64", "minimum": 1})),
        );
    }
    if let Some(s) = schemas.get_mut("RollbackBody") {
        s["additionalProperties"] = json!(false);
    }
    if let Some(p) = props(schemas, "BatchGetBody") {
        p.insert(
            "keys".into(),
            json!({"type": "array", "items": key_schema(), "minItems": 1, "maxItems": MAX_BATCH_KEYS}),
        );
        p.insert("app".into(), nullable(tag_schema()));
        p.insert("env".into(), nullable(tag_schema()));
        p.insert("metadata_only".into(), json!({"type": ["boolean", "null"]}));
        p.insert("compact".into(), json!({"type": ["boolean", "null"]}));
    }
    if let Some(s) = schemas.get_mut("BatchGetBody") {
        s["required"] = json!(["keys"]);
        // A check (metadata only) answers no ciphertext, so it cannot be compact too.
        s["not"] = json!({"required": ["metadata_only", "compact"],
                          "properties": {"metadata_only": {"const": true}, "compact": {"const": true}}});
    }
    if let Some(p) = props(schemas, "BatchCreateBody") {
        p.insert(
            "secrets".into(),
            json!({"type": "array", "items": {"$ref": "#/components/schemas/CreateSecretBody"},
                   "minItems": 1, "maxItems": BatchCreateBody::MAX_SECRETS}),
        );
    }
    if let Some(s) = schemas.get_mut("BatchCreateBody") {
        s["additionalProperties"] = json!(false);
    }
    if let Some(p) = props(schemas, "CreateAccessKeyBody") {
        p.insert(
            "id".into(),
            json!({"type": "string", "pattern": "^[0-9a-f]{16}$"}),
        );
        p.insert(
            "secret".into(),
            json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{43}$"}),
        );
        p.insert(
            "wrapped_key".into(),
            json!({"type": "string", "format": "ductape-wrapped-key",
                   "description": "Format 2: the new key's public key and the grant of its binding's key ('dg2'); format 1: the workspace key wrapped for it ('dwk1'). Made by a Ductape client"}),
        );
        p.insert("name".into(), name_schema());
        if let Some(perms) = p.get_mut("permissions") {
            perms["minItems"] = json!(1);
        }
        p.insert("app".into(), nullable(tag_schema()));
        p.insert("envs".into(), nullable(tags_schema()));
    }
    if let Some(p) = props(schemas, "SetupBody") {
        p.insert(
            "workspace_id".into(),
            json!({"type": "string", "pattern": "^ws_[0-9a-f]{24}$"}),
        );
        p.insert(
            "workspace_name".into(),
            json!({"type": "string", "minLength": 1, "maxLength": 128, "pattern": "\\S"}),
        );
        p.insert(
            "key_id".into(),
            json!({"type": "string", "pattern": "^[0-9a-f]{16}$"}),
        );
        // The first access key is an admin key.
        p.insert(
            "access_key".into(),
            json!({"allOf": [
                {"$ref": "#/components/schemas/CreateAccessKeyBody"},
                {"type": "object", "properties": {"permissions": {"contains": {"const": "admin"}}}},
            ]}),
        );
    }
    for body in [
        "CreateSecretBody",
        "BatchGetBody",
        "CreateAccessKeyBody",
        "SetupBody",
    ] {
        if let Some(s) = schemas.get_mut(body) {
            s["additionalProperties"] = json!(false);
        }
    }
}

fn error_response(description: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
}

/// The errors an operation can answer with, besides its own; and its path parameters'
/// limits.
fn refine_operation(path: &str, op: &mut Value) {
    for param in op
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        // A listing's cursor is a secret key; a version listing's is a version number.
        let key_like = (param["in"] == "path" && param["name"] == "key")
            || (param["in"] == "query"
                && param["name"] == "cursor"
                && !path.ends_with("/versions"));
        if key_like {
            let nullable_now = param["schema"]["type"].is_array();
            param["schema"] = if nullable_now {
                nullable(key_schema())
            } else {
                key_schema()
            };
        }
        // What `conditional::if_match` accepts: a version, a tag this server sent, * or
        // nothing (an empty header is no condition).
        if param["in"] == "header" && param["name"] == "If-Match" {
            param["schema"] = json!({"type": "string",
                "pattern": "^(|\\*|\"[1-9][0-9]{0,17}(-[0-9a-f]{12})?\")$"});
        }
    }
    let secured = op.get("security").is_some();
    let has_body = op.get("requestBody").is_some();
    let mut add = |status: &str, why: &str| {
        let responses = op["responses"].as_object_mut();
        if let Some(r) = responses {
            r.entry(status.to_owned())
                .or_insert_with(|| error_response(why));
        }
    };
    add("400", "Malformed request (body, path or query)");
    add("422", "A field is invalid");
    add(
        "503",
        "The database is unavailable; retry after Retry-After",
    );
    if secured {
        add("401", "No valid access key");
        add(
            "403",
            "The access key lacks the permission, or the target is outside its binding",
        );
        add("429", "Rate limited; retry after Retry-After");
    }
    if path.contains('{') {
        add(
            "404",
            "No such object (or outside the access key's binding)",
        );
    }
    if has_body {
        add("408", "The body did not arrive within the body deadline");
        add("413", "The body is over 256 KiB");
        add("415", "The body is not application/json");
    }
    if path == "/v1/setup" {
        add("401", "Invalid setup token");
    }
    if path == "/v1/access-keys" && has_body {
        add("409", "An access key with that id exists");
    }
}

/// The document served at `/openapi.json`.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(super::ApiDoc::openapi()).unwrap_or_default();
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        refine_schemas(schemas);
    }
    // A listing is one array, or one page when `limit` or `cursor` is given.
    if let Some(ok) =
        doc.pointer_mut("/paths/~1v1~1secrets/get/responses/200/content/application~1json")
    {
        ok["schema"] = json!({"oneOf": [
            {"type": "array", "items": {"$ref": "#/components/schemas/SecretRecord"}},
            {"$ref": "#/components/schemas/SecretPage"},
        ]});
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            if let Some(ops) = item.as_object_mut() {
                for op in ops.values_mut() {
                    refine_operation(path, op);
                }
            }
        }
    }
    format_only_the_non_null(&mut doc);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_documents_its_errors_and_bodies_their_limits() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let r = op["responses"].as_object().unwrap();
                for code in ["400", "422", "503"] {
                    assert!(r.contains_key(code), "{method} {path} lacks {code}");
                }
                if op.get("security").is_some() {
                    assert!(
                        r.contains_key("401") && r.contains_key("403"),
                        "{method} {path}"
                    );
                }
            }
        }
        let create = &doc["components"]["schemas"]["CreateSecretBody"];
        assert_eq!(create["properties"]["key"]["maxLength"], MAX_KEY_LEN);
        assert_eq!(create["additionalProperties"], false);
        let audit = &doc["paths"]["/v1/audit"]["get"]["parameters"];
        for p in audit.as_array().unwrap() {
            assert_eq!(p["in"], "query", "{p}");
            assert_ne!(p["required"], true, "{p}");
        }
    }

    /// A format constrains only values of its type: null stays valid beside it, written so
    /// that a fuzzer does not take null for a value breaking the format.
    #[test]
    fn nullable_values_with_a_format_are_any_of_the_format_and_null() {
        fn walk(v: &Value, at: &str) {
            match v {
                Value::Object(o) => {
                    let nullable = o
                        .get("type")
                        .and_then(Value::as_array)
                        .is_some_and(|t| t.iter().any(|x| x == "null"));
                    assert!(!(nullable && o.contains_key("format")), "{at}: {v}");
                    o.iter().for_each(|(k, v)| walk(v, &format!("{at}/{k}")));
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, at)),
                _ => {}
            }
        }
        let doc = document();
        walk(&doc, "");
        let expires = &doc["components"]["schemas"]["CreateSecretBody"]["properties"]["expires_at"];
        assert_eq!(
            expires["anyOf"],
            json!([{"type": "integer", "format": "int64", "minimum": 1}, {"type": "null"}])
        );
        assert!(expires["description"]
            .as_str()
            .unwrap()
            .contains("Unix seconds"));
    }
}
