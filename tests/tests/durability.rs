//! Data survives restarts, and a kill -9 mid-burst loses no acknowledged write.

use ductape::{CreateSecret, UpdateSecret};
use ductape_e2e::Server;
use std::sync::{Arc, Mutex};

#[tokio::test]
async fn data_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(data.path());
    let key = server.setup().await;
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("KEEP", "v1").envs(["prd"]))
        .await
        .unwrap();
    d.secrets()
        .update("KEEP", UpdateSecret::new().value("v2"))
        .await
        .unwrap();
    assert!(server.stop().success(), "graceful shutdown exits 0");

    let mut server = Server::persistent(data.path());
    assert!(
        server.setup_token.is_none(),
        "a set-up server prints no new setup token"
    );
    server.access_key = Some(key);
    let d = server.client().await;
    let s = d.secrets().fetch("KEEP").await.unwrap();
    assert_eq!(
        (s.value.expose(), s.version, s.envs.as_slice()),
        ("v2", 2, ["prd".to_string()].as_slice())
    );
}

#[tokio::test]
async fn a_setup_token_works_once() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(data.path());
    let token = server.setup_token.clone().unwrap();
    let e = ductape::setup(&server.url, "dtps_wrong", "x")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(401));
    server.setup().await;
    let e = ductape::setup(&server.url, &token, "again")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_a_burst_loses_no_acknowledged_write() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(data.path());
    let key = server.setup().await;
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..8 {
        let d = server.client().await;
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let k = format!("BURST_{w}_{i}");
                match d
                    .secrets()
                    .create(CreateSecret::new(&k, format!("value-{w}-{i}")))
                    .await
                {
                    Ok(_) => acked.lock().unwrap().push(k),
                    Err(_) => break,
                }
            }
        }));
    }
    // Let the burst run, then pull the plug.
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.kill9();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let mut server = Server::persistent(data.path());
    server.access_key = Some(key);
    let d = server.client().await;
    let present: std::collections::HashSet<String> = d
        .secrets()
        .fetch_all()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    let lost: Vec<_> = acked.iter().filter(|k| !present.contains(*k)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Every stored secret is whole: it decrypts to what was written.
    for k in acked.iter().step_by(37) {
        let (w, i) = k.trim_start_matches("BURST_").split_once('_').unwrap();
        assert_eq!(
            d.secrets().fetch(k).await.unwrap().value.expose(),
            format!("value-{w}-{i}")
        );
    }
    eprintln!(
        "{} writes acknowledged before kill -9; all present after restart",
        acked.len()
    );
}

#[tokio::test]
async fn audit_events_past_the_retention_are_pruned() {
    let data = tempfile::tempdir().unwrap();
    let (mut server, key, d) = server_with_secret(data.path(), &[], "AUDITED").await;
    d.secrets().fetch("AUDITED").await.unwrap();
    d.secrets().fetch("AUDITED").await.unwrap();
    assert!(server.stop().success());
    // Age every event but the last read by 40 days (setup, create, the first read).
    {
        let db = rusqlite::Connection::open(data.path().join("ductape.sqlite")).unwrap();
        let old = ductape::ids::now_millis() - 40 * 86_400_000;
        db.execute(
            "UPDATE audit SET at_ms = ?1 WHERE id < (SELECT MAX(id) FROM audit)",
            [old],
        )
        .unwrap();
    }
    let mut server = Server::persistent_with(data.path(), &["--audit-retention-days", "30"]);
    server.access_key = Some(key);
    let d = server.client().await;
    // The pruner runs at start; give it a moment.
    let mut remaining = usize::MAX;
    for _ in 0..50 {
        remaining = d
            .audit(&ductape::AuditQuery::default())
            .await
            .unwrap()
            .events
            .len();
        if remaining == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        remaining, 1,
        "the 40-day-old events are gone, the fresh one kept"
    );
    // What is kept still verifies, as a chain that starts after pruned events.
    let v = d.verify_audit().await.unwrap().unwrap();
    assert_eq!((v.events, v.from_genesis), (1, false));
}

/// Reads `n` times, kills the server with SIGKILL at once, restarts it, and counts the
/// read events the audit trail kept.
async fn reads_audited_across_kill_9(flags: &[&str], n: usize) -> usize {
    let data = tempfile::tempdir().unwrap();
    let (mut server, key, d) = server_with_secret(data.path(), flags, "READ_ME").await;
    for _ in 0..n {
        d.secrets().fetch("READ_ME").await.unwrap();
    }
    server.kill9();
    let mut server = Server::persistent_with(data.path(), flags);
    server.access_key = Some(key);
    let d = server.client().await;
    let page = d
        .audit(&ductape::AuditQuery {
            secret_key: Some("READ_ME".into()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(d.verify_audit().await.unwrap().is_ok());
    page.events.iter().filter(|e| e.action == "read").count()
}

#[tokio::test]
async fn every_acknowledged_read_is_audited_after_a_kill_9_with_grouped_sync() {
    // Grouped commits skip the per-read fsync, not the commit: a crash of the server
    // process loses no event of a read that returned.
    assert_eq!(reads_audited_across_kill_9(&[], 300).await, 300);
}

#[tokio::test]
async fn reads_on_every_core_are_audited_after_a_kill_9_and_a_restart_on_one_core() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let data = tempfile::tempdir().unwrap();
    let (mut server, key, d) = server_with_secret(data.path(), &[], "READ_ME").await;
    // 16 readers at once, each on connections of its own: every worker appends to its shard.
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let d = d.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    d.secrets().fetch("READ_ME").await.unwrap();
                }
            })
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }
    let shard_files = |dir: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("ductape.sqlite-audit") && !n.ends_with(".lock"))
            .collect();
        names.sort();
        names
    };
    let before = shard_files(data.path());
    if cores >= 2 {
        assert!(
            before
                .iter()
                .any(|n| n.starts_with("ductape.sqlite-audit-1.")),
            "a second shard was written: {before:?}"
        );
    }
    server.kill9();
    // Started again with one core (one shard): the others' events are moved all the same.
    let mut server = Server::persistent_on_cpus(data.path(), "0");
    server.access_key = Some(key);
    let d = server.client().await;
    let mut reads = 0;
    let mut before = None;
    loop {
        let page = d
            .audit(&ductape::AuditQuery {
                secret_key: Some("READ_ME".into()),
                limit: Some(1000),
                before,
                ..Default::default()
            })
            .await
            .unwrap();
        reads += page.events.iter().filter(|e| e.action == "read").count();
        match page.next_before {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!(reads, 16 * 25, "every acknowledged read, once");
    assert!(d.verify_audit().await.unwrap().is_ok());
    let after = shard_files(data.path());
    assert!(
        after
            .iter()
            .all(|n| !n.starts_with("ductape.sqlite-audit-")),
        "only shard 0 remains: {after:?}"
    );
}

#[tokio::test]
async fn every_read_sync_also_keeps_every_event() {
    assert_eq!(
        reads_audited_across_kill_9(&["--audit-sync", "every-read"], 50).await,
        50
    );
}

/// A persistent server on `data` (with `flags`), set up, with secret `key` created: the
/// server, its admin key and a client.
async fn server_with_secret(
    data: &std::path::Path,
    flags: &[&str],
    key: &str,
) -> (Server, String, ductape::Ductape) {
    let mut server = Server::persistent_with(data, flags);
    let admin = server.setup().await;
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new(key, "v"))
        .await
        .unwrap();
    (server, admin, d)
}
