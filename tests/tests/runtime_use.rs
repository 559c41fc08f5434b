//! Using secrets at run time (DESIGN.md §5): resolution, scope and environment rules,
//! app/env-bound access keys enforced by the server, the audit trail, `ductape run`.

use ductape::wire::Permission;
use ductape::{
    AccessKeyOptions, AuditQuery, Config, CreateSecret, Ductape, ErrorCode, ResolveOptions,
};
use ductape_e2e::{assert_error_shape, ductape_bin, raw, rewriting_proxy, Server};
use reqwest::Method;
use serde_json::json;

fn opts(app: Option<&str>, env: Option<&str>) -> ResolveOptions {
    ResolveOptions::new(app, env)
}

async fn seeded(server: &Server) -> Ductape {
    let d = server.client().await;
    let s = d.secrets();
    s.create(CreateSecret::new("STRIPE_KEY", "sk_live_stripe").scope(["stripe_app"]))
        .await
        .unwrap();
    s.create(CreateSecret::new("PROD_KEY", "prod-only").envs(["prd"]))
        .await
        .unwrap();
    // Created live, then expired (a create with a past expiry is refused).
    s.create(CreateSecret::new("OLD_KEY", "old")).await.unwrap();
    s.update("OLD_KEY", ductape::UpdateSecret::new().expires_at(1_000))
        .await
        .unwrap();
    s.create(CreateSecret::new("X", "x")).await.unwrap();
    s.revoke("X").await.unwrap();
    s.create(CreateSecret::new("OPEN_KEY", "open"))
        .await
        .unwrap();
    d
}

/// How many batch requests the server has answered, from its metrics.
async fn batch_requests(server: &Server) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with(
                "ductape_http_requests_total{method=\"POST\",route=\"/v1/secrets/batch-get\"",
            )
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test]
async fn the_design_examples_resolve_or_fail_with_their_messages() {
    let server = Server::dev();
    let d = seeded(&server).await;
    let s = d.secrets();
    let config = json!({"headers": {"Authorization": "Bearer $Token{STRIPE_KEY}"}, "timeout": 30, "tags": ["$Token{OPEN_KEY}", true]});
    let out = s
        .resolve(&config, &opts(Some("stripe_app"), Some("dev")))
        .await
        .unwrap();
    assert_eq!(
        out,
        json!({"headers": {"Authorization": "Bearer sk_live_stripe"}, "timeout": 30, "tags": ["open", true]})
    );

    let cases = [
        (
            "$Token{STRIPE_KEY}",
            Some("other_app"),
            None,
            ErrorCode::PermissionDenied,
            "Secret 'STRIPE_KEY' is not accessible by app 'other_app'",
        ),
        (
            "$Token{PROD_KEY}",
            None,
            Some("dev"),
            ErrorCode::PermissionDenied,
            "Secret 'PROD_KEY' is not available in environment 'dev'",
        ),
        (
            "$Token{OLD_KEY}",
            None,
            None,
            ErrorCode::SecretExpired,
            "Secret 'OLD_KEY' has expired",
        ),
        (
            "$Token{X}",
            None,
            None,
            ErrorCode::SecretRevoked,
            "Secret 'X' has been revoked",
        ),
        (
            "$Token{MY_SECRET}",
            None,
            None,
            ErrorCode::SecretNotFound,
            "Secret 'MY_SECRET' not found",
        ),
    ];
    for (text, app, env, code, message) in cases {
        let e = s
            .resolve(&json!({"v": text}), &opts(app, env))
            .await
            .unwrap_err();
        assert_eq!((e.code(), e.message()), (code, message), "{text}");
    }
    assert_eq!(
        s.resolve(&json!("$Token{PROD_KEY}"), &opts(None, Some("prd")))
            .await
            .unwrap(),
        json!("prod-only")
    );
}

