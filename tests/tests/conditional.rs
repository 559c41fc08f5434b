//! Conditional requests: `ETag` on reads, `If-None-Match` → 304 for a current copy (still
//! checked and audited like any read), `If-Match` on every change → 409 when stale, and the
//! SDK's `if_version` options.

use ductape::wire::Permission;
use ductape::{AccessKeyOptions, CreateSecret, ErrorCode, UpdateSecret};
use ductape_e2e::Server;
use reqwest::Method;

async fn send(
    server: &Server,
    bearer: &str,
    method: Method,
    path: &str,
    header: Option<(&str, &str)>,
    body: Option<serde_json::Value>,
) -> (u16, Option<String>, serde_json::Value) {
    let mut req = ductape_e2e::http()
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(bearer)
        .header(ductape::crypto::keyring::FORMAT_HEADER, "2");
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    (
        status,
        etag,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn reads_carry_an_etag_and_a_current_copy_gets_304() {
    let server = Server::dev();
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("TOKEN", "first").scope(["web"]))
        .await
        .unwrap();
    let admin = server.bearer();
    let (status, tag, body) = send(
        &server,
        &admin,
        Method::GET,
        "/v1/secrets/TOKEN",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let tag = tag.expect("an ETag");
    assert!(tag.starts_with("\"1-"), "{tag}");
    assert_eq!(body["version"], 1);
    let (status, again, body) = send(
        &server,
        &admin,
        Method::GET,
        "/v1/secrets/TOKEN",
        Some(("if-none-match", &tag)),
        None,
    )
    .await;
    assert_eq!(
        (status, again.as_deref(), &body),
        (304, Some(tag.as_str()), &serde_json::Value::Null)
    );
    // A 304 is a read like any: audited.
    let page = d
        .audit(&ductape::wire::AuditQuery {
            secret_key: Some("TOKEN".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.events.iter().filter(|e| e.action == "read").count(), 2);
    // Changed: the old tag no longer matches.
    d.secrets()
        .update("TOKEN", UpdateSecret::new().value("second"))
        .await
        .unwrap();
    let (status, new_tag, body) = send(
        &server,
        &admin,
        Method::GET,
        "/v1/secrets/TOKEN",
        Some(("if-none-match", &tag)),
        None,
    )
    .await;
    assert_eq!((status, body["version"].as_i64()), (200, Some(2)));
    assert_ne!(new_tag.unwrap(), tag);

    // A key that may not see the secret gets 404 whatever it sends: no 304 tells it exists.
    let mut o = AccessKeyOptions::new("api", [Permission::Read]);
    o.app = Some("api".into());
    let api = d.access_keys().create(o).await.unwrap().key;
    let (status, leaked, _) = send(
        &server,
        &api.bearer(),
        Method::GET,
        "/v1/secrets/TOKEN",
        Some(("if-none-match", "*")),
        None,
    )
    .await;
    assert_eq!((status, leaked), (404, None));
}

#[tokio::test]
async fn every_change_honours_if_match_and_a_stale_one_changes_nothing() {
    let server = Server::dev();
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("K", "v1"))
        .await
        .unwrap();
    let admin = server.bearer();
    let stale = [("if-match", "\"7\"")];
    let value_before = d.secrets().fetch("K").await.unwrap();
    for (method, path) in [
        (Method::DELETE, "/v1/secrets/K"),
        (Method::POST, "/v1/secrets/K/revoke"),
        (Method::POST, "/v1/secrets/K/restore"),
        (Method::PATCH, "/v1/secrets/K"),
    ] {
        let body = (method == Method::PATCH).then(|| serde_json::json!({"description": "x"}));
        let (status, _, answer) =
            send(&server, &admin, method.clone(), path, Some(stale[0]), body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (409, Some("version_conflict")),
            "{path}"
        );
    }
    let after = d.secrets().fetch("K").await.unwrap();
    assert_eq!(
        (after.version, after.description.clone()),
        (value_before.version, None)
    );
    // Junk: 422; a header disagreeing with the body: no version satisfies both, 409.
    for (header, body, want) in [
        ("1", serde_json::json!({"description": "x"}), 422),
        (
            "\"1\"",
            serde_json::json!({"description": "x", "expected_version": 2}),
            409,
        ),
    ] {
        let (status, _, answer) = send(
            &server,
            &admin,
            Method::PATCH,
            "/v1/secrets/K",
            Some(("if-match", header)),
            Some(body),
        )
        .await;
        assert_eq!(status, want, "{answer}");
    }
    // The full tag from a read, or the version alone, or *: applied.
    let (_, tag, _) = send(&server, &admin, Method::GET, "/v1/secrets/K", None, None).await;
    let (status, _, answer) = send(
        &server,
        &admin,
        Method::PATCH,
        "/v1/secrets/K",
        Some(("if-match", &tag.unwrap())),
        Some(serde_json::json!({"description": "by tag"})),
    )
    .await;
    assert_eq!((status, answer["version"].as_i64()), (200, Some(2)));

    // The SDK: if_version on update, revoke, restore, delete.
    let s = d.secrets();
    let e = s.revoke_if_version("K", Some(1)).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::VersionConflict, "{e}");
    assert!(s.revoke_if_version("K", Some(2)).await.unwrap());
    let e = s.restore_if_version("K", Some(2)).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::VersionConflict);
    assert_eq!(s.restore_if_version("K", Some(3)).await.unwrap().version, 4);
    let e = s
        .update("K", UpdateSecret::new().value("v2").expected_version(3))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::VersionConflict);
    let args =
        UpdateSecret::from_json(&serde_json::json!({"value": "v2", "if_version": 4})).unwrap();
    assert_eq!(s.update("K", args).await.unwrap().version, 5);
    let e = s.delete_if_version("K", Some(4)).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::VersionConflict);
    assert_eq!(s.fetch("K").await.unwrap().value.expose(), "v2");
    assert!(s.delete_if_version("K", Some(5)).await.unwrap());
    assert!(s.fetch("K").await.is_err());
}

#[tokio::test]
async fn a_rotation_changes_the_tag_but_not_the_version_if_match_needs() {
    let server = Server::dev();
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("K", "v"))
        .await
        .unwrap();
    let admin = server.bearer();
    let (_, before, _) = send(&server, &admin, Method::GET, "/v1/secrets/K", None, None).await;
    d.rotate_key().await.unwrap();
    let (status, after, body) = send(
        &server,
        &admin,
        Method::GET,
        "/v1/secrets/K",
        Some(("if-none-match", before.as_deref().unwrap())),
        None,
    )
    .await;
    // Resealed: the client's old ciphertext is stale, so it gets the new one.
    assert_eq!((status, body["version"].as_i64()), (200, Some(1)));
    assert_ne!(after, before);
    assert!(d.secrets().revoke_if_version("K", Some(1)).await.unwrap());
}
