-- Version history and trash. Every change keeps the version it replaces (ciphertext and
-- metadata, as the secret row held it) in `secret_versions`; a deleted secret moves to
-- `trash` with its history for a while (`--trash-days`). Both hold sealed values only,
-- and the keyring's grant and rotation scans cover them as they cover `secrets`.
-- Who made a version and what it changed (field names, never values); NULL before v4.
ALTER TABLE secrets ADD COLUMN changed TEXT;
ALTER TABLE secrets ADD COLUMN changed_by TEXT;
ALTER TABLE secrets ADD COLUMN changed_by_name TEXT;
ALTER TABLE secrets ADD COLUMN rollback_of INTEGER;

CREATE TABLE secret_versions (
    id              TEXT NOT NULL, -- the secret's id
    workspace_id    TEXT NOT NULL,
    key             TEXT NOT NULL,
    ciphertext      TEXT NOT NULL,
    description     TEXT,
    token_type      TEXT,
    scope           TEXT NOT NULL,
    envs            TEXT NOT NULL,
    expires_at      INTEGER,
    revoked         INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    changed         TEXT,
    changed_by      TEXT,
    changed_by_name TEXT,
    rollback_of     INTEGER,
    PRIMARY KEY (id, version)
) STRICT;
CREATE INDEX secret_versions_by_key ON secret_versions (workspace_id, key);

CREATE TABLE trash (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    key             TEXT NOT NULL,
    ciphertext      TEXT NOT NULL,
    description     TEXT,
    token_type      TEXT,
    scope           TEXT NOT NULL,
    envs            TEXT NOT NULL,
    expires_at      INTEGER,
    revoked         INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    changed         TEXT,
    changed_by      TEXT,
    changed_by_name TEXT,
    rollback_of     INTEGER,
    deleted_ms      INTEGER NOT NULL
) STRICT;
CREATE INDEX trash_by_key ON trash (workspace_id, key, deleted_ms);
CREATE INDEX trash_by_time ON trash (deleted_ms);
