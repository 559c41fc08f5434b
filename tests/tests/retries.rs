//! Retries, backoff and timeouts, against a scripted fake server: the faults a real server
//! cannot be made to produce on demand.

use ductape::{AccessKey, Config, CreateSecret, Ductape, ErrorCode};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An empty page of `GET /v1/secrets?limit=...` (what `fetch_all` asks for).
const EMPTY_PAGE: &str = r#"{"secrets": [], "next_cursor": null}"#;

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: body.to_owned(),
        delay: Duration::ZERO,
    }
}

/// A fake server: answers each request for a path with the next scripted reply.
struct Fake {
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    async fn start(script: Vec<(&'static str, Reply)>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let script: Arc<Mutex<VecDeque<(&'static str, Reply)>>> =
            Arc::new(Mutex::new(script.into()));
        let log2 = log.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let log = log2.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read headers and a Content-Length body.
                    loop {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| {
                                    l.strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap())
                                })
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                break;
                            }
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let first = head.lines().next().unwrap_or("").to_owned();
                    // Scripts name paths without their query strings.
                    let target = first.split(' ').nth(1).unwrap_or("");
                    let path = target.split('?').next().unwrap_or("").to_owned();
                    log.lock().unwrap().push(format!(
                        "{} {}",
                        first.split(' ').next().unwrap_or(""),
                        path
                    ));
                    let r = {
                        let mut s = script.lock().unwrap();
                        let pos = s.iter().position(|(p, _)| *p == path);
                        pos.and_then(|i| s.remove(i))
                            .map(|(_, r)| r)
                            .unwrap_or_else(|| reply(599, "{}"))
                    };
                    tokio::time::sleep(r.delay).await;
                    let mut out = format!("HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n", r.status, r.body.len());
                    for (k, v) in &r.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.push_str(&r.body);
                    let _ = sock.write_all(out.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Fake { url, log }
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn error_body(status: u16, code: &str) -> String {
    json!({"error": {"status": status, "code": code, "message": format!("scripted {code}")}})
        .to_string()
}

fn client(url: &str, key: AccessKey) -> Ductape {
    let config = Config::new(url, key)
        .max_retries(3)
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .timeout(Duration::from_millis(500));
    Ductape::new(config).unwrap()
}

/// A session answer the client can really unwrap, made with the same bootstrap code.
fn session(key_text: &mut String) -> Reply {
    let (ak, body) = ductape::bootstrap::setup_body("t", "fake");
    *key_text = ak.expose().to_string();
    let session = json!({
        "workspace": {"workspace_id": body["workspace_id"], "name": "fake", "key_id": body["key_id"], "createdAt": "2024-01-15T10:30:00.000Z"},
        "access_key": {"id": ak.id(), "name": "admin", "permissions": ["admin"], "app": null, "envs": [], "createdAt": "2024-01-15T10:30:00.000Z"},
        "wrapped_key": body["access_key"]["wrapped_key"],
        "keyring": body["keyring"],
    });
    reply(200, &session.to_string())
}

#[tokio::test]
async fn reads_are_retried_on_5xx_until_they_succeed() {
    let fake = Fake::start(vec![
        ("/v1/secrets", reply(503, &error_body(503, "unavailable"))),
        ("/v1/secrets", reply(502, "<html>bad gateway</html>")),
        ("/v1/secrets", reply(200, EMPTY_PAGE)),
    ])
    .await;
    let d = client(&fake.url, AccessKey::generate());
    assert!(d.secrets().fetch_all().await.unwrap().is_empty());
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn retries_give_up_after_the_limit_with_the_last_error() {
    let fake = Fake::start(
        (0..4)
            .map(|_| ("/v1/secrets", reply(500, &error_body(500, "internal"))))
            .collect(),
    )
    .await;
    let d = client(&fake.url, AccessKey::generate());
    let e = d.secrets().fetch_all().await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(500), ErrorCode::Internal));
    assert_eq!(fake.requests().len(), 4, "1 attempt + 3 retries");
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after() {
    let mut limited = reply(429, &error_body(429, "rate_limited"));
    limited.headers.push(("retry-after", "1".into()));
    let fake = Fake::start(vec![
        ("/v1/secrets", limited),
        ("/v1/secrets", reply(200, EMPTY_PAGE)),
    ])
    .await;
    let d = client(&fake.url, AccessKey::generate());
    let start = Instant::now();
    d.secrets().fetch_all().await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        start.elapsed()
    );
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn other_4xx_are_never_retried() {
    for (status, code) in [
        (400, "malformed_body"),
        (401, "unauthenticated"),
        (403, "permission_denied"),
        (404, "not_found"),
        (409, "conflict"),
        (422, "invalid_field"),
    ] {
        let fake = Fake::start(vec![(
            "/v1/secrets",
            reply(status, &error_body(status, code)),
        )])
        .await;
        let d = client(&fake.url, AccessKey::generate());
        let e = d.secrets().fetch_all().await.unwrap_err();
        assert_eq!(e.status(), Some(status));
        assert_eq!(e.code_str(), code);
        assert_eq!(fake.requests().len(), 1, "{status} must not be retried");
    }
}

#[tokio::test]
async fn a_create_is_not_resent_after_an_ambiguous_failure() {
    let mut key = String::new();
    let s = session(&mut key);
    let mut slow = reply(201, "{}");
    slow.delay = Duration::from_secs(2);
    let fake = Fake::start(vec![
        ("/v1/session", s),
        ("/v1/secrets", reply(500, &error_body(500, "internal"))),
        ("/v1/secrets", slow),
    ])
    .await;
    let d = client(&fake.url, key.parse().unwrap());
    d.init().await.unwrap();
    // A 500 may come after the write landed: not re-sent.
    let e = d
        .secrets()
        .create(CreateSecret::new("K", "v"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(500));
    // A timeout is just as ambiguous.
    let e = d
        .secrets()
        .create(CreateSecret::new("K", "v"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Timeout);
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.starts_with("POST"))
            .count(),
        2
    );
}

#[tokio::test]
async fn a_create_is_resent_when_the_server_surely_did_not_act() {
    let mut key = String::new();
    let s = session(&mut key);
    let record = json!({"_id": "0".repeat(24), "workspace_id": "ws", "key": "K", "description": null, "token_type": null,
        "scope": [], "envs": [], "expires_at": null, "createdAt": "2024-01-15T10:30:00.000Z",
        "updatedAt": "2024-01-15T10:30:00.000Z", "version": 1, "status": "active"});
    let fake = Fake::start(vec![
        ("/v1/session", s),
        ("/v1/secrets", reply(503, &error_body(503, "unavailable"))),
        ("/v1/secrets", reply(201, &record.to_string())),
    ])
    .await;
    let d = client(&fake.url, key.parse().unwrap());
    d.init().await.unwrap();
    assert_eq!(
        d.secrets()
            .create(CreateSecret::new("K", "v"))
            .await
            .unwrap()
            .key,
        "K"
    );
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.starts_with("POST"))
            .count(),
        2
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_typed_connection_error_after_retries() {
    // Bind then drop: nothing listens on this port now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = client(&format!("http://127.0.0.1:{port}"), AccessKey::generate());
    let start = Instant::now();
    let e = d.secrets().fetch_all().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Connection);
    assert_eq!(e.status(), None);
    assert!(
        start.elapsed() >= Duration::from_millis(15),
        "backed off between attempts"
    );
}