#[tokio::test]
async fn several_failures_are_all_reported_in_one_error() {
    let server = Server::dev();
    let d = seeded(&server).await;
    let config = json!([
        "$Token{OPEN_KEY}",
        "$Token{MISSING}",
        "$Token{X} and $Token{OLD_KEY}"
    ]);
    let e = d
        .secrets()
        .resolve(&config, &opts(None, None))
        .await
        .unwrap_err();
    let messages: Vec<&str> = e.failures().iter().map(|f| f.message()).collect();
    assert_eq!(
        messages,
        [
            "Secret 'MISSING' not found",
            "Secret 'X' has been revoked",
            "Secret 'OLD_KEY' has expired"
        ]
    );
    assert_eq!(e.message(), messages.join("; "));
}

/// A compact batch read (what resolving asks for) answers each secret as its ciphertext and
/// the rules it is read under, nothing else of its record; refusals are as in a whole read.
#[tokio::test]
async fn a_compact_batch_read_answers_the_ciphertext_and_the_rules_alone() {
    let server = Server::dev();
    let _d = seeded(&server).await;
    let url = format!("{}/v1/secrets/batch-get", server.url);
    let bearer = server.bearer();
    let post = |body: serde_json::Value| {
        raw(
            Method::POST,
            &url,
            Some(&bearer),
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
    };
    let (status, body) =
        post(json!({"keys": ["STRIPE_KEY", "X", "MISSING"], "app": "stripe_app", "compact": true}))
            .await;
    assert_eq!(status, 200, "{body}");
    let first = &body["results"][0];
    assert_eq!(first["key"], "STRIPE_KEY");
    assert!(
        first["secret"].is_null() && first["record"].is_null(),
        "{first}"
    );
    let sealed = first["sealed"].as_object().expect("a sealed value");
    let mut fields: Vec<&str> = sealed.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["ciphertext", "scope", "status"],
        "empty envs and no expiry are left out"
    );
    assert!(sealed["ciphertext"].as_str().unwrap().starts_with("dv2."));
    assert_eq!(sealed["scope"], json!(["stripe_app"]));
    assert_eq!(sealed["status"], "active");
    assert_eq!(body["results"][1]["error"]["code"], "secret_revoked");
    assert_eq!(body["results"][2]["error"]["status"], 404);
    assert!(body["results"][1]["sealed"].is_null() && body["results"][2]["sealed"].is_null());

    // A key asked for twice is answered in both places, alike.
    let (status, body) =
        post(json!({"keys": ["STRIPE_KEY", "MISSING", "STRIPE_KEY"], "app": "stripe_app", "compact": true}))
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][2]["key"], "STRIPE_KEY");
    assert_eq!(body["results"][0]["sealed"], body["results"][2]["sealed"]);
    assert!(
        body["results"][0]["sealed"]["ciphertext"].is_string(),
        "{body}"
    );
    assert_eq!(body["results"][1]["error"]["status"], 404);

    let (status, body) =
        post(json!({"keys": ["OPEN_KEY"], "metadata_only": true, "compact": true})).await;
    assert_eq!(assert_error_shape(422, &body), "invalid_field");
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'metadata_only' and 'compact'"),
        "{body}"
    );
    let (status, body) = post(json!({"keys": ["OPEN_KEY"], "compact": "yes"})).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["error"]["message"],
        "field 'compact' must be a boolean"
    );
}

