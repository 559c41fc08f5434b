//! Key rotation: a new generation, every value resealed, every remaining key granted from
//! its public key alone, the old generation retired. Resumable after kill -9, readers and
//! writers unharmed meanwhile, and a deleted key plus a fresh database opens nothing new.

use ductape::crypto::{Keyring, SealedSecret};
use ductape::wire::Permission;
use ductape::{AccessKeyOptions, CreateSecret, Ductape, ErrorCode, UpdateSecret};
use ductape_e2e::stolen::{offline_attack, offline_attack_remembering, sqlite_dump, Dump};
use ductape_e2e::{ductape_bin, Server};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The scope and envs of secret `i` of a generated set: some per app, some per env.
fn placement(i: usize) -> (Vec<&'static str>, Vec<&'static str>) {
    match i % 4 {
        0 => (vec!["web"], vec![]),
        1 => (vec!["api"], vec!["prd"]),
        2 => (vec![], vec!["dev"]),
        _ => (vec![], vec![]),
    }
}

fn value_of(i: usize) -> String {
    format!("value-{i}-{}", "x".repeat(i % 40))
}

async fn create_many(d: &Ductape, n: usize) -> BTreeMap<String, String> {
    let mut want = BTreeMap::new();
    let batch: Vec<CreateSecret> = (0..n)
        .map(|i| {
            let (scope, envs) = placement(i);
            want.insert(format!("S{i:05}"), value_of(i));
            CreateSecret::new(format!("S{i:05}"), value_of(i))
                .scope(scope)
                .envs(envs)
        })
        .collect();
    for (key, answer) in d.secrets().create_batch(batch).await.unwrap() {
        answer.unwrap_or_else(|e| panic!("{key}: {e}"));
    }
    want
}

async fn bound_key(d: &Ductape, name: &str, app: Option<&str>, envs: &[&str]) -> String {
    let mut o = AccessKeyOptions::new(name, [Permission::Read, Permission::List]);
    o.app = app.map(str::to_owned);
    o.envs = envs.iter().map(|e| e.to_string()).collect();
    d.access_keys()
        .create(o)
        .await
        .unwrap()
        .key
        .expose()
        .to_string()
}

/// Which of `want` a key bound to `app`/`envs` may read (the access rules).
fn in_binding(
    want: &BTreeMap<String, String>,
    app: Option<&str>,
    envs: &[&str],
) -> BTreeSet<String> {
    want.keys()
        .filter(|k| {
            let i: usize = k[1..].parse().unwrap();
            let (scope, senvs) = placement(i);
            (app.is_none() || scope.is_empty() || scope.contains(&app.unwrap()))
                && (envs.is_empty() || senvs.is_empty() || senvs.iter().any(|e| envs.contains(e)))
        })
        .cloned()
        .collect()
}

fn generations(dump: &Dump) -> Vec<u32> {
    let ring = Keyring::parse(&dump.keyring).unwrap();
    ring.generations.iter().map(|g| g.generation).collect()
}

/// Every stored value is sealed under `generation`.
fn all_sealed_under(dump: &Dump, generation: u32) {
    for (key, text) in &dump.secrets {
        let sealed = SealedSecret::parse(text).unwrap_or_else(|| panic!("{key}: not dv2"));
        assert_eq!(sealed.generation, generation, "{key}");
    }
}

