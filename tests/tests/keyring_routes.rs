//! The rotation and grant routes attacked by hand (raw HTTP with bodies made by the core's
//! public functions): wrong keys, wrong generations, lying grants, reseals for the wrong
//! readers, finishing early. Each is refused with a typed error and changes nothing.

use ductape::crypto::keyring::{binding_id, Generation, Keyring};
use ductape::crypto::{sha256_hex, AccessGrants, AccessKey, SealedSecret};
use ductape::wire::Permission;
use ductape::{AccessKeyOptions, CreateSecret, SecretKey};
use ductape_e2e::{raw, Server};
use reqwest::Method;
use serde_json::{json, Value};

struct Ctx {
    server: Server,
    _dir: tempfile::TempDir,
    admin: String,
    web: AccessKey,
    web_admin: AccessKey,
    ws: String,
}

async fn ctx() -> Ctx {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(dir.path());
    let admin = server.setup().await;
    let d = server.client().await;
    for (key, scope) in [("OPEN", vec![]), ("WEB", vec!["web"]), ("API", vec!["api"])] {
        d.secrets()
            .create(CreateSecret::new(key, format!("v-{key}")).scope(scope))
            .await
            .unwrap();
    }
    let mut o = AccessKeyOptions::new("web", [Permission::Read]);
    o.app = Some("web".into());
    let web = d.access_keys().create(o).await.unwrap().key;
    let mut o = AccessKeyOptions::new("web-admin", [Permission::Admin]);
    o.app = Some("web".into());
    let web_admin = d.access_keys().create(o).await.unwrap().key;
    let ws = d.workspace().unwrap().workspace_id;
    Ctx {
        server,
        _dir: dir,
        admin,
        web,
        web_admin,
        ws,
    }
}

