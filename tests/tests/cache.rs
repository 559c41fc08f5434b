//! The client's value cache against a real server: hits without requests, revalidation
//! with `If-None-Match` after the TTL (304 keeps the entry), own changes invalidating at
//! once, verdicts (revoked, deleted, expired, out of binding, key deleted) never served
//! after the revalidation that sees them, expiry stopping a cached value with no request,
//! and stale-if-error bounded and refused on refusals.

use std::time::Duration;

use ductape::wire::{AuditQuery, Permission};
use ductape::{
    AccessKeyOptions, CacheOptions, Config, CreateSecret, Ductape, ErrorCode, ResolveOptions,
    UpdateSecret,
};
use ductape_e2e::Server;

const TTL: Duration = Duration::from_millis(400);

async fn caching(server: &Server, key: &str, options: CacheOptions) -> Ductape {
    let config = Config::new(&server.url, key.parse().unwrap())
        .max_retries(0)
        .cache(options);
    let d = Ductape::new(config).unwrap();
    d.init().await.unwrap();
    d
}

/// How many reads of `key` the audit trail holds (a hit makes none).
async fn reads(admin: &Ductape, key: &str) -> usize {
    admin
        .audit(&AuditQuery {
            secret_key: Some(key.into()),
            limit: Some(1000),
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .events
        .iter()
        .filter(|e| e.action == "read" || e.action == "resolve")
        .count()
}

/// How many 304 answers the server gave to single-secret reads (its metrics).
async fn not_modified(server: &Server) -> u64 {
    let text = ductape_e2e::http()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            !l.starts_with('#')
                && l.contains("status=\"304\"")
                && l.contains("/v1/secrets/{key}\"")
                && l.split_whitespace()
                    .next()
                    .is_some_and(|n| n.contains("total"))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn hits_need_no_request_and_stale_entries_revalidate_with_304() {
    let server = Server::dev();
    let admin = server.client().await;
    admin
        .secrets()
        .create(CreateSecret::new("CACHED", "one"))
        .await
        .unwrap();
    let key = server.access_key.clone().unwrap();
    let d = caching(&server, &key, CacheOptions::ttl(TTL)).await;
    assert_eq!(
        d.secrets().fetch("CACHED").await.unwrap().value.expose(),
        "one"
    );
    for _ in 0..20 {
        assert_eq!(
            d.secrets().fetch("CACHED").await.unwrap().value.expose(),
            "one"
        );
    }
    assert_eq!(reads(&admin, "CACHED").await, 1, "hits make no request");
    tokio::time::sleep(TTL + Duration::from_millis(50)).await;
    let before = not_modified(&server).await;
    assert_eq!(
        d.secrets().fetch("CACHED").await.unwrap().value.expose(),
        "one"
    );
    assert_eq!(not_modified(&server).await, before + 1, "revalidated: 304");
    assert_eq!(
        reads(&admin, "CACHED").await,
        2,
        "a revalidation is audited as a read"
    );
    // Confirmed fresh again: hits.
    d.secrets().fetch("CACHED").await.unwrap();
    assert_eq!(reads(&admin, "CACHED").await, 2);
    // Another client's change is seen at the next revalidation; `fetch_fresh` at once.
    admin
        .secrets()
        .update("CACHED", UpdateSecret::new().value("two"))
        .await
        .unwrap();
    assert_eq!(
        d.secrets().fetch("CACHED").await.unwrap().value.expose(),
        "one"
    );
    assert_eq!(
        d.secrets()
            .fetch_fresh("CACHED")
            .await
            .unwrap()
            .value
            .expose(),
        "two"
    );
    assert_eq!(
        d.secrets().fetch("CACHED").await.unwrap().value.expose(),
        "two"
    );
    // Own changes invalidate at once.
    d.secrets()
        .update("CACHED", UpdateSecret::new().value("three"))
        .await
        .unwrap();
    assert_eq!(
        d.secrets().fetch("CACHED").await.unwrap().value.expose(),
        "three"
    );
    d.secrets().rollback("CACHED", 1).await.unwrap();
    assert_eq!(
        d.secrets().fetch("CACHED").await.unwrap().value.expose(),
        "one"
    );
    // Versions are cached apart from the current value.
    assert_eq!(
        d.secrets()
            .fetch_version("CACHED", 2)
            .await
            .unwrap()
            .value
            .expose(),
        "two"
    );
    assert_eq!(
        d.secrets().fetch("CACHED").await.unwrap().value.expose(),
        "one"
    );
    d.secrets().delete("CACHED").await.unwrap();
    assert_eq!(
        d.secrets().fetch("CACHED").await.unwrap_err().code(),
        ErrorCode::SecretNotFound
    );
}

#[tokio::test]
async fn verdicts_are_never_served_after_the_revalidation_that_sees_them() {
    let server = Server::dev();
    let admin = server.client().await;
    for k in ["REVOKED", "DELETED", "MOVED"] {
        admin
            .secrets()
            .create(CreateSecret::new(k, "v").scope(["web"]))
            .await
            .unwrap();
    }
    let mut o = AccessKeyOptions::new("web", [Permission::Read, Permission::List]);
    o.app = Some("web".into());
    let web = admin.access_keys().create(o).await.unwrap();
    let d = caching(&server, web.key.expose().as_str(), CacheOptions::ttl(TTL)).await;
    for k in ["REVOKED", "DELETED", "MOVED"] {
        d.secrets().fetch(k).await.unwrap();
    }
    admin.secrets().revoke("REVOKED").await.unwrap();
    admin.secrets().delete("DELETED").await.unwrap();
    admin
        .secrets()
        .update("MOVED", UpdateSecret::new().scope(["api"]))
        .await
        .unwrap();
    tokio::time::sleep(TTL + Duration::from_millis(50)).await;
    for (k, code) in [
        ("REVOKED", ErrorCode::SecretRevoked),
        ("DELETED", ErrorCode::SecretNotFound),
        ("MOVED", ErrorCode::SecretNotFound),
    ] {
        // Twice: the entry is gone, not merely refused once.
        for _ in 0..2 {
            assert_eq!(d.secrets().fetch(k).await.unwrap_err().code(), code, "{k}");
        }
    }
    // The caching key itself deleted: refused, even with stale-if-error.
    admin
        .secrets()
        .create(CreateSecret::new("LAST", "v").scope(["web"]))
        .await
        .unwrap();
    let d = caching(
        &server,
        web.key.expose().as_str(),
        CacheOptions::ttl(TTL).stale_if_error(Duration::from_secs(60)),
    )
    .await;
    d.secrets().fetch("LAST").await.unwrap();
    admin.access_keys().delete(&web.info.id).await.unwrap();
    tokio::time::sleep(TTL + Duration::from_millis(1100)).await;
    assert_eq!(
        d.secrets().fetch("LAST").await.unwrap_err().code(),
        ErrorCode::Unauthenticated
    );
}

#[tokio::test]
async fn an_expiry_passing_while_cached_stops_the_value_without_a_request() {
    let server = Server::dev();
    let admin = server.client().await;
    let soon = ductape::ids::now_secs() + 2;
    admin
        .secrets()
        .create(CreateSecret::new("SHORT", "v").expires_at(soon))
        .await
        .unwrap();
    let key = server.access_key.clone().unwrap();
    let d = caching(&server, &key, CacheOptions::ttl(Duration::from_secs(600))).await;
    d.secrets().fetch("SHORT").await.unwrap();
    let before = reads(&admin, "SHORT").await;
    while ductape::ids::now_secs() < soon {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = d.secrets().fetch("SHORT").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::SecretExpired);
    assert_eq!(e.message(), "Secret 'SHORT' has expired");
    assert_eq!(reads(&admin, "SHORT").await, before, "no request was made");
}

#[tokio::test]
async fn stale_if_error_serves_the_last_good_value_within_its_bound_only() {
    let mut server = Server::dev();
    let admin = server.client().await;
    admin
        .secrets()
        .create(CreateSecret::new("UPSTREAM", "kept"))
        .await
        .unwrap();
    let key = server.access_key.clone().unwrap();
    let tolerant = caching(
        &server,
        &key,
        CacheOptions::ttl(TTL).stale_if_error(Duration::from_millis(800)),
    )
    .await;
    let strict = caching(&server, &key, CacheOptions::ttl(TTL)).await;
    let resolving = caching(
        &server,
        &key,
        CacheOptions::ttl(TTL).stale_if_error(Duration::from_millis(800)),
    )
    .await;
    for d in [&tolerant, &strict] {
        d.secrets().fetch("UPSTREAM").await.unwrap();
    }
    let config = serde_json::json!({"token": "$Token{UPSTREAM}"});
    let resolved = resolving
        .secrets()
        .resolve(&config, &ResolveOptions::default())
        .await
        .unwrap();
    assert_eq!(resolved["token"], "kept");
    server.stop();
    tokio::time::sleep(TTL + Duration::from_millis(50)).await;
    let got = tolerant.secrets().fetch("UPSTREAM").await.unwrap();
    assert_eq!((got.value.expose(), got.stale), ("kept", true));
    let again = resolving
        .secrets()
        .resolve(&config, &ResolveOptions::default())
        .await
        .unwrap();
    assert_eq!(again["token"], "kept");
    assert_eq!(
        strict.secrets().fetch("UPSTREAM").await.unwrap_err().code(),
        ErrorCode::Connection
    );
    // Past TTL + bound: nothing is served.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        tolerant
            .secrets()
            .fetch("UPSTREAM")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Connection
    );
}

#[tokio::test]
async fn resolve_hits_the_cache_per_app_and_environment() {
    let server = Server::dev();
    let admin = server.client().await;
    admin
        .secrets()
        .create(CreateSecret::new("DB_URL", "postgres://x").scope(["web"]))
        .await
        .unwrap();
    let key = server.access_key.clone().unwrap();
    let d = caching(&server, &key, CacheOptions::ttl(Duration::from_secs(600))).await;
    let config = serde_json::json!({"db": "$Token{DB_URL}"});
    let web = ResolveOptions {
        app: Some("web".into()),
        ..ResolveOptions::default()
    };
    for _ in 0..5 {
        let got = d.secrets().resolve(&config, &web).await.unwrap();
        assert_eq!(got["db"], "postgres://x");
    }
    assert_eq!(reads(&admin, "DB_URL").await, 1);
    // Another context is another question: asked, and refused, never answered from web's.
    let api = ResolveOptions {
        app: Some("api".into()),
        ..ResolveOptions::default()
    };
    assert!(d.secrets().resolve(&config, &api).await.is_err());
    assert!(d.secrets().resolve(&config, &api).await.is_err());
    assert_eq!(reads(&admin, "DB_URL").await, 3);
}

fn snapshot_options(path: &std::path::Path) -> CacheOptions {
    CacheOptions::ttl(Duration::from_millis(200))
        .stale_if_error(Duration::from_secs(600))
        .snapshot(path)
}

async fn from_snapshot(
    url: &str,
    key: &str,
    path: &std::path::Path,
) -> Result<Ductape, ductape::Error> {
    let config = Config::new(url, key.parse().unwrap())
        .max_retries(0)
        .cache(snapshot_options(path));
    let d = Ductape::new(config).unwrap();
    d.init().await.map(|()| d)
}

#[tokio::test]
async fn a_snapshot_starts_a_client_while_the_server_is_down_and_resists_tampering() {
    let mut server = Server::dev();
    let admin = server.client().await;
    admin
        .secrets()
        .create(CreateSecret::new("SNAP_A", "snapshot-canary-a").scope(["web"]))
        .await
        .unwrap();
    admin
        .secrets()
        .create(CreateSecret::new("SNAP_B", "snapshot-canary-b"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.snap");
    let key = server.access_key.clone().unwrap();
    let url = server.url.clone();
    let d = from_snapshot(&url, &key, &path).await.unwrap();
    assert!(!d.started_offline());
    d.secrets().fetch("SNAP_A").await.unwrap();
    d.secrets().fetch("SNAP_B").await.unwrap();
    let config = serde_json::json!({"a": "$Token{SNAP_A}"});
    let web = ResolveOptions {
        app: Some("web".into()),
        ..ResolveOptions::default()
    };
    d.secrets().resolve(&config, &web).await.unwrap();
    drop(d);
    // Only what the server holds: no value, no access key, readable by the owner only.
    let bytes = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("snapshot-canary") && !text.contains(&key[5..]));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A write cut short by kill -9 leaves only a stray temporary file: ignored.
    std::fs::write(dir.path().join(".app.snap.99999.tmp"), b"half a snapsh").unwrap();

    server.stop();
    let offline = from_snapshot(&url, &key, &path).await.unwrap();
    assert!(offline.started_offline());
    tokio::time::sleep(Duration::from_millis(250)).await; // past the TTL: served stale
    let a = offline.secrets().fetch("SNAP_A").await.unwrap();
    assert_eq!((a.value.expose(), a.stale), ("snapshot-canary-a", true));
    let resolved = offline.secrets().resolve(&config, &web).await.unwrap();
    assert_eq!(resolved["a"], "snapshot-canary-a");
    // What it never read is not there; another context is another question.
    assert_eq!(
        offline
            .secrets()
            .fetch_version("SNAP_A", 1)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Connection
    );
    let api = ResolveOptions {
        app: Some("api".into()),
        ..ResolveOptions::default()
    };
    assert_eq!(
        offline
            .secrets()
            .resolve(&config, &api)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Connection
    );
    // Without the snapshot (or with it but no cache bound), the server's absence is an error.
    let plain = Ductape::new(Config::new(&url, key.parse().unwrap()).max_retries(0)).unwrap();
    assert_eq!(
        plain.init().await.unwrap_err().code(),
        ErrorCode::Connection
    );

    // A flipped byte: an integrity error, never a wrong value.
    let original = std::fs::read(&path).unwrap();
    let mut flipped = original.clone();
    let at = flipped.len() / 2;
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&path, &flipped).unwrap();
    let e = from_snapshot(&url, &key, &path).await.err().unwrap();
    assert_eq!(e.code(), ErrorCode::Integrity, "{e}");
    assert!(e.message().contains("snapshot"), "{e}");
    // Entry A relabelled as B: it cannot answer B's question.
    let mut file: serde_json::Value = serde_json::from_slice(&original).unwrap();
    let entries = file["entries"].as_array_mut().unwrap();
    let (i, j) = (
        entries
            .iter()
            .position(|e| e["key"] == "SNAP_A" && e["context"].is_null())
            .unwrap(),
        entries.iter().position(|e| e["key"] == "SNAP_B").unwrap(),
    );
    let a_sealed = entries[i]["sealed"].clone();
    entries[j]["sealed"] = a_sealed;
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    let e = from_snapshot(&url, &key, &path).await.err().unwrap();
    assert_eq!(e.code(), ErrorCode::Integrity, "{e}");
    // Another access key cannot use it.
    std::fs::write(&path, &original).unwrap();
    let other = ductape::AccessKey::generate();
    let e = from_snapshot(&url, other.expose().as_str(), &path)
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::Integrity, "{e}");
}
