//! Every documented error, in the one JSON shape; no bad input gives a 5xx or a write.

use ductape::wire::Permission;
use ductape::{AccessKeyOptions, CreateSecret, ErrorCode};
use ductape_e2e::{assert_error_shape, raw, Server};
use reqwest::Method;
use serde_json::json;

const JSON: Option<&str> = Some("application/json");

#[tokio::test]
async fn a_duplicate_key_is_409_with_the_documented_message() {
    let server = Server::dev();
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("MY_SECRET", "a"))
        .await
        .unwrap();
    let e = d
        .secrets()
        .create(CreateSecret::new("MY_SECRET", "b"))
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(409), ErrorCode::SecretExists));
    assert_eq!(e.message(), "Secret with key 'MY_SECRET' already exists");
    assert_eq!(
        d.secrets().fetch("MY_SECRET").await.unwrap().value.expose(),
        "a"
    );
}

#[tokio::test]
async fn missing_keys_are_404_for_every_operation() {
    let server = Server::dev();
    let d = server.client().await;
    let s = d.secrets();
    for e in [
        s.fetch("NOPE").await.unwrap_err(),
        s.update("NOPE", ductape::UpdateSecret::new().value("x"))
            .await
            .unwrap_err(),
        s.delete("NOPE").await.unwrap_err(),
        s.revoke("NOPE").await.unwrap_err(),
        s.restore("NOPE").await.unwrap_err(),
    ] {
        assert_eq!(
            (e.status(), e.code()),
            (Some(404), ErrorCode::SecretNotFound)
        );
        assert_eq!(e.message(), "Secret 'NOPE' not found");
    }
}

#[tokio::test]
async fn no_or_wrong_access_key_is_401() {
    let server = Server::dev();
    let url = format!("{}/v1/secrets", server.url);
    let real = server.bearer();
    let (id, _) = real.split_once('.').unwrap();
    let wrong_secret = format!("{id}.{}", "A".repeat(43));
    for bearer in [
        None,
        Some("garbage"),
        Some(wrong_secret.as_str()),
        Some("0123456789abcdef.xyz"),
    ] {
        let (status, body) = raw(Method::GET, &url, bearer, None, None).await;
        assert_eq!(status, 401, "{bearer:?}");
        assert_eq!(assert_error_shape(status, &body), "unauthenticated");
    }
    // A well-formed key the server does not know fails init() with 401.
    let stranger = ductape::AccessKey::generate();
    let d =
        ductape::Ductape::new(ductape::Config::new(&server.url, stranger).max_retries(0)).unwrap();
    let e = d.init().await.unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(401), ErrorCode::Unauthenticated)
    );
}

#[tokio::test]
async fn a_key_without_the_permission_gets_403_naming_it() {
    let server = Server::dev();
    let admin = server.client().await;
    admin
        .secrets()
        .create(CreateSecret::new("S", "v"))
        .await
        .unwrap();
    let reader = admin
        .access_keys()
        .create(AccessKeyOptions::new(
            "reader",
            [Permission::List, Permission::Read],
        ))
        .await
        .unwrap();
    let lister = admin
        .access_keys()
        .create(AccessKeyOptions::new("lister", [Permission::List]))
        .await
        .unwrap();
    let r = server.client_with(&reader.key.expose()).await;
    let l = server.client_with(&lister.key.expose()).await;

    assert_eq!(r.secrets().fetch("S").await.unwrap().value.expose(), "v");
    let e = r
        .secrets()
        .create(CreateSecret::new("NEW", "x"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(403), ErrorCode::PermissionDenied)
    );
    assert!(e.message().contains("'write'"), "{}", e.message());
    let e = r.secrets().revoke("S").await.unwrap_err();
    assert!(e.message().contains("'revoke'"));
    let e = r.access_keys().list().await.unwrap_err();
    assert!(e.message().contains("'admin'"));

    assert_eq!(l.secrets().fetch_all().await.unwrap().len(), 1);
    let e = l.secrets().fetch("S").await.unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(403), ErrorCode::PermissionDenied)
    );
    assert!(e.message().contains("'read'"));

    // Deleting a key removes its access at once.
    assert!(admin.access_keys().delete(&reader.info.id).await.unwrap());
    let e = r.secrets().fetch("S").await.unwrap_err();
    assert_eq!(e.status(), Some(401));
}

#[tokio::test]
async fn the_last_admin_key_cannot_be_deleted() {
    let server = Server::dev();
    let admin = server.client().await;
    let me = admin.access_key_info().unwrap();
    let e = admin.access_keys().delete(&me.id).await.unwrap_err();
    assert_eq!(e.status(), Some(409));
}

