//! The audit trail is whole and tamper-evident: every change (allowed or refused) is
//! recorded with the access key's binding and the caller's claim, events are hash-chained,
//! `ductape audit verify` finds an edited or removed event at exactly its place, and
//! `ductape audit --json` streams every event as JSON lines. Also: the last admin key
//! cannot be raced away.

use ductape::wire::{AuditEntry, Permission};
use ductape::{AccessKeyOptions, AuditQuery, CreateSecret, Ductape, UpdateSecret};
use ductape_e2e::{ductape_bin, raw, PgCluster, Server};
use reqwest::Method;
use serde_json::json;
use std::process::{Command, Output};

fn cli(server: &Server, args: &[&str]) -> Output {
    Command::new(ductape_bin())
        .args(args)
        .env("DUCTAPE_URL", &server.url)
        .env("DUCTAPE_ACCESS_KEY", server.access_key.as_deref().unwrap())
        .output()
        .unwrap()
}

async fn all_events(d: &Ductape) -> Vec<AuditEntry> {
    let mut q = AuditQuery {
        limit: Some(1000),
        ..Default::default()
    };
    let mut out = Vec::new();
    loop {
        let page = d.audit(&q).await.unwrap();
        out.extend(page.events);
        match page.next_before {
            Some(b) => q.before = Some(b),
            None => return out,
        }
    }
}

async fn bound_key(d: &Ductape, perms: &[Permission], app: &str, env: &str) -> String {
    let mut o = AccessKeyOptions::new("bound", perms.iter().copied());
    o.app = Some(app.into());
    o.envs = vec![env.into()];
    d.access_keys()
        .create(o)
        .await
        .unwrap()
        .key
        .expose()
        .to_string()
}

#[tokio::test]
async fn every_change_is_recorded_with_fields_never_values_and_refusals_with_their_reason() {
    let server = Server::dev();
    let d = server.client().await;
    let s = d.secrets();
    let canary = "sk_live_AUDIT_CANARY_51c0";
    s.create(CreateSecret::new("PAY", canary).scope(["pay"]))
        .await
        .unwrap();
    s.update(
        "PAY",
        UpdateSecret::new()
            .value("CANARY_ROTATED_9d1")
            .description("new"),
    )
    .await
    .unwrap();
    s.revoke("PAY").await.unwrap();
    s.restore("PAY").await.unwrap();
    let reader = d
        .access_keys()
        .create(AccessKeyOptions::new(
            "reader",
            [Permission::List, Permission::Read],
        ))
        .await
        .unwrap();
    let r = server.client_with(&reader.key.expose()).await;
    r.secrets()
        .update("PAY", UpdateSecret::new().description("nope"))
        .await
        .unwrap_err();
    r.secrets().delete("PAY").await.unwrap_err();
    d.access_keys().delete(&reader.info.id).await.unwrap();
    s.delete("PAY").await.unwrap();

    let events = all_events(&d).await;
    let summary: Vec<(String, String, bool, Option<String>)> = events
        .iter()
        .rev()
        .map(|e| {
            (
                e.action.clone(),
                e.secret_key.clone(),
                e.allowed,
                e.detail.clone(),
            )
        })
        .collect();
    let me = d.access_key_info().unwrap().id;
    let rid = reader.info.id.clone();
    let expected: Vec<(&str, &str, bool, Option<&str>)> = vec![
        ("setup", "", true, Some("permissions=admin app=* envs=*")),
        ("create", "PAY", true, Some("scope,value")),
        // A new value is sealed for the secret's readers: the client reads who they are.
        ("check", "PAY", true, None),
        ("update", "PAY", true, Some("description,value")),
        ("revoke", "PAY", true, None),
        ("restore", "PAY", true, None),
        (
            "access_key.create",
            &rid,
            true,
            Some("permissions=list,read app=* envs=*"),
        ),
        ("update", "PAY", false, Some("description")),
        ("delete", "PAY", false, None),
        ("access_key.delete", &rid, true, None),
        ("delete", "PAY", true, None),
    ];
    let expected: Vec<(String, String, bool, Option<String>)> = expected
        .into_iter()
        .map(|(a, k, ok, d)| (a.into(), k.into(), ok, d.map(Into::into)))
        .collect();
    assert_eq!(summary, expected);
    let refused = events
        .iter()
        .find(|e| e.action == "update" && !e.allowed)
        .unwrap();
    assert_eq!(refused.access_key_id, rid);
    assert!(
        refused.reason.as_deref().unwrap().contains("'write'"),
        "{refused:?}"
    );
    assert!(events[1..]
        .iter()
        .all(|e| e.access_key_id == me || e.access_key_id == rid));
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains("AUDIT_CANARY") && !text.contains("CANARY_ROTATED"));
    // And the chain verifies from the first event.
    let v = d.verify_audit().await.unwrap().unwrap();
    assert_eq!((v.events, v.from_genesis), (events.len(), true));
}

