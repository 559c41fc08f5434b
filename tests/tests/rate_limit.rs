//! The opt-in per-access-key rate limit: 429 with Retry-After, which the SDK waits out.

use ductape::CreateSecret;
use ductape_e2e::Server;
use std::time::Instant;

#[tokio::test]
async fn a_busy_key_gets_429_with_retry_after_and_the_sdk_waits_it_out() {
    let server = Server::dev_with(&["--rate-limit", "5"]);
    let http = reqwest::Client::new();
    let mut limited = None;
    for _ in 0..20 {
        let r = http
            .get(format!("{}/v1/secrets", server.url))
            .bearer_auth(server.bearer())
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            limited = Some((
                r.headers().get("retry-after").cloned(),
                r.json::<serde_json::Value>().await.unwrap(),
            ));
            break;
        }
    }
    let (retry_after, body) = limited.expect("a burst over the limit is refused");
    let secs: u64 = retry_after
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&secs));
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(body["error"]["status"], 429);

    // The SDK (with retries) gets through by waiting, rather than failing.
    let d = ductape::Ductape::new(ductape::Config::new(
        &server.url,
        server.access_key.as_deref().unwrap().parse().unwrap(),
    ))
    .unwrap();
    let start = Instant::now();
    d.init().await.unwrap();
    for i in 0..8 {
        d.secrets()
            .create(CreateSecret::new(format!("K{i}"), "v"))
            .await
            .unwrap();
    }
    assert_eq!(d.secrets().fetch_all().await.unwrap().len(), 8);
    assert!(
        start.elapsed().as_millis() >= 500,
        "it had to wait for the limit"
    );
}
