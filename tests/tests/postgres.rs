//! The same behaviour on PostgreSQL, on a throwaway cluster the test starts itself.

use ductape::wire::Permission;
use ductape::{AccessKeyOptions, CreateSecret, ErrorCode, ResolveOptions, UpdateSecret};
use ductape_e2e::{files_containing, PgCluster, Server};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_keeps_the_contract_and_never_sees_a_value() {
    let pg = PgCluster::start();
    let url = pg.database("ductape");
    let mut server = Server::postgres(&url);
    let admin_key = server.setup().await;
    let d = server.client().await;
    let s = d.secrets();
    let canary = "sk_live_PG_CANARY_51e0d2";

    // The documented flow.
    let created = s
        .create(
            CreateSecret::new("STRIPE_API_KEY", canary)
                .scope(["pay"])
                .envs(["prd"])
                .expires_at(4_000_000_000),
        )
        .await
        .unwrap();
    assert_eq!((created.version, created.id.len()), (1, 24));
    assert_eq!(
        s.fetch("STRIPE_API_KEY").await.unwrap().value.expose(),
        canary
    );
    let up = s
        .update(
            "STRIPE_API_KEY",
            UpdateSecret::new().value("rotated").description("d"),
        )
        .await
        .unwrap();
    assert_eq!(up.version, 2);
    let e = s
        .update(
            "STRIPE_API_KEY",
            UpdateSecret::new().value("x").expected_version(1),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::VersionConflict);
    assert_eq!(
        s.create(CreateSecret::new("STRIPE_API_KEY", "dup"))
            .await
            .unwrap_err()
            .status(),
        Some(409)
    );
    assert!(s.revoke("STRIPE_API_KEY").await.unwrap());
    assert_eq!(
        s.fetch("STRIPE_API_KEY").await.unwrap_err().status(),
        Some(410)
    );
    s.restore("STRIPE_API_KEY").await.unwrap();

    // Racing creates: exactly one wins.
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let d = d.clone();
            tokio::spawn(async move {
                d.secrets()
                    .create(CreateSecret::new("RACE", format!("w{i}")))
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += t.await.unwrap() as usize;
    }
    assert_eq!(wins, 1);

    // Resolution, bound keys and the audit trail.
    let out = s
        .resolve(
            &json!({"a": "$Token{STRIPE_API_KEY}"}),
            &ResolveOptions::new(Some("pay"), Some("prd")),
        )
        .await
        .unwrap();
    assert_eq!(out, json!({"a": "rotated"}));
    let e = s
        .resolve(
            &json!("$Token{STRIPE_API_KEY}"),
            &ResolveOptions::new(Some("other"), None),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "Secret 'STRIPE_API_KEY' is not accessible by app 'other'"
    );
    let mut o = AccessKeyOptions::new("bound", [Permission::List, Permission::Read]);
    o.app = Some("other".into());
    let bound = d.access_keys().create(o).await.unwrap();
    let b = server.client_with(&bound.key.expose()).await;
    assert_eq!(
        b.secrets()
            .fetch("STRIPE_API_KEY")
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
    let page = d
        .audit(&ductape::AuditQuery {
            secret_key: Some("STRIPE_API_KEY".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(page
        .events
        .iter()
        .any(|e| !e.allowed && e.app.as_deref() == Some("other")));

    // A restart (a second server on the same database) sees everything.
    assert!(server.stop().success());
    let mut again = Server::postgres(&url);
    assert!(again.setup_token.is_none());
    again.access_key = Some(admin_key.clone());
    let d2 = again.client().await;
    assert_eq!(
        d2.secrets()
            .fetch("STRIPE_API_KEY")
            .await
            .unwrap()
            .value
            .expose(),
        "rotated"
    );
    assert_eq!(d2.secrets().fetch_all().await.unwrap().len(), 2);

    // Neither the cluster's files nor the server's logs hold a value or a key.
    s.create(CreateSecret::new("CANARY2", canary))
        .await
        .unwrap_err(); // old server is gone
    d2.secrets()
        .create(CreateSecret::new("CANARY2", canary))
        .await
        .unwrap();
    pg.checkpoint();
    let admin: ductape::AccessKey = admin_key.parse().unwrap();
    for needle in [canary, "rotated", admin.secret()] {
        let hits = files_containing(&pg.data_dir(), needle.as_bytes());
        assert!(hits.is_empty(), "{needle} found in {hits:?}");
        assert!(!again.logs().contains(needle) && !server.logs().contains(needle));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_database_accept_one_setup() {
    let pg = PgCluster::start();
    let url = pg.database("shared");
    let (a, b) = std::thread::scope(|t| {
        let a = t.spawn(|| Server::postgres(&url));
        let b = t.spawn(|| Server::postgres(&url));
        (a.join().unwrap(), b.join().unwrap())
    });
    // Exactly one of two servers started together issues (and prints) a token: the one
    // printed is the one that works. The other says one is pending.
    let tokens: Vec<(&Server, String)> = [&a, &b]
        .into_iter()
        .filter_map(|s| s.setup_token.clone().map(|t| (s, t)))
        .collect();
    assert_eq!(tokens.len(), 1, "one token printed");
    let quiet = if tokens[0].0.url == a.url { &b } else { &a };
    assert!(quiet.logs().contains("still pending"), "{}", quiet.logs());
    let (winner, token) = &tokens[0];
    // Both servers accept that token, and only one setup can win.
    let (ra, rb) = tokio::join!(
        ductape::setup(&winner.url, token, "a"),
        ductape::setup(&quiet.url, token, "b")
    );
    assert_eq!(ra.is_ok() as u8 + rb.is_ok() as u8, 1, "{ra:?} {rb:?}");
}

#[tokio::test]
async fn the_database_connection_can_require_verified_tls() {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let pg = PgCluster::start_with_tls(&ck.cert.pem(), &ck.signing_key.serialize_pem());
    let url = format!("{}?sslmode=require", pg.database("tls"));
    let ca = pg.dir.path().join("ca.pem");
    std::fs::write(&ca, ck.cert.pem()).unwrap();

    // With the CA: the server runs, and its connections are encrypted.
    let mut server =
        ductape_e2e::Server::postgres_with(&url, &["--database-ca-cert", ca.to_str().unwrap()]);
    server.setup().await;
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("OVER_TLS", "v"))
        .await
        .unwrap();
    let encrypted = pg.sql("postgres", "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = 'tls' AND s.ssl");
    assert!(
        encrypted.parse::<u32>().unwrap() >= 1,
        "no TLS connection from the server: {encrypted}"
    );
    drop(d);
    assert!(server.stop().success());

    // Without it, an untrusted certificate stops the server at start with a clear error.
    let out = std::process::Command::new(ductape_e2e::ductape_bin())
        .args(["server", "--addr", "127.0.0.1:0", "--database", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PostgreSQL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_is_refused_at_once_here_and_within_a_second_on_other_replicas() {
    let pg = PgCluster::start();
    let url = pg.database("keys");
    let mut a = Server::postgres(&url);
    a.setup().await;
    let b = Server::postgres(&url);
    let admin = a.client().await;
    let made = admin
        .access_keys()
        .create(AccessKeyOptions::new("short-lived", [Permission::List]))
        .await
        .unwrap();
    let bearer = made.key.bearer().to_string();
    let list = |server: &Server| format!("{}/v1/secrets", server.url);
    // Both replicas know (and remember) the key.
    for s in [&a, &b] {
        let (status, _) =
            ductape_e2e::raw(reqwest::Method::GET, &list(s), Some(&bearer), None, None).await;
        assert_eq!(status, 200);
    }
    admin.access_keys().delete(&made.info.id).await.unwrap();
    let deleted_at = std::time::Instant::now();
    let (status, _) =
        ductape_e2e::raw(reqwest::Method::GET, &list(&a), Some(&bearer), None, None).await;
    assert_eq!(status, 401, "the server that deleted it refuses it at once");
    // The other replica stops trusting its memory of the key within a second.
    tokio::time::sleep(std::time::Duration::from_millis(1050).saturating_sub(deleted_at.elapsed()))
        .await;
    let (status, _) =
        ductape_e2e::raw(reqwest::Method::GET, &list(&b), Some(&bearer), None, None).await;
    assert_eq!(status, 401, "refused by every replica within 1 s");
}

#[tokio::test]
async fn postgres_pages_in_bytewise_key_order_with_a_cursor() {
    let pg = PgCluster::start();
    let url = pg.database("pages");
    let mut server = Server::postgres(&url);
    server.setup().await;
    let d = server.client().await;
    for k in ["b", "B", "a_1", "A", "a-2", "Z9"] {
        d.secrets().create(CreateSecret::new(k, "v")).await.unwrap();
    }
    let (sizes, keys) = ductape_e2e::paged_keys(&d, 2).await;
    assert!(sizes.iter().all(|n| *n <= 2), "{sizes:?}");
    // The same order SQLite gives: bytes, uppercase before lowercase.
    assert_eq!(keys, ["A", "B", "Z9", "a-2", "a_1", "b"]);
    assert_eq!(ductape_e2e::listed_keys(&d).await, keys);
}

/// Two replicas on one database, writers racing with `If-Match`: every acknowledged update
/// or rollback is exactly one version, versions stay contiguous, and each version holds the
/// value its writer was told it wrote. Then the grant scan and the trash on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rollbacks_and_updates_on_two_replicas_lose_nothing() {
    let pg = PgCluster::start();
    let url = pg.database("history");
    let mut a = Server::postgres(&url);
    a.setup().await;
    let b = Server::postgres(&url);
    let admin_key = a.access_key.clone().unwrap();
    let on_a = a.client().await;
    let on_b = b.client_with(&admin_key).await;
    on_a.secrets()
        .create(CreateSecret::new("RACE", "v1").scope(["web"]))
        .await
        .unwrap();
    for v in 2..=5 {
        on_a.secrets()
            .update("RACE", UpdateSecret::new().value(format!("v{v}")))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for t in 0..6 {
        let d = if t % 2 == 0 {
            on_a.clone()
        } else {
            on_b.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut done: Vec<(i64, Result<String, i64>)> = Vec::new();
            for i in 0..8 {
                let seen = d.secrets().fetch("RACE").await.unwrap().record.version;
                let outcome = if (t + i) % 3 == 0 {
                    let source = 1 + (i as i64 % 5);
                    d.secrets()
                        .rollback_if_version("RACE", source, Some(seen))
                        .await
                        .map(|r| (r.version, Err(source)))
                } else {
                    let value = format!("t{t}-{i}");
                    d.secrets()
                        .update(
                            "RACE",
                            UpdateSecret::new()
                                .value(value.clone())
                                .expected_version(seen),
                        )
                        .await
                        .map(|r| (r.version, Ok(value)))
                };
                match outcome {
                    Ok(written) => done.push(written),
                    Err(e) => assert_eq!(e.code(), ErrorCode::VersionConflict, "{e}"),
                }
            }
            done
        }));
    }
    let mut written = Vec::new();
    for t in tasks {
        written.extend(t.await.unwrap());
    }
    assert!(!written.is_empty());
    let versions = on_b.secrets().versions("RACE").await.unwrap();
    let last = 5 + written.len() as i64;
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        (1..=last).rev().collect::<Vec<_>>(),
        "one version per acknowledged write, contiguous"
    );
    let mut numbers: Vec<i64> = written.iter().map(|(v, _)| *v).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (6..=last).collect::<Vec<_>>());
    for (version, what) in &written {
        let got = on_a
            .secrets()
            .fetch_version("RACE", *version)
            .await
            .unwrap();
        let want = match what {
            Ok(value) => value.clone(),
            Err(source) => format!("v{source}"),
        };
        // Rollbacks take sources 1 to 5, whose values never change.
        assert_eq!(got.value.expose(), want, "version {version}");
    }
    // A key of a new binding is granted the kept versions it may read.
    let mut o = AccessKeyOptions::new("web", [Permission::Read, Permission::List]);
    o.app = Some("web".into());
    let web = on_a.access_keys().create(o).await.unwrap();
    let web = b.client_with(web.key.expose().as_str()).await;
    assert_eq!(
        web.secrets()
            .fetch_version("RACE", 1)
            .await
            .unwrap()
            .value
            .expose(),
        "v1"
    );
    // The trash on PostgreSQL: a retaken name blocks undelete with the way out.
    on_a.secrets().delete("RACE").await.unwrap();
    on_b.secrets()
        .create(CreateSecret::new("RACE", "again"))
        .await
        .unwrap();
    let e = on_a.secrets().undelete("RACE").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Conflict);
    on_b.secrets()
        .delete_permanently("RACE", None)
        .await
        .unwrap();
    let back = on_a.secrets().undelete("RACE").await.unwrap();
    assert_eq!(back.version, last + 1);
    assert_eq!(
        on_b.secrets().versions("RACE").await.unwrap().len() as i64,
        last + 1
    );
}
