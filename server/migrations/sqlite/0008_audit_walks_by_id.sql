-- Schema v8: one index fewer written by every read. A database holds one workspace, so
-- `audit_by_workspace (workspace_id, id)` ordered the events exactly as their id does: the
-- chain's head and the audit listing walk the table itself, newest id first (their queries
-- say `+workspace_id` so that SQLite does not pick `audit_by_secret` and sort). Each read
-- event now changes two B-trees instead of three, and its commit writes one page fewer.
DROP INDEX IF EXISTS audit_by_workspace;
