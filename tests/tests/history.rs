//! Version history, rollback and the trash, against a real server: every change kept as
//! ciphertext, any version fetched and decrypted in the client under the rules of a read,
//! rollbacks as new versions (copied by the server, or resealed by the client when the
//! readers changed), retention, undelete, and the keyring's scans over history and trash.

use ductape::wire::{AuditQuery, Permission, SecretStatus};
use ductape::{AccessKeyOptions, CreateSecret, Ductape, ErrorCode, UpdateSecret};
use ductape_e2e::stolen::{offline_attack, sqlite_dump};
use ductape_e2e::Server;

async fn key_with(
    server: &Server,
    d: &Ductape,
    name: &str,
    perms: &[Permission],
    app: Option<&str>,
    envs: &[&str],
) -> Ductape {
    let mut o = AccessKeyOptions::new(name, perms.iter().copied());
    o.app = app.map(str::to_owned);
    o.envs = envs.iter().map(|e| e.to_string()).collect();
    let created = d.access_keys().create(o).await.unwrap();
    server.client_with(created.key.expose().as_str()).await
}

async fn write_versions(d: &Ductape, key: &str, n: usize) {
    d.secrets()
        .create(CreateSecret::new(key, "value-1").scope(["web"]))
        .await
        .unwrap();
    for v in 2..=n {
        d.secrets()
            .update(key, UpdateSecret::new().value(format!("value-{v}")))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn every_version_decrypts_to_the_value_written_then() {
    let server = Server::dev();
    let d = server.client().await;
    write_versions(&d, "TOKEN", 20).await;
    // A metadata change is a version too, with the fields it changed and no value.
    d.secrets()
        .update("TOKEN", UpdateSecret::new().description("rotated by hand"))
        .await
        .unwrap();
    for v in 1..=20 {
        let got = d.secrets().fetch_version("TOKEN", v).await.unwrap();
        assert_eq!(got.value.expose(), format!("value-{v}"), "version {v}");
        assert_eq!(got.record.version, v);
    }
    let v21 = d.secrets().fetch_version("TOKEN", 21).await.unwrap();
    assert_eq!(v21.value.expose(), "value-20");
    assert_eq!(v21.record.description.as_deref(), Some("rotated by hand"));
    let versions = d.secrets().versions("TOKEN").await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        (1..=21).rev().collect::<Vec<_>>()
    );
    assert!(versions[0].current && versions[1..].iter().all(|v| !v.current));
    assert_eq!(versions[0].action.as_deref(), Some("update"));
    assert_eq!(versions[0].fields, ["description"]);
    assert_eq!(versions[1].fields, ["value"]);
    assert_eq!(versions[20].action.as_deref(), Some("create"));
    assert_eq!(versions[20].fields, ["scope", "value"]);
    assert!(versions
        .iter()
        .all(|v| v.access_key_name.as_deref() == Some("dev-admin") || v.access_key_name.is_some()));
    // Paged: 8 at a time, newest first, no gaps or repeats.
    let mut seen = Vec::new();
    let mut q = ductape::wire::VersionQuery {
        limit: Some(8),
        cursor: None,
    };
    loop {
        let page = d.secrets().versions_page("TOKEN", &q).await.unwrap();
        seen.extend(page.versions.iter().map(|v| v.version));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, (1..=21).rev().collect::<Vec<_>>());
    // A version never made, and nonsense, are clear errors.
    let e = d.secrets().fetch_version("TOKEN", 99).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::SecretNotFound);
    assert!(e.message().contains("no version 99"), "{e}");
    let e = d.secrets().fetch_version("TOKEN", 0).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidField);
    // No value in the listing or the audit trail, ever.
    let listing = serde_json::to_string(&versions).unwrap();
    assert!(!listing.contains("value-") && !ductape_e2e::carries_sealed_value(&listing));
}