#[tokio::test]
async fn invalid_fields_are_422_and_name_the_field() {
    let server = Server::dev();
    let d = server.client().await;
    let cases = [
        (json!({"key": "", "value": "v"}), "'key'"),
        (json!({"key": "K".repeat(257), "value": "v"}), "'key'"),
        (json!({"key": "bad key!", "value": "v"}), "'key'"),
        (
            json!({"key": "K", "value": "v", "token_type": "bearer"}),
            "'token_type'",
        ),
        (json!({"key": "K", "value": "v", "scope": "app"}), "'scope'"),
        (
            json!({"key": "K", "value": "v", "envs": {"a": 1}}),
            "'envs'",
        ),
        (
            json!({"key": "K", "value": "v", "expires_at": -5}),
            "'expires_at'",
        ),
        (
            json!({"key": "K", "value": "v", "expires_at": "tomorrow"}),
            "'expires_at'",
        ),
        (
            json!({"key": "K", "value": "v", "expires_at": 12.5}),
            "'expires_at'",
        ),
        (json!({"key": "K"}), "'value'"),
        (json!({"key": "K", "value": 42}), "'value'"),
    ];
    for (args, field) in cases {
        // Through the SDK: checked before any request.
        let e = match CreateSecret::from_json(&args) {
            Err(e) => e,
            Ok(c) => d.secrets().create(c).await.unwrap_err(),
        };
        assert_eq!(e.status(), Some(422), "{args}");
        assert!(e.message().contains(field), "{args}: {}", e.message());
    }
    // Straight to the server (bypassing the SDK): the same rules, the same shape.
    let url = format!("{}/v1/secrets", server.url);
    let bearer = server.bearer();
    let server_cases = [
        json!({"key": "bad key!", "ciphertext": "x"}),
        json!({"key": "K", "ciphertext": "not-an-envelope"}),
        json!({"key": "K", "value": "plaintext-must-be-refused"}),
        json!({"key": "K", "ciphertext": "x", "scope": "app"}),
        json!({"key": "K", "ciphertext": "x", "token_type": "nope"}),
        json!({"key": "K", "ciphertext": "x", "expiresAt": 5}),
    ];
    for body in server_cases {
        let (status, resp) = raw(
            Method::POST,
            &url,
            Some(&bearer),
            JSON,
            Some(body.to_string().into_bytes()),
        )
        .await;
        assert_eq!(status, 422, "{body} -> {resp}");
        assert_eq!(assert_error_shape(status, &resp), "invalid_field");
        assert!(!resp.to_string().contains("plaintext-must-be-refused"));
    }
    assert!(
        d.secrets().fetch_all().await.unwrap().is_empty(),
        "nothing was written"
    );
}

#[tokio::test]
async fn malformed_bodies_are_400_and_wrong_content_types_415() {
    let server = Server::dev();
    let url = format!("{}/v1/secrets", server.url);
    let bearer = server.bearer();
    for body in ["{", "not json", "[1,2]", "\"str\"", "null", ""] {
        let (status, resp) = raw(Method::POST, &url, Some(&bearer), JSON, Some(body.into())).await;
        assert_eq!(status, 400, "{body:?}");
        assert_eq!(assert_error_shape(status, &resp), "malformed_body");
    }
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let (status, resp) = raw(Method::POST, &url, Some(&bearer), ct, Some(b"{}".to_vec())).await;
        assert_eq!(status, 415, "{ct:?}");
        assert_eq!(assert_error_shape(status, &resp), "unsupported_media_type");
    }
}

#[tokio::test]
async fn oversized_values_are_413_on_both_sides() {
    let server = Server::dev();
    let d = server.client().await;
    let limit = ductape::validate::MAX_VALUE_BYTES;
    d.secrets()
        .create(CreateSecret::new("BIG_OK", "x".repeat(limit)))
        .await
        .unwrap();
    assert_eq!(
        d.secrets().fetch("BIG_OK").await.unwrap().value.len(),
        limit
    );
    let e = d
        .secrets()
        .create(CreateSecret::new("TOO_BIG", "x".repeat(limit + 1)))
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(413), ErrorCode::PayloadTooLarge)
    );
    // A huge body sent around the SDK.
    let body = json!({"key": "HUGE", "ciphertext": "x".repeat(1 << 20)}).to_string();
    let (status, resp) = raw(
        Method::POST,
        &format!("{}/v1/secrets", server.url),
        Some(&server.bearer()),
        JSON,
        Some(body.into_bytes()),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(assert_error_shape(status, &resp), "payload_too_large");
    let keys: Vec<_> = d
        .secrets()
        .fetch_all()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(keys, ["BIG_OK"]);
}

/// A `--dev` server holding one secret, `EXISTING`, and an admin client of it.
async fn dev_with_existing() -> (Server, ductape::Ductape) {
    let server = Server::dev();
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("EXISTING", "keep-me"))
        .await
        .unwrap();
    (server, d)
}