#[tokio::test]
async fn after_deleting_a_leaked_key_and_rotating_it_opens_nothing_in_a_fresh_dump() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ductape.sqlite");
    let mut server = Server::persistent(dir.path());
    let admin_key = server.setup().await;
    let admin = server.client().await;
    let want = create_many(&admin, 40).await;
    let leaked = bound_key(&admin, "leaked", Some("web"), &[]).await;
    let kept = bound_key(&admin, "kept", Some("api"), &["prd"]).await;
    let dev = bound_key(&admin, "dev", None, &["dev"]).await;

    // What the attacker keeps: the key, and every grant row of a dump taken before.
    let before = sqlite_dump(&file);
    let remembered = before.grants.clone();
    assert_eq!(
        offline_attack(&before, &leaked),
        in_binding(&want, Some("web"), &[])
    );

    let leaked_id = leaked
        .parse::<ductape::AccessKey>()
        .unwrap()
        .id()
        .to_owned();
    assert!(admin.access_keys().delete(&leaked_id).await.unwrap());
    let report = admin.rotate_key().await.unwrap();
    assert_eq!(report.generation, 2);
    assert_eq!(report.resealed, 40);
    assert!(report.started);
    let after_write = "WRITTEN_AFTER";
    admin
        .secrets()
        .create(CreateSecret::new(after_write, "new").scope(["web"]))
        .await
        .unwrap();

    let dump = sqlite_dump(&file);
    assert_eq!(generations(&dump), vec![2], "generation 1 retired");
    all_sealed_under(&dump, 2);
    assert!(
        offline_attack_remembering(&dump, &leaked, &remembered).is_empty(),
        "the deleted key, with its old grants, opens nothing resealed or written since"
    );
    // Remaining keys were granted without their secrets: each opens exactly its binding.
    let mut want_now = want.clone();
    want_now.insert(after_write.into(), "new".into());
    let admin_all: BTreeSet<String> = want_now.keys().cloned().collect();
    assert_eq!(offline_attack(&dump, &admin_key), admin_all);
    assert_eq!(
        offline_attack(&dump, &kept),
        in_binding(&want, Some("api"), &["prd"])
    );
    let mut dev_reads = in_binding(&want, None, &["dev"]);
    dev_reads.insert(after_write.into()); // scope web, every env
    assert_eq!(offline_attack(&dump, &dev), dev_reads);
    // The keyring no longer holds the deleted key's binding (nobody uses it).
    let ring = Keyring::parse(&dump.keyring).unwrap();
    let ids: Vec<Option<&str>> = ring
        .current()
        .bindings
        .iter()
        .map(|b| b.app.as_deref())
        .collect();
    assert!(!ids.contains(&Some("web")), "{ids:?}");

    // Over the API every value is intact, for every key that may read it.
    for (key, value) in &want {
        assert_eq!(
            admin.secrets().fetch(key).await.unwrap().value.expose(),
            value
        );
    }
    let kc = server.client_with(&kept).await;
    for key in in_binding(&want, Some("api"), &["prd"]) {
        assert_eq!(
            kc.secrets().fetch(&key).await.unwrap().value.expose(),
            &want[&key]
        );
    }
    // Keys made after the rotation work as before (a new binding in generation 2).
    let web2 = bound_key(&admin, "web-again", Some("web"), &[]).await;
    let wc = server.client_with(&web2).await;
    assert_eq!(
        wc.secrets()
            .fetch(after_write)
            .await
            .unwrap()
            .value
            .expose(),
        "new"
    );
    assert_eq!(
        offline_attack(&sqlite_dump(&file), &web2).len(),
        in_binding(&want, Some("web"), &[]).len() + 1
    );
    // Running it again rotates again.
    assert_eq!(admin.rotate_key().await.unwrap().generation, 3);
    all_sealed_under(&sqlite_dump(&file), 3);
    server.stop();
}

#[tokio::test]
async fn only_an_unbound_admin_key_can_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(dir.path());
    server.setup().await;
    let admin = server.client().await;
    create_many(&admin, 4).await;
    let mut o = AccessKeyOptions::new("bound-admin", [Permission::Admin]);
    o.app = Some("web".into());
    let bound_admin = admin.access_keys().create(o).await.unwrap().key;
    let reader = bound_key(&admin, "reader", None, &[]).await;
    for key in [bound_admin.expose().to_string(), reader] {
        let c = server.client_with(&key).await;
        let e = c.rotate_key().await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::PermissionDenied, "{e}");
        // Nor by hand: every keyring route refuses it.
        let bearer = key
            .parse::<ductape::AccessKey>()
            .unwrap()
            .bearer()
            .to_string();
        for path in [
            "/v1/keyring/generations",
            "/v1/keyring/reseal/pending",
            "/v1/keyring/reseal",
            "/v1/keyring/finish",
        ] {
            let (status, body) = ductape_e2e::raw(
                reqwest::Method::POST,
                &format!("{}{path}", server.url),
                Some(&bearer),
                Some("application/json"),
                Some(
                    br#"{"generation":{"generation":2,"bindings":[]},"grants":[],"reseals":[]}"#
                        .to_vec(),
                ),
            )
            .await;
            assert!(status == 403 || status == 422, "{path}: {status} {body}");
        }
    }
    assert_eq!(
        generations(&sqlite_dump(&dir.path().join("ductape.sqlite"))),
        vec![1]
    );
    server.stop();
}

