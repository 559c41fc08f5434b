-- Schema v2: every change is audited with the access key's binding beside the caller's
-- claim, and events form a hash chain per workspace (prev_hash -> hash). Events written
-- before v2 keep an empty hash and are reported as unchained by `ductape audit verify`.
ALTER TABLE audit ADD COLUMN claimed_app TEXT;
ALTER TABLE audit ADD COLUMN claimed_env TEXT;
ALTER TABLE audit ADD COLUMN detail TEXT;
ALTER TABLE audit ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN hash TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_by_workspace ON audit (workspace_id, id);