#[tokio::test]
async fn a_server_answering_garbage_is_a_protocol_error_not_a_panic() {
    let fake = Fake::start(vec![("/v1/secrets", reply(200, "{\"not\": \"a list\"}"))]).await;
    let d = client(&fake.url, AccessKey::generate());
    assert_eq!(
        d.secrets().fetch_all().await.unwrap_err().code(),
        ErrorCode::Protocol
    );
    // Values need init() first.
    assert_eq!(
        d.secrets().fetch("K").await.unwrap_err().code(),
        ErrorCode::NotInitialized
    );
}

#[tokio::test]
async fn a_delete_whose_answer_was_lost_is_reported_done() {
    let fake = Fake::start(vec![
        ("/v1/secrets/K", reply(500, &error_body(500, "internal"))),
        (
            "/v1/secrets/K",
            reply(404, &error_body(404, "secret_not_found")),
        ),
    ])
    .await;
    let d = client(&fake.url, AccessKey::generate());
    assert!(d.secrets().delete("K").await.unwrap());
    assert_eq!(fake.requests().len(), 2);

    // A 503 means the server did not act: the later 404 is the truth.
    let fake = Fake::start(vec![
        ("/v1/secrets/K", reply(503, &error_body(503, "unavailable"))),
        (
            "/v1/secrets/K",
            reply(404, &error_body(404, "secret_not_found")),
        ),
    ])
    .await;
    let d = client(&fake.url, AccessKey::generate());
    assert_eq!(
        d.secrets().delete("K").await.unwrap_err().status(),
        Some(404)
    );
}
