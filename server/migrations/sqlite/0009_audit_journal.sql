-- Schema v9: read events are appended to a journal file first and moved into `audit` in
-- batches (server/src/storage/journal.rs). This row says how far: every segment before
-- `segment`, and its first `moved` bytes, are in the table.
CREATE TABLE audit_journal (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    segment INTEGER NOT NULL,
    moved INTEGER NOT NULL
);
