-- Listings page in bytewise key order (COLLATE "C", the same order on every backend); an
-- index in that collation lets a page start at its cursor instead of scanning up to it.
CREATE INDEX IF NOT EXISTS secrets_workspace_key_bytewise ON secrets (workspace_id, key COLLATE "C");