/// A batch read answers each key in its place, whether its rows come from the database (in
/// the database's order) or from the server's read cache (in the order asked), with keys
/// missing, repeated or out of order.
#[tokio::test]
async fn a_batch_read_answers_each_key_in_its_place_from_the_database_and_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(dir.path());
    server.setup().await;
    let d = server.client().await;
    for (k, v) in [("A_KEY", "a"), ("B_KEY", "b"), ("C_KEY", "c")] {
        d.secrets().create(CreateSecret::new(k, v)).await.unwrap();
    }
    // Read first from the database (every write emptied the cache), in reverse order.
    let reversed = json!(["$Token{C_KEY}", "$Token{B_KEY}", "$Token{A_KEY}"]);
    let resolve = |config: serde_json::Value| {
        let d = d.clone();
        async move {
            d.secrets()
                .resolve(&config, &opts(None, None))
                .await
                .unwrap()
        }
    };
    assert_eq!(resolve(reversed.clone()).await, json!(["c", "b", "a"]));
    let url = format!("{}/v1/secrets/batch-get", server.url);
    let bearer = server.bearer();
    let asked = ["C_KEY", "NO_KEY", "A_KEY", "C_KEY", "B_KEY"];
    let mut answers = Vec::new();
    // From the cache now: all keys present and in reverse order, then the mixed list.
    for keys in [
        &["C_KEY", "B_KEY", "A_KEY"][..],
        &["C_KEY", "B_KEY", "A_KEY"],
        &asked,
        &asked,
    ] {
        let body = json!({"keys": keys, "compact": true})
            .to_string()
            .into_bytes();
        let (status, body) = raw(
            Method::POST,
            &url,
            Some(&bearer),
            Some("application/json"),
            Some(body),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), keys.len());
        for (item, key) in results.iter().zip(keys) {
            assert_eq!(item["key"], *key, "{body}");
        }
        answers.push(body);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[2], answers[3]);
    let r = &answers[2]["results"];
    assert_eq!(r[1]["error"]["status"], 404);
    assert_eq!(r[0]["sealed"], r[3]["sealed"]);
    assert_eq!(r[0]["sealed"], answers[0]["results"][0]["sealed"]);
    assert_eq!(r[2]["sealed"], answers[0]["results"][2]["sealed"]);
    // And each value opens as its own secret's (a misplaced one would fail its check).
    let config = json!(asked
        .iter()
        .filter(|k| **k != "NO_KEY")
        .map(|k| format!("$Token{{{k}}}"))
        .collect::<Vec<_>>());
    assert_eq!(resolve(config).await, json!(["c", "a", "c", "b"]));
    assert_eq!(resolve(reversed).await, json!(["c", "b", "a"]));
}

/// The server applies the rules for the app and environment a resolve claims; the client
/// checks them again on what comes back. A man in the middle that strips the claim gets the
/// server to answer, but the secrets are refused all the same, with the rules' messages.
#[tokio::test]
async fn a_claim_stripped_on_the_way_does_not_get_a_secret_past_its_rules() {
    let server = Server::dev();
    let _d = seeded(&server).await;
    let strip = |mut body: serde_json::Value| {
        body["app"] = serde_json::Value::Null;
        body["env"] = serde_json::Value::Null;
        body
    };
    let proxy = rewriting_proxy(&server.url, "/v1/secrets/batch-get", strip, |b| b).await;
    let key = server.access_key.as_deref().unwrap().parse().unwrap();
    let via = Ductape::new(Config::new(&proxy, key).max_retries(0)).unwrap();
    via.init().await.unwrap();
    let ctx = opts(Some("other_app"), Some("dev"));
    let e = via
        .secrets()
        .resolve(
            &json!(["$Token{STRIPE_KEY}", "$Token{PROD_KEY}", "$Token{OPEN_KEY}"]),
            &ctx,
        )
        .await
        .unwrap_err();
    let messages: Vec<&str> = e.failures().iter().map(|f| f.message()).collect();
    assert_eq!(
        messages,
        [
            "Secret 'STRIPE_KEY' is not accessible by app 'other_app'",
            "Secret 'PROD_KEY' is not available in environment 'dev'"
        ]
    );
    // What the proxy sent did reach the server without the claim: it answered both.
    let (_, body) = raw(
        Method::POST,
        &format!("{}/v1/secrets/batch-get", server.url),
        Some(&server.bearer()),
        Some("application/json"),
        Some(strip(json!({"keys": ["STRIPE_KEY", "PROD_KEY"], "app": "other_app", "env": "dev", "compact": true})).to_string().into_bytes()),
    )
    .await;
    assert!(
        body["results"][0]["sealed"].is_object() && body["results"][1]["sealed"].is_object(),
        "{body}"
    );
    let open = via
        .secrets()
        .resolve(&json!({"k": "$Token{OPEN_KEY}"}), &ctx)
        .await
        .unwrap();
    assert_eq!(open, json!({"k": "open"}));
}

