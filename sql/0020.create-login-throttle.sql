-- Failed logins counted per key ('email:<lower-case email>' or 'address:<client address>'), for
-- the login throttle (ledger/login_throttle.py). Shared by every worker process and instance,
-- which in-process counters would not be. UNLOGGED: no WAL for these writes; a crash empties
-- the table, which only forgets some counts, and nothing here is a fact of the ledger.
CREATE UNLOGGED TABLE login_failures (
    key            text        PRIMARY KEY,
    failures       integer     NOT NULL,
    window_ends_at timestamptz NOT NULL   -- the count starts again after this
);

-- Finds the rows whose window has ended, to delete them a few at a time.
CREATE INDEX login_failures_window_ends_at ON login_failures (window_ends_at);
