//! The authorization matrix: every route × every kind of access key (each permission,
//! unbound and bound to an app and/or environments, deleted, missing, with a wrong secret) ×
//! secrets inside and outside the bindings, each answer compared with what one table of
//! rules (`expect`) says. Run against SQLite and PostgreSQL; prints `N requests, M escapes`.
//!
//! An escape is a request that got through (2xx) where the rules refuse it, or an answer
//! that shows what the key may not see (ciphertext, a listed name, a telling message).
//! Any escape, and any other difference from the table, fails the test.

use ductape::crypto::keyring::binding_id;
use ductape::crypto::wrap::RecipientSecret;
use ductape::crypto::{AccessGrants, Keyring, SealedSecret};
use ductape::wire::Permission;
use ductape::{AccessKey, AccessKeyOptions, CreateSecret, Ductape, SecretKey, UpdateSecret};
use ductape_e2e::{PgCluster, Server};
use reqwest::Method;
use serde_json::{json, Value};

/// The fixture secrets: key, scope, envs.
const SECRETS: [(&str, &[&str], &[&str]); 4] = [
    ("A_PRD", &["appA"], &["prd"]),
    ("A_DEV", &["appA"], &["dev"]),
    ("B_ONLY", &["appB"], &[]),
    ("OPEN", &[], &[]),
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Auth {
    Valid,
    Deleted,
    Missing,
    WrongSecret,
}

#[derive(Clone, Copy, Debug)]
struct Principal {
    name: &'static str,
    perms: &'static [Permission],
    app: Option<&'static str>,
    envs: &'static [&'static str],
    auth: Auth,
}

use Permission::{Admin, List, Read, Revoke, Write};

const PRINCIPALS: [Principal; 13] = [
    p("admin", &[Admin], None, &[], Auth::Valid),
    p("lister", &[List], None, &[], Auth::Valid),
    p("reader", &[List, Read], None, &[], Auth::Valid),
    p("writer", &[Write], None, &[], Auth::Valid),
    p("revoker", &[Revoke], None, &[], Auth::Valid),
    p(
        "a_prd_rw",
        &[List, Read, Write, Revoke],
        Some("appA"),
        &["prd"],
        Auth::Valid,
    ),
    p(
        "a_prd_read",
        &[List, Read],
        Some("appA"),
        &["prd"],
        Auth::Valid,
    ),
    p("b_read", &[List, Read], Some("appB"), &[], Auth::Valid),
    p("a_prd_admin", &[Admin], Some("appA"), &["prd"], Auth::Valid),
    p(
        "prd_writer",
        &[List, Read, Write],
        None,
        &["prd"],
        Auth::Valid,
    ),
    p("deleted", &[Admin], None, &[], Auth::Deleted),
    p("no_key", &[], None, &[], Auth::Missing),
    p("wrong_secret", &[Admin], None, &[], Auth::WrongSecret),
];

const fn p(
    name: &'static str,
    perms: &'static [Permission],
    app: Option<&'static str>,
    envs: &'static [&'static str],
    auth: Auth,
) -> Principal {
    Principal {
        name,
        perms,
        app,
        envs,
        auth,
    }
}

#[derive(Clone, Copy, Debug)]
enum Req {
    Get(usize),
    /// A conditional read (`If-None-Match: *`): 304 only where a read would succeed.
    GetIfNoneMatch(usize),
    PatchDescription(usize),
    PatchScopeToB(usize),
    PatchWiden(usize),
    Delete(usize),
    Revoke(usize),
    Restore(usize),
    Usage(usize),
    /// `GET /versions`.
    Versions(usize),
    /// `GET /versions/1`.
    GetVersion(usize),
    /// Rollback to version 1 after the admin made version 2.
    Rollback(usize),
    /// Undelete after the admin deleted it.
    Undelete(usize),
    DeletePermanent(usize),
    CreateInside,
    CreateOpen,
    CreateForB,
    CreateTaken(usize),
    BatchCreate,
    BatchGet,
    List,
    Audit,
    KeysList,
    KeyCreateUnboundAdmin,
    KeyCreateInside,
    KeyDeleteUnbound,
    Session,
    Workspace,
    KeyringGrantees,
    ResealPending,
}

