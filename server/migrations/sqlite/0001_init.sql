-- Ductape Secrets, SQLite schema v1.
-- No column ever holds a plaintext value or an access-key secret: `ciphertext` is the
-- client-sealed envelope, `secret_hash` is SHA-256 of the access key's secret part.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE workspaces (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE access_keys (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    wrapped_key  TEXT NOT NULL,
    permissions  TEXT NOT NULL, -- JSON array
    app          TEXT,
    envs         TEXT NOT NULL, -- JSON array
    created_ms   INTEGER NOT NULL
) STRICT;

CREATE TABLE secrets (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    key          TEXT NOT NULL,
    ciphertext   TEXT NOT NULL,
    description  TEXT,
    token_type   TEXT,
    scope        TEXT NOT NULL, -- JSON array
    envs         TEXT NOT NULL, -- JSON array
    expires_at   INTEGER,
    revoked      INTEGER NOT NULL DEFAULT 0,
    version      INTEGER NOT NULL,
    created_ms   INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL,
    UNIQUE (workspace_id, key)
) STRICT;

CREATE TABLE audit (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms         INTEGER NOT NULL,
    workspace_id  TEXT NOT NULL,
    access_key_id TEXT NOT NULL,
    secret_key    TEXT NOT NULL,
    action        TEXT NOT NULL,
    app           TEXT,
    env           TEXT,
    allowed       INTEGER NOT NULL,
    reason        TEXT
) STRICT;

CREATE INDEX audit_by_secret ON audit (workspace_id, secret_key, id);
