//! The documented create → fetchAll → fetch → update → revoke → delete flow.

use ductape::wire::SecretStatus;
use ductape::{CreateSecret, ErrorCode, TokenType, UpdateSecret};
use ductape_e2e::Server;

fn is_iso_millis(s: &str) -> bool {
    // 2024-01-15T10:30:00.000Z
    s.len() == 24
        && s.ends_with('Z')
        && s.as_bytes()[19] == b'.'
        && ductape::ids::parse_iso_millis(s).is_some()
}

#[tokio::test]
async fn the_documented_flow_works_with_the_documented_fields() {
    let server = Server::dev();
    let d = server.client().await;
    let expires = ductape::ids::now_secs() + 365 * 24 * 3600;

    let created = d
        .secrets()
        .create(
            CreateSecret::new("STRIPE_API_KEY", "sk_live_51ABC123...")
                .description("Production Stripe API key for payment processing")
                .token_type(TokenType::Api)
                .scope(["stripe_payments", "checkout_service"])
                .envs(["prd", "staging"])
                .expires_at(expires),
        )
        .await
        .unwrap();
    assert_eq!(created.id.len(), 24);
    assert!(created.id.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(created.workspace_id.starts_with("ws_"));
    assert_eq!(created.key, "STRIPE_API_KEY");
    assert_eq!(
        created.description.as_deref(),
        Some("Production Stripe API key for payment processing")
    );
    assert_eq!(created.token_type, Some(TokenType::Api));
    assert_eq!(created.scope, ["stripe_payments", "checkout_service"]);
    assert_eq!(created.envs, ["prd", "staging"]);
    assert_eq!(created.expires_at, Some(expires));
    assert!(is_iso_millis(&created.created_at), "{}", created.created_at);
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(created.version, 1);
    assert_eq!(created.status, SecretStatus::Active);

    d.secrets()
        .create(CreateSecret::new("SENDGRID_KEY", "SG.xxx").envs(["dev", "staging", "prd"]))
        .await
        .unwrap();

    let all = d.secrets().fetch_all().await.unwrap();
    assert_eq!(
        all.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
        ["SENDGRID_KEY", "STRIPE_API_KEY"]
    );
    assert_eq!(all[0].expires_at, None);

    let fetched = d.secrets().fetch("STRIPE_API_KEY").await.unwrap();
    assert_eq!(fetched.value.expose(), "sk_live_51ABC123...");
    assert_eq!(fetched.record, created);

    // Update the value and extend expiration.
    let later = expires + 180 * 24 * 3600;
    let updated = d
        .secrets()
        .update(
            "STRIPE_API_KEY",
            UpdateSecret::new()
                .value("sk_live_51NEW_KEY...")
                .description("Rotated Stripe API key - January 2025")
                .expires_at(later),
        )
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.expires_at, Some(later));
    assert_eq!(updated.created_at, created.created_at);
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(
        d.secrets()
            .fetch("STRIPE_API_KEY")
            .await
            .unwrap()
            .value
            .expose(),
        "sk_live_51NEW_KEY..."
    );

    // Metadata only: the value stays.
    let meta = d
        .secrets()
        .update(
            "STRIPE_API_KEY",
            UpdateSecret::new()
                .scope(["stripe_payments", "subscription_service", "invoice_service"])
                .envs(["dev", "staging", "prd"]),
        )
        .await
        .unwrap();
    assert_eq!(meta.version, 3);
    assert_eq!(meta.scope.len(), 3);
    assert_eq!(
        meta.description.as_deref(),
        Some("Rotated Stripe API key - January 2025")
    );
    assert_eq!(
        d.secrets()
            .fetch("STRIPE_API_KEY")
            .await
            .unwrap()
            .value
            .expose(),
        "sk_live_51NEW_KEY..."
    );

    // Revoke: still listed, value unreadable (410); restore brings it back.
    assert!(d.secrets().revoke("STRIPE_API_KEY").await.unwrap());
    let listed = d.secrets().fetch_all().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .find(|s| s.key == "STRIPE_API_KEY")
            .unwrap()
            .status,
        SecretStatus::Revoked
    );
    let e = d.secrets().fetch("STRIPE_API_KEY").await.unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(410), ErrorCode::SecretRevoked)
    );
    assert_eq!(e.message(), "Secret 'STRIPE_API_KEY' has been revoked");
    let restored = d.secrets().restore("STRIPE_API_KEY").await.unwrap();
    assert_eq!(restored.status, SecretStatus::Active);
    assert_eq!(
        d.secrets()
            .fetch("STRIPE_API_KEY")
            .await
            .unwrap()
            .value
            .expose(),
        "sk_live_51NEW_KEY..."
    );

    // Delete: gone for good.
    assert!(d.secrets().delete("STRIPE_API_KEY").await.unwrap());
    let e = d.secrets().fetch("STRIPE_API_KEY").await.unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(404), ErrorCode::SecretNotFound)
    );
    assert_eq!(d.secrets().fetch_all().await.unwrap().len(), 1);
}

