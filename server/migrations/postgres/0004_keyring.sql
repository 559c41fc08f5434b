-- Workspace format 2 (least privilege in the cryptography): the public keyring, JSON of
-- key generations and their bindings' public keys (private keys only ever wrapped).
-- NULL: a format-1 workspace (one workspace key, `dv1` envelopes).
ALTER TABLE workspaces ADD COLUMN IF NOT EXISTS keyring TEXT;