#[tokio::test]
async fn rollback_makes_a_new_version_with_the_old_value_and_is_audited() {
    let server = Server::dev();
    let d = server.client().await;
    write_versions(&d, "DB_PASSWORD", 10).await;
    let record = d.secrets().rollback("DB_PASSWORD", 3).await.unwrap();
    assert_eq!(record.version, 11);
    assert_eq!(
        d.secrets()
            .fetch("DB_PASSWORD")
            .await
            .unwrap()
            .value
            .expose(),
        "value-3"
    );
    let versions = d.secrets().versions("DB_PASSWORD").await.unwrap();
    assert_eq!(versions.len(), 11);
    assert_eq!(versions[0].action.as_deref(), Some("rollback"));
    assert_eq!(versions[0].rollback_of, Some(3));
    // v10 is still there: history is never rewritten.
    assert_eq!(
        d.secrets()
            .fetch_version("DB_PASSWORD", 10)
            .await
            .unwrap()
            .value
            .expose(),
        "value-10"
    );
    let audit = d
        .audit(&AuditQuery {
            secret_key: Some("DB_PASSWORD".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let rb = audit
        .events
        .iter()
        .find(|e| e.action == "rollback")
        .expect("a rollback event");
    assert!(rb.allowed);
    assert_eq!(rb.detail.as_deref(), Some("source=3"));
    // Stale If-Match: refused, nothing written.
    let e = d
        .secrets()
        .rollback_if_version("DB_PASSWORD", 5, Some(10))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::VersionConflict);
    let ok = d
        .secrets()
        .rollback_if_version("DB_PASSWORD", 5, Some(11))
        .await
        .unwrap();
    assert_eq!(ok.version, 12);
    // Rolling back to the current version, or to one never made: clear refusals.
    let e = d.secrets().rollback("DB_PASSWORD", 12).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Conflict);
    let e = d.secrets().rollback("DB_PASSWORD", 40).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::SecretNotFound);
}

#[tokio::test]
async fn access_rules_hold_for_versions_and_rollback() {
    let server = Server::dev();
    let d = server.client().await;
    // Scoped to web at v1, widened to web+api with a new value at v2.
    d.secrets()
        .create(CreateSecret::new("SHARED", "web-only").scope(["web"]))
        .await
        .unwrap();
    d.secrets()
        .update(
            "SHARED",
            UpdateSecret::new().value("both").scope(["web", "api"]),
        )
        .await
        .unwrap();
    d.secrets()
        .create(CreateSecret::new("WEB_ONLY", "w1").scope(["web"]))
        .await
        .unwrap();
    d.secrets()
        .update("WEB_ONLY", UpdateSecret::new().value("w2"))
        .await
        .unwrap();
    let api = key_with(
        &server,
        &d,
        "api-reader",
        &[Permission::Read, Permission::List, Permission::Write],
        Some("api"),
        &[],
    )
    .await;
    // The api key reads v2 but not v1, which was never within its binding.
    assert_eq!(
        api.secrets()
            .fetch_version("SHARED", 2)
            .await
            .unwrap()
            .value
            .expose(),
        "both"
    );
    let e = api.secrets().fetch_version("SHARED", 1).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::SecretNotFound);
    // A secret outside the binding: its history does not exist for this key.
    for e in [
        api.secrets()
            .fetch_version("WEB_ONLY", 1)
            .await
            .unwrap_err(),
        api.secrets().versions("WEB_ONLY").await.unwrap_err(),
        api.secrets().rollback("WEB_ONLY", 1).await.unwrap_err(),
        api.secrets().undelete("WEB_ONLY").await.unwrap_err(),
    ] {
        assert_eq!(e.code(), ErrorCode::SecretNotFound, "{e}");
    }
    // Rolling SHARED back to v1 (sealed for web only) reseals it for web and api: the
    // server cannot copy it, the admin client seals it anew.
    let rb = d.secrets().rollback("SHARED", 1).await.unwrap();
    assert_eq!(rb.scope, ["web", "api"]);
    assert_eq!(
        api.secrets().fetch("SHARED").await.unwrap().value.expose(),
        "web-only"
    );
    // Read-only keys cannot roll back or undelete; list-less keys cannot list versions.
    let reader = key_with(&server, &d, "reader", &[Permission::Read], None, &[]).await;
    for e in [
        reader.secrets().rollback("SHARED", 2).await.unwrap_err(),
        reader.secrets().undelete("SHARED").await.unwrap_err(),
        reader.secrets().versions("SHARED").await.unwrap_err(),
    ] {
        assert_eq!(e.code(), ErrorCode::PermissionDenied, "{e}");
    }
    // A revoked secret's old versions are not readable either.
    d.secrets().revoke("WEB_ONLY").await.unwrap();
    let e = d.secrets().fetch_version("WEB_ONLY", 1).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::SecretRevoked);
    let listed = d.secrets().versions("WEB_ONLY").await.unwrap();
    assert_eq!(listed[0].action.as_deref(), Some("revoke"));
    assert_eq!(listed[0].status, SecretStatus::Revoked);
    // Refused reads of versions are in the audit trail with the real reason.
    let audit = d
        .audit(&AuditQuery {
            secret_key: Some("SHARED".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(audit.events.iter().any(|e| e.action == "read"
        && !e.allowed
        && e.detail.as_deref() == Some("version=1")
        && e.reason.as_deref() == Some("that version was outside the access key's binding")));
}

#[tokio::test]
async fn retention_keeps_the_newest_versions_and_always_the_current_one() {
    let server = Server::dev_with(&["--max-versions", "5"]);
    let d = server.client().await;
    write_versions(&d, "API_KEY", 20).await;
    let versions = d.secrets().versions("API_KEY").await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [20, 19, 18, 17, 16]
    );
    assert!(versions[0].current);
    assert_eq!(
        d.secrets()
            .fetch_version("API_KEY", 16)
            .await
            .unwrap()
            .value
            .expose(),
        "value-16"
    );
    let e = d.secrets().fetch_version("API_KEY", 15).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::SecretNotFound);
    let e = d.secrets().rollback("API_KEY", 3).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::SecretNotFound);
}

