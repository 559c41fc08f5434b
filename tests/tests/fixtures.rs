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

/// The fixture's web/prd key reads exactly `web_prd_reads`, each to its value; returns them.
async fn assert_web_prd_reads(bound: &ductape::Ductape, keys: &Value) -> Vec<String> {
    let readable: Vec<String> = keys["web_prd_reads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    for (key, value) in keys["values"].as_object().unwrap() {
        let got = bound.secrets().fetch(key).await;
        if readable.contains(key) {
            assert_eq!(
                got.unwrap().value.expose(),
                value.as_str().unwrap(),
                "{key}"
            );
        } else {
            assert!(got.is_err(), "{key} is outside web/prd");
        }
    }
    readable
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
    assert_web_prd_reads(&bound, &keys).await;
    // The audit chain written by that release still verifies.
    let verified = admin
        .verify_audit()
        .await
        .unwrap()
        .expect("an unbroken chain");
    assert!(verified.events > 0);
}

/// The rows of the fixture's database that show its format.
struct Rows {
    keyring: Option<String>,
    /// access key id → stored wrapped key or grants
    keys: std::collections::BTreeMap<String, String>,
    ciphertexts: Vec<String>,
}

fn rows(file: &Path) -> Rows {
    let c = rusqlite::Connection::open(file).unwrap();
    let keyring = c
        .query_row("SELECT keyring FROM workspaces", [], |r| r.get(0))
        .unwrap();
    let keys = c
        .prepare("SELECT id, wrapped_key FROM access_keys")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let ciphertexts = c
        .prepare("SELECT ciphertext FROM secrets")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    Rows {
        keyring,
        keys,
        ciphertexts,
    }
}

fn key_id(text: &str) -> String {
    text.parse::<ductape::AccessKey>().unwrap().id().to_owned()
}