#[tokio::test]
async fn readers_and_writers_keep_working_during_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(dir.path());
    server.setup().await;
    let admin = server.client().await;
    let want = create_many(&admin, 1500).await;
    let web = bound_key(&admin, "web", Some("web"), &[]).await;
    // Sessions opened before the rotation starts.
    let readers = vec![
        (
            server.client().await,
            want.keys().cloned().collect::<Vec<_>>(),
        ),
        (
            server.client_with(&web).await,
            in_binding(&want, Some("web"), &[]).into_iter().collect(),
        ),
    ];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (c, keys) in readers {
        let (want, stop) = (want.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut reads = 0u64;
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = &keys[(i * 7919) % keys.len()];
                i += 1;
                let got = c
                    .secrets()
                    .fetch(key)
                    .await
                    .unwrap_or_else(|e| panic!("{key}: {e}"));
                let expected = want.get(key).unwrap();
                // A writer changes S00003 meanwhile; others never change.
                if key != "S00003" {
                    assert_eq!(got.value.expose(), expected, "{key}");
                }
                reads += 1;
            }
            reads
        }));
    }
    let writer = {
        let (c, stop) = (server.client().await, stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                c.secrets()
                    .update("S00003", UpdateSecret::new().value(format!("written-{n}")))
                    .await
                    .unwrap();
                c.secrets()
                    .create(
                        CreateSecret::new(format!("NEW_{n}"), format!("new-{n}")).scope(["web"]),
                    )
                    .await
                    .unwrap();
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rotator = server.client().await;
    let report = rotator.rotate_key().await.unwrap();
    assert_eq!(report.generation, 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        assert!(t.await.unwrap() > 10, "readers read throughout");
    }
    let writes = writer.await.unwrap();
    assert!(writes > 0);
    // Everything written during the rotation is there, under the new generation.
    let dump = sqlite_dump(&dir.path().join("ductape.sqlite"));
    all_sealed_under(&dump, 2);
    let after = server.client().await;
    assert_eq!(
        after
            .secrets()
            .fetch("S00003")
            .await
            .unwrap()
            .value
            .expose(),
        format!("written-{writes}")
    );
    let wc = server.client_with(&web).await;
    for n in 1..=writes {
        assert_eq!(
            wc.secrets()
                .fetch(&format!("NEW_{n}"))
                .await
                .unwrap()
                .value
                .expose(),
            format!("new-{n}")
        );
    }
    server.stop();
}

/// kill -9 of the CLI at random points of a rotation of 10,000 secrets, several times;
/// then a run to the end: every value intact for every key that may read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_killed_at_random_points_resumes_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ductape.sqlite");
    let mut server = Server::persistent(dir.path());
    let admin_key = server.setup().await;
    let admin = server.client().await;
    let want = create_many(&admin, 10_000).await;
    let web = bound_key(&admin, "web", Some("web"), &[]).await;
    let api_prd = bound_key(&admin, "api-prd", Some("api"), &["prd"]).await;

    let run = || {
        std::process::Command::new(ductape_bin())
            .args(["workspace", "rotate-key"])
            .env("DUCTAPE_URL", &server.url)
            .env("DUCTAPE_ACCESS_KEY", &admin_key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Deterministic "random" points, spread from the start to deep in the reseal.
    let mut seed = 0x2545F4914F6CDD1Du64 ^ std::process::id() as u64;
    let mut killed_mid = 0;
    for _ in 0..4 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(100 + seed % 2500);
        let mut child = run();
        tokio::time::sleep(delay).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
        }
        child.wait().unwrap();
        let dump = sqlite_dump(&file);
        if generations(&dump).len() > 1 {
            killed_mid += 1;
        }
        // Whatever the point, every value still opens for the admin and the bound keys.
        for key in [&admin_key, &web] {
            let opened = offline_attack(&dump, key);
            let expected: BTreeSet<String> = if key == &web {
                in_binding(&want, Some("web"), &[])
            } else {
                want.keys().cloned().collect()
            };
            assert_eq!(opened, expected, "mid-rotation after {delay:?}");
        }
    }
    assert!(killed_mid > 0, "at least one kill landed mid-rotation");
    let out = run().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dump = sqlite_dump(&file);
    let current = *generations(&dump).last().unwrap();
    assert_eq!(generations(&dump).len(), 1);
    all_sealed_under(&dump, current);
    assert_eq!(dump.secrets.len(), 10_000);
    assert_eq!(offline_attack(&dump, &admin_key).len(), 10_000);
    assert_eq!(
        offline_attack(&dump, &web),
        in_binding(&want, Some("web"), &[])
    );
    assert_eq!(
        offline_attack(&dump, &api_prd),
        in_binding(&want, Some("api"), &["prd"])
    );
    let fresh = server.client().await;
    let keys: Vec<ductape::SecretKey> = want
        .keys()
        .map(|k| ductape::SecretKey::parse(k).unwrap())
        .collect();
    for chunk in keys.chunks(100) {
        for (key, got) in fresh.secrets().batch_get(chunk, None, None).await.unwrap() {
            assert_eq!(got.unwrap().value.expose(), &want[key.as_str()], "{key}");
        }
    }
    server.stop();
}

