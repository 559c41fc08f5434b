//! Data written by earlier releases keeps working: `tests/fixtures/v1/` is a database made
//! by the release with `dv1` envelopes and `dwk1` wrapped keys (see
//! `tests/fixtures/make-v1-database.sh`), served by this build.

use ductape::ErrorCode;
use ductape_e2e::Server;
use serde_json::Value;
use std::path::Path;

fn fixture() -> (tempfile::TempDir, Value) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        src.join("ductape.sqlite"),
        dir.path().join("ductape.sqlite"),
    )
    .unwrap();
    let keys = serde_json::from_slice(&std::fs::read(src.join("keys.json")).unwrap()).unwrap();
    (dir, keys)
}

#[tokio::test]
async fn a_v1_database_opens_with_its_keys_and_bindings_hold() {
    let (dir, keys) = fixture();
    let server = Server::persistent(dir.path());
    let values = keys["values"].as_object().unwrap();

    let admin = server.client_with(keys["admin"].as_str().unwrap()).await;
    for (key, value) in values {
        match admin.secrets().fetch(key).await {
            Ok(s) => assert_eq!(s.value.expose(), value.as_str().unwrap(), "{key}"),
            Err(e) => {
                assert_eq!(key, "REVOKED");
                assert_eq!(e.code(), ErrorCode::SecretRevoked);
            }
        }
    }
    assert_eq!(admin.secrets().fetch("ROTATED").await.unwrap().version, 2);

    let bound = server.client_with(keys["web_prd"].as_str().unwrap()).await;
    let readable: Vec<&str> = keys["web_prd_reads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    for (key, value) in values {
        let got = bound.secrets().fetch(key).await;
        if readable.contains(&key.as_str()) {
            assert_eq!(
                got.unwrap().value.expose(),
                value.as_str().unwrap(),
                "{key}"
            );
        } else {
            assert!(got.is_err(), "{key} is outside web/prd");
        }
    }
    // The audit chain written by that release still verifies.
    let verified = admin
        .verify_audit()
        .await
        .unwrap()
        .expect("an unbroken chain");
    assert!(verified.events > 0);
}
