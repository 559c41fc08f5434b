-- Schema v7: a counter of changes to the secrets table, moved by triggers inside the
-- transaction of every change (whoever makes it: this server, another process on the same
-- file, a hand-run statement). The server keeps the rows it has read in memory and serves
-- them only while the counter still holds the value it had when they were read.
CREATE TABLE secrets_generation (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    n INTEGER NOT NULL
);
INSERT INTO secrets_generation (id, n) VALUES (0, 0);
CREATE TRIGGER secrets_generation_insert AFTER INSERT ON secrets
BEGIN
    UPDATE secrets_generation SET n = n + 1 WHERE id = 0;
END;
CREATE TRIGGER secrets_generation_update AFTER UPDATE ON secrets
BEGIN
    UPDATE secrets_generation SET n = n + 1 WHERE id = 0;
END;
CREATE TRIGGER secrets_generation_delete AFTER DELETE ON secrets
BEGIN
    UPDATE secrets_generation SET n = n + 1 WHERE id = 0;
END;