/// A rotation cut short after its first page: both generations are live. A key made then
/// reads values of both; a binding nobody used is refused until the rotation is finished;
/// the next run finishes it.
#[tokio::test]
async fn keys_made_during_a_rotation_read_both_generations() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ductape.sqlite");
    let mut server = Server::persistent(dir.path());
    server.setup().await;
    let admin = server.client().await;
    let want = create_many(&admin, 1200).await;
    bound_key(&admin, "web", Some("web"), &[]).await;

    let cut = server.client().await;
    let died = tokio::spawn(async move {
        cut.rotate_key_with_progress(|_, _| panic!("the client dies here"))
            .await
            .map(|_| ())
    })
    .await;
    assert!(died.is_err());
    let dump = sqlite_dump(&file);
    assert_eq!(generations(&dump), vec![1, 2]);
    let on_new = dump
        .secrets
        .iter()
        .filter(|(_, c)| c.starts_with("dv2.2."))
        .count();
    assert!(
        on_new > 0 && on_new < 1200,
        "{on_new} resealed before the cut"
    );

    // Same binding as an existing key: granted both generations, reads every value.
    let web2 = bound_key(&admin, "web-2", Some("web"), &[]).await;
    let c = server.client_with(&web2).await;
    for key in in_binding(&want, Some("web"), &[]) {
        assert_eq!(
            c.secrets().fetch(&key).await.unwrap().value.expose(),
            &want[&key]
        );
    }
    // A binding new to the keyring waits for the rotation to finish.
    let mut o = AccessKeyOptions::new("ops", [Permission::Read]);
    o.app = Some("ops".into());
    let e = admin.access_keys().create(o).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Conflict, "{e}");
    assert!(e.message().contains("rotation"), "{e}");

    let report = admin.rotate_key().await.unwrap();
    assert_eq!((report.generation, report.started), (2, false));
    assert_eq!(report.resealed as usize, 1200 - on_new);
    let dump = sqlite_dump(&file);
    assert_eq!(generations(&dump), vec![2]);
    assert_eq!(
        offline_attack(&dump, &web2),
        in_binding(&want, Some("web"), &[])
    );
    bound_key(&admin, "ops", Some("ops"), &[]).await;
    server.stop();
}
