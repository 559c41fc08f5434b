//! PostgreSQL backend: a connection pool, one transaction per write, `SELECT ... FOR UPDATE`
//! for read-modify-write, and migrations serialised by an advisory lock so that several
//! servers can start against one database at once.
//!
//! TLS follows the URL's `sslmode` (`disable`, `prefer` (the default), `require`) with rustls:
//! the server's certificate is verified against the public roots plus an optional private CA.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    check_sealed, is_last_admin, last_admin_key, name_taken_again, no_such_access_key,
    not_in_trash, reseals, stored_keyring, AuditEvent, Change, ChangeRow, Check, Deletion,
    Inserted, KeyringChange, Modify, Retention, Storage, StoredAccessKey, StoredSecret, Workspace,
};
use crate::error::ApiError;
use ductape::audit::GENESIS;
use ductape::crypto::Keyring;
use ductape::wire::{AuditEntry, AuditQuery, Permission};
use ductape::{ErrorCode, SecretKey, TokenType};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_audit_chain.sql"),
    include_str!("../../migrations/postgres/0003_listing_index.sql"),
    include_str!("../../migrations/postgres/0004_keyring.sql"),
    include_str!("../../migrations/postgres/0005_history.sql"),
    include_str!("../../migrations/postgres/0006_changes.sql"),
    include_str!("../../migrations/postgres/0007_batch_reads.sql"),
];
/// Arbitrary constant naming the migration lock.
const MIGRATION_LOCK: i64 = 0x0064_7563_7461_7065; // "ductape"
/// Arbitrary constant naming the lock that serialises appends to the audit chain.
const AUDIT_LOCK: i64 = 0x0064_7563_7461_7066;
/// How long any database step may take before the request gets 503 `unavailable`; a hung
/// or unreachable database must never hang a request.
pub const DB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone)]
pub struct PostgresStorage {
    pool: Pool,
}

fn db(e: tokio_postgres::Error) -> ApiError {
    // A statement the database cancelled (statement_timeout) or a lost connection is the
    // database being unavailable, not a bug: 503 with Retry-After.
    if e.is_closed() || e.code() == Some(&SqlState::QUERY_CANCELED) {
        return unavailable(&e);
    }
    ApiError::internal(format!("database error: {e}"))
}

fn unavailable(why: &dyn std::fmt::Display) -> ApiError {
    ApiError::unavailable("the database is unavailable: try again shortly", why)
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

impl PostgresStorage {
    /// Connects (`postgres://user:password@host:port/db?sslmode=require`) and runs pending
    /// migrations. `ca_pem`: extra trusted root certificates for the database's TLS.
    pub async fn connect(url: &str, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        // Never echo the URL: it may hold a password.
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DB_TIMEOUT);
        }
        // The database ends a slow statement itself; a hung one is caught by `timed`.
        let options = config.get_options().unwrap_or("").to_owned();
        config.options(format!(
            "{options} -c statement_timeout={}",
            DB_TIMEOUT.as_millis()
        ));
        config.keepalives(true);
        let manager = Manager::from_config(
            config,
            tls_connector(ca_pem)?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(DB_TIMEOUT))
            .create_timeout(Some(DB_TIMEOUT))
            .recycle_timeout(Some(DB_TIMEOUT))
            .build()
            .map_err(|e| format!("cannot create the PostgreSQL pool: {e}"))?;
        let storage = PostgresStorage { pool };
        storage.migrate().await?;
        Ok(storage)
    }

    async fn migrate(&self) -> Result<(), String> {
        let mut c = self
            .pool
            .get()
            .await
            .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
        let tx = c.transaction().await.map_err(|e| e.to_string())?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| e.to_string())?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS ductape_schema (version BIGINT NOT NULL)")
            .await
            .map_err(|e| e.to_string())?;
        let done: i64 = tx
            .query_opt("SELECT version FROM ductape_schema", &[])
            .await
            .map_err(|e| e.to_string())?
            .map(|r| r.get(0))
            .unwrap_or(0);
        if done as usize > MIGRATIONS.len() {
            return Err(format!(
                "the database is at schema version {done}, newer than this server ({}); upgrade the server",
                MIGRATIONS.len()
            ));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
            tx.batch_execute(sql)
                .await
                .map_err(|e| format!("migration {} failed: {e}", i + 1))?;
        }
        tx.execute("DELETE FROM ductape_schema", &[])
            .await
            .map_err(|e| e.to_string())?;
        tx.execute(
            "INSERT INTO ductape_schema (version) VALUES ($1)",
            &[&(MIGRATIONS.len() as i64)],
        )
        .await
        .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())
    }

    async fn conn(&self) -> Result<Object, ApiError> {
        self.pool
            .get()
            .await
            .map_err(|e| unavailable(&format!("no database connection: {e}")))
    }

    /// Runs one storage step with the [`DB_TIMEOUT`].
    async fn timed<T>(
        &self,
        step: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        tokio::time::timeout(DB_TIMEOUT, step)
            .await
            .unwrap_or_else(|_| Err(unavailable(&"the database did not answer in time")))
    }
}

