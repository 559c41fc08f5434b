-- Ductape Secrets, PostgreSQL schema v1 (the same model as SQLite's).
-- No column ever holds a plaintext value or an access-key secret: `ciphertext` is the
-- client-sealed envelope, `secret_hash` is SHA-256 of the access key's secret part.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE workspaces (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE access_keys (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    wrapped_key  TEXT NOT NULL,
    permissions  TEXT[] NOT NULL,
    app          TEXT,
    envs         TEXT[] NOT NULL,
    created_ms   BIGINT NOT NULL
);

CREATE TABLE secrets (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    key          TEXT NOT NULL,
    ciphertext   TEXT NOT NULL,
    description  TEXT,
    token_type   TEXT,
    scope        TEXT[] NOT NULL,
    envs         TEXT[] NOT NULL,
    expires_at   BIGINT,
    revoked      BOOLEAN NOT NULL DEFAULT FALSE,
    version      BIGINT NOT NULL,
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL,
    UNIQUE (workspace_id, key)
);

CREATE TABLE audit (
    id            BIGSERIAL PRIMARY KEY,
    at_ms         BIGINT NOT NULL,
    workspace_id  TEXT NOT NULL,
    access_key_id TEXT NOT NULL,
    secret_key    TEXT NOT NULL,
    action        TEXT NOT NULL,
    app           TEXT,
    env           TEXT,
    allowed       BOOLEAN NOT NULL,
    reason        TEXT
);

CREATE INDEX audit_by_secret ON audit (workspace_id, secret_key, id);