impl Req {
    fn all() -> Vec<Req> {
        let mut v = Vec::new();
        for s in 0..SECRETS.len() {
            v.extend([
                Req::Get(s),
                Req::GetIfNoneMatch(s),
                Req::PatchDescription(s),
                Req::PatchScopeToB(s),
                Req::PatchWiden(s),
                Req::Delete(s),
                Req::Revoke(s),
                Req::Restore(s),
                Req::Usage(s),
                Req::CreateTaken(s),
                Req::Versions(s),
                Req::GetVersion(s),
                Req::Rollback(s),
                Req::Undelete(s),
                Req::DeletePermanent(s),
            ]);
        }
        v.extend([
            Req::CreateInside,
            Req::CreateOpen,
            Req::CreateForB,
            Req::BatchCreate,
            Req::BatchGet,
            Req::List,
            Req::Audit,
            Req::KeysList,
            Req::KeyCreateUnboundAdmin,
            Req::KeyCreateInside,
            Req::KeyDeleteUnbound,
            Req::Session,
            Req::Workspace,
            Req::KeyringGrantees,
            Req::ResealPending,
        ]);
        v
    }

    /// The permission the route needs (`None`: any valid key).
    fn needs(self) -> Option<Permission> {
        Some(match self {
            Req::Get(_) | Req::GetIfNoneMatch(_) | Req::GetVersion(_) | Req::BatchGet => Read,
            Req::List | Req::Usage(_) | Req::Versions(_) => List,
            Req::Rollback(_) | Req::Undelete(_) => Write,
            Req::PatchDescription(_)
            | Req::PatchScopeToB(_)
            | Req::PatchWiden(_)
            | Req::Delete(_)
            | Req::CreateInside
            | Req::CreateOpen
            | Req::CreateForB
            | Req::BatchCreate
            | Req::CreateTaken(_) => Write,
            Req::Revoke(_) | Req::Restore(_) => Revoke,
            Req::Audit
            | Req::KeysList
            | Req::KeyCreateUnboundAdmin
            | Req::KeyCreateInside
            | Req::KeyDeleteUnbound
            | Req::KeyringGrantees
            | Req::DeletePermanent(_)
            | Req::ResealPending => Admin,
            Req::Session | Req::Workspace => return None,
        })
    }

    /// Whether the admin changes the fixture before the request (so it is put back after,
    /// whatever the answer).
    fn sets_up(self) -> bool {
        matches!(self, Req::Rollback(_) | Req::Undelete(_))
    }