#[tokio::test]
async fn the_audit_records_the_binding_and_the_claim_beside_it() {
    let server = Server::dev();
    let d = server.client().await;
    d.secrets()
        .create(
            CreateSecret::new("A_SECRET", "v")
                .scope(["appA"])
                .envs(["prd"]),
        )
        .await
        .unwrap();
    let key: ductape::AccessKey = bound_key(&d, &[Permission::Read], "appA", "prd")
        .await
        .parse()
        .unwrap();
    // Claiming another app and environment: the binding is recorded, the claim beside it.
    let e = batch_get_as(&server, &d, &key, "appZ", "qa").await;
    assert_eq!(
        (
            e.app.as_deref(),
            e.env.as_deref(),
            e.claimed_app.as_deref(),
            e.claimed_env.as_deref()
        ),
        (Some("appA"), Some("prd"), Some("appZ"), Some("qa"))
    );
    // A claim within the binding is recorded as such, with nothing beside it.
    let e = batch_get_as(&server, &d, &key, "appA", "prd").await;
    assert!(e.allowed);
    assert_eq!(
        (e.claimed_app.as_ref(), e.claimed_env.as_ref()),
        (None, None)
    );
}

/// A batch get of `A_SECRET` by `key` claiming `app`/`env`; returns its audit event.
async fn batch_get_as(
    server: &Server,
    admin: &Ductape,
    key: &ductape::AccessKey,
    app: &str,
    env: &str,
) -> AuditEntry {
    let body = json!({"keys": ["A_SECRET"], "app": app, "env": env});
    let (status, _) = raw(
        Method::POST,
        &format!("{}/v1/secrets/batch-get", server.url),
        Some(&key.bearer()),
        Some("application/json"),
        Some(body.to_string().into_bytes()),
    )
    .await;
    assert_eq!(status, 200);
    let page = admin
        .audit(&AuditQuery {
            access_key_id: Some(key.id().into()),
            ..Default::default()
        })
        .await
        .unwrap();
    page.events.into_iter().next().unwrap()
}

#[tokio::test]
async fn verify_finds_an_edited_or_removed_event_at_exactly_its_place() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(data.path());
    let key = server.setup().await;
    let d = server.client().await;
    for i in 0..5 {
        d.secrets()
            .create(CreateSecret::new(format!("S{i}"), "v"))
            .await
            .unwrap();
        d.secrets().fetch(&format!("S{i}")).await.unwrap();
    }
    let ok = cli(&server, &["audit", "verify"]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("intact: 11 events"));
    assert!(server.stop().success());

    // Someone with the database turns a denial into... an edit of event 6.
    let db = data.path().join("ductape.sqlite");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute("UPDATE audit SET secret_key = 'S9' WHERE id = 6", [])
            .unwrap();
    }
    let mut server = Server::persistent(data.path());
    server.access_key = Some(key.clone());
    let bad = cli(&server, &["audit", "verify"]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(out.contains("BROKEN at event 6:"), "{out}");
    let json_out = cli(&server, &["audit", "verify", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["broken_at"].as_i64()),
        (Some(false), Some(6))
    );
    assert!(server.stop().success());

    // Put it back, then remove event 8 instead: the break shows at the event after it.
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute("UPDATE audit SET secret_key = 'S2' WHERE id = 6", [])
            .unwrap();
        c.execute("DELETE FROM audit WHERE id = 8", []).unwrap();
    }
    let mut server = Server::persistent(data.path());
    server.access_key = Some(key);
    let bad = cli(&server, &["audit", "verify"]);
    assert_eq!(bad.status.code(), Some(1));
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(out.contains("BROKEN at event 9:"), "{out}");
}

