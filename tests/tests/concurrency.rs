//! Concurrent clients leave consistent data.

use ductape::{CreateSecret, ErrorCode, UpdateSecret};
use ductape_e2e::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_tasks_creating_and_updating_different_keys_all_land() {
    let server = Server::dev();
    let d = server.client().await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let d = d.clone();
            tokio::spawn(async move {
                let k = format!("KEY_{i}");
                d.secrets()
                    .create(CreateSecret::new(&k, format!("v1-{i}")))
                    .await
                    .unwrap();
                for n in 2..=4 {
                    d.secrets()
                        .update(&k, UpdateSecret::new().value(format!("v{n}-{i}")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let all = d.secrets().fetch_all().await.unwrap();
    assert_eq!(all.len(), 50);
    assert!(all.iter().all(|s| s.version == 4));
    for i in (0..50).step_by(7) {
        assert_eq!(
            d.secrets()
                .fetch(&format!("KEY_{i}"))
                .await
                .unwrap()
                .value
                .expose(),
            format!("v4-{i}")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creates_of_one_key_have_exactly_one_winner() {
    let server = Server::dev();
    let d = server.client().await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let d = d.clone();
            tokio::spawn(async move {
                (
                    i,
                    d.secrets()
                        .create(CreateSecret::new("CONTESTED", format!("writer-{i}")))
                        .await,
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        match r {
            Ok(_) => winners.push(i),
            Err(e) => assert_eq!((e.status(), e.code()), (Some(409), ErrorCode::SecretExists)),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create wins");
    let s = d.secrets().fetch("CONTESTED").await.unwrap();
    assert_eq!(s.value.expose(), format!("writer-{}", winners[0]));
    assert_eq!(s.version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_versioned_updates_never_lose_one_silently() {
    let server = Server::dev();
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("COUNTER", "0"))
        .await
        .unwrap();
    // Each task does read-modify-write with expected_version, retrying on conflict.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let d = d.clone();
            tokio::spawn(async move {
                loop {
                    let cur = d.secrets().fetch("COUNTER").await.unwrap();
                    let n: u32 = cur.value.expose().parse().unwrap();
                    let up = UpdateSecret::new()
                        .value((n + 1).to_string())
                        .expected_version(cur.version);
                    match d.secrets().update("COUNTER", up).await {
                        Ok(_) => break,
                        Err(e) if e.code() == ErrorCode::VersionConflict => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        d.secrets().fetch("COUNTER").await.unwrap().value.expose(),
        "10"
    );
}

/// Reads and writes hammering a file database while the WAL is checkpointed in the
/// background: every answer is a success (no "database is locked"), every read audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_and_writes_under_load_on_a_file_database_all_succeed_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(dir.path());
    server.setup().await;
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("HOT", "v0"))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let d = d.clone();
            tokio::spawn(async move {
                let mut reads = 0u64;
                while std::time::Instant::now() < deadline {
                    let got = d.secrets().fetch("HOT").await.expect("every read succeeds");
                    assert!(got.value.expose().starts_with('v'));
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let writer = {
        let d = d.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while std::time::Instant::now() < deadline {
                n += 1;
                d.secrets()
                    .update("HOT", UpdateSecret::new().value(format!("v{n}")))
                    .await
                    .expect("every write succeeds");
            }
        })
    };
    let mut reads = 0;
    for r in readers {
        reads += r.await.unwrap();
    }
    writer.await.unwrap();
    assert!(reads > 100, "{reads} reads");
    // Every read is in the trail (the first page is the newest: count them all).
    let mut audited = 0;
    let only_hot = ductape::AuditQuery {
        secret_key: Some("HOT".into()),
        ..Default::default()
    };
    d.audit_each(only_hot, None, |e| {
        audited += u64::from(e.action == "read" && e.allowed);
        true
    })
    .await
    .unwrap();
    assert_eq!(audited, reads);
    assert!(!server.logs().contains("ERROR"), "{}", server.logs());
}

/// The CPUs a thread may run on, from its `/proc/.../status`.
#[cfg(target_os = "linux")]
fn allowed_cpus(status: &str) -> std::collections::BTreeSet<usize> {
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list")
        .trim();
    list.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => a.parse().unwrap()..=b.parse().unwrap(),
            None => part.parse().unwrap()..=part.parse().unwrap(),
        })
        .collect()
}

/// The CPUs each of the server's runtime threads (workers and blocking threads alike) may
/// run on.
#[cfg(target_os = "linux")]
fn runtime_threads(server: &Server) -> Vec<std::collections::BTreeSet<usize>> {
    let tasks = format!("/proc/{}/task", server.pid().unwrap());
    std::fs::read_dir(tasks)
        .unwrap()
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            if !comm.starts_with("tokio-") {
                return None;
            }
            Some(allowed_cpus(
                &std::fs::read_to_string(dir.join("status")).ok()?,
            ))
        })
        .collect()
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_server_keeps_one_worker_on_each_cpu_unless_told_not_to() {
    let mine = allowed_cpus(&std::fs::read_to_string("/proc/self/status").unwrap());
    let workers = std::thread::available_parallelism().unwrap().get();
    let pinning = workers > 1 && workers == mine.len();
    let server = Server::dev();
    // Workers pin themselves when they first go idle, right after start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pinning && std::time::Instant::now() < deadline {
        let pinned = runtime_threads(&server)
            .iter()
            .filter(|cpus| cpus.len() == 1)
            .count();
        if pinned >= workers {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Changes run on the blocking pool, whose threads the pinned workers start.
    let d = server.client().await;
    for i in 0..8 {
        d.secrets()
            .create(CreateSecret::new(format!("K{i}"), "v"))
            .await
            .unwrap();
    }
    let pinned: Vec<_> = runtime_threads(&server)
        .into_iter()
        .filter(|cpus| pinning && cpus.len() == 1)
        .collect();
    if pinning {
        // One worker on each CPU, none left over, every other thread free to run anywhere.
        let on: std::collections::BTreeSet<usize> = pinned.iter().flatten().copied().collect();
        assert_eq!((pinned.len(), &on), (workers, &mine));
        let threads = runtime_threads(&server);
        assert!(threads.iter().all(|cpus| cpus.len() == 1 || *cpus == mine));
    } else {
        let threads = runtime_threads(&server);
        assert!(
            threads.iter().all(|cpus| *cpus == mine),
            "{threads:?} on {mine:?}"
        );
    }
    // Turned off: every runtime thread may run on every CPU.
    let free = Server::dev_with(&["--no-pin-workers"]);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let threads = runtime_threads(&free);
    assert!(!threads.is_empty());
    assert!(threads.iter().all(|cpus| *cpus == mine), "{threads:?}");
}