impl Ctx {
    async fn call(&self, key: &str, method: Method, path: &str, body: Value) -> (u16, Value) {
        let bearer = key.parse::<AccessKey>().unwrap().bearer().to_string();
        raw(
            method,
            &format!("{}{path}", self.server.url),
            Some(&bearer),
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    async fn keyring(&self) -> Keyring {
        let (status, session) = self
            .call(&self.admin, Method::GET, "/v1/session", Value::Null)
            .await;
        assert_eq!(status, 200, "{session}");
        serde_json::from_value(session["keyring"].clone()).unwrap()
    }

    async fn rows(&self) -> Value {
        let (_, v) = self
            .call(
                &self.admin,
                Method::GET,
                "/v1/keyring/grantees",
                Value::Null,
            )
            .await;
        v
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn grants_can_only_be_added_by_an_admin_within_or_by_the_key_itself() {
    let c = ctx().await;
    let ring = c.keyring().await;
    let before = c.rows().await;
    let g = ring.current().generation;
    let web_id = binding_id(Some("web"), &[]);
    // A grant of the unbound binding to the web key: not its binding.
    let mut lying = AccessGrants::new(&c.web.recipient().public());
    let stranger = ductape::crypto::wrap::RecipientSecret::generate();
    lying
        .grant(&c.ws, c.web.id(), g, &binding_id(None, &[]), &stranger)
        .unwrap();
    let (status, body) = c
        .call(
            &c.web.expose(),
            Method::POST,
            "/v1/keyring/grants",
            json!({"grants": [{"id": c.web.id(), "grants": lying.to_string()}]}),
        )
        .await;
    assert_eq!((status, code(&body)), (409, "keyring_changed"), "{body}");
    // Its own binding, but to another public key.
    let mut other = AccessGrants::new(&stranger.public());
    other
        .grant(&c.ws, c.web.id(), g, &web_id, &stranger)
        .unwrap();
    let (status, body) = c
        .call(
            &c.web.expose(),
            Method::POST,
            "/v1/keyring/grants",
            json!({"grants": [{"id": c.web.id(), "grants": other.to_string()}]}),
        )
        .await;
    assert_eq!((status, code(&body)), (422, "invalid_field"), "{body}");
    // A non-admin key granting another key; a bound admin granting a key outside its binding.
    let admin_id = c.admin.parse::<AccessKey>().unwrap().id().to_owned();
    for (by, target) in [
        (c.web.expose().to_string(), admin_id.clone()),
        (c.web_admin.expose().to_string(), admin_id),
    ] {
        let (status, body) = c
            .call(
                &by,
                Method::POST,
                "/v1/keyring/grants",
                json!({"grants": [{"id": target, "grants": other.to_string()}]}),
            )
            .await;
        assert!(
            matches!((status, code(&body)), (403, "permission_denied") | (404, _)),
            "{status} {body}"
        );
    }
    // Malformed: not a grant, an empty list, unknown fields.
    for body in [
        json!({"grants": [{"id": c.web.id(), "grants": "dwk1.xc20p.x.y"}]}),
        json!({"grants": []}),
        json!({"grants": [], "extra": 1}),
    ] {
        let (status, answer) = c
            .call(&c.web.expose(), Method::POST, "/v1/keyring/grants", body)
            .await;
        assert_eq!(status, 422, "{answer}");
    }
    assert_eq!(c.rows().await, before, "nothing changed");
    assert_eq!(c.keyring().await, ring);
}

#[tokio::test]
async fn a_generation_must_come_whole_in_order_and_from_an_unbound_admin() {
    let c = ctx().await;
    let ring = c.keyring().await;
    let grantees = c.rows().await;
    let bound: Vec<(Option<String>, Vec<String>)> = grantees
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["app"].as_str().map(str::to_owned),
                serde_json::from_value(g["envs"].clone()).unwrap(),
            )
        })
        .collect();
    let (next, _) = Generation::fresh(&c.ws, 2, &bound).unwrap();
    let empty = json!({"generation": next, "grants": []});
    // Without grants for the existing keys: refused, the keys would lose access.
    let (status, body) = c
        .call(
            &c.admin,
            Method::POST,
            "/v1/keyring/generations",
            empty.clone(),
        )
        .await;
    assert_eq!((status, code(&body)), (409, "keyring_changed"), "{body}");
    // Skipping a generation; lacking the web binding; a bound admin; an upgrade key in a rotation.
    let (skip, _) = Generation::fresh(&c.ws, 5, &bound).unwrap();
    let (unbound_only, _) = Generation::fresh(&c.ws, 2, &[]).unwrap();
    for (key, body, want) in [
        (
            c.admin.clone(),
            json!({"generation": skip, "grants": []}),
            409,
        ),
        (
            c.admin.clone(),
            json!({"generation": unbound_only, "grants": []}),
            409,
        ),
        (c.web_admin.expose().to_string(), empty.clone(), 403),
        (
            c.admin.clone(),
            json!({"generation": next, "grants": [], "upgrade_key": "AAAA"}),
            422,
        ),
    ] {
        let (status, answer) = c
            .call(&key, Method::POST, "/v1/keyring/generations", body)
            .await;
        assert_eq!(status, want, "{answer}");
    }
    // A binding whose private key is not wrapped to the wider ones.
    let mut broken = next.clone();
    for b in broken.bindings.iter_mut() {
        b.wraps.clear();
    }
    let (status, answer) = c
        .call(
            &c.admin,
            Method::POST,
            "/v1/keyring/generations",
            json!({"generation": broken, "grants": []}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(c.keyring().await, ring, "nothing changed");
    // Nothing to reseal or finish outside a rotation.
    for path in ["/v1/keyring/reseal/pending", "/v1/keyring/finish"] {
        let (status, answer) = c.call(&c.admin, Method::POST, path, json!({})).await;
        assert_eq!(status, 409, "{path}: {answer}");
    }
}

#[tokio::test]
async fn reseals_must_fit_the_readers_and_finishing_early_is_refused() {
    let c = ctx().await;
    // A rotation started by hand (as a client does), not resealed yet.
    let grantees = c.rows().await;
    let grantees = grantees.as_array().unwrap();
    let bound: Vec<(Option<String>, Vec<String>)> = grantees
        .iter()
        .map(|g| {
            (
                g["app"].as_str().map(str::to_owned),
                serde_json::from_value(g["envs"].clone()).unwrap(),
            )
        })
        .collect();
    let (next, secrets) = Generation::fresh(&c.ws, 2, &bound).unwrap();
    let grants: Vec<Value> = grantees
        .iter()
        .zip(&bound)
        .map(|(g, (app, envs))| {
            let id = binding_id(app.as_deref(), envs);
            let secret = &secrets.iter().find(|(b, _)| *b == id).unwrap().1;
            let public =
                ductape::crypto::wrap::RecipientKey::parse(g["public_key"].as_str().unwrap())
                    .unwrap();
            let mut text = AccessGrants::new(&public);
            text.grant(&c.ws, g["id"].as_str().unwrap(), 2, &id, secret)
                .unwrap();
            json!({"id": g["id"], "grants": text.to_string()})
        })
        .collect();
    let (status, body) = c
        .call(
            &c.admin,
            Method::POST,
            "/v1/keyring/generations",
            json!({"generation": next, "grants": grants}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Started twice: the second is told the keyring changed (a client then resumes).
    let (status, body) = c
        .call(
            &c.admin,
            Method::POST,
            "/v1/keyring/generations",
            json!({"generation": next, "grants": grants}),
        )
        .await;
    assert_eq!((status, code(&body)), (409, "keyring_changed"), "{body}");
    let ring = c.keyring().await;
    assert!(ring.in_transition());
    // Finishing now: values are still under generation 1.
    let (status, body) = c
        .call(&c.admin, Method::POST, "/v1/keyring/finish", json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    let (_, page) = c
        .call(
            &c.admin,
            Method::POST,
            "/v1/keyring/reseal/pending",
            json!({}),
        )
        .await;
    let pending: Vec<&Value> = page["secrets"].as_array().unwrap().iter().collect();
    let api = pending.iter().find(|s| s["key"] == "API").unwrap();
    let of = sha256_hex(api["ciphertext"].as_str().unwrap());
    let g = ring.current();
    let key = SecretKey::parse("API").unwrap();
    let seal = |to: Vec<&ductape::crypto::keyring::Binding>, generation: u32| {
        SealedSecret::seal(&c.ws, &key, generation, &"changed".into(), to)
            .unwrap()
            .0
            .to_string()
    };
    let web = g.binding(&binding_id(Some("web"), &[])).unwrap();
    let unbound = g.bindings.iter().find(|b| b.is_unbound()).unwrap();
    for (ciphertext, want) in [
        (seal(vec![unbound, web], g.generation), 403), // web may not read API
        (seal(vec![], g.generation), 422),             // wrapped to nobody: not a value
        (seal(vec![unbound], 1), 409),                 // the old generation
        ("dv1.xc20p.0123456789abcdef.AAAA".to_owned(), 422),
    ] {
        let (status, body) = c
            .call(
                &c.admin,
                Method::POST,
                "/v1/keyring/reseal",
                json!({"reseals": [{"key": "API", "of": of, "ciphertext": ciphertext}]}),
            )
            .await;
        assert_eq!(status, want, "{body}");
    }
    // A bound admin may not reseal; a stale `of` is counted, not applied.
    let right = seal(vec![unbound], g.generation);
    let (status, _) = c
        .call(
            &c.web_admin.expose(),
            Method::POST,
            "/v1/keyring/reseal",
            json!({"reseals": [{"key": "API", "of": of, "ciphertext": right}]}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = c
        .call(
            &c.admin,
            Method::POST,
            "/v1/keyring/reseal",
            json!({"reseals": [{"key": "API", "of": sha256_hex("other"), "ciphertext": right}]}),
        )
        .await;
    assert_eq!(
        (status, body["added"].as_u64(), body["stale"].as_u64()),
        (200, Some(0), Some(1))
    );
    // The value is untouched; resuming finishes the rotation with every value intact.
    let d = c.server.client_with(&c.admin).await;
    assert_eq!(
        d.secrets().fetch("API").await.unwrap().value.expose(),
        "v-API"
    );
    let report = d.rotate_key().await.unwrap();
    assert_eq!((report.generation, report.started), (2, false));
    let web = c.server.client_with(&c.web.expose()).await;
    assert_eq!(
        web.secrets().fetch("WEB").await.unwrap().value.expose(),
        "v-WEB"
    );
    assert!(web.secrets().fetch("API").await.is_err());
}