/// rustls with the public roots and the optional private CA.
fn tls_connector(ca_pem: Option<&[u8]>) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert = cert.map_err(|e| format!("invalid database CA certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("invalid database CA certificate: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

const SECRET_COLS: &str = "id, workspace_id, key, ciphertext, description, token_type, scope, envs, expires_at, revoked, version, created_ms, updated_ms, changed, changed_by, changed_by_name, rollback_of";

/// The tables holding sealed values: a secret's current row, its earlier versions, the
/// trash. Statements over all three are made from these names only.
const SEALED_TABLES: [&str; 3] = ["secrets", "secret_versions", "trash"];

/// Inserts `s` into `table` (one of [`SEALED_TABLES`]; the trash's `deleted_ms` apart).
async fn insert_secret(
    tx: &deadpool_postgres::Transaction<'_>,
    table: &str,
    s: &StoredSecret,
    conflict: &str,
) -> Result<u64, tokio_postgres::Error> {
    let st = tx
        .prepare_cached(&format!(
            "INSERT INTO {table} ({SECRET_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) {conflict}"
        ))
        .await?;
    tx.execute(
        &st,
        &[
            &s.id,
            &s.workspace_id,
            &s.key,
            &s.ciphertext,
            &s.description,
            &s.token_type.map(TokenType::as_str),
            &s.scope,
            &s.envs,
            &s.expires_at,
            &s.revoked,
            &s.version,
            &s.created_ms,
            &s.updated_ms,
            &s.change.stored(),
            &s.change.by.as_ref().map(|b| &b.0),
            &s.change.by.as_ref().map(|b| &b.1),
            &s.change.rollback_of,
        ],
    )
    .await
}

/// Keeps `before` (the version a change replaces) in the secret's history, pruning what
/// `retention` does not keep once the secret is at `now_at`.
async fn keep_version(
    tx: &deadpool_postgres::Transaction<'_>,
    before: &StoredSecret,
    now_at: i64,
    retention: Retention,
) -> Result<(), ApiError> {
    insert_secret(
        tx,
        "secret_versions",
        before,
        "ON CONFLICT (id, version) DO NOTHING",
    )
    .await
    .map_err(db)?;
    let through = retention.pruned_through(now_at);
    if through > 0 {
        tx.execute(
            "DELETE FROM secret_versions WHERE id = $1 AND version <= $2",
            &[&before.id, &through],
        )
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// Adds `s`'s new version (or deletion) to the change feed, in the change's transaction.
async fn record_change(
    tx: &deadpool_postgres::Transaction<'_>,
    s: &StoredSecret,
    kind: &str,
) -> Result<(), ApiError> {
    let st = tx
        .prepare_cached(
            "INSERT INTO changes (workspace_id, key, version, kind, scope, envs, at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await
        .map_err(db)?;
    tx.execute(
        &st,
        &[
            &s.workspace_id,
            &s.key,
            &s.version,
            &kind,
            &s.scope,
            &s.envs,
            &ductape::ids::now_millis(),
        ],
    )
    .await
    .map(drop)
    .map_err(db)
}

/// Empties the trash of what was deleted before `before_ms`, with its history.
async fn purge(
    tx: &deadpool_postgres::Transaction<'_>,
    before_ms: i64,
) -> Result<u64, tokio_postgres::Error> {
    tx.execute(
        "DELETE FROM secret_versions WHERE id IN (SELECT id FROM trash WHERE deleted_ms < $1)",
        &[&before_ms],
    )
    .await?;
    tx.execute("DELETE FROM trash WHERE deleted_ms < $1", &[&before_ms])
        .await
}
const KEY_COLS: &str =
    "id, workspace_id, name, secret_hash, wrapped_key, permissions, app, envs, created_ms";

fn secret_row(r: &Row) -> StoredSecret {
    let token_type: Option<String> = r.get(5);
    StoredSecret {
        id: r.get(0),
        workspace_id: r.get(1),
        key: r.get(2),
        ciphertext: r.get(3),
        ciphertext_json: Default::default(),
        description: r.get(4),
        token_type: token_type.and_then(|t| TokenType::parse(&t).ok()),
        scope: r.get(6),
        envs: r.get(7),
        expires_at: r.get(8),
        revoked: r.get(9),
        version: r.get(10),
        created_ms: r.get(11),
        updated_ms: r.get(12),
        change: Change::from_stored(r.get(13), r.get(14), r.get(15), r.get(16)),
    }
}

/// The workspace's access keys, locked until the transaction ends (row locks held by any
/// server sharing the database).
async fn locked_keys(
    tx: &tokio_postgres::Transaction<'_>,
    workspace_id: &str,
) -> Result<Vec<StoredAccessKey>, ApiError> {
    Ok(tx
        .query(
            &format!("SELECT {KEY_COLS} FROM access_keys WHERE workspace_id = $1 ORDER BY created_ms, id FOR UPDATE"),
            &[&workspace_id],
        )
        .await
        .map_err(db)?
        .iter()
        .map(key_row)
        .collect())
}

fn key_row(r: &Row) -> StoredAccessKey {
    let perms: Vec<String> = r.get(5);
    StoredAccessKey {
        id: r.get(0),
        workspace_id: r.get(1),
        name: r.get(2),
        secret_hash: r.get(3),
        wrapped_key: r.get(4),
        permissions: perms.iter().filter_map(|p| Permission::parse(p)).collect(),
        app: r.get(6),
        envs: r.get(7),
        created_ms: r.get(8),
    }
}

fn perm_names(k: &StoredAccessKey) -> Vec<String> {
    k.permissions
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect()
}

async fn insert_key(
    c: &impl deadpool_postgres::GenericClient,
    k: &StoredAccessKey,
) -> Result<u64, tokio_postgres::Error> {
    c.execute(
        &format!(
            "INSERT INTO access_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ),
        &[
            &k.id,
            &k.workspace_id,
            &k.name,
            &k.secret_hash,
            &k.wrapped_key,
            &perm_names(k),
            &k.app,
            &k.envs,
            &k.created_ms,
        ],
    )
    .await
}

const AUDIT_COLS: &str = "at_ms, workspace_id, access_key_id, secret_key, action, app, env, claimed_app, claimed_env, allowed, reason, detail, prev_hash, hash, batch_keys";

/// Appends events to their workspace's chain. The advisory lock (held to the end of the
/// transaction) serialises appends across every server sharing the database.
async fn append_chained(
    tx: &deadpool_postgres::Transaction<'_>,
    events: &[AuditEvent],
) -> Result<(), tokio_postgres::Error> {
    let Some(first) = events.first() else {
        return Ok(());
    };
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])
        .await?;
    let mut prev: String = tx
        .query_opt(
            "SELECT hash FROM audit WHERE workspace_id = $1 AND hash <> '' ORDER BY id DESC LIMIT 1",
            &[&first.workspace_id],
        )
        .await?
        .map(|r| r.get(0))
        .unwrap_or_else(|| GENESIS.to_owned());
    let st = tx
        .prepare_cached(&format!(
            "INSERT INTO audit ({AUDIT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .await?;
    for e in events {
        let hash = e.chain_hash(&prev);
        tx.execute(
            &st,
            &[
                &e.at_ms,
                &e.workspace_id,
                &e.access_key_id,
                &e.secret_key,
                &e.action,
                &e.app,
                &e.env,
                &e.claimed_app,
                &e.claimed_env,
                &e.allowed,
                &e.reason,
                &e.detail,
                &prev,
                &hash,
                &e.batch_keys(),
            ],
        )
        .await?;
        prev = hash;
    }
    Ok(())
}

/// The workspace's keyring inside a write's transaction, locked against a concurrent
/// change of it (`FOR SHARE`: writes of secrets do not block each other), for
/// [`check_sealed`].
async fn keyring_of(
    tx: &deadpool_postgres::Transaction<'_>,
    ws: &str,
) -> Result<Option<String>, ApiError> {
    Ok(tx
        .query_opt(
            "SELECT keyring FROM workspaces WHERE id = $1 FOR SHARE",
            &[&ws],
        )
        .await
        .map_err(db)?
        .and_then(|r| r.get(0)))
}

async fn select_secret_for_update(
    tx: &deadpool_postgres::Transaction<'_>,
    ws: &str,
    key: &str,
) -> Result<StoredSecret, ApiError> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT {SECRET_COLS} FROM secrets WHERE workspace_id = $1 AND key = $2 FOR UPDATE"
            ),
            &[&ws, &key],
        )
        .await
        .map_err(db)?
        .ok_or_else(|| ApiError::not_found(key))?;
    Ok(secret_row(&row))
}

#[async_trait]
impl Storage for PostgresStorage {
    async fn ping(&self) -> Result<(), ApiError> {
        self.timed(async {
            let c = self.conn().await?;
            c.query_one("SELECT 1", &[]).await.map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn workspace(&self) -> Result<Option<Workspace>, ApiError> {
        self.timed(async {
            let c = self.conn().await?;
            let row = c
                .query_opt(
                    "SELECT id, name, key_id, created_ms, keyring FROM workspaces LIMIT 1",
                    &[],
                )
                .await
                .map_err(db)?;
            Ok(row.map(|r| Workspace {
                id: r.get(0),
                name: r.get(1),
                key_id: r.get(2),
                created_ms: r.get(3),
                keyring: r.get(4),
            }))
        })
        .await
    }

    async fn setup(
        &self,
        token_hash: &str,
        ws: Workspace,
        key: StoredAccessKey,
        event: AuditEvent,
    ) -> Result<(), ApiError> {
        self.timed(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(db)?;
            // Two servers sharing a database must not both accept a setup.
            tx.batch_execute("LOCK TABLE workspaces IN EXCLUSIVE MODE")
                .await
                .map_err(db)?;
            let exists: i64 = tx
                .query_one("SELECT COUNT(*) FROM workspaces", &[])
                .await
                .map_err(db)?
                .get(0);
            if exists > 0 {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "this server is already set up",
                ));
            }
            let stored: Option<String> = tx
                .query_opt(
                    "SELECT value FROM settings WHERE name = 'setup_token_hash'",
                    &[],
                )
                .await
                .map_err(db)?
                .map(|r| r.get(0));
            if !stored.is_some_and(|s| ductape::crypto::hashes_equal(&s, token_hash)) {
                return Err(ApiError::new(
                    ErrorCode::Unauthenticated,
                    "invalid setup token",
                ));
            }
            tx.execute(
                "INSERT INTO workspaces (id, name, key_id, created_ms, keyring) VALUES ($1, $2, $3, $4, $5)",
                &[&ws.id, &ws.name, &ws.key_id, &ws.created_ms, &ws.keyring],
            )
            .await
            .map_err(db)?;
            insert_key(&tx, &key).await.map_err(db)?;
            tx.execute("DELETE FROM settings WHERE name = 'setup_token_hash'", &[])
                .await
                .map_err(db)?;
            append_chained(&tx, &[event]).await.map_err(db)?;
            tx.commit().await.map_err(db)
        })
        .await
    }

    async fn offer_setup_token(&self, token_hash: &str, replace: bool) -> Result<bool, ApiError> {
        let sql = if replace {
            "INSERT INTO settings (name, value) VALUES ('setup_token_hash', $1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value"
        } else {
            "INSERT INTO settings (name, value) VALUES ('setup_token_hash', $1)
             ON CONFLICT (name) DO NOTHING"
        };
        self.timed(async {
            let c = self.conn().await?;
            let n = c.execute(sql, &[&token_hash]).await.map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn access_key(&self, id: &str) -> Result<Option<StoredAccessKey>, ApiError> {
        self.timed(async {
            let c = self.conn().await?;
            let row = c
                .query_opt(
                    &format!("SELECT {KEY_COLS} FROM access_keys WHERE id = $1"),
                    &[&id],
                )
                .await
                .map_err(db)?;
            Ok(row.as_ref().map(key_row))
        })
        .await
    }

    async fn create_access_key(
        &self,
        key: StoredAccessKey,
        event: AuditEvent,
    ) -> Result<(), ApiError> {
        self.timed(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(db)?;
            match insert_key(&tx, &key).await {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        "an access key with that id already exists",
                    ))
                }
                Err(e) => return Err(db(e)),
            }
            append_chained(&tx, &[event]).await.map_err(db)?;
            tx.commit().await.map_err(db)
        })
        .await
    }

    async fn list_access_keys(&self, workspace_id: &str) -> Result<Vec<StoredAccessKey>, ApiError> {
        self.timed(async {
            let c = self.conn().await?;
            let rows = c
                .query(&format!("SELECT {KEY_COLS} FROM access_keys WHERE workspace_id = $1 ORDER BY created_ms, id"), &[&workspace_id])
                .await
                .map_err(db)?;
            Ok(rows.iter().map(key_row).collect())
        })
        .await
    }

    async fn delete_access_key(
        &self,
        workspace_id: &str,
        id: &str,
        check: Check<StoredAccessKey>,
        event: AuditEvent,
    ) -> Result<(), ApiError> {
        self.timed(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(db)?;
            // Locking every key of the workspace serialises concurrent deletions (on any
            // server): the second sees the first's result before counting admin keys.
            let keys = locked_keys(&tx, workspace_id).await?;
            let target = keys
                .iter()
                .find(|k| k.id == id)
                .ok_or_else(no_such_access_key)?;
            check(target)?;
            if is_last_admin(&keys, target) {
                return Err(last_admin_key());
            }
            tx.execute(
                "DELETE FROM access_keys WHERE workspace_id = $1 AND id = $2",
                &[&workspace_id, &id],
            )
            .await
            .map_err(db)?;
            append_chained(&tx, &[event]).await.map_err(db)?;
            tx.commit().await.map_err(db)
        })
        .await
    }

    async fn create_secrets(
        &self,
        items: Vec<(StoredSecret, AuditEvent)>,
    ) -> Result<Vec<Result<(), ApiError>>, ApiError> {
        self.timed(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(db)?;
            let mut done = Inserted::with_capacity(items.len());
            let ring = match items.first() {
                Some((s, _)) => stored_keyring(keyring_of(&tx, &s.workspace_id).await?)?,
                None => None,
            };
            for (s, event) in items {
                if let Err(e) = check_sealed(ring.as_ref(), &s) {
                    done.refuse(e);
                    continue;
                }
                let inserted = insert_secret(
                    &tx,
                    "secrets",
                    &s,
                    "ON CONFLICT (workspace_id, key) DO NOTHING",
                )
                .await
                .map_err(db)?;
                if inserted > 0 {
                    record_change(&tx, &s, "create").await?;
                }
                done.record(inserted > 0, &s.key, event);
            }
            append_chained(&tx, &done.events).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(done.answers)
        })
        .await
    }

    async fn list_secrets(
        &self,
        workspace_id: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<StoredSecret>, ApiError> {
        self.timed(async {
            let c = self.conn().await?;
            let limit = limit as i64;
            // Two statements, not `($2 IS NULL OR key > $2)`: that form cannot start an
            // index scan at the cursor.
            let rows = match &after {
                Some(after) => {
                    c.query(
                        &format!(
                            "SELECT {SECRET_COLS} FROM secrets WHERE workspace_id = $1
                             AND key COLLATE \"C\" > $2 ORDER BY key COLLATE \"C\" LIMIT $3"
                        ),
                        &[&workspace_id, after, &limit],
                    )
                    .await
                }
                None => {
                    c.query(
                        &format!(
                            "SELECT {SECRET_COLS} FROM secrets WHERE workspace_id = $1
                             ORDER BY key COLLATE \"C\" LIMIT $2"
                        ),
                        &[&workspace_id, &limit],
                    )
                    .await
                }
            }
            .map_err(db)?;
            Ok(rows.iter().map(secret_row).collect())
        })
        .await
    }

    async fn get_secrets(
        &self,
        workspace_id: &str,
        keys: &[SecretKey],
    ) -> Result<Vec<Arc<StoredSecret>>, ApiError> {
        let keys: Vec<&str> = keys.iter().map(SecretKey::as_str).collect();
        self.timed(async {
            let c = self.conn().await?;
            let rows = c
                .query(
                    &format!(
                        "SELECT {SECRET_COLS} FROM secrets WHERE workspace_id = $1 AND key = ANY($2)"
                    ),
                    &[&workspace_id, &keys],
                )
                .await
                .map_err(db)?;
            Ok(rows.iter().map(|r| Arc::new(secret_row(r))).collect())
        })
        .await
    }

    async fn modify_secret(
        &self,
        workspace_id: &str,
        key: &str,
        change: Modify,
        event: AuditEvent,
        retention: Retention,
    ) -> Result<StoredSecret, ApiError> {
        self.timed(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(db)?;
            let mut s = select_secret_for_update(&tx, workspace_id, key).await?;
            let before = s.clone();
            change(&mut s)?;
            if reseals(&before, &s) {
                check_sealed(stored_keyring(keyring_of(&tx, workspace_id).await?)?.as_ref(), &s)?;
            }
            if s.version != before.version {
                keep_version(&tx, &before, s.version, retention).await?;
                record_change(&tx, &s, ChangeRow::kind_of(&s)).await?;
            }
            tx.execute(
                "UPDATE secrets SET ciphertext = $1, description = $2, token_type = $3, scope = $4, envs = $5,
                 expires_at = $6, revoked = $7, version = $8, updated_ms = $9, changed = $10, changed_by = $11,
                 changed_by_name = $12, rollback_of = $13 WHERE id = $14",
                &[
                    &s.ciphertext, &s.description, &s.token_type.map(TokenType::as_str), &s.scope, &s.envs,
                    &s.expires_at, &s.revoked, &s.version, &s.updated_ms, &s.change.stored(),
                    &s.change.by.as_ref().map(|b| &b.0), &s.change.by.as_ref().map(|b| &b.1),
                    &s.change.rollback_of, &s.id,
                ],
            )
            .await
            .map_err(db)?;
            append_chained(&tx, &[event]).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(s)
        })
        .await
    }

    async fn delete_secret(
        &self,
        workspace_id: &str,
        key: &str,
        check: Check<StoredSecret>,
        event: AuditEvent,
        how: Deletion,
    ) -> Result<(), ApiError> {
        self.timed(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(db)?;
            let s = select_secret_for_update(&tx, workspace_id, key).await?;
            check(&s)?;
            match how {
                Deletion::Trash { now_ms, purge_before_ms } => {
                    tx.execute(
                        &format!("INSERT INTO trash ({SECRET_COLS}, deleted_ms) SELECT {SECRET_COLS}, $2 FROM secrets WHERE id = $1"),
                        &[&s.id, &now_ms],
                    )
                    .await
                    .map_err(db)?;
                    purge(&tx, purge_before_ms).await.map_err(db)?;
                }
                Deletion::Permanent => {
                    tx.execute("DELETE FROM secret_versions WHERE id = $1", &[&s.id])
                        .await
                        .map_err(db)?;
                }
            }
            tx.execute("DELETE FROM secrets WHERE id = $1", &[&s.id])
                .await
                .map_err(db)?;
            record_change(&tx, &s, "delete").await?;
            append_chained(&tx, &[event]).await.map_err(db)?;
            tx.commit().await.map_err(db)
        })
        .await
    }

    async fn undelete_secret(
        &self,
        workspace_id: &str,
        key: &str,
        since_ms: i64,
        change: Modify,
        event: AuditEvent,
        retention: Retention,
    ) -> Result<StoredSecret, ApiError> {
        self.timed(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(db)?;
            let trashed = tx
                .query_opt(
                    &format!(
                        "SELECT {SECRET_COLS} FROM trash WHERE workspace_id = $1 AND key = $2 AND deleted_ms >= $3
                         ORDER BY deleted_ms DESC LIMIT 1 FOR UPDATE"
                    ),
                    &[&workspace_id, &key, &since_ms],
                )
                .await
                .map_err(db)?
                .map(|r| secret_row(&r))
                .ok_or_else(|| not_in_trash(key))?;
            let mut s = trashed.clone();
            change(&mut s)?;
            keep_version(&tx, &trashed, s.version, retention).await?;
            match insert_secret(&tx, "secrets", &s, "").await {
                Ok(_) => {}
                // The unique key: a secret of that name exists (the transaction is spent).
                Err(e) if is_unique_violation(&e) => return Err(name_taken_again(key, &trashed.id)),
                Err(e) => return Err(db(e)),
            }
            tx.execute("DELETE FROM trash WHERE id = $1", &[&s.id])
                .await
                .map_err(db)?;
            record_change(&tx, &s, "undelete").await?;
            append_chained(&tx, &[event]).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(s)
        })
        .await
    }

    async fn purge_trash(&self, before_ms: i64) -> Result<u64, ApiError> {
        self.timed(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(db)?;
            let n = purge(&tx, before_ms).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(n)
        })
        .await
    }

    async fn secret_history(
        &self,
        workspace_id: &str,
        key: &str,
        before: i64,
        limit: usize,
    ) -> Result<Option<(StoredSecret, Vec<StoredSecret>)>, ApiError> {
        self.timed(async {
            let mut c = self.conn().await?;
            // One snapshot for the secret and its versions.
            let tx = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(db)?;
            let Some(current) = tx
                .query_opt(
                    &format!(
                        "SELECT {SECRET_COLS} FROM secrets WHERE workspace_id = $1 AND key = $2"
                    ),
                    &[&workspace_id, &key],
                )
                .await
                .map_err(db)?
                .map(|r| secret_row(&r))
            else {
                return Ok(None);
            };
            let older = tx
                .query(
                    &format!(
                        "SELECT {SECRET_COLS} FROM secret_versions WHERE id = $1 AND version < $2
                         ORDER BY version DESC LIMIT $3"
                    ),
                    &[&current.id, &before, &(limit as i64)],
                )
                .await
                .map_err(db)?
                .iter()
                .map(secret_row)
                .collect();
            tx.commit().await.map_err(db)?;
            Ok(Some((current, older)))
        })
        .await
    }

    async fn changes_after(
        &self,
        workspace_id: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ChangeRow>, ApiError> {
        self.timed(async {
            let c = self.conn().await?;
            let rows = c
                .query(
                    "SELECT id, key, version, kind, scope, envs, at_ms FROM changes
                     WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                    &[&workspace_id, &after, &(limit as i64)],
                )
                .await
                .map_err(db)?;
            Ok(rows
                .iter()
                .map(|r| ChangeRow {
                    id: r.get(0),
                    key: r.get(1),
                    version: r.get(2),
                    kind: r.get(3),
                    scope: r.get(4),
                    envs: r.get(5),
                    at_ms: r.get(6),
                })
                .collect())
        })
        .await
    }

    async fn change_bounds(
        &self,
        workspace_id: &str,
    ) -> Result<(Option<i64>, Option<i64>), ApiError> {
        self.timed(async {
            let c = self.conn().await?;
            let r = c
                .query_one(
                    "SELECT MIN(id), MAX(id) FROM changes WHERE workspace_id = $1",
                    &[&workspace_id],
                )
                .await
                .map_err(db)?;
            Ok((r.get(0), r.get(1)))
        })
        .await
    }

    async fn prune_changes(&self, before_ms: i64) -> Result<u64, ApiError> {
        self.timed(async {
            let c = self.conn().await?;
            c.execute("DELETE FROM changes WHERE at_ms < $1", &[&before_ms])
                .await
                .map_err(db)
        })
        .await
    }

    async fn count_sealed(&self, workspace_id: &str) -> Result<u64, ApiError> {
        self.timed(async {
            let c = self.conn().await?;
            let n: i64 = c
                .query_one(
                    "SELECT (SELECT COUNT(*) FROM secrets WHERE workspace_id = $1)
                          + (SELECT COUNT(*) FROM secret_versions WHERE workspace_id = $1)
                          + (SELECT COUNT(*) FROM trash WHERE workspace_id = $1)",
                    &[&workspace_id],
                )
                .await
                .map_err(db)?
                .get(0);
            Ok(n as u64)
        })
        .await
    }

    async fn list_sealed(
        &self,
        workspace_id: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<StoredSecret>, Option<String>), ApiError> {
        let current = self
            .list_secrets(workspace_id, after.clone(), limit)
            .await?;
        // The page ends at its last key when full; the other tables' rows of the keys up to
        // there (those of deleted secrets included) belong to it.
        let end = (current.len() == limit)
            .then(|| current.last().map(|s| s.key.clone()))
            .flatten();
        let mut rows = self
            .timed(async {
                let c = self.conn().await?;
                let after = after.unwrap_or_default();
                let mut out = Vec::new();
                for table in &SEALED_TABLES[1..] {
                    let found = c
                        .query(
                            &format!(
                                "SELECT {SECRET_COLS} FROM {table} WHERE workspace_id = $1
                                 AND key COLLATE \"C\" > $2 AND ($3::TEXT IS NULL OR key COLLATE \"C\" <= $3)"
                            ),
                            &[&workspace_id, &after, &end],
                        )
                        .await
                        .map_err(db)?;
                    out.extend(found.iter().map(secret_row));
                }
                Ok(out)
            })
            .await?;
        rows.extend(current);
        rows.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        Ok((rows, end))
    }

    async fn sealed_rows(
        &self,
        workspace_id: &str,
        keys: &[String],
    ) -> Result<Vec<StoredSecret>, ApiError> {
        self.timed(async {
            let c = self.conn().await?;
            let mut out = Vec::new();
            for table in SEALED_TABLES {
                let rows = c
                    .query(
                        &format!(
                            "SELECT {SECRET_COLS} FROM {table} WHERE workspace_id = $1 AND key = ANY($2)"
                        ),
                        &[&workspace_id, &keys],
                    )
                    .await
                    .map_err(db)?;
                out.extend(rows.iter().map(secret_row));
            }
            Ok(out)
        })
        .await
    }

    async fn update_keyring(
        &self,
        workspace_id: &str,
        change: KeyringChange,
        event: AuditEvent,
    ) -> Result<Keyring, ApiError> {
        self.timed(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(db)?;
            let stored: Option<String> = tx
                .query_opt(
                    "SELECT keyring FROM workspaces WHERE id = $1 FOR UPDATE",
                    &[&workspace_id],
                )
                .await
                .map_err(db)?
                .and_then(|r| r.get(0));
            let stored = stored_keyring(stored)?;
            // Locked: a key created or deleted meanwhile waits for this change.
            let keys = locked_keys(&tx, workspace_id).await?;
            let update = change(stored, &keys)?;
            tx.execute(
                "UPDATE workspaces SET keyring = $1 WHERE id = $2",
                &[&update.keyring.to_json(), &workspace_id],
            )
            .await
            .map_err(db)?;
            for (id, grants) in &update.grants {
                tx.execute(
                    "UPDATE access_keys SET wrapped_key = $1 WHERE workspace_id = $2 AND id = $3",
                    &[grants, &workspace_id, id],
                )
                .await
                .map_err(db)?;
            }
            append_chained(&tx, &[event]).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(update.keyring)
        })
        .await
    }

    async fn replace_ciphertexts(
        &self,
        workspace_id: &str,
        items: Vec<(String, String, String)>,
        event: AuditEvent,
    ) -> Result<Vec<bool>, ApiError> {
        self.timed(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(db)?;
            let mut done = vec![false; items.len()];
            for table in SEALED_TABLES {
                let update = tx
                    .prepare_cached(&format!(
                        "UPDATE {table} SET ciphertext = $1
                         WHERE workspace_id = $2 AND key = $3 AND ciphertext = $4"
                    ))
                    .await
                    .map_err(db)?;
                for ((key, old, new), done) in items.iter().zip(done.iter_mut()) {
                    *done |= tx
                        .execute(&update, &[new, &workspace_id, key, old])
                        .await
                        .map_err(db)?
                        > 0;
                }
            }
            append_chained(&tx, &[event]).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(done)
        })
        .await
    }

    async fn append_audit(&self, events: Vec<AuditEvent>) -> Result<(), ApiError> {
        self.timed(async {
            let mut c = self.conn().await?;
            let tx = c.transaction().await.map_err(db)?;
            append_chained(&tx, &events).await.map_err(db)?;
            tx.commit().await.map_err(db)
        })
        .await
    }

    async fn prune_audit(&self, before_ms: i64) -> Result<u64, ApiError> {
        self.timed(async {
            let c = self.conn().await?;
            c.execute("DELETE FROM audit WHERE at_ms < $1", &[&before_ms])
                .await
                .map_err(db)
        })
        .await
    }

    async fn list_audit(
        &self,
        workspace_id: &str,
        f: &AuditQuery,
    ) -> Result<Vec<AuditEntry>, ApiError> {
        self.timed(async {
            let c = self.conn().await?;
            let limit = i64::from(f.limit.unwrap_or(AuditQuery::DEFAULT_LIMIT));
            let rows = c
                .query(
                    &format!("SELECT id, {AUDIT_COLS} FROM audit WHERE workspace_id = $1
                       AND ($2::TEXT IS NULL OR secret_key = $2
                            OR strpos(',' || batch_keys || ',', ',' || $2 || ',') > 0) AND ($3::TEXT IS NULL OR access_key_id = $3)
                       AND ($4::TEXT IS NULL OR app = $4) AND ($5::TEXT IS NULL OR env = $5)
                       AND ($6::BIGINT IS NULL OR id < $6)
                     ORDER BY id DESC LIMIT $7"),
                    &[&workspace_id, &f.secret_key, &f.access_key_id, &f.app, &f.env, &f.before, &limit],
                )
                .await
                .map_err(db)?;
            Ok(rows
                .iter()
                .map(|r| {
                    AuditEvent {
                        at_ms: r.get(1),
                        workspace_id: r.get(2),
                        access_key_id: r.get(3),
                        secret_key: r.get(4),
                        action: r.get(5),
                        app: r.get(6),
                        env: r.get(7),
                        claimed_app: r.get(8),
                        claimed_env: r.get(9),
                        allowed: r.get(10),
                        reason: r.get(11),
                        detail: r.get(12),
                        keys: AuditEvent::keys_from(r.get(15)),
                    }
                    .entry(r.get(0), r.get(13), r.get(14))
                })
                .collect())
        })
        .await
    }
}