/// A compact batch read answers each value with the reader's own wrap alone: a secret every
/// binding reads carries a wrap for each of them, which no other reader opens. A whole read
/// keeps them all (the SDKs' cache and the value's history use it as stored).
#[tokio::test]
async fn a_compact_read_carries_only_the_readers_own_wrap() {
    let server = Server::dev();
    let admin = server.client().await;
    admin
        .secrets()
        .create(CreateSecret::new("SHARED", "for-everyone"))
        .await
        .unwrap();
    let mut bearers = Vec::new();
    for app in ["web", "api"] {
        let mut o = AccessKeyOptions::new(app, [Permission::Read]);
        o.app = Some(app.into());
        let made = admin.access_keys().create(o).await.unwrap();
        bearers.push((Some(app), made.key));
    }
    let wraps = |text: &str| -> Vec<String> {
        let wraps = text.rsplit('.').next().unwrap();
        wraps
            .split(',')
            .map(|w| w.split(':').next().unwrap().to_owned())
            .collect()
    };
    let url = format!("{}/v1/secrets/batch-get", server.url);
    let read = |bearer: String, compact: bool| {
        let url = url.clone();
        async move {
            let (status, body) = raw(
                Method::POST,
                &url,
                Some(&bearer),
                Some("application/json"),
                Some(
                    json!({"keys": ["SHARED"], "compact": compact})
                        .to_string()
                        .into_bytes(),
                ),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let whole = read(server.bearer(), false).await;
    let all = wraps(
        whole["results"][0]["secret"]["ciphertext"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(
        all.len(),
        3,
        "the unbound binding, web's and api's: {all:?}"
    );
    let unbound = ductape::crypto::keyring::binding_id(None, &[]);
    let compact = read(server.bearer(), true).await;
    let text = compact["results"][0]["sealed"]["ciphertext"]
        .as_str()
        .unwrap();
    assert_eq!(wraps(text), [unbound]);
    for (app, key) in &bearers {
        let mine = ductape::crypto::keyring::binding_id(*app, &[]);
        let body = read(key.bearer().to_string(), true).await;
        let text = body["results"][0]["sealed"]["ciphertext"].as_str().unwrap();
        assert_eq!(wraps(text), std::slice::from_ref(&mine), "{app:?}");
        assert!(all.contains(&mine));
        // And it opens: the key's SDK resolves through the same compact read.
        let d = server.client_with(key.expose().as_str()).await;
        let out = d
            .secrets()
            .resolve(&json!({"v": "$Token{SHARED}"}), &opts(*app, None))
            .await
            .unwrap();
        assert_eq!(out, json!({"v": "for-everyone"}));
    }
}

/// A ciphertext moved to another secret's place in the answer does not open there: each
/// value is sealed to its own secret's key.
#[tokio::test]
async fn ciphertexts_swapped_in_a_batch_answer_fail_their_integrity_check() {
    let server = Server::dev();
    let _d = seeded(&server).await;
    let swap = |mut body: serde_json::Value| {
        let first = body["results"][0]["sealed"]["ciphertext"].take();
        body["results"][0]["sealed"]["ciphertext"] =
            body["results"][1]["sealed"]["ciphertext"].take();
        body["results"][1]["sealed"]["ciphertext"] = first;
        body
    };
    let proxy = rewriting_proxy(&server.url, "/v1/secrets/batch-get", |b| b, swap).await;
    let key = server.access_key.as_deref().unwrap().parse().unwrap();
    let via = Ductape::new(Config::new(&proxy, key).max_retries(0)).unwrap();
    via.init().await.unwrap();
    let e = via
        .secrets()
        .resolve(
            &json!(["$Token{OPEN_KEY}", "$Token{STRIPE_KEY}"]),
            &opts(Some("stripe_app"), None),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Integrity);
    let messages: Vec<&str> = e.failures().iter().map(|f| f.message()).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    // The value's key is wrapped to its own secret: under another key it does not open.
    assert!(messages[0].contains("'secret:OPEN_KEY'"), "{messages:?}");
    assert!(messages[1].contains("'secret:STRIPE_KEY'"), "{messages:?}");
    assert!(!format!("{e:?} {e}").contains("sk_live_stripe"));
}

#[tokio::test]
async fn a_hundred_references_resolve_in_one_request() {
    let server = Server::dev();
    let d = server.client().await;
    let mut config = serde_json::Map::new();
    for i in 0..100 {
        d.secrets()
            .create(CreateSecret::new(format!("K{i}"), format!("v{i}")))
            .await
            .unwrap();
        config.insert(format!("field{i}"), json!(format!("x-$Token{{K{i}}}-y")));
    }
    let before = batch_requests(&server).await;
    let out = d
        .secrets()
        .resolve(&json!(config), &opts(Some("app"), Some("prd")))
        .await
        .unwrap();
    assert_eq!(
        batch_requests(&server).await - before,
        1,
        "exactly one batch request"
    );
    for i in 0..100 {
        assert_eq!(out[format!("field{i}")], json!(format!("x-v{i}-y")));
    }
}

#[tokio::test]
async fn malformed_references_are_errors_and_escapes_are_literal() {
    let server = Server::dev();
    let d = seeded(&server).await;
    for bad in [
        json!("$Token{"),
        json!({"a": "$Token{}"}),
        json!(["$Token{no spaces}"]),
    ] {
        let e = d
            .secrets()
            .resolve(&bad, &opts(None, None))
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidField, "{bad}");
        assert!(e.message().contains("malformed secret reference"));
    }
    let out = d
        .secrets()
        .resolve(
            &json!("$$Token{OPEN_KEY} is $Token{OPEN_KEY}"),
            &opts(None, None),
        )
        .await
        .unwrap();
    assert_eq!(out, json!("$Token{OPEN_KEY} is open"));
}

#[tokio::test]
async fn check_reports_every_reference_without_values_and_warns_on_expiry() {
    let server = Server::dev();
    let d = seeded(&server).await;
    // Three days and an hour: still "3 days" however long the test takes to get there.
    let soon = ductape::ids::now_secs() + 3 * 24 * 3600 + 3600;
    d.secrets()
        .create(CreateSecret::new("SOON", "soon-canary").expires_at(soon))
        .await
        .unwrap();
    let config = json!({"a": "$Token{OPEN_KEY}", "b": "$Token{PROD_KEY}", "c": "$Token{SOON}", "d": "$Token{NOPE}"});
    let report = d
        .secrets()
        .check(&config, &opts(Some("web"), Some("dev")))
        .await
        .unwrap();
    assert!(!report.ok);
    let by: std::collections::HashMap<_, _> = report
        .references
        .iter()
        .map(|i| (i.key.as_str(), i))
        .collect();
    assert!(by["OPEN_KEY"].ok && by["OPEN_KEY"].warning.is_none());
    assert_eq!(
        by["PROD_KEY"].message.as_deref(),
        Some("Secret 'PROD_KEY' is not available in environment 'dev'")
    );
    assert_eq!(by["NOPE"].status, Some(404));
    assert!(by["SOON"].ok);
    assert!(
        by["SOON"]
            .warning
            .as_deref()
            .unwrap()
            .contains("expires in 3 days"),
        "{:?}",
        by["SOON"].warning
    );
    let text = serde_json::to_string(&report).unwrap();
    assert!(!text.contains("soon-canary") && !text.contains("open\""));
}

#[tokio::test]
async fn a_bound_runtime_key_finds_nothing_outside_its_binding_even_with_raw_http() {
    let server = Server::dev();
    let admin = seeded(&server).await;
    admin
        .secrets()
        .create(
            CreateSecret::new("PAY_KEY", "pay")
                .scope(["payment_app"])
                .envs(["prd"]),
        )
        .await
        .unwrap();
    admin
        .secrets()
        .create(CreateSecret::new("OTHER_APP_KEY", "other").scope(["other_app"]))
        .await
        .unwrap();
    let mut o = AccessKeyOptions::new("payments runtime", [Permission::List, Permission::Read]);
    o.app = Some("payment_app".into());
    o.envs = vec!["prd".into()];
    let bound = admin.access_keys().create(o).await.unwrap();
    let bearer = bound.key.bearer().to_string();

    // Straight to the server, bypassing the SDK and claiming nothing.
    let (status, body) = raw(
        Method::GET,
        &format!("{}/v1/secrets/OTHER_APP_KEY", server.url),
        Some(&bearer),
        None,
        None,
    )
    .await;
    // Outside its binding a secret does not exist for the key: the same 404 as a missing one.
    assert_eq!(status, 404);
    assert_eq!(body["error"]["message"], "Secret 'OTHER_APP_KEY' not found");
    assert!(
        !ductape_e2e::carries_sealed_value(&body.to_string()),
        "no ciphertext out of scope"
    );
    let (status, body) = raw(
        Method::GET,
        &format!("{}/v1/secrets/PAY_KEY", server.url),
        Some(&bearer),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(body["ciphertext"].as_str().unwrap().starts_with("dv2."));
    // Claiming another app in a batch does not help: the binding applies whatever is claimed.
    let (status, body) = raw(
        Method::POST,
        &format!("{}/v1/secrets/batch-get", server.url),
        Some(&bearer),
        Some("application/json"),
        Some(
            json!({"keys": ["OTHER_APP_KEY", "PROD_KEY"], "app": "other_app", "env": "dev"})
                .to_string()
                .into_bytes(),
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["results"][0]["error"]["status"], 404);
    // PROD_KEY is within the binding: the claimed environment is what refuses it.
    assert_eq!(body["results"][1]["error"]["status"], 403);
    assert!(body["results"][0]["secret"].is_null());

    // Listing shows only what the key may see.
    let rt = server.client_with(&bound.key.expose()).await;
    let mut keys: Vec<String> = rt
        .secrets()
        .fetch_all()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["OLD_KEY", "OPEN_KEY", "PAY_KEY", "PROD_KEY", "X"]);
    assert_eq!(
        rt.secrets().fetch("PAY_KEY").await.unwrap().value.expose(),
        "pay"
    );
    let e = rt.secrets().fetch("STRIPE_KEY").await.unwrap_err();
    assert_eq!(e.status(), Some(404));
}

#[tokio::test]
async fn every_read_and_denial_is_audited_without_values() {
    let server = Server::dev();
    let d = seeded(&server).await;
    d.secrets().fetch("OPEN_KEY").await.unwrap();
    d.secrets()
        .resolve(
            &json!("$Token{STRIPE_KEY}"),
            &opts(Some("stripe_app"), Some("prd")),
        )
        .await
        .unwrap();
    d.secrets()
        .resolve(
            &json!("$Token{STRIPE_KEY}"),
            &opts(Some("other_app"), Some("prd")),
        )
        .await
        .unwrap_err();
    let page = d
        .audit(&AuditQuery {
            secret_key: Some("STRIPE_KEY".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    // Newest first: the two resolutions, then the create (changes are audited too).
    assert_eq!(page.events.len(), 3);
    assert_eq!(page.events[2].action, "create");
    assert_eq!(page.events[2].detail.as_deref(), Some("scope,value"));
    let denied = &page.events[0];
    assert_eq!(
        (
            denied.action.as_str(),
            denied.app.as_deref(),
            denied.env.as_deref(),
            denied.allowed
        ),
        ("resolve", Some("other_app"), Some("prd"), false)
    );
    assert_eq!(
        denied.reason.as_deref(),
        Some("Secret 'STRIPE_KEY' is not accessible by app 'other_app'")
    );
    assert!(page.events[1].allowed);
    let me = d.access_key_info().unwrap();
    assert_eq!(page.events[1].access_key_id, me.id);

    // Paging with the cursor walks every event once.
    let mut seen = 0;
    let mut before = None;
    loop {
        let p = d
            .audit(&AuditQuery {
                limit: Some(1),
                before,
                ..Default::default()
            })
            .await
            .unwrap();
        seen += p.events.len();
        match p.next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    let everything = d
        .audit(&AuditQuery {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        everything.events.len() >= 9,
        "seeding's changes and the reads"
    );
    assert_eq!(seen, everything.events.len());

    let usage = d.secrets().usage("STRIPE_KEY").await.unwrap();
    assert_eq!(usage.len(), 2);
    let other = usage
        .iter()
        .find(|u| u.app.as_deref() == Some("other_app"))
        .unwrap();
    assert_eq!((other.reads, other.denied), (0, 1));
    let text = serde_json::to_string(&d.audit(&AuditQuery::default()).await.unwrap()).unwrap();
    assert!(!text.contains("sk_live_stripe") && !text.contains("\"open\""));
}

#[test]
fn ductape_run_passes_resolved_values_and_the_exit_code() {
    let server = Server::dev();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let d = server.client().await;
        d.secrets()
            .create(CreateSecret::new("DB_PASSWORD", "hunter2").envs(["prd"]))
            .await
            .unwrap();
        d.secrets()
            .create(CreateSecret::new("API_TOKEN", "tok-123"))
            .await
            .unwrap();
        d.secrets()
            .create(CreateSecret::new("DEV_ONLY", "dev").envs(["dev"]))
            .await
            .unwrap();
    });
    let base = || {
        let mut c = std::process::Command::new(ductape_bin());
        c.env("DUCTAPE_URL", &server.url)
            .env("DUCTAPE_ACCESS_KEY", server.access_key.as_deref().unwrap());
        c
    };
    let out = base()
        .args([
            "run",
            "--app",
            "web",
            "--env",
            "prd",
            "--",
            "sh",
            "-c",
            "echo \"$DATABASE_URL|$PLAIN|${DUCTAPE_ACCESS_KEY:-unset}\"; exit 7",
        ])
        .env("DATABASE_URL", "postgres://app:$Token{DB_PASSWORD}@db/app")
        .env("PLAIN", "no refs")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "postgres://app:hunter2@db/app|no refs|unset\n"
    );
    assert_eq!(out.status.code(), Some(7), "the child's exit code");

    // --inject adds every usable secret in scope under its own key.
    let out = base()
        .args([
            "run",
            "--env",
            "prd",
            "--inject",
            "--",
            "sh",
            "-c",
            "echo \"$API_TOKEN|$DB_PASSWORD|${DEV_ONLY:-absent}\"",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tok-123|hunter2|absent\n"
    );

    // A failing reference stops before running anything, naming the reason.
    let out = base()
        .args(["run", "--env", "dev", "--", "sh", "-c", "echo ran"])
        .env("DATABASE_URL", "$Token{DB_PASSWORD}")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("Secret 'DB_PASSWORD' is not available in environment 'dev'"));

    // Signals pass through: the child replaces `ductape run`.
    let out = base()
        .args(["run", "--", "sh", "-c", "kill -TERM $$"])
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(15));
}

#[test]
fn ductape_check_exits_non_zero_when_a_reference_would_fail() {
    let server = Server::dev();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let d = server.client().await;
        d.secrets()
            .create(CreateSecret::new("GOOD", "g"))
            .await
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    let run = |config: &str| {
        std::fs::write(&file, config).unwrap();
        std::process::Command::new(ductape_bin())
            .args([
                "check",
                "--app",
                "web",
                "--env",
                "prd",
                file.to_str().unwrap(),
            ])
            .env("DUCTAPE_URL", &server.url)
            .env("DUCTAPE_ACCESS_KEY", server.access_key.as_deref().unwrap())
            .output()
            .unwrap()
    };
    let ok = run(r#"{"h": "Bearer $Token{GOOD}"}"#);
    assert!(ok.status.success());
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "ok\tGOOD\n");
    let bad = run(r#"{"h": "$Token{GOOD}", "x": "$Token{MISSING}"}"#);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("FAIL\tMISSING\tSecret 'MISSING' not found")
    );
}

/// The SDKs' synchronous calls run the whole request on the caller's thread (a
/// current-thread runtime): a connection opened there is driven only while that thread is
/// in a call, so it must never serve another thread. Here the first thread's runtime sits
/// idle holding its connection while other threads, on a current-thread and on a
/// multi-thread runtime, read through the same client: each finishes on its own connection.
#[test]
fn a_connection_opened_on_one_threads_runtime_never_serves_another_thread() {
    use std::time::Duration;
    use tokio::runtime::{Builder, Runtime};
    let server = Server::dev();
    let current = || Builder::new_current_thread().enable_all().build().unwrap();
    let first = current();
    let d = first.block_on(async {
        let d = server.client().await;
        d.secrets()
            .create(CreateSecret::new("K", "v"))
            .await
            .unwrap();
        d
    });
    let read_on = |rt: Runtime, d: Ductape| {
        std::thread::spawn(move || {
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), d.secrets().fetch("K")).await
            })
        })
        .join()
        .unwrap()
        .expect("finished, not stuck behind the idle runtime's connection")
        .unwrap()
    };
    assert_eq!(read_on(current(), d.clone()).value.expose(), "v");
    let multi = Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(read_on(multi, d.clone()).value.expose(), "v");
    // The first thread's connection still serves it.
    let again = first.block_on(d.secrets().fetch("K")).unwrap();
    assert_eq!(again.value.expose(), "v");
}

/// A TCP proxy to `upstream` that closes each client connection `idle_close` after it last
/// forwarded an answer, as a server or load balancer closes an idle keep-alive connection
/// (a FIN, no `Connection: close`). Returns its URL; it lives as long as the test process.
fn closing_proxy(upstream: &str, idle_close: std::time::Duration) -> String {
    use std::net::{Shutdown, TcpListener, TcpStream};
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Copies one way until the stream ends or `idle` passes without a byte, then closes both.
    let pump = |from: TcpStream, to: TcpStream, idle: Option<std::time::Duration>| {
        std::thread::spawn(move || {
            from.set_read_timeout(idle).unwrap();
            let _ = std::io::copy(&mut &from, &mut &to);
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        });
    };
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            pump(
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                None,
            );
            pump(server, client, Some(idle_close));
        }
    });
    url
}

