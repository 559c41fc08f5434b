-- Schema v10: the read-event journal is sharded (one file series per shard, appended to by
-- the threads that map to it, so that reads on many cores do not queue on one lock). A row
-- per shard says how far its journal is moved: every segment before `segment`, and its
-- first `moved` bytes, are in `audit`. Shard 0 is the journal of schema v9.
CREATE TABLE audit_journal_shards (
    id INTEGER PRIMARY KEY CHECK (id >= 0),
    segment INTEGER NOT NULL,
    moved INTEGER NOT NULL
);
INSERT INTO audit_journal_shards (id, segment, moved) SELECT id, segment, moved FROM audit_journal;
DROP TABLE audit_journal;
ALTER TABLE audit_journal_shards RENAME TO audit_journal;