#[tokio::test]
async fn deleted_secrets_wait_in_the_trash_and_come_back_with_their_history() {
    let server = Server::dev();
    let d = server.client().await;
    write_versions(&d, "OLD", 3).await;
    assert!(d.secrets().delete("OLD").await.unwrap());
    // Gone for reads, and its name free again.
    assert_eq!(
        d.secrets().fetch("OLD").await.unwrap_err().code(),
        ErrorCode::SecretNotFound
    );
    assert_eq!(
        d.secrets().versions("OLD").await.unwrap_err().code(),
        ErrorCode::SecretNotFound
    );
    d.secrets()
        .create(CreateSecret::new("OLD", "newcomer"))
        .await
        .unwrap();
    let e = d.secrets().undelete("OLD").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Conflict);
    assert!(e.message().contains("delete that one first"), "{e}");
    // The newcomer goes to the trash; undelete brings back the newest deletion first.
    d.secrets().delete("OLD").await.unwrap();
    let back = d.secrets().undelete("OLD").await.unwrap();
    assert_eq!(back.version, 2);
    assert_eq!(
        d.secrets().fetch("OLD").await.unwrap().value.expose(),
        "newcomer"
    );
    d.secrets().delete_permanently("OLD", None).await.unwrap();
    let back = d.secrets().undelete("OLD").await.unwrap();
    assert_eq!(back.version, 4, "the first OLD, v3, undeleted as v4");
    assert_eq!(
        d.secrets().fetch("OLD").await.unwrap().value.expose(),
        "value-3"
    );
    let versions = d.secrets().versions("OLD").await.unwrap();
    assert_eq!(versions.len(), 4);
    assert_eq!(versions[0].action.as_deref(), Some("undelete"));
    assert_eq!(
        d.secrets()
            .fetch_version("OLD", 1)
            .await
            .unwrap()
            .value
            .expose(),
        "value-1"
    );
    // Permanent deletes are for admins only, and leave nothing to undelete.
    let writer = key_with(
        &server,
        &d,
        "writer",
        &[Permission::Write, Permission::Read],
        None,
        &[],
    )
    .await;
    let e = writer
        .secrets()
        .delete_permanently("OLD", None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PermissionDenied);
    assert!(d.secrets().delete_permanently("OLD", None).await.unwrap());
    let e = d.secrets().undelete("OLD").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::SecretNotFound);
    assert!(e.message().contains("not in the trash"), "{e}");
}

