//! Least privilege held by the cryptography (format 2): a bound key, with the whole
//! database in hand, decrypts exactly the secrets its binding may read; a scope change
//! moves who can decrypt; new keys get access without re-encrypting anything; old clients
//! are refused before they can write a value every key could open.

use ductape::crypto::{Keyring, SealedSecret};
use ductape::wire::Permission;
use ductape::{
    AccessKey, AccessKeyOptions, CreateSecret, Ductape, ErrorCode, SecretKey, UpdateSecret,
};
use ductape_e2e::stolen::{offline_attack, postgres_dump, sqlite_dump};
use ductape_e2e::{raw, PgCluster, Server};
use reqwest::Method;
use std::collections::BTreeSet;

/// Secrets across apps and environments, and keys bound in several ways.
async fn populate(d: &Ductape) -> Vec<(&'static str, String)> {
    let s = d.secrets();
    for (key, scope, envs) in [
        ("SHARED", vec![], vec![]),
        ("WEB_ANY", vec!["web"], vec![]),
        ("WEB_PRD", vec!["web"], vec!["prd"]),
        ("WEB_DEV", vec!["web"], vec!["dev"]),
        ("API_PRD", vec!["api"], vec!["prd"]),
        ("ALL_APPS_DEV", vec![], vec!["dev"]),
        ("WEB_API", vec!["web", "api"], vec!["prd", "dev"]),
    ] {
        s.create(
            CreateSecret::new(key, format!("value-of-{key}"))
                .scope(scope)
                .envs(envs),
        )
        .await
        .unwrap();
    }
    let mut keys = Vec::new();
    for (name, app, envs) in [
        ("web-prd", Some("web"), vec!["prd"]),
        ("web", Some("web"), vec![]),
        ("api-prd", Some("api"), vec!["prd"]),
        ("dev-only", None, vec!["dev"]),
    ] {
        let mut opts = AccessKeyOptions::new(name, [Permission::Read, Permission::List]);
        opts.app = app.map(str::to_owned);
        opts.envs = envs.into_iter().map(str::to_owned).collect();
        let k = d.access_keys().create(opts).await.unwrap();
        keys.push((name, k.key.expose().to_string()));
    }
    keys
}

fn expected(name: &str) -> BTreeSet<String> {
    let keys: &[&str] = match name {
        "web-prd" => &["SHARED", "WEB_ANY", "WEB_PRD", "WEB_API"],
        "web" => &[
            "SHARED",
            "WEB_ANY",
            "WEB_PRD",
            "WEB_DEV",
            "ALL_APPS_DEV",
            "WEB_API",
        ],
        "api-prd" => &["SHARED", "API_PRD", "WEB_API"],
        "dev-only" => &["SHARED", "WEB_ANY", "WEB_DEV", "ALL_APPS_DEV", "WEB_API"],
        _ => unreachable!(),
    };
    keys.iter().map(|k| k.to_string()).collect()
}

/// The same sets the server's access rules give each key over the API.
async fn readable_over_api(server: &Server, key: &str) -> BTreeSet<String> {
    let c = server.client_with(key).await;
    let mut out = BTreeSet::new();
    for s in c.secrets().fetch_all().await.unwrap() {
        if c.secrets().fetch(&s.key).await.is_ok() {
            out.insert(s.key.clone());
        }
    }
    out
}

#[tokio::test]
async fn a_bound_key_with_the_sqlite_file_opens_exactly_its_binding() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(dir.path());
    let admin = server.setup().await;
    let d = server.client().await;
    let keys = populate(&d).await;
    for (name, key) in &keys {
        assert_eq!(
            readable_over_api(&server, key).await,
            expected(name),
            "{name} over the API"
        );
    }
    server.stop();
    let dump = sqlite_dump(&dir.path().join("ductape.sqlite"));
    assert_eq!(dump.secrets.len(), 7);
    for (name, key) in &keys {
        assert_eq!(offline_attack(&dump, key), expected(name), "{name} offline");
    }
    // The unbound admin opens all; a key from another workspace opens nothing.
    assert_eq!(offline_attack(&dump, &admin).len(), 7);
    let stranger = AccessKey::generate();
    assert!(offline_attack(&dump, &stranger.expose()).is_empty());
}

