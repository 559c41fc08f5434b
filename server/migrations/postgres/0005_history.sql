-- Version history and trash. Every change keeps the version it replaces (ciphertext and
-- metadata, as the secret row held it) in `secret_versions`; a deleted secret moves to
-- `trash` with its history for a while (`--trash-days`). Both hold sealed values only,
-- and the keyring's grant and rotation scans cover them as they cover `secrets`.
-- Who made a version and what it changed (field names, never values); NULL before v4.
ALTER TABLE secrets ADD COLUMN IF NOT EXISTS changed TEXT;
ALTER TABLE secrets ADD COLUMN IF NOT EXISTS changed_by TEXT;
ALTER TABLE secrets ADD COLUMN IF NOT EXISTS changed_by_name TEXT;
ALTER TABLE secrets ADD COLUMN IF NOT EXISTS rollback_of BIGINT;

CREATE TABLE IF NOT EXISTS secret_versions (
    id              TEXT NOT NULL, -- the secret's id
    workspace_id    TEXT NOT NULL,
    key             TEXT NOT NULL,
    ciphertext      TEXT NOT NULL,
    description     TEXT,
    token_type      TEXT,
    scope           TEXT[] NOT NULL,
    envs            TEXT[] NOT NULL,
    expires_at      BIGINT,
    revoked         BOOLEAN NOT NULL,
    version         BIGINT NOT NULL,
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    changed         TEXT,
    changed_by      TEXT,
    changed_by_name TEXT,
    rollback_of     BIGINT,
    PRIMARY KEY (id, version)
);
CREATE INDEX IF NOT EXISTS secret_versions_by_key ON secret_versions (workspace_id, key COLLATE "C");

CREATE TABLE IF NOT EXISTS trash (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    key             TEXT NOT NULL,
    ciphertext      TEXT NOT NULL,
    description     TEXT,
    token_type      TEXT,
    scope           TEXT[] NOT NULL,
    envs            TEXT[] NOT NULL,
    expires_at      BIGINT,
    revoked         BOOLEAN NOT NULL,
    version         BIGINT NOT NULL,
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    changed         TEXT,
    changed_by      TEXT,
    changed_by_name TEXT,
    rollback_of     BIGINT,
    deleted_ms      BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS trash_by_key ON trash (workspace_id, key COLLATE "C", deleted_ms);
CREATE INDEX IF NOT EXISTS trash_by_time ON trash (deleted_ms);
