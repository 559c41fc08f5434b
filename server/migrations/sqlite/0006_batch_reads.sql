-- Schema v6: a batch read (`resolve`, `check` of many keys) is one audit event listing the
-- keys it was allowed to read, comma-separated (NULL for every other event); its refusals
-- stay events of their own.
ALTER TABLE audit ADD COLUMN batch_keys TEXT;