/// The migration: an unbound admin's first `init()` upgrades the v1 database in place
/// (resuming an upgrade cut short), the format-1 bound key converts itself on its first use,
/// old clients get "upgrade your client", and afterwards the bound key with the database
/// file opens exactly its binding.
#[tokio::test]
async fn a_v1_database_is_upgraded_in_place_and_least_privilege_then_holds() {
    let (dir, keys) = fixture();
    let file = dir.path().join("ductape.sqlite");
    let mut server = Server::persistent(dir.path());
    let admin_text = keys["admin"].as_str().unwrap();
    let web_text = keys["web_prd"].as_str().unwrap();
    let values = keys["values"].as_object().unwrap().clone();
    let before = rows(&file);
    assert!(before.keyring.is_none());
    assert!(before.ciphertexts.iter().all(|c| c.starts_with("dv1.")));

    // A format-1 session of the bound key, opened before the upgrade (an old client's).
    let old_session = server.client_with(web_text).await;

    // An upgrade cut short: the admin's client dies after the first page is resealed,
    // before the upgrade is finished.
    let cut = ductape::Ductape::new(
        ductape::Config::new(&server.url, admin_text.parse().unwrap()).max_retries(0),
    )
    .unwrap();
    let died = tokio::spawn(async move {
        cut.upgrade_with_progress(|_, _| panic!("the client dies here"))
            .await
            .map(|_| ())
    })
    .await;
    assert!(died.is_err(), "the upgrade was cut short");
    let half = rows(&file);
    let ring = ductape::crypto::Keyring::parse(half.keyring.as_deref().unwrap()).unwrap();
    assert!(ring.in_transition(), "started, not finished");
    assert!(half.keys[&key_id(web_text)].starts_with("dwk1."));

    // The next admin init resumes and finishes it.
    let admin = server.client_with(admin_text).await;
    let after = rows(&file);
    let ring = ductape::crypto::Keyring::parse(after.keyring.as_deref().unwrap()).unwrap();
    assert!(!ring.in_transition());
    assert!(after.ciphertexts.iter().all(|c| c.starts_with("dv2.1.")));
    assert!(after.keys[&key_id(admin_text)].starts_with("dg2."));
    // The bound key has not been used since: its binding keeps the upgrade wrap for it.
    assert!(after.keys[&key_id(web_text)].starts_with("dwk1."));
    assert!(ring.current().bindings.iter().any(|b| b.legacy.is_some()));
    for (key, value) in &values {
        match admin.secrets().fetch(key).await {
            Ok(s) => assert_eq!(s.value.expose(), value.as_str().unwrap(), "{key}"),
            Err(e) => assert_eq!(
                (key.as_str(), e.code()),
                ("REVOKED", ErrorCode::SecretRevoked)
            ),
        }
    }

    // A rotation now would leave the unconverted key without a grant: refused, named.
    let e = admin.rotate_key().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Conflict, "{e}");
    assert!(e.message().contains(&key_id(web_text)), "{e}");

    // The old client: told to upgrade, never given a wrong value, never writes dv1.
    let resp = ductape_e2e::http()
        .get(format!("{}/v1/session", server.url))
        .bearer_auth(
            web_text
                .parse::<ductape::AccessKey>()
                .unwrap()
                .bearer()
                .as_str(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 426);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upgrade_required", "{body}");
    let says = body["error"]["message"].as_str().unwrap();
    // It names the first client release that reads the format.
    assert!(
        says.contains("upgrade your Ductape client") && says.contains(".0 or later"),
        "{says}"
    );
    assert!(old_session.secrets().fetch("WEB_PRD").await.is_err());
    let admin_bearer = admin_text
        .parse::<ductape::AccessKey>()
        .unwrap()
        .bearer()
        .to_string();
    let old_value = &before.ciphertexts[0];
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/v1/secrets".to_owned(),
            serde_json::json!({ "key": "FROM_OLD_CLIENT", "ciphertext": old_value }),
        ),
        (
            reqwest::Method::PATCH,
            "/v1/secrets/OPEN_KEY".to_owned(),
            serde_json::json!({ "ciphertext": old_value }),
        ),
    ] {
        let (status, answer) = ductape_e2e::raw(
            method,
            &format!("{}{path}", server.url),
            Some(&admin_bearer),
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
        .await;
        assert_eq!(status, 426, "{path}: {answer}");
    }

    // The format-1 bound key with a current client: it takes its grant, once.
    let bound = server.client_with(web_text).await;
    let readable = assert_web_prd_reads(&bound, &keys).await;
    let done = rows(&file);
    assert!(done.keys.values().all(|k| k.starts_with("dg2.")));
    let ring = ductape::crypto::Keyring::parse(done.keyring.as_deref().unwrap()).unwrap();
    assert!(
        ring.generations
            .iter()
            .flat_map(|g| &g.bindings)
            .all(|b| b.legacy.is_none()),
        "no format-1 key left: the upgrade wraps are gone"
    );
    // Now the cryptography holds the binding: the bound key with the file opens exactly
    // what it may read (REVOKED is revoked, not hidden: its scope is open).
    server.stop();
    let dump = ductape_e2e::stolen::sqlite_dump(&file);
    let mut expected: std::collections::BTreeSet<String> = readable.into_iter().collect();
    expected.insert("REVOKED".into());
    assert_eq!(
        ductape_e2e::stolen::offline_attack(&dump, web_text),
        expected
    );
    assert_eq!(
        ductape_e2e::stolen::offline_attack(&dump, admin_text).len(),
        values.len()
    );
}

/// `ductape workspace upgrade` does the upgrade explicitly (and says so in `--json`), then
/// finds nothing to do; `rotate-key` then rotates the upgraded workspace.
#[tokio::test]
async fn the_cli_upgrades_a_v1_workspace_and_then_rotates_it() {
    let (dir, keys) = fixture();
    let file = dir.path().join("ductape.sqlite");
    let server = Server::persistent(dir.path());
    let admin = keys["admin"].as_str().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(ductape_e2e::ductape_bin())
            .args(args)
            .args(["--json"])
            .env("DUCTAPE_URL", &server.url)
            .env("DUCTAPE_ACCESS_KEY", admin)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let first = run(&["workspace", "upgrade"]);
    assert_eq!(first["generation"], 1);
    assert_eq!(first["started"], true);
    assert_eq!(first["resealed"], 7);
    assert!(rows(&file)
        .ciphertexts
        .iter()
        .all(|c| c.starts_with("dv2.1.")));
    let again = run(&["workspace", "upgrade"]);
    assert_eq!(
        (again["started"].as_bool(), again["resealed"].as_u64()),
        (Some(false), Some(0))
    );
    // The format-1 bound key converts on first use; then the workspace can rotate.
    server.client_with(keys["web_prd"].as_str().unwrap()).await;
    let rotated = run(&["workspace", "rotate-key"]);
    assert_eq!(rotated["generation"], 2);
    assert!(rows(&file)
        .ciphertexts
        .iter()
        .all(|c| c.starts_with("dv2.2.")));
    let bound = server.client_with(keys["web_prd"].as_str().unwrap()).await;
    assert_web_prd_reads(&bound, &keys).await;
}