#[tokio::test]
async fn verify_refuses_a_bound_admin_key_that_sees_only_part_of_the_trail() {
    let server = Server::dev();
    let d = server.client().await;
    let bound = bound_key(&d, &[Permission::Admin], "appA", "prd").await;
    let out = Command::new(ductape_bin())
        .args(["audit", "verify"])
        .env("DUCTAPE_URL", &server.url)
        .env("DUCTAPE_ACCESS_KEY", &bound)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unbound admin"), "{err}");
}

#[tokio::test]
async fn audit_json_streams_every_event_as_json_lines_across_pages() {
    let server = Server::dev();
    // 2,000 denied reads in two requests (missing keys), so the export spans pages.
    for batch in 0..2 {
        let keys: Vec<String> = (0..1000).map(|i| format!("MISSING_{batch}_{i}")).collect();
        let (status, _) = raw(
            Method::POST,
            &format!("{}/v1/secrets/batch-get", server.url),
            Some(&server.bearer()),
            Some("application/json"),
            Some(json!({ "keys": keys }).to_string().into_bytes()),
        )
        .await;
        assert_eq!(status, 200);
    }
    let out = cli(&server, &["audit", "--json"]);
    assert!(out.status.success());
    let lines: Vec<AuditEntry> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    assert_eq!(lines.len(), 2001, "every read plus the setup");
    assert!(lines.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(lines.last().unwrap().action, "setup");
    // --limit caps the stream.
    let out = cli(&server, &["audit", "--json", "--limit", "5"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);
}

/// Two admin keys, each deleting the other at once (through `a_url` and `b_url`), up to
/// `rounds` times: each time exactly one deletion wins and one admin key remains.
async fn race_last_admins(a_url: &str, b_url: &str, admin_key: &str, rounds: usize) {
    let admin_key: ductape::AccessKey = admin_key.parse().unwrap();
    let admin = client(a_url, &admin_key).await;
    let me = admin_key.id().to_owned();
    for _ in 0..rounds {
        let other = admin
            .access_keys()
            .create(AccessKeyOptions::new("second admin", [Permission::Admin]))
            .await
            .unwrap();
        let (mine, theirs) = (admin_key.bearer(), other.key.bearer());
        let (delete_other, delete_me) = (
            format!("{a_url}/v1/access-keys/{}", other.info.id),
            format!("{b_url}/v1/access-keys/{me}"),
        );
        let (r1, r2) = tokio::join!(
            raw(Method::DELETE, &delete_other, Some(&mine), None, None),
            raw(Method::DELETE, &delete_me, Some(&theirs), None, None)
        );
        let statuses = [r1.0, r2.0];
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "exactly one deletion wins: {r1:?} {r2:?}"
        );
        assert!(
            statuses.contains(&409) || statuses.contains(&401),
            "{statuses:?}"
        );
        let survivor = if r2.0 == 200 { &other.key } else { &admin_key };
        let keys = client(a_url, survivor)
            .await
            .access_keys()
            .list()
            .await
            .unwrap();
        let admins: Vec<_> = keys
            .iter()
            .filter(|k| k.permissions.contains(&Permission::Admin))
            .collect();
        assert_eq!(admins.len(), 1, "{keys:?}");
        assert_eq!(admins[0].id, survivor.id());
        if r2.0 == 200 {
            return; // the first admin is gone; the race was run both ways by now or not
        }
    }
}

async fn client(url: &str, key: &ductape::AccessKey) -> Ductape {
    let d = Ductape::new(ductape::Config::new(url, key.clone()).max_retries(0)).unwrap();
    d.init().await.unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_admins_deleting_each_other_at_once_leave_one_on_sqlite() {
    let server = Server::dev();
    race_last_admins(
        &server.url,
        &server.url,
        server.access_key.as_deref().unwrap(),
        20,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_admins_deleting_each_other_on_two_servers_leave_one_on_postgres() {
    let pg = PgCluster::start();
    let url = pg.database("race");
    let mut a = Server::postgres(&url);
    a.setup().await;
    let b = Server::postgres(&url);
    race_last_admins(&a.url, &b.url, a.access_key.as_deref().unwrap(), 20).await;
}

/// Reads A and B allowed and C refused in one resolve, then A and B again: what the trail
/// holds, what a filter by secret finds, and what usage counts.
async fn batch_reads_as_one_event(server: &Server) {
    let d = server.client().await;
    let s = d.secrets();
    for (k, scope) in [("A", "web"), ("B", "web"), ("C", "other")] {
        s.create(CreateSecret::new(k, "v").scope([scope]))
            .await
            .unwrap();
    }
    let opts = ductape::ResolveOptions::new(Some("web"), Some("prd"));
    let config = json!({"a": "$Token{A}", "b": "$Token{B}", "c": "$Token{C}"});
    let err = s.resolve(&config, &opts).await.unwrap_err();
    assert!(err.message().contains("'C' is not accessible"), "{err}");
    s.resolve(&json!(["$Token{A}", "$Token{B}"]), &opts)
        .await
        .unwrap();

    let reads: Vec<(String, Vec<String>, bool)> = all_events(&d)
        .await
        .into_iter()
        .filter(|e| e.action == "resolve")
        .map(|e| (e.secret_key, e.keys, e.allowed))
        .collect();
    let ab = || vec!["A".to_owned(), "B".to_owned()];
    assert_eq!(
        reads,
        [
            (String::new(), ab(), true),
            ("C".to_owned(), vec![], false),
            (String::new(), ab(), true),
        ],
        "newest first: each resolve's allowed reads are one event (written before its refusals), a refusal one of its own"
    );
    let of = |key: &'static str| {
        let d = &d;
        async move {
            d.audit(&AuditQuery {
                secret_key: Some(key.into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .events
            .into_iter()
            .filter(|e| e.action_is_read())
            .map(|e| (e.keys.len(), e.allowed))
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(of("B").await, [(2, true), (2, true)]);
    assert_eq!(of("C").await, [(0, false)]);
    // Neither a prefix nor a suffix of a listed key matches it.
    s.create(CreateSecret::new("AB", "v")).await.unwrap();
    assert_eq!(of("AB").await, []);
    let usage = s.usage("A").await.unwrap();
    assert_eq!(usage.iter().map(|u| u.reads).sum::<u64>(), 2, "{usage:?}");
    let listed = cli(server, &["audit", "--secret", "B"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(text.matches("\tresolve\tA,B\t").count(), 2, "{text}");
    let v = d.verify_audit().await.unwrap().unwrap();
    assert!(v.events > 0);

    // One allowed read among refusals is an event like any read, in its place; a reference
    // made twice is read once.
    let err = s
        .resolve(&json!(["$Token{C}", "$Token{A}", "$Token{NOPE}"]), &opts)
        .await
        .unwrap_err();
    assert!(err.message().contains("'C' is not accessible"), "{err}");
    s.resolve(&json!(["$Token{A}", "$Token{A}"]), &opts)
        .await
        .unwrap();
    let newest: Vec<(String, Vec<String>, bool)> = all_events(&d)
        .await
        .into_iter()
        .filter(|e| e.action == "resolve")
        .take(4)
        .map(|e| (e.secret_key, e.keys, e.allowed))
        .collect();
    assert_eq!(
        newest,
        [
            ("A".to_owned(), vec![], true),
            ("NOPE".to_owned(), vec![], false),
            ("A".to_owned(), vec![], true),
            ("C".to_owned(), vec![], false),
        ]
    );
    assert!(d.verify_audit().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_batch_read_is_one_event_naming_its_keys_and_its_keys_are_chained() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(data.path());
    let key = server.setup().await;
    batch_reads_as_one_event(&server).await;
    assert!(server.stop().success());

    // The keys are part of the event's hash: a key slipped out of a batch is found.
    {
        let c = rusqlite::Connection::open(data.path().join("ductape.sqlite")).unwrap();
        let n = c
            .execute(
                "UPDATE audit SET batch_keys = 'A' WHERE batch_keys = 'A,B' AND id = (SELECT MIN(id) FROM audit WHERE batch_keys IS NOT NULL)",
                [],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    let mut server = Server::persistent(data.path());
    server.access_key = Some(key);
    let bad = cli(&server, &["audit", "verify"]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stdout).contains("BROKEN at event"));
}

#[tokio::test]
async fn a_batch_read_is_one_event_on_postgres_too() {
    let pg = PgCluster::start();
    let mut server = Server::postgres(&pg.database("batch_reads"));
    server.setup().await;
    batch_reads_as_one_event(&server).await;
}
