//! Fuzzing the server's request parsing in process: random and mutated bodies, bearer
//! headers, content types and paths through the whole router (auth, body extractor, field
//! validation, storage). Properties: never a 5xx, never a panic, always the one JSON error
//! shape, and a refusal never repeats the input. `scripts/fuzz` runs many more cases.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use ductape_server::storage::sqlite::SqliteStorage;
use ductape_server::AppState;
use proptest::prelude::*;
use tower::ServiceExt;

const CANARY: &str = "QZXJ";

struct Fixture {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    bearer: String,
}

fn fixture() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (app, bearer) = rt.block_on(async {
            let storage = SqliteStorage::in_memory().unwrap();
            let state = Arc::new(AppState::new(Arc::new(storage)));
            let key = ductape_server::dev_bootstrap(&state).await.unwrap();
            (ductape_server::app(state), key.bearer().to_string())
        });
        Fixture { rt, app, bearer }
    })
}

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let json_ish = prop_oneof![
        Just(r#"{"key":"K","ciphertext":"dv1.xc20p.0000000000000000.AAAA"}"#.to_string()),
        Just(r#"{"keys":["A","B"],"app":"web"}"#.to_string()),
        Just(r#"{"description":null,"scope":["a"]}"#.to_string()),
        "\\{\"[a-z_]{1,12}\": ?(null|true|[0-9]{1,25}|\"[ -~]{0,30}\"|\\[\\]|\\{\\})\\}",
        "[ -~]{0,80}",
    ];
    prop_oneof![
        json_ish.prop_map(|s| s.replace("K\"", &format!("K{CANARY}\"")).into_bytes()),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

fn route() -> impl Strategy<Value = (Method, String)> {
    prop_oneof![
        Just((Method::POST, "/v1/secrets".to_string())),
        Just((Method::POST, "/v1/secrets/batch-get".to_string())),
        Just((Method::POST, "/v1/access-keys".to_string())),
        Just((Method::POST, "/v1/setup".to_string())),
        "[A-Za-z0-9_%.~-]{0,40}".prop_map(|k| (Method::PATCH, format!("/v1/secrets/{k}"))),
        "[A-Za-z0-9_%.~-]{0,40}".prop_map(|k| (Method::GET, format!("/v1/secrets/{k}"))),
        "[ -~]{0,40}".prop_map(|q| (
            Method::GET,
            format!("/v1/audit?{}", q.replace([' ', '#'], ""))
        )),
    ]
}

fn bearer() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(String::new())),
        "[ -~]{0,90}".prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn no_request_gets_a_5xx_or_an_echo(
        (method, path) in route(),
        body in body(),
        auth in bearer(),
        valid_auth in any::<bool>(),
        json in any::<bool>(),
    ) {
        let f = fixture();
        let mut req = Request::builder().method(method).uri(&path);
        let token = if valid_auth { Some(f.bearer.clone()) } else { auth };
        if let Some(t) = token {
            if let Ok(v) = axum::http::HeaderValue::from_str(&format!("Bearer {t}")) {
                req = req.header("authorization", v);
            }
        }
        if json {
            req = req.header("content-type", "application/json");
        }
        let Ok(req) = req.body(Body::from(body)) else { return Ok(()) };
        let (status, bytes) = f.rt.block_on(async {
            let resp = f.app.clone().oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            (status, bytes)
        });
        prop_assert!(status < 500, "{} {}", status, String::from_utf8_lossy(&bytes));
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON answer");
        if status >= 400 {
            prop_assert_eq!(v["error"]["status"].as_u64(), Some(u64::from(status)));
            let msg = v["error"]["message"].as_str().unwrap_or_default();
            prop_assert!(!msg.is_empty());
            prop_assert!(!msg.contains(CANARY), "{}", msg);
        }
    }
}
