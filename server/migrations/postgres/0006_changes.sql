-- The change feed (`GET /v1/events`): one row per new version of a secret or deletion,
-- written in the change's transaction; metadata only (never a value or ciphertext). Scope
-- and envs are the secret's at the change, to filter the feed by an access key's binding.
-- Pruned by age; a client resuming from a pruned id is told to reset.
CREATE TABLE IF NOT EXISTS changes (
    id           BIGSERIAL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    key          TEXT NOT NULL,
    version      BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    scope        TEXT[] NOT NULL,
    envs         TEXT[] NOT NULL,
    at_ms        BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_workspace ON changes (workspace_id, id);
CREATE INDEX IF NOT EXISTS changes_by_time ON changes (at_ms);
