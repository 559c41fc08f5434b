//! Bulk import and export: `ductape secrets import` / `export` round trips through the
//! batch-create route, re-runs create nothing twice, and the route refuses what a single
//! create would refuse, item by item, with the refusals in the audit trail.

use ductape::wire::Permission;
use ductape::{AccessKey, AccessKeyOptions, CreateSecret, Ductape};
use ductape_e2e::{ductape_bin, listed_keys, raw, Server};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

const CANARY: &str = "sk_live_BULKCANARY_51x";

fn ductape(server: &Server, key: Option<&str>, args: &[&str]) -> Output {
    Command::new(ductape_bin())
        .args(args)
        .env("DUCTAPE_URL", &server.url)
        .env(
            "DUCTAPE_ACCESS_KEY",
            key.or(server.access_key.as_deref()).unwrap_or(""),
        )
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Values that need every kind of quoting in a .env file.
fn tricky(i: usize) -> String {
    match i % 6 {
        0 => format!("plain{i}"),
        1 => format!("pa$$word {i} with \"quotes\" and 'single'"),
        2 => format!("line one\nline two {i}\r\n\ttabbed"),
        3 => format!("#{i} not a comment # really"),
        4 => format!("back\\slash {i} ünïcödé 🔑"),
        _ => format!("{CANARY}{i}"),
    }
}

async fn value_of(d: &Ductape, key: &str) -> String {
    d.secrets()
        .fetch(key)
        .await
        .unwrap()
        .value
        .expose()
        .to_owned()
}

#[tokio::test]
async fn an_env_file_imports_exports_and_imports_again_unchanged() {
    const N: usize = 1203; // three batch requests
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("prod.env");
    let mut file = String::from("# exported from elsewhere\n\n");
    for i in 0..N {
        file.push_str(&ductape_cli_line(&format!("IMPORTED_{i:05}"), &tricky(i)));
        file.push('\n');
    }
    std::fs::write(&env_file, &file).unwrap();

    let source = Server::dev();
    let o = ductape(
        &source,
        None,
        &["secrets", "import", env_file.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains(&format!("{N} created, 0 already there, 0 failed")),
        "{}",
        text(&o.stdout)
    );
    let d = source.client().await;
    assert_eq!(listed_keys(&d).await.len(), N);
    for i in [0, 1, 2, 3, 4, 5, 600, N - 1] {
        assert_eq!(
            value_of(&d, &format!("IMPORTED_{i:05}")).await,
            tricky(i),
            "{i}"
        );
    }

    // A re-run (say after an interruption) creates nothing twice and changes nothing.
    d.secrets()
        .update(
            "IMPORTED_00000",
            ductape::UpdateSecret::new().value("changed here"),
        )
        .await
        .unwrap();
    let o = ductape(
        &source,
        Some(source.access_key.as_deref().unwrap()),
        &["secrets", "import", env_file.to_str().unwrap(), "--json"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let tally: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(tally, json!({"created": 0, "existing": N, "failed": 0}));
    assert_eq!(value_of(&d, "IMPORTED_00000").await, "changed here");

    // Export, then import the export into another server: the same values.
    let exported = dir.path().join("out.env");
    let o = ductape(
        &source,
        None,
        &["secrets", "export", "-o", exported.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains(&format!("exported {N} secrets")));
    assert_private(&exported);
    // Export never overwrites a file.
    let again = ductape(
        &source,
        None,
        &["secrets", "export", "-o", exported.to_str().unwrap()],
    );
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("never overwrites"),
        "{}",
        text(&again.stderr)
    );

    let target = Server::dev();
    let o = ductape(
        &target,
        None,
        &["secrets", "import", exported.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let t = target.client().await;
    assert_eq!(listed_keys(&t).await.len(), N);
    assert_eq!(value_of(&t, "IMPORTED_00000").await, "changed here");
    for i in [1, 2, 3, 4, 5, 1001] {
        assert_eq!(
            value_of(&t, &format!("IMPORTED_{i:05}")).await,
            tricky(i),
            "{i}"
        );
    }

    // No value in the servers' logs or the command's messages.
    assert!(!source.logs().contains("BULKCANARY"));
    assert!(!target.logs().contains("BULKCANARY"));
    assert!(!text(&o.stderr).contains("BULKCANARY") && !text(&o.stdout).contains("BULKCANARY"));
}

/// The line export writes, through the CLI itself (so the test file uses the same quoting).
fn ductape_cli_line(key: &str, value: &str) -> String {
    let escaped: String = value
        .chars()
        .map(|c| match c {
            '\n' => "\\n".to_owned(),
            '\r' => "\\r".to_owned(),
            '\t' => "\\t".to_owned(),
            '"' | '\\' | '$' => format!("\\{c}"),
            c => c.to_string(),
        })
        .collect();
    format!("{key}=\"{escaped}\"")
}

fn assert_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "an export holds plaintext: owner-only");
}

#[tokio::test]
async fn a_json_export_keeps_metadata_and_bad_lines_are_named_without_values() {
    let dir = tempfile::tempdir().unwrap();
    let source = Server::dev();
    let d = source.client().await;
    d.secrets()
        .create(
            CreateSecret::new("STRIPE_KEY", CANARY)
                .description("Stripe")
                .token_type(ductape::TokenType::Api)
                .scope(["pay"])
                .envs(["prd", "stg"])
                .expires_at(4_102_444_800),
        )
        .await
        .unwrap();
    d.secrets()
        .create(CreateSecret::new("OLD_KEY", "x"))
        .await
        .unwrap();
    d.secrets().revoke("OLD_KEY").await.unwrap();

    let out = dir.path().join("all.json");
    let o = ductape(
        &source,
        None,
        &[
            "secrets",
            "export",
            "--format",
            "json",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("1 revoked or expired not exported"),
        "{}",
        text(&o.stderr)
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        doc,
        json!([{"key": "STRIPE_KEY", "value": CANARY, "description": "Stripe", "token_type": "api",
                "scope": ["pay"], "envs": ["prd", "stg"], "expires_at": 4_102_444_800i64}])
    );

    let target = Server::dev();
    let o = ductape(&target, None, &["secrets", "import", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let got = target
        .client()
        .await
        .secrets()
        .fetch("STRIPE_KEY")
        .await
        .unwrap();
    assert_eq!(
        (
            got.value.expose(),
            got.record.scope.clone(),
            got.record.envs.clone(),
            got.record.expires_at
        ),
        (
            CANARY,
            vec!["pay".to_owned()],
            vec!["prd".to_owned(), "stg".to_owned()],
            Some(4_102_444_800)
        )
    );

    // A malformed .env names the line, never the value; nothing is created.
    let bad = dir.path().join("bad.env");
    std::fs::write(&bad, format!("GOOD=1\nBROKEN=\"{CANARY}\n")).unwrap();
    let o = ductape(&target, None, &["secrets", "import", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("line 2"), "{}", text(&o.stderr));
    assert!(!text(&o.stderr).contains("BULKCANARY"));
    // Items the server refuses are listed by key; the rest are created; exit status 1.
    std::fs::write(&bad, "GOOD=1\nBAD!KEY=2\nSTRIPE_KEY=again\n").unwrap();
    let o = ductape(&target, None, &["secrets", "import", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o.stdout).contains("1 created, 1 already there, 1 failed"),
        "{}",
        text(&o.stdout)
    );
    assert!(
        text(&o.stderr).contains("(an invalid key)"),
        "{}",
        text(&o.stderr)
    );
    // A key twice in a file is refused before anything is sent.
    std::fs::write(&bad, "TWICE_A=1\nTWICE_B=2\nTWICE_A=3\n").unwrap();
    let o = ductape(&target, None, &["secrets", "import", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("TWICE_A appears more than once"),
        "{}",
        text(&o.stderr)
    );
    assert!(target
        .client()
        .await
        .secrets()
        .fetch("TWICE_B")
        .await
        .is_err());
    // A flat JSON object is accepted too.
    let flat = dir.path().join("flat.json");
    std::fs::write(&flat, r#"{"FLAT_A": "a", "FLAT_B": "b"}"#).unwrap();
    let o = ductape(
        &target,
        None,
        &["secrets", "import", flat.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(value_of(&target.client().await, "FLAT_B").await, "b");
}

/// The bearer of an access key, for raw requests.
fn bearer(key: &str) -> String {
    key.parse::<AccessKey>().unwrap().bearer().to_string()
}

async fn batch_create(server: &Server, bearer: &str, body: Value) -> (u16, Value) {
    raw(
        Method::POST,
        &format!("{}/v1/secrets/batch-create", server.url),
        Some(bearer),
        Some("application/json"),
        Some(body.to_string().into_bytes()),
    )
    .await
}

#[tokio::test]
async fn the_batch_create_route_refuses_item_by_item_what_a_create_would() {
    let server = Server::dev();
    let admin = server.client().await;
    // A real sealed value to send raw (read once the keys below exist, so it is wrapped to
    // every binding that reads pay/prd): the server checks whom it is wrapped to, not its
    // name, so it serves for other pay/prd items too.
    admin
        .secrets()
        .create(
            CreateSecret::new("SEED", CANARY)
                .scope(["pay"])
                .envs(["prd"]),
        )
        .await
        .unwrap();
    admin
        .secrets()
        .create(CreateSecret::new("OTHER_APP", "x").scope(["mail"]))
        .await
        .unwrap();
    let make = |perms: Vec<Permission>, app: Option<&str>, envs: &[&str]| {
        let mut o = AccessKeyOptions::new("k", perms);
        o.app = app.map(str::to_owned);
        o.envs = envs.iter().map(|e| e.to_string()).collect();
        o
    };
    let bound = admin
        .access_keys()
        .create(make(
            vec![Permission::List, Permission::Read, Permission::Write],
            Some("pay"),
            &["prd"],
        ))
        .await
        .unwrap();
    let reader = admin
        .access_keys()
        .create(make(vec![Permission::List, Permission::Read], None, &[]))
        .await
        .unwrap();
    let bound = bearer(&bound.key.expose());
    let reader = bearer(&reader.key.expose());
    let (_, seed) = raw(
        Method::GET,
        &format!("{}/v1/secrets/SEED", server.url),
        Some(&server.bearer()),
        None,
        None,
    )
    .await;
    let ct = seed["ciphertext"].as_str().unwrap().to_owned();

    // Without write permission: the whole request is refused.
    let (status, body) = batch_create(
        &server,
        &reader,
        json!({"secrets": [{"key": "R1", "ciphertext": ct}]}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("permission_denied"))
    );

    // A bound key: inside its binding created; outside it, or unscoped, refused; a taken
    // name outside its binding is not confirmed to exist.
    let (status, body) = batch_create(
        &server,
        &bound,
        json!({"secrets": [
            {"key": "PAY_NEW", "ciphertext": ct, "scope": ["pay"], "envs": ["prd"]},
            {"key": "UNSCOPED", "ciphertext": ct},
            {"key": "MAIL_NEW", "ciphertext": ct, "scope": ["mail"], "envs": ["prd"]},
            {"key": "OTHER_APP", "ciphertext": ct, "scope": ["pay"], "envs": ["prd"]},
            {"key": "SEED", "ciphertext": ct, "scope": ["pay"], "envs": ["prd"]},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let codes: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["code"].as_str().unwrap_or("created"))
        .collect();
    assert_eq!(
        codes,
        [
            "created",
            "permission_denied",
            "permission_denied",
            "permission_denied",
            "secret_exists"
        ]
    );
    assert!(!body["results"][3]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("exists"));
    assert_eq!(body["results"][0]["record"]["key"], "PAY_NEW");
    let keys = listed_keys(&admin).await;
    assert_eq!(
        keys,
        ["OTHER_APP", "PAY_NEW", "SEED"],
        "refused items wrote nothing"
    );

    // A malformed item refuses the whole request, naming it and never echoing a value;
    // nothing of the request is written.
    for (bad, expect) in [
        (
            json!({"key": "PLAIN", "value": CANARY}),
            "secrets[1]: field 'value' is not accepted",
        ),
        (json!({"key": "bad key!", "ciphertext": ct}), "secrets[1]: "),
        (
            json!({"key": "FORGED", "ciphertext": "dv1.xc20p.nokey.AAAA"}),
            "secrets[1]: field 'ciphertext'",
        ),
        (
            json!("not an object"),
            "secrets[1]: each secret must be an object",
        ),
        (
            json!({"key": "K", "ciphertext": ct, "colour": "red"}),
            "secrets[1]: ",
        ),
    ] {
        let (status, body) = batch_create(
            &server,
            &server.bearer(),
            json!({"secrets": [
                {"key": "OK_ONE", "ciphertext": ct}, bad,
            ]}),
        )
        .await;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(status, 422, "{body}");
        assert!(message.starts_with(expect), "{message}");
        assert!(!body.to_string().contains("BULKCANARY"), "no value echoed");
    }
    assert_eq!(listed_keys(&admin).await.len(), 3, "nothing written");
    // What depends on the moment (an expiry already past) or on the other items (a key
    // repeated) is answered item by item.
    let (status, body) = batch_create(
        &server,
        &server.bearer(),
        json!({"secrets": [
            {"key": "OK_ONE", "ciphertext": ct},
            {"key": "EXPIRED", "ciphertext": ct, "expires_at": 1},
            {"key": "OK_ONE", "ciphertext": ct},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["results"][0]["record"].is_object());
    assert_eq!(body["results"][1]["error"]["code"], "invalid_field");
    let repeat = body["results"][2]["error"]["message"].as_str().unwrap();
    assert!(repeat.contains("more than once"), "{repeat}");
    assert_eq!(listed_keys(&admin).await.len(), 4);

    // Whole-request limits.
    let too_many: Vec<Value> = (0..501)
        .map(|i| json!({"key": format!("K{i}"), "ciphertext": ct}))
        .collect();
    for body in [
        json!({"secrets": too_many}),
        json!({"secrets": []}),
        json!({"secrets": "x"}),
        json!({"secrets": [], "extra": 1}),
    ] {
        let (status, answer) = batch_create(&server, &server.bearer(), body).await;
        assert_eq!(status, 422, "{answer}");
    }

    // The audit trail has each creation and each refusal, with its reason.
    let page = admin
        .audit(&ductape::AuditQuery {
            limit: Some(100),
            ..Default::default()
        })
        .await
        .unwrap();
    let created: Vec<&str> = page
        .events
        .iter()
        .filter(|e| e.action == "create" && e.allowed)
        .map(|e| e.secret_key.as_str())
        .collect();
    assert!(created.contains(&"PAY_NEW") && created.contains(&"OK_ONE"));
    let refused: Vec<(&str, &str)> = page
        .events
        .iter()
        .filter(|e| e.action == "create" && !e.allowed)
        .map(|e| (e.secret_key.as_str(), e.reason.as_deref().unwrap_or("")))
        .collect();
    for key in ["UNSCOPED", "MAIL_NEW", "OTHER_APP", "SEED"] {
        assert!(
            refused.iter().any(|(k, _)| *k == key),
            "{key} refusal audited: {refused:?}"
        );
    }
    assert!(
        refused
            .iter()
            .any(|(k, r)| *k == "OTHER_APP" && r.contains("exists")),
        "the trail keeps the real reason"
    );
    assert!(server.logs().matches("BULKCANARY").count() == 0);
}

#[tokio::test]
async fn an_import_killed_midway_finishes_on_a_re_run_with_nothing_half_written() {
    const N: usize = 6000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.env");
    let lines: String = (0..N)
        .map(|i| format!("KILLED_{i:05}=value-{i}\n"))
        .collect();
    std::fs::write(&file, lines).unwrap();
    let server = Server::dev();
    let mut child = Command::new(ductape_bin())
        .args(["secrets", "import", file.to_str().unwrap()])
        .env("DUCTAPE_URL", &server.url)
        .env("DUCTAPE_ACCESS_KEY", server.access_key.as_deref().unwrap())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let d = server.client().await;
    // Requests the client sent before it died still finish on the server: count once the
    // number stops moving.
    let mut before = listed_keys(&d).await.len();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let now = listed_keys(&d).await.len();
        if now == before {
            break;
        }
        before = now;
    }
    assert!(before <= N);
    println!("{before} of {N} created before the kill");

    let o = ductape(
        &server,
        None,
        &["secrets", "import", file.to_str().unwrap(), "--json"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let tally: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        tally["created"].as_u64().unwrap() as usize,
        N - before,
        "{tally}"
    );
    assert_eq!(
        tally["existing"].as_u64().unwrap() as usize,
        before,
        "{tally}"
    );
    assert_eq!(listed_keys(&d).await.len(), N);
    // Every secret whole: each value opens and is the file's.
    let keys: Vec<ductape::SecretKey> = (0..N)
        .step_by(7)
        .map(|i| ductape::SecretKey::parse(&format!("KILLED_{i:05}")).unwrap())
        .collect();
    for (key, got) in d.secrets().batch_get(&keys, None, None).await.unwrap() {
        let i: usize = key.as_str()[7..].parse().unwrap();
        assert_eq!(got.unwrap().value.expose(), format!("value-{i}"));
    }
}
