-- The login throttle's counts become the counts of every throttle (login attempts per email
-- and per address, registrations per address): the same table, keys of more kinds. Attempts
-- are now counted before they are checked, so the column says attempts, not failures.
ALTER TABLE login_failures RENAME TO throttle_counts;
ALTER TABLE throttle_counts RENAME COLUMN failures TO attempts;
ALTER INDEX login_failures_pkey RENAME TO throttle_counts_pkey;
ALTER INDEX login_failures_window_ends_at RENAME TO throttle_counts_window_ends_at;

-- Not a fact of the ledger (an UNLOGGED table of counters): the service keeps it directly.
GRANT SELECT, INSERT, UPDATE, DELETE ON throttle_counts TO ledger_runtime;
