//! The server never sees a value: canaries in the database, logs and answers; a moved
//! ciphertext is caught by the client.

use ductape::wire::Permission;
use ductape::{AccessKeyOptions, CreateSecret, ErrorCode, UpdateSecret};
use ductape_e2e::{files_containing, raw, Server};
use reqwest::Method;

#[tokio::test]
async fn a_canary_value_never_reaches_the_database_the_logs_or_any_answer() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(data.path());
    let admin_key = server.setup().await;
    let canary = "sk_live_CANARY_7f3a9c1e5b";
    let canary2 = "CANARY_ROTATED_2e8d4b6a";
    let d = server.client().await;
    let s = d.secrets();

    // Exercise every route.
    s.create(
        CreateSecret::new("CANARY", canary)
            .description("canary test")
            .scope(["app1"])
            .envs(["prd"]),
    )
    .await
    .unwrap();
    s.fetch_all().await.unwrap();
    assert_eq!(s.fetch("CANARY").await.unwrap().value.expose(), canary);
    s.update("CANARY", UpdateSecret::new().value(canary2))
        .await
        .unwrap();
    s.update("CANARY", UpdateSecret::new().description("meta only"))
        .await
        .unwrap();
    let keys = [
        ductape::SecretKey::parse("CANARY").unwrap(),
        ductape::SecretKey::parse("MISSING").unwrap(),
    ];
    let batch = s.batch_get(&keys, Some("app1"), Some("prd")).await.unwrap();
    assert_eq!(batch[0].1.as_ref().unwrap().value.expose(), canary2);
    s.revoke("CANARY").await.unwrap();
    assert!(s.fetch("CANARY").await.is_err());
    s.restore("CANARY").await.unwrap();
    let reader = d
        .access_keys()
        .create(AccessKeyOptions::new("reader", [Permission::Read]))
        .await
        .unwrap();
    d.access_keys().list().await.unwrap();
    let r = server.client_with(&reader.key.expose()).await;
    let e = r
        .secrets()
        .create(CreateSecret::new("X", canary))
        .await
        .unwrap_err();
    assert!(!e.message().contains("CANARY_7f3a"));
    d.access_keys().delete(&reader.info.id).await.unwrap();
    // Bad input that carries the canary must not echo it.
    let url = format!("{}/v1/secrets", server.url);
    for body in [
        format!(r#"{{"key": "K", "value": "{canary}"}}"#),
        format!(r#"{{"key": "K", "ciphertext": "{canary}"}}"#),
        format!(r#"{{"key": "K", "ciphertext": "x", "scope": "{canary}"}}"#),
        format!(r#"{{"key": "{canary} !", "ciphertext": "x"}}"#),
        format!(r#"{{"key": "K", "{canary}": 1}}"#),
        format!(r#"{{"key": "{canary}"#),
    ] {
        let (status, resp) = raw(
            Method::POST,
            &url,
            Some(&server.bearer()),
            Some("application/json"),
            Some(body.into_bytes()),
        )
        .await;
        assert!((400..500).contains(&status));
        let text = resp.to_string();
        assert!(!text.contains("7f3a9c1e5b"), "echoed: {text}");
    }
    for path in [
        "/v1/audit",
        "/v1/secrets/CANARY/usage",
        "/metrics",
        "/openapi.json",
        "/v1/session",
        "/v1/workspace",
    ] {
        let resp = reqwest::Client::new()
            .get(format!("{}{path}", server.url))
            .bearer_auth(server.bearer())
            .header(ductape::crypto::keyring::FORMAT_HEADER, "2")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let text = resp.text().await.unwrap();
        assert!(
            !text.contains("CANARY_7f3a") && !text.contains(canary2),
            "{path}"
        );
    }
    s.delete("CANARY").await.unwrap();

    // Stop gracefully (checkpoints the WAL into the main file), then search everything.
    assert!(server.stop().success());
    let logs = server.logs();
    assert!(logs.contains("secret created"), "the logs were captured");
    for needle in [canary, canary2, &admin_key, &reader.key.expose()] {
        let hits = files_containing(data.path(), needle.as_bytes());
        assert!(hits.is_empty(), "found a secret in {hits:?}");
        assert!(!logs.contains(needle), "found a secret in the server log");
    }
    // The access keys' secret parts are not stored either (only their hashes).
    let admin: ductape::AccessKey = admin_key.parse().unwrap();
    assert!(files_containing(data.path(), admin.secret().as_bytes()).is_empty());
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_secret_is_an_integrity_error() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(data.path());
    let key = server.setup().await;
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("DB_PASSWORD", "hunter2"))
        .await
        .unwrap();
    d.secrets()
        .create(CreateSecret::new("PUBLIC_FLAG", "harmless"))
        .await
        .unwrap();
    assert!(server.stop().success());

    // Someone with the database copies one secret's ciphertext into another's row.
    {
        let db = rusqlite::Connection::open(data.path().join("ductape.sqlite")).unwrap();
        let stolen: String = db
            .query_row(
                "SELECT ciphertext FROM secrets WHERE key = 'DB_PASSWORD'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        db.execute(
            "UPDATE secrets SET ciphertext = ?1 WHERE key = 'PUBLIC_FLAG'",
            [stolen],
        )
        .unwrap();
    }

    let mut server = Server::persistent(data.path());
    server.access_key = Some(key);
    let d = server.client().await;
    let e = d.secrets().fetch("PUBLIC_FLAG").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Integrity);
    assert!(!e.message().contains("hunter2"));
    assert_eq!(
        d.secrets()
            .fetch("DB_PASSWORD")
            .await
            .unwrap()
            .value
            .expose(),
        "hunter2"
    );
}

#[test]
fn debug_output_never_shows_values_or_keys() {
    let key = ductape::AccessKey::generate();
    let text = key.expose().to_string();
    let config = ductape::Config::new("http://127.0.0.1:1", text.parse().unwrap());
    let client = ductape::Ductape::new(config.clone()).unwrap();
    let args = CreateSecret::new("K", "debug-canary-value");
    for shown in [
        format!("{key:?}"),
        format!("{config:?}"),
        format!("{client:?}"),
        format!("{args:?}"),
    ] {
        assert!(!shown.contains(key.secret()), "{shown}");
        assert!(!shown.contains(&text[text.len() - 20..]), "{shown}");
        assert!(!shown.contains("debug-canary-value"), "{shown}");
    }
}
