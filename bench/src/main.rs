//! `cargo run --release -p ductape-bench`: the SDK against a peer, in the same run.
//!
//! The peer is the bare HTTP request the SDK makes (reqwest, same connection pool settings,
//! same server), so a ratio shows what the SDK adds: envelope sealing/opening, validation and
//! bookkeeping. A real server runs in process on loopback, on a fresh SQLite file.
//!
//! Each measurement is the median of several rounds; ratios near 1.0 mean the SDK costs
//! little over the raw call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ductape::{Config, CreateSecret, Ductape, ResolveOptions};
use ductape_server::storage::sqlite::SqliteStorage;
use ductape_server::AppState;

const ROUNDS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn timed<F, Fut>(n: usize, mut f: F) -> Duration
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..n {
            f(i).await;
        }
        rounds.push(start.elapsed() / n as u32);
    }
    median(rounds)
}

fn report(name: &str, ours: Duration, peer_name: &str, peer: Duration) {
    println!(
        "{name:<28} {:>10.1} µs/op   {peer_name:<28} {:>10.1} µs/op   ratio {:.3}",
        ours.as_secs_f64() * 1e6,
        peer.as_secs_f64() * 1e6,
        ours.as_secs_f64() / peer.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("ductape-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let storage = SqliteStorage::open(&dir.join("bench.sqlite")).expect("sqlite");
    let state = Arc::new(AppState::new(Arc::new(storage)));
    let key = ductape_server::dev_bootstrap(&state)
        .await
        .expect("bootstrap");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(ductape_server::serve(
        listener,
        state,
        Default::default(),
        std::future::pending(),
    ));

    let d = Ductape::new(Config::new(&url, key.clone())).expect("client");
    d.init().await.expect("init");
    let http = reqwest::Client::new();
    let bearer = key.bearer().to_string();

    println!("Ductape Secrets benchmark: median of {ROUNDS} rounds, server in process on {url}\n");

    // fetch: GET + open the envelope, against the same GET without the SDK.
    d.secrets()
        .create(CreateSecret::new("BENCH", "v".repeat(64)))
        .await
        .expect("create");
    let n = 200;
    let ours = timed(n, |_| async {
        d.secrets().fetch("BENCH").await.expect("fetch");
    })
    .await;
    let peer = timed(n, |_| async {
        let r = http
            .get(format!("{url}/v1/secrets/BENCH"))
            .bearer_auth(&bearer)
            .send()
            .await
            .expect("get");
        r.bytes().await.expect("body");
    })
    .await;
    report("sdk fetch", ours, "bare HTTP GET", peer);

    // create: validate + seal + POST, against POSTing a ready ciphertext.
    let sealed = d.secrets().fetch("BENCH").await.expect("fetch");
    let got: serde_json::Value = http
        .get(format!("{url}/v1/secrets/BENCH"))
        .bearer_auth(&bearer)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let ciphertext = got["ciphertext"].as_str().expect("ciphertext").to_owned();
    drop(sealed);
    let mut round = 0usize;
    let ours = timed(n, |i| {
        round += 1;
        let key = format!("C_{round}_{i}");
        let d = d.clone();
        async move {
            d.secrets()
                .create(CreateSecret::new(key, "value"))
                .await
                .expect("create");
        }
    })
    .await;
    let mut round = 0usize;
    let peer = timed(n, |i| {
        round += 1;
        // The server only checks the envelope's shape and key id, so a copied one is accepted.
        let body = serde_json::json!({"key": format!("P_{round}_{i}"), "ciphertext": ciphertext});
        let req = http
            .post(format!("{url}/v1/secrets"))
            .bearer_auth(&bearer)
            .json(&body);
        async move {
            let r = req.send().await.expect("post");
            assert_eq!(r.status(), 201);
        }
    })
    .await;
    report("sdk create", ours, "bare HTTP POST", peer);

    // resolve 100 references in one request, against 100 sequential fetches.
    let mut config = serde_json::Map::new();
    for i in 0..100 {
        d.secrets()
            .create(CreateSecret::new(format!("R{i}"), format!("value-{i}")))
            .await
            .expect("create");
        config.insert(
            format!("f{i}"),
            serde_json::json!(format!("Bearer $Token{{R{i}}}")),
        );
    }
    let config = serde_json::Value::Object(config);
    let opts = ResolveOptions::default();
    let ours = timed(5, |_| async {
        d.secrets().resolve(&config, &opts).await.expect("resolve");
    })
    .await;
    let peer = timed(5, |_| async {
        for i in 0..100 {
            d.secrets().fetch(&format!("R{i}")).await.expect("fetch");
        }
    })
    .await;
    report("resolve 100 refs", ours, "100 sequential fetches", peer);

    let _ = std::fs::remove_dir_all(&dir);
}