#[tokio::test]
async fn a_bound_key_with_a_pg_dump_opens_exactly_its_binding() {
    let pg = PgCluster::start();
    let url = pg.database("stolen");
    let mut server = Server::postgres(&url);
    server.setup().await;
    let d = server.client().await;
    let keys = populate(&d).await;
    let dump = postgres_dump(&pg.dump("stolen"));
    assert_eq!(dump.secrets.len(), 7);
    for (name, key) in &keys {
        assert_eq!(
            offline_attack(&dump, key),
            expected(name),
            "{name} offline (pg_dump)"
        );
    }
}

#[tokio::test]
async fn moving_a_secret_to_another_app_moves_who_can_decrypt_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(dir.path());
    server.setup().await;
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("MOVING", "the-value").scope(["a"]))
        .await
        .unwrap();
    let key_of = |app: &str| {
        let mut o = AccessKeyOptions::new(app, [Permission::Read, Permission::List]);
        o.app = Some(app.to_owned());
        o
    };
    let a = d
        .access_keys()
        .create(key_of("a"))
        .await
        .unwrap()
        .key
        .expose()
        .to_string();
    let b = d
        .access_keys()
        .create(key_of("b"))
        .await
        .unwrap()
        .key
        .expose()
        .to_string();
    let file = dir.path().join("ductape.sqlite");
    let only = |k: &str| BTreeSet::from([k.to_owned()]);
    assert_eq!(offline_attack(&sqlite_dump(&file), &a), only("MOVING"));
    assert!(offline_attack(&sqlite_dump(&file), &b).is_empty());

    // The admin moves it: the client reads the value and seals it anew for app b.
    let moved = d
        .secrets()
        .update("MOVING", UpdateSecret::new().scope(["b"]))
        .await
        .unwrap();
    assert_eq!(moved.scope, vec!["b"]);
    let dump = sqlite_dump(&file);
    assert!(
        offline_attack(&dump.current_only(), &a).is_empty(),
        "a keeps nothing of the current value"
    );
    assert_eq!(offline_attack(&dump.current_only(), &b), only("MOVING"));
    // Version 1 stays sealed for the readers it had (a read it then); version 2 is b's.
    assert_eq!(offline_attack(&dump, &a), only("MOVING"));
    d.secrets()
        .update("MOVING", UpdateSecret::new().value("changed"))
        .await
        .unwrap();
    let dump = sqlite_dump(&file);
    let history: Vec<_> = dump.secrets[dump.current..].to_vec();
    assert_eq!(history.len(), 2);
    let opened_by_a = ductape_e2e::stolen::offline_attack(
        &ductape_e2e::stolen::Dump {
            secrets: vec![history[1].clone()],
            ..dump.current_only()
        },
        &a,
    );
    assert!(
        opened_by_a.is_empty(),
        "a opens nothing written after the move"
    );
    let bc = server.client_with(&b).await;
    assert_eq!(
        bc.secrets().fetch("MOVING").await.unwrap().value.expose(),
        "changed"
    );
    let ac = server.client_with(&a).await;
    assert!(ac.secrets().fetch("MOVING").await.is_err());

    // A raw scope change without a value sealed for the new readers is refused, unchanged.
    let (status, body) = raw(
        Method::PATCH,
        &format!("{}/v1/secrets/MOVING", server.url),
        Some(&server.bearer()),
        Some("application/json"),
        Some(br#"{"scope": ["a"]}"#.to_vec()),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(offline_attack(&sqlite_dump(&file), &b), only("MOVING"));
    server.stop();
}

#[tokio::test]
async fn the_server_refuses_values_sealed_for_the_wrong_readers() {
    let server = Server::dev();
    let d = server.client().await;
    let mut o = AccessKeyOptions::new("web", [Permission::Read]);
    o.app = Some("web".into());
    d.access_keys().create(o).await.unwrap();
    let session: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/session", server.url))
        .bearer_auth(server.bearer())
        .header(ductape::crypto::keyring::FORMAT_HEADER, "2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ring: Keyring = serde_json::from_value(session["keyring"].clone()).unwrap();
    let g = ring.current();
    let ws = session["workspace"]["workspace_id"].as_str().unwrap();
    let key = SecretKey::parse("API_ONLY").unwrap();
    let seal = |to: Vec<&ductape::crypto::keyring::Binding>| {
        SealedSecret::seal(ws, &key, g.generation, &"v".into(), to)
            .unwrap()
            .0
            .to_string()
    };
    let url = format!("{}/v1/secrets", server.url);
    let web = g.bindings.iter().find(|b| !b.is_unbound()).unwrap();
    // An api secret wrapped to web too (which may not read it): 403, nothing written.
    let too_wide = seal(g.bindings.iter().collect());
    // A web secret not wrapped to the unbound binding (admins could not read it): 409.
    let too_narrow = seal(vec![web]);
    for (ciphertext, scope, status) in [(too_wide, "api", 403), (too_narrow, "web", 409)] {
        let body =
            serde_json::json!({"key": "API_ONLY", "ciphertext": ciphertext, "scope": [scope]});
        let (got, resp) = raw(
            Method::POST,
            &url,
            Some(&server.bearer()),
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
        .await;
        assert_eq!(got, status, "{resp}");
    }
    assert_eq!(
        d.secrets().fetch("API_ONLY").await.unwrap_err().code(),
        ErrorCode::SecretNotFound
    );
    // A format-1 envelope (an old client) is refused with 426, as is an old client's init.
    let old = ductape::Envelope::seal(&ductape::WorkspaceKey::generate(), ws, &key, &"v".into());
    let body = serde_json::json!({"key": "API_ONLY", "ciphertext": old.to_string()});
    let (got, _) = raw(
        Method::POST,
        &url,
        Some(&server.bearer()),
        Some("application/json"),
        Some(body.to_string().into_bytes()),
    )
    .await;
    assert_eq!(got, 426);
    // An old client sends no format header.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/session", server.url))
        .bearer_auth(server.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 426);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("upgrade your Ductape client"));
}

#[tokio::test]
async fn a_new_binding_gets_the_existing_secrets_and_every_later_one() {
    let server = Server::dev();
    let d = server.client().await;
    let items: Vec<CreateSecret> = (0..1200)
        .map(|i| {
            let app = if i % 3 == 0 { "ops" } else { "other" };
            CreateSecret::new(format!("K{i:05}"), format!("v{i}")).scope([app])
        })
        .collect();
    d.secrets().create_batch(items).await.unwrap();
    let mut ticks = Vec::new();
    let mut o = AccessKeyOptions::new("ops", [Permission::Read, Permission::List]);
    o.app = Some("ops".into());
    let ops = d
        .access_keys()
        .create_with_progress(o.clone(), |done, total| ticks.push((done, total)))
        .await
        .unwrap();
    assert!(
        ticks.len() >= 2,
        "progress reported page by page: {ticks:?}"
    );
    assert_eq!(ticks.last().unwrap(), &(1200, 1200));
    let c = server.client_with(&ops.key.expose()).await;
    assert_eq!(
        c.secrets().fetch("K00003").await.unwrap().value.expose(),
        "v3"
    );
    assert_eq!(c.secrets().fetch_all().await.unwrap().len(), 400);
    // A second key of the same binding is one grant, no scan.
    let mut ticks2 = 0;
    d.access_keys()
        .create_with_progress(o, |_, _| ticks2 += 1)
        .await
        .unwrap();
    assert_eq!(ticks2, 0);
    // A secret created after the binding exists is sealed for it at once.
    d.secrets()
        .create(CreateSecret::new("LATER", "later").scope(["ops"]))
        .await
        .unwrap();
    assert_eq!(
        c.secrets().fetch("LATER").await.unwrap().value.expose(),
        "later"
    );
}