#[tokio::test]
async fn the_trash_expires() {
    let server = Server::dev_with(&["--trash-seconds", "1"]);
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("BRIEF", "v"))
        .await
        .unwrap();
    d.secrets().delete("BRIEF").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let e = d.secrets().undelete("BRIEF").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::SecretNotFound);
    // `--trash-days 0`: every delete is permanent.
    let server = Server::dev_with(&["--trash-days", "0"]);
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("GONE", "v"))
        .await
        .unwrap();
    d.secrets().delete("GONE").await.unwrap();
    let e = d.secrets().undelete("GONE").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::SecretNotFound);
}

/// History and trash are sealed values too: a new key's grant scan covers them (it can
/// read earlier versions within its binding), and a rotation reseals them, so a deleted
/// key with a stolen database opens none of them afterwards.
#[tokio::test]
async fn grants_and_rotation_cover_history_and_trash() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(dir.path());
    server.setup().await;
    let d = server.client().await;
    write_versions(&d, "WEB_TOKEN", 4).await;
    write_versions(&d, "TRASHED", 2).await;
    d.secrets().delete("TRASHED").await.unwrap();
    let leaked = {
        let mut o = AccessKeyOptions::new("leaked", [Permission::Read, Permission::Write]);
        o.app = Some("web".into());
        d.access_keys().create(o).await.unwrap()
    };
    let leaked_text = leaked.key.expose().to_string();
    let leaked_client = server.client_with(&leaked_text).await;
    // Granted every kept version of what it may read, and the trash.
    assert_eq!(
        leaked_client
            .secrets()
            .fetch_version("WEB_TOKEN", 1)
            .await
            .unwrap()
            .value
            .expose(),
        "value-1"
    );
    leaked_client.secrets().undelete("TRASHED").await.unwrap();
    d.secrets().delete("TRASHED").await.unwrap();
    let db = dir.path().join("ductape.sqlite");
    let before = offline_attack(&sqlite_dump(&db), &leaked_text);
    assert!(before.contains("WEB_TOKEN") && before.contains("TRASHED"));
    // Delete the leaked key and rotate: history and trash resealed, nothing opens.
    d.access_keys().delete(&leaked.info.id).await.unwrap();
    d.rotate_key().await.unwrap();
    let dump = sqlite_dump(&db);
    // WEB_TOKEN: v4 and three earlier; TRASHED: v3 in the trash, v1 and v2 kept.
    assert_eq!(dump.secrets.len(), 4 + 3);
    let ring = ductape::crypto::Keyring::parse(&dump.keyring).unwrap();
    for (key, text) in &dump.secrets {
        let sealed = ductape::crypto::SealedSecret::parse(text).unwrap();
        assert_eq!(sealed.generation, ring.current().generation, "{key}");
    }
    assert!(offline_attack(&dump, &leaked_text).is_empty());
    // The admin still reads every version, and rolls back across generations by copy.
    for v in 1..=4 {
        assert_eq!(
            d.secrets()
                .fetch_version("WEB_TOKEN", v)
                .await
                .unwrap()
                .value
                .expose(),
            format!("value-{v}")
        );
    }
    d.secrets().rollback("WEB_TOKEN", 2).await.unwrap();
    assert_eq!(
        d.secrets().fetch("WEB_TOKEN").await.unwrap().value.expose(),
        "value-2"
    );
    d.secrets().undelete("TRASHED").await.unwrap();
    assert_eq!(
        d.secrets().fetch("TRASHED").await.unwrap().value.expose(),
        "value-2"
    );
    // A canary through every history operation: in no file of the database, no log line.
    let canary = "canary-7f3a-history-plaintext";
    d.secrets()
        .create(CreateSecret::new("CANARY", canary))
        .await
        .unwrap();
    d.secrets()
        .update("CANARY", UpdateSecret::new().value("other"))
        .await
        .unwrap();
    d.secrets().rollback("CANARY", 1).await.unwrap();
    assert_eq!(
        d.secrets()
            .fetch_version("CANARY", 3)
            .await
            .unwrap()
            .value
            .expose(),
        canary
    );
    d.secrets().delete("CANARY").await.unwrap();
    d.secrets().undelete("CANARY").await.unwrap();
    assert!(!format!("{:?}", d.secrets().versions("CANARY").await.unwrap()).contains(canary));
    server.stop();
    assert!(ductape_e2e::files_containing(dir.path(), canary.as_bytes()).is_empty());
    assert!(!server.logs().contains(canary));
}