    fn changes_state(self) -> bool {
        !matches!(
            self,
            Req::Get(_)
                | Req::GetIfNoneMatch(_)
                | Req::Usage(_)
                | Req::Versions(_)
                | Req::GetVersion(_)
                | Req::BatchGet
                | Req::KeyringGrantees
                | Req::ResealPending
                | Req::List
                | Req::Audit
                | Req::KeysList
                | Req::Session
                | Req::Workspace
        )
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Principal {
    fn bound(&self) -> bool {
        self.app.is_some() || !self.envs.is_empty()
    }

    fn has(&self, need: Permission) -> bool {
        self.perms.contains(&Admin) || self.perms.contains(&need)
    }

    /// What a key may read: the DESIGN §5 scope and environment rules against its binding.
    fn sees(&self, scope: &[&str], envs: &[&str]) -> bool {
        let app_ok = self
            .app
            .is_none_or(|a| scope.is_empty() || scope.contains(&a));
        let env_ok =
            self.envs.is_empty() || envs.is_empty() || envs.iter().any(|e| self.envs.contains(e));
        app_ok && env_ok
    }

    /// What a key may write: a secret that only its app can read, in its environments only.
    fn contains(&self, scope: &[&str], envs: &[&str]) -> bool {
        let app_ok = self
            .app
            .is_none_or(|a| !scope.is_empty() && scope.iter().all(|s| *s == a));
        let env_ok = self.envs.is_empty()
            || (!envs.is_empty() && envs.iter().all(|e| self.envs.contains(e)));
        app_ok && env_ok
    }

    /// The scope and envs of a secret made "inside" this key's binding.
    fn inside(&self) -> (Vec<&'static str>, Vec<&'static str>) {
        (self.app.into_iter().collect(), self.envs.to_vec())
    }
}

/// The table: the status each principal must get for each request.
fn expect(p: &Principal, r: Req) -> u16 {
    if p.auth != Auth::Valid {
        return 401;
    }
    if r.needs().is_some_and(|n| !p.has(n)) {
        return 403;
    }
    let guarded = |s: usize, new_scope: &[&str], new_envs: &[&str]| {
        let (_, scope, envs) = SECRETS[s];
        if !p.sees(scope, envs) {
            404
        } else if !p.contains(scope, envs) || !p.contains(new_scope, new_envs) {
            403
        } else {
            200
        }
    };
    match r {
        Req::Get(s) | Req::Usage(s) | Req::Versions(s) | Req::GetVersion(s) => {
            if p.sees(SECRETS[s].1, SECRETS[s].2) {
                200
            } else {
                404
            }
        }
        Req::GetIfNoneMatch(s) => {
            if p.sees(SECRETS[s].1, SECRETS[s].2) {
                304
            } else {
                404
            }
        }
        // Reseals are for an unbound admin, and there is no rotation under way.
        Req::ResealPending => {
            if p.bound() {
                403
            } else {
                409
            }
        }
        Req::PatchDescription(s)
        | Req::Delete(s)
        | Req::Revoke(s)
        | Req::Restore(s)
        | Req::Rollback(s)
        | Req::Undelete(s)
        | Req::DeletePermanent(s) => guarded(s, SECRETS[s].1, SECRETS[s].2),
        Req::PatchScopeToB(s) => guarded(s, &["appB"], SECRETS[s].2),
        Req::PatchWiden(s) => guarded(s, &[], SECRETS[s].2),
        Req::CreateInside => 201,
        Req::CreateOpen => {
            if p.contains(&[], &[]) {
                201
            } else {
                403
            }
        }
        Req::CreateForB => {
            if p.contains(&["appB"], p.envs) {
                201
            } else {
                403
            }
        }
        Req::CreateTaken(s) => {
            if p.sees(SECRETS[s].1, SECRETS[s].2) {
                409
            } else {
                403
            }
        }
        Req::KeyCreateUnboundAdmin => {
            if p.bound() {
                403
            } else {
                201
            }
        }
        Req::KeyCreateInside => 201,
        Req::KeyDeleteUnbound => {
            if p.bound() {
                404
            } else {
                200
            }
        }
        Req::BatchCreate
        | Req::BatchGet
        | Req::List
        | Req::Audit
        | Req::KeysList
        | Req::Session
        | Req::Workspace
        | Req::KeyringGrantees => 200,
    }
}

struct Matrix {
    server: Server,
    admin: Ductape,
    /// The workspace, for sealing raw bodies: values sealed for exactly the readers their
    /// scope and envs give (the server checks who a value is wrapped to, not what it says;
    /// these are never opened).
    workspace: String,
    bearers: Vec<Option<String>>,
}

impl Matrix {
    async fn new(server: Server) -> Matrix {
        let admin = server.client().await;
        let mut bearers = Vec::new();
        for p in PRINCIPALS {
            let bearer = match p.auth {
                Auth::Missing => None,
                Auth::WrongSecret => Some(format!(
                    "{}.{}",
                    admin.access_key_info().unwrap().id,
                    "A".repeat(43)
                )),
                Auth::Valid | Auth::Deleted => {
                    let mut o = AccessKeyOptions::new(p.name, p.perms.iter().copied());
                    o.app = p.app.map(str::to_owned);
                    o.envs = strings(p.envs);
                    let made = admin.access_keys().create(o).await.unwrap();
                    if p.auth == Auth::Deleted {
                        admin.access_keys().delete(&made.info.id).await.unwrap();
                    }
                    Some(made.key.bearer().to_string())
                }
            };
            bearers.push(bearer);
        }
        let mut m = Matrix {
            server,
            admin,
            workspace: String::new(),
            bearers,
        };
        m.reset().await;
        m.workspace = m.admin.workspace().unwrap().workspace_id;
        m
    }

    /// The keyring as it is now (bindings are added as keys are made).
    async fn keyring(&self) -> Keyring {
        let (_, session) = self
            .call(
                Some(&self.server.bearer()),
                Method::GET,
                "/v1/session",
                None,
            )
            .await;
        serde_json::from_value(session["keyring"].clone()).unwrap()
    }

    /// A value of `key` sealed for the readers of this scope and these envs.
    async fn sealed(&self, key: &str, scope: &[&str], envs: &[&str]) -> String {
        let ring = self.keyring().await;
        let g = ring.current();
        let (scope, envs) = (strings(scope), strings(envs));
        SealedSecret::seal(
            &self.workspace,
            &SecretKey::parse(key).unwrap(),
            g.generation,
            &"matrix value".into(),
            g.audience(&scope, &envs),
        )
        .unwrap()
        .0
        .to_string()
    }

    /// Puts the fixture secrets back as they were (and nothing else).
    async fn reset(&self) {
        let s = self.admin.secrets();
        for existing in s.fetch_all().await.unwrap() {
            s.delete(&existing.key).await.unwrap();
        }
        for (key, scope, envs) in SECRETS {
            s.create(
                CreateSecret::new(key, format!("value of {key}"))
                    .scope(strings(scope))
                    .envs(strings(envs)),
            )
            .await
            .unwrap();
        }
    }

    async fn call(
        &self,
        bearer: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let has_body = body.is_some();
        ductape_e2e::raw(
            method,
            &format!("{}{path}", self.server.url),
            bearer,
            has_body.then_some("application/json"),
            body.map(|b| b.to_string().into_bytes()),
        )
        .await
    }

    /// A new key's body with a grant of its binding (to a throwaway key pair: the server
    /// checks whom a grant is for, never what it wraps).
    async fn key_body(&self, permissions: &[&str], app: Option<&str>, envs: &[&str]) -> Value {
        let k = AccessKey::generate();
        let mut grants = AccessGrants::new(&k.recipient().public());
        let generation = self.keyring().await.current().generation;
        let binding = binding_id(app, &strings(envs));
        grants
            .grant(
                &self.workspace,
                k.id(),
                generation,
                &binding,
                &RecipientSecret::generate(),
            )
            .unwrap();
        json!({"id": k.id(), "secret": k.secret(), "wrapped_key": grants.to_string(),
               "name": "made in the matrix", "permissions": permissions, "app": app, "envs": envs})
    }

    /// Sends one request as `p`; returns the status and the problems found in the answer
    /// beyond its status (data the key may not see).
    async fn send(&self, i: usize, r: Req) -> (u16, Vec<String>) {
        let p = &PRINCIPALS[i];
        let bearer = self.bearers[i].as_deref();
        let secret = |s: usize| SECRETS[s].0;
        let (inside_scope, inside_envs) = p.inside();
        if let Req::GetIfNoneMatch(s) = r {
            let mut req = ductape_e2e::http()
                .get(format!("{}/v1/secrets/{}", self.server.url, secret(s)))
                .header("if-none-match", "*");
            if let Some(b) = bearer {
                req = req.bearer_auth(b);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let etag = resp.headers().get("etag").is_some();
            let got: Value = resp.json().await.unwrap_or(Value::Null);
            let mut leaks = self.leaks(p, r, status, &got);
            if etag && status != 304 {
                leaks.push(format!("an ETag sent with {status}"));
            }
            return (status, leaks);
        }
        let (method, path, body) = match r {
            Req::Get(s) => (Method::GET, format!("/v1/secrets/{}", secret(s)), None),
            Req::PatchDescription(s) => (
                Method::PATCH,
                format!("/v1/secrets/{}", secret(s)),
                Some(json!({"description": "changed"})),
            ),
            Req::PatchScopeToB(s) => (
                Method::PATCH,
                format!("/v1/secrets/{}", secret(s)),
                Some(
                    json!({"scope": ["appB"], "ciphertext": self.sealed(secret(s), &["appB"], SECRETS[s].2).await}),
                ),
            ),
            Req::PatchWiden(s) => (
                Method::PATCH,
                format!("/v1/secrets/{}", secret(s)),
                Some(
                    json!({"scope": [], "ciphertext": self.sealed(secret(s), &[], SECRETS[s].2).await}),
                ),
            ),
            Req::Delete(s) => (Method::DELETE, format!("/v1/secrets/{}", secret(s)), None),
            Req::Revoke(s) => (
                Method::POST,
                format!("/v1/secrets/{}/revoke", secret(s)),
                None,
            ),
            Req::Restore(s) => (
                Method::POST,
                format!("/v1/secrets/{}/restore", secret(s)),
                None,
            ),
            Req::Usage(s) => (
                Method::GET,
                format!("/v1/secrets/{}/usage", secret(s)),
                None,
            ),
            Req::Versions(s) => (
                Method::GET,
                format!("/v1/secrets/{}/versions", secret(s)),
                None,
            ),
            Req::GetVersion(s) => (
                Method::GET,
                format!("/v1/secrets/{}/versions/1", secret(s)),
                None,
            ),
            Req::Rollback(s) => {
                self.admin
                    .secrets()
                    .update(secret(s), UpdateSecret::new().description("version 2"))
                    .await
                    .unwrap();
                (
                    Method::POST,
                    format!("/v1/secrets/{}/rollback", secret(s)),
                    Some(json!({"version": 1})),
                )
            }
            Req::Undelete(s) => {
                self.admin.secrets().delete(secret(s)).await.unwrap();
                (
                    Method::POST,
                    format!("/v1/secrets/{}/undelete", secret(s)),
                    None,
                )
            }
            Req::DeletePermanent(s) => (
                Method::DELETE,
                format!("/v1/secrets/{}?permanent=true", secret(s)),
                None,
            ),
            Req::CreateInside => (
                Method::POST,
                "/v1/secrets".into(),
                Some(
                    json!({"key": "NEW", "ciphertext": self.sealed("NEW", &inside_scope, &inside_envs).await, "scope": inside_scope, "envs": inside_envs}),
                ),
            ),
            Req::CreateOpen => (
                Method::POST,
                "/v1/secrets".into(),
                Some(json!({"key": "NEW", "ciphertext": self.sealed("NEW", &[], &[]).await})),
            ),
            Req::CreateForB => (
                Method::POST,
                "/v1/secrets".into(),
                Some(
                    json!({"key": "NEW", "ciphertext": self.sealed("NEW", &["appB"], p.envs).await, "scope": ["appB"], "envs": p.envs}),
                ),
            ),
            Req::CreateTaken(s) => (
                Method::POST,
                "/v1/secrets".into(),
                Some(
                    json!({"key": secret(s), "ciphertext": self.sealed(secret(s), &inside_scope, &inside_envs).await, "scope": inside_scope, "envs": inside_envs}),
                ),
            ),
            Req::BatchCreate => (
                Method::POST,
                "/v1/secrets/batch-create".into(),
                Some(json!({"secrets": [
                    {"key": "NEW_IN", "ciphertext": self.sealed("NEW_IN", &inside_scope, &inside_envs).await, "scope": inside_scope, "envs": inside_envs},
                    {"key": "NEW_OPEN", "ciphertext": self.sealed("NEW_OPEN", &[], &[]).await},
                    {"key": "NEW_B", "ciphertext": self.sealed("NEW_B", &["appB"], p.envs).await, "scope": ["appB"], "envs": p.envs},
                    {"key": "B_ONLY", "ciphertext": self.sealed("B_ONLY", &inside_scope, &inside_envs).await, "scope": inside_scope, "envs": inside_envs},
                ]})),
            ),
            Req::BatchGet => (
                Method::POST,
                "/v1/secrets/batch-get".into(),
                Some(json!({"keys": SECRETS.iter().map(|s| s.0).collect::<Vec<_>>()})),
            ),
            Req::List => (Method::GET, "/v1/secrets".into(), None),
            Req::Audit => (Method::GET, "/v1/audit?limit=1000".into(), None),
            Req::KeysList => (Method::GET, "/v1/access-keys".into(), None),
            Req::KeyCreateUnboundAdmin => (
                Method::POST,
                "/v1/access-keys".into(),
                Some(self.key_body(&["admin"], None, &[]).await),
            ),
            Req::KeyCreateInside => (
                Method::POST,
                "/v1/access-keys".into(),
                Some(self.key_body(&["list", "read"], p.app, p.envs).await),
            ),
            Req::KeyDeleteUnbound => {
                let victim = self
                    .admin
                    .access_keys()
                    .create(AccessKeyOptions::new("victim", [List]))
                    .await
                    .unwrap();
                (
                    Method::DELETE,
                    format!("/v1/access-keys/{}", victim.info.id),
                    None,
                )
            }
            Req::Session => (Method::GET, "/v1/session".into(), None),
            Req::Workspace => (Method::GET, "/v1/workspace".into(), None),
            Req::KeyringGrantees => (Method::GET, "/v1/keyring/grantees".into(), None),
            Req::ResealPending => (
                Method::POST,
                "/v1/keyring/reseal/pending".into(),
                Some(json!({})),
            ),
            Req::GetIfNoneMatch(_) => unreachable!("sent above"),
        };
        let (status, got) = self.call(bearer, method, &path, body).await;
        (status, self.leaks(p, r, status, &got))
    }

    /// What an answer shows that `p` may not see.
    fn leaks(&self, p: &Principal, r: Req, status: u16, got: &Value) -> Vec<String> {
        let mut found = Vec::new();
        let text = got.to_string();
        let hidden: Vec<&str> = SECRETS
            .iter()
            .filter(|(_, scope, envs)| !p.sees(scope, envs))
            .map(|s| s.0)
            .collect();
        if !(200..300).contains(&status) && ductape_e2e::carries_sealed_value(&text) {
            found.push("a refusal carries ciphertext".into());
        }
        match r {
            Req::Get(s)
            | Req::PatchDescription(s)
            | Req::PatchScopeToB(s)
            | Req::PatchWiden(s)
            | Req::Delete(s)
            | Req::Revoke(s)
            | Req::Restore(s)
            | Req::Usage(s)
            | Req::Versions(s)
            | Req::GetVersion(s)
            | Req::Rollback(s)
            | Req::DeletePermanent(s)
                if status == 404 =>
            {
                let want = format!("Secret '{}' not found", SECRETS[s].0);
                if got["error"]["message"] != want.as_str() {
                    found.push(format!("404 says more than not found: {text}"));
                }
            }
            Req::CreateTaken(_) if status == 403 && text.contains("exist") => {
                found.push(format!("the refusal confirms the name exists: {text}"));
            }
            Req::BatchCreate if status == 200 => {
                let (_, b_scope, b_envs) = SECRETS[2];
                let want = [
                    "created",
                    if p.contains(&[], &[]) {
                        "created"
                    } else {
                        "permission_denied"
                    },
                    if p.contains(&["appB"], p.envs) {
                        "created"
                    } else {
                        "permission_denied"
                    },
                    if p.sees(b_scope, b_envs) {
                        "secret_exists"
                    } else {
                        "permission_denied"
                    },
                ];
                let items = got["results"].as_array().cloned().unwrap_or_default();
                let codes: Vec<&str> = items
                    .iter()
                    .map(|i| i["error"]["code"].as_str().unwrap_or("created"))
                    .collect();
                if codes != want {
                    found.push(format!(
                        "batch create items {codes:?}, the rules say {want:?}"
                    ));
                }
                if want[3] == "permission_denied" && items[3].to_string().contains("exist") {
                    found.push(format!(
                        "a batch refusal confirms the name exists: {}",
                        items[3]
                    ));
                }
            }
            Req::BatchGet if status == 200 => {
                for item in got["results"].as_array().into_iter().flatten() {
                    let key = item["key"].as_str().unwrap_or_default();
                    if hidden.contains(&key)
                        && (!item["secret"].is_null()
                            || item["error"]["code"] != "secret_not_found")
                    {
                        found.push(format!("batch item outside the binding: {item}"));
                    }
                }
            }
            Req::List if status == 200 => {
                for s in got.as_array().into_iter().flatten() {
                    if hidden.contains(&s["key"].as_str().unwrap_or_default()) {
                        found.push(format!("listed outside the binding: {}", s["key"]));
                    }
                }
            }
            Req::GetIfNoneMatch(s) if status == 404 => {
                let want = format!("Secret '{}' not found", SECRETS[s].0);
                if got["error"]["message"] != want.as_str() {
                    found.push(format!("404 says more than not found: {text}"));
                }
            }
            Req::KeysList | Req::KeyringGrantees if status == 200 && p.bound() => {
                for k in got.as_array().into_iter().flatten() {
                    if k["app"].as_str() != p.app {
                        found.push(format!("a key outside the binding is listed: {k}"));
                    }
                }
            }
            Req::Audit if status == 200 && p.bound() => {
                for e in got["events"].as_array().into_iter().flatten() {
                    if e["app"].as_str() != p.app {
                        found.push(format!("an audit event outside the binding: {e}"));
                    }
                }
            }
            _ => {}
        }
        found
    }
}

async fn run_matrix(server: Server, backend: &str) {
    let m = Matrix::new(server).await;
    let (mut requests, mut escapes) = (0, Vec::new());
    let mut mismatches = Vec::new();
    for (i, principal) in PRINCIPALS.iter().enumerate() {
        for r in Req::all() {
            let want = expect(principal, r);
            let (got, leaks) = m.send(i, r).await;
            requests += 1;
            let who = principal.name;
            // A 304 hands over as much as a 200 (the client's copy is confirmed current).
            let through = |c: u16| (200..300).contains(&c) || c == 304;
            if through(got) && !through(want) {
                escapes.push(format!("{who} {r:?}: got {got}, the rules say {want}"));
            } else if got != want {
                mismatches.push(format!("{who} {r:?}: got {got}, the rules say {want}"));
            }
            escapes.extend(leaks.into_iter().map(|l| format!("{who} {r:?}: {l}")));
            if r.changes_state() && ((200..300).contains(&got) || r.sets_up()) {
                m.reset().await;
            }
        }
    }
    println!(
        "{backend}: {requests} requests, {} escapes, {} other mismatches",
        escapes.len(),
        mismatches.len()
    );
    assert!(
        escapes.is_empty() && mismatches.is_empty(),
        "escapes:\n{}\nmismatches:\n{}",
        escapes.join("\n"),
        mismatches.join("\n")
    );
}

#[tokio::test]
async fn no_key_escapes_its_permissions_or_binding_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(data.path());
    server.setup().await;
    run_matrix(server, "sqlite").await;
}

#[tokio::test]
async fn no_key_escapes_its_permissions_or_binding_on_postgres() {
    let pg = PgCluster::start();
    let url = pg.database("matrix");
    let mut server = Server::postgres(&url);
    server.setup().await;
    run_matrix(server, "postgres").await;
}
