//! The change feed: `GET /v1/events` (server-sent events, metadata only, filtered by the
//! key's binding, resumable with `Last-Event-ID`, ended when the key is deleted),
//! `Ductape::watch`, and a watching cache dropping what another client changed within a
//! second, on SQLite and through two PostgreSQL replicas.

use std::time::{Duration, Instant};

use ductape::wire::Permission;
use ductape::{
    AccessKeyOptions, CacheOptions, Config, CreateSecret, Ductape, UpdateSecret, WatchEvent,
};
use ductape_e2e::{PgCluster, Server};

async fn watching(server: &Server, key: &str) -> Ductape {
    let config = Config::new(&server.url, key.parse().unwrap())
        .max_retries(0)
        .cache(CacheOptions::ttl(Duration::from_secs(600)).watch(true));
    let d = Ductape::new(config).unwrap();
    d.init().await.unwrap();
    d
}

/// How long until `d` reads `want` for `key` (its cache holds the old value meanwhile).
async fn seen_within(d: &Ductape, key: &str, want: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if d.secrets().fetch(key).await.unwrap().value.expose() == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "'{want}' not seen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads raw server-sent events until `n` blocks (not keep-alives) or `wait` passes.
async fn raw_events(resp: &mut reqwest::Response, n: usize, wait: Duration) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut buf = String::new();
    let end = Instant::now() + wait;
    while blocks.len() < n {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(c))) => buf.push_str(&String::from_utf8_lossy(&c)),
            _ => break,
        }
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            if !block.starts_with(':') {
                blocks.push(block);
            }
        }
    }
    blocks
}

async fn open(server: &Server, bearer: &str, last: Option<&str>) -> reqwest::Response {
    let mut req = ductape_e2e::http()
        .get(format!("{}/v1/events", server.url))
        .bearer_auth(bearer)
        .header("ductape-format", "2");
    if let Some(l) = last {
        req = req.header("last-event-id", l);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watching_cache_drops_what_another_client_changed_within_a_second() {
    let server = Server::dev();
    let admin = server.client().await;
    admin
        .secrets()
        .create(CreateSecret::new("LIVE", "one"))
        .await
        .unwrap();
    let key = server.access_key.clone().unwrap();
    let d = watching(&server, &key).await;
    let mut changes = d.watch().unwrap();
    assert_eq!(
        d.secrets().fetch("LIVE").await.unwrap().value.expose(),
        "one"
    );
    tokio::time::sleep(Duration::from_millis(300)).await; // the stream is open
    for (i, v) in ["two", "three", "four"].into_iter().enumerate() {
        admin
            .secrets()
            .update("LIVE", UpdateSecret::new().value(v))
            .await
            .unwrap();
        let took = seen_within(&d, "LIVE", v, Duration::from_secs(3)).await;
        assert!(took < Duration::from_millis(1500), "{v}: {took:?}");
        match tokio::time::timeout(Duration::from_secs(3), changes.next()).await {
            Ok(Some(WatchEvent::Changed(c))) => {
                assert_eq!(
                    (c.key.as_str(), c.version, c.kind.as_str()),
                    ("LIVE", i as i64 + 2, "update")
                );
            }
            other => panic!("expected a change, got {other:?}"),
        }
    }
    admin.secrets().delete("LIVE").await.unwrap();
    match tokio::time::timeout(Duration::from_secs(3), changes.next()).await {
        Ok(Some(WatchEvent::Changed(c))) => assert_eq!(c.kind, "delete"),
        other => panic!("expected the delete, got {other:?}"),
    }
}

#[tokio::test]
async fn the_feed_is_filtered_resumable_and_ends_with_its_key() {
    let server = Server::dev();
    let admin = server.client().await;
    let mut o = AccessKeyOptions::new("web", [Permission::List, Permission::Read]);
    o.app = Some("web".into());
    let web = admin.access_keys().create(o).await.unwrap();
    let bearer = web.key.bearer().to_string();
    let mut stream = open(&server, &bearer, None).await;
    assert_eq!(stream.status(), 200);
    let ready = raw_events(&mut stream, 1, Duration::from_secs(3)).await;
    assert!(ready[0].contains("event: ready"), "{ready:?}");
    admin
        .secrets()
        .create(CreateSecret::new("API_ONLY", "api-canary-value").scope(["api"]))
        .await
        .unwrap();
    admin
        .secrets()
        .create(CreateSecret::new("WEB_TOKEN", "web-canary-value").scope(["web"]))
        .await
        .unwrap();
    let got = raw_events(&mut stream, 1, Duration::from_secs(3)).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("\"key\":\"WEB_TOKEN\""), "{got:?}");
    assert!(!got[0].contains("canary") && !got[0].contains("dv2."));
    let more = raw_events(&mut stream, 1, Duration::from_millis(600)).await;
    assert!(
        more.is_empty(),
        "nothing of API_ONLY reaches a web key: {more:?}"
    );
    // Resume from the start: the past, still filtered; from an id never sent: reset.
    let mut again = open(&server, &bearer, Some("0")).await;
    let past = raw_events(&mut again, 1, Duration::from_secs(3)).await;
    assert!(
        past[0].contains("WEB_TOKEN") && past[0].contains("id: 2"),
        "{past:?}"
    );
    let mut future = open(&server, &bearer, Some("999999")).await;
    let reset = raw_events(&mut future, 1, Duration::from_secs(3)).await;
    assert!(reset[0].contains("event: reset"), "{reset:?}");
    let bad = open(&server, &bearer, Some("yesterday")).await;
    assert_eq!(bad.status(), 422);
    // Permission: list.
    let no_list = admin
        .access_keys()
        .create(AccessKeyOptions::new("reader", [Permission::Read]))
        .await
        .unwrap();
    assert_eq!(
        open(&server, no_list.key.bearer().as_ref(), None)
            .await
            .status(),
        403
    );
    // The key deleted: its stream ends.
    admin.access_keys().delete(&web.info.id).await.unwrap();
    let start = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(6), stream.chunk()).await {
            Ok(Ok(Some(c))) if c.starts_with(b":") || c.is_empty() => continue,
            Ok(Ok(None)) | Ok(Err(_)) => break,
            Ok(Ok(Some(c))) => panic!("an event after the key was deleted: {c:?}"),
            Err(_) => panic!("the stream outlived its key"),
        }
    }
    assert!(start.elapsed() < Duration::from_secs(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_a_watching_cache_through_another_postgres_replica() {
    let pg = PgCluster::start();
    let url = pg.database("feed");
    let mut a = Server::postgres(&url);
    a.setup().await;
    let b = Server::postgres(&url);
    let key = a.access_key.clone().unwrap();
    let writer = b.client_with(&key).await;
    writer
        .secrets()
        .create(CreateSecret::new("REPLICATED", "v1"))
        .await
        .unwrap();
    let reader = watching(&a, &key).await;
    assert_eq!(
        reader
            .secrets()
            .fetch("REPLICATED")
            .await
            .unwrap()
            .value
            .expose(),
        "v1"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    for v in ["v2", "v3"] {
        writer
            .secrets()
            .update("REPLICATED", UpdateSecret::new().value(v))
            .await
            .unwrap();
        let took = seen_within(&reader, "REPLICATED", v, Duration::from_secs(3)).await;
        assert!(took < Duration::from_millis(1500), "{v}: {took:?}");
    }
}