/// A batch read names what is wrong with its keys, whichever way they are wrong, and reads
/// nothing (no audit event) when they are.
#[tokio::test]
async fn a_batch_read_names_what_is_wrong_with_its_keys() {
    let (server, d) = dev_with_existing().await;
    let too_many: Vec<String> = (0..1001).map(|i| format!("K{i}")).collect();
    let cases = [
        (json!({}), "must be an array of secret keys"),
        (
            json!({"keys": "EXISTING"}),
            "must be an array of secret keys",
        ),
        (
            json!({"keys": ["EXISTING", 5]}),
            "must be an array of secret keys",
        ),
        (
            json!({"keys": ["EXISTING", null]}),
            "must be an array of secret keys",
        ),
        (json!({"keys": []}), "must hold 1 to 1000 keys"),
        (json!({"keys": too_many}), "must hold 1 to 1000 keys"),
        (
            json!({"keys": ["EXISTING", "has space"]}),
            "may contain only letters",
        ),
        (json!({"keys": ["EXISTING", ""]}), "must not be empty"),
        (
            json!({"keys": ["EXISTING"], "other": 1}),
            "not allowed here",
        ),
    ];
    let url = format!("{}/v1/secrets/batch-get", server.url);
    let events = || async { d.audit(&Default::default()).await.unwrap().events.len() };
    let before = events().await;
    for (body, why) in cases {
        let (status, resp) = raw(
            Method::POST,
            &url,
            Some(&server.bearer()),
            JSON,
            Some(body.to_string().into_bytes()),
        )
        .await;
        assert_eq!(status, 422, "{body} -> {resp}");
        assert_eq!(assert_error_shape(status, &resp), "invalid_field", "{resp}");
        let message = resp["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{body}: {message}");
    }
    assert_eq!(events().await, before);
    // The well-formed request still reads.
    let (status, resp) = raw(
        Method::POST,
        &url,
        Some(&server.bearer()),
        JSON,
        Some(
            json!({"keys": ["EXISTING"], "compact": true})
                .to_string()
                .into_bytes(),
        ),
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["results"][0]["key"], "EXISTING");
}

/// A sweep of bad bodies over every route that takes one, plus bad paths and methods:
/// always a 4xx in the error shape, never a 5xx, and nothing written.
#[tokio::test]
async fn no_bad_input_reaches_a_5xx_or_a_write() {
    let (server, d) = dev_with_existing().await;
    let before = d.secrets().fetch("EXISTING").await.unwrap();
    let bearer = server.bearer();
    let bodies: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"[]".to_vec(),
        b"{\"key\": null}".to_vec(),
        b"{\"keys\": \"x\"}".to_vec(),
        b"{\"keys\": [1, 2]}".to_vec(),
        b"{\"keys\": []}".to_vec(),
        b"{\"ciphertext\": 5}".to_vec(),
        b"{\"scope\": [null]}".to_vec(),
        b"{\"envs\": [\"\"]}".to_vec(),
        b"{\"expected_version\": \"x\"}".to_vec(),
        b"{\"expires_at\": 1e400}".to_vec(),
        b"{\"expires_at\": 99999999999999999999999}".to_vec(),
        b"{\"description\": {\"nested\": true}}".to_vec(),
        vec![0xff, 0xfe, 0x00],
        b"{\"key\": \"\\ud800\"}".to_vec(),
        b"{}".to_vec(),
        format!("{{\"a\": \"{}\"}}", "y".repeat(300_000)).into_bytes(),
    ];
    let routes = [
        (Method::POST, "/v1/secrets"),
        (Method::PATCH, "/v1/secrets/EXISTING"),
        (Method::POST, "/v1/secrets/batch-get"),
        (Method::POST, "/v1/access-keys"),
        (Method::POST, "/v1/setup"),
    ];
    for (method, path) in &routes {
        for body in &bodies {
            let url = format!("{}{path}", server.url);
            let (status, resp) = raw(
                method.clone(),
                &url,
                Some(&bearer),
                JSON,
                Some(body.clone()),
            )
            .await;
            assert!(
                (400..500).contains(&status),
                "{method} {path} {:?} -> {status} {resp}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            );
            assert_error_shape(status, &resp);
        }
    }
    for path in [
        "/v1/secrets/..%2F..",
        "/v1/secrets/%00",
        "/v1/secrets/a%20b",
        "/v1/secrets/%ff",
        "/v1/audit?limit=-1",
        "/v1/audit?before=x",
        "/v1/nothing",
    ] {
        let (status, resp) = raw(
            Method::GET,
            &format!("{}{path}", server.url),
            Some(&bearer),
            None,
            None,
        )
        .await;
        assert!((400..500).contains(&status), "{path} -> {status}");
        assert_error_shape(status, &resp);
    }
    let (status, resp) = raw(
        Method::PUT,
        &format!("{}/v1/secrets", server.url),
        Some(&bearer),
        None,
        None,
    )
    .await;
    assert_eq!(status, 405);
    assert_error_shape(status, &resp);

    let after = d.secrets().fetch("EXISTING").await.unwrap();
    assert_eq!(
        after.record, before.record,
        "no bad input changed the secret"
    );
    assert_eq!(d.secrets().fetch_all().await.unwrap().len(), 1);
    assert_eq!(d.access_keys().list().await.unwrap().len(), 1);
}