#[tokio::test]
async fn fetch_all_never_returns_values_or_ciphertext() {
    let server = Server::dev();
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("LISTED", "listed-canary-value"))
        .await
        .unwrap();
    let (status, body) = ductape_e2e::raw(
        reqwest::Method::GET,
        &format!("{}/v1/secrets", server.url),
        Some(&server.bearer()),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let text = body.to_string();
    assert!(body.as_array().is_some_and(|a| a.len() == 1));
    assert!(
        !text.contains("ciphertext")
            && !ductape_e2e::carries_sealed_value(&text)
            && !text.contains("listed-canary-value"),
        "{text}"
    );
}

#[tokio::test]
async fn keys_are_case_sensitive_and_null_clears_metadata() {
    let server = Server::dev();
    let d = server.client().await;
    d.secrets()
        .create(
            CreateSecret::new("Api_Key", "upper")
                .description("d")
                .expires_at(4_000_000_000),
        )
        .await
        .unwrap();
    d.secrets()
        .create(CreateSecret::new("api_key", "lower"))
        .await
        .unwrap();
    assert_eq!(
        d.secrets().fetch("Api_Key").await.unwrap().value.expose(),
        "upper"
    );
    assert_eq!(
        d.secrets().fetch("api_key").await.unwrap().value.expose(),
        "lower"
    );
    let cleared = d
        .secrets()
        .update(
            "Api_Key",
            UpdateSecret::from_json(&serde_json::json!({"description": null, "expires_at": null}))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(cleared.description, None);
    assert_eq!(cleared.expires_at, None);
}

#[tokio::test]
async fn an_expired_secret_is_listed_as_expired_and_its_value_is_gone() {
    let server = Server::dev();
    let d = server.client().await;
    // A create with a past expiry is refused (422: it would be expired at once)...
    let e = d
        .secrets()
        .create(CreateSecret::new("OLD_KEY", "old").expires_at(1_000))
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(422), ErrorCode::InvalidField));
    assert!(e.message().contains("'expires_at'"), "{}", e.message());
    // ...but an update may expire a secret at once.
    d.secrets()
        .create(CreateSecret::new("OLD_KEY", "old"))
        .await
        .unwrap();
    d.secrets()
        .update("OLD_KEY", UpdateSecret::new().expires_at(1_000))
        .await
        .unwrap();
    let all = d.secrets().fetch_all().await.unwrap();
    assert_eq!(all[0].status, SecretStatus::Expired);
    let e = d.secrets().fetch("OLD_KEY").await.unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(410), ErrorCode::SecretExpired)
    );
    assert_eq!(e.message(), "Secret 'OLD_KEY' has expired");
    // Extending the expiry makes it readable again.
    d.secrets()
        .update("OLD_KEY", UpdateSecret::new().no_expiry())
        .await
        .unwrap();
    assert_eq!(
        d.secrets().fetch("OLD_KEY").await.unwrap().value.expose(),
        "old"
    );
}

#[tokio::test]
async fn optimistic_concurrency_rejects_a_stale_version() {
    let server = Server::dev();
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("K", "v1"))
        .await
        .unwrap();
    d.secrets()
        .update("K", UpdateSecret::new().value("v2").expected_version(1))
        .await
        .unwrap();
    let e = d
        .secrets()
        .update("K", UpdateSecret::new().value("v3").expected_version(1))
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(409), ErrorCode::VersionConflict)
    );
    assert_eq!(d.secrets().fetch("K").await.unwrap().value.expose(), "v2");
}

#[test]
fn the_blocking_client_runs_the_same_flow() {
    let server = Server::dev();
    let key: ductape::AccessKey = server.access_key.as_deref().unwrap().parse().unwrap();
    let d = ductape::blocking::Ductape::new(ductape::Config::new(&server.url, key)).unwrap();
    d.init().unwrap();
    d.secrets()
        .create(CreateSecret::new("B", "blocking-value"))
        .unwrap();
    assert_eq!(
        d.secrets().fetch("B").unwrap().value.expose(),
        "blocking-value"
    );
    assert_eq!(d.secrets().fetch_all().unwrap().len(), 1);
    assert!(d.secrets().revoke("B").unwrap());
    assert!(d.secrets().delete("B").unwrap());
}

#[tokio::test]
async fn the_server_speaks_http2_as_well_as_http1() {
    let server = Server::dev();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .get(format!("{}/v1/secrets", server.url))
        .bearer_auth(server.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let h1 = reqwest::Client::builder().http1_only().build().unwrap();
    let resp = h1
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
}

/// The README's Rust examples (`cargo run -p ductape --example quickstart`, and the program
/// it shows inline, `readme`), each against a fresh dev server with the two variables the
/// server printed.
#[test]
fn the_rust_examples_run_as_documented() {
    for (example, prints) in [("quickstart", "STRIPE_API_KEY"), ("readme", "sk_live_")] {
        let server = Server::dev();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let o = std::process::Command::new(env!("CARGO"))
            .current_dir(&root)
            .args([
                "run",
                "-q",
                "--locked",
                "-p",
                "ductape",
                "--example",
                example,
            ])
            .env("DUCTAPE_URL", &server.url)
            .env("DUCTAPE_ACCESS_KEY", server.access_key.as_deref().unwrap())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{example}: {out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.contains(prints), "{example}: {out}");
    }
}