/// A synchronous SDK call's connection is driven only while its thread is in a call, so it
/// does not see the other end close it while the thread is away. The next call on it must
/// still succeed — a create included, which is never re-sent when it may have been acted on —
/// and not answer a network error for a connection closed while idle.
#[test]
fn a_connection_closed_while_its_thread_was_away_costs_the_next_call_nothing() {
    use std::time::Duration;
    let server = Server::dev();
    // Long enough for any answer of a loaded test machine to pass first.
    let url = closing_proxy(&server.url, Duration::from_millis(300));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key: ductape::AccessKey = server.access_key.clone().unwrap().parse().unwrap();
    let d = Ductape::new(Config::new(&url, key).max_retries(0)).unwrap();
    rt.block_on(d.init()).unwrap();
    for i in 0..3 {
        let k = format!("AWAY_{i}");
        rt.block_on(d.secrets().create(CreateSecret::new(&k, "v")))
            .unwrap_or_else(|e| panic!("create {k} after an idle close: {e}"));
        // Away from the runtime while the proxy closes the idle connection.
        std::thread::sleep(Duration::from_millis(800));
        let got = rt
            .block_on(d.secrets().fetch(&k))
            .unwrap_or_else(|e| panic!("fetch {k} after an idle close: {e}"));
        assert_eq!(got.value.expose(), "v");
        std::thread::sleep(Duration::from_millis(800));
    }
}
