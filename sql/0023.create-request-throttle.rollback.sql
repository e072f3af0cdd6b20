REVOKE ALL ON throttle_counts FROM ledger_runtime;
ALTER INDEX throttle_counts_window_ends_at RENAME TO login_failures_window_ends_at;
ALTER INDEX throttle_counts_pkey RENAME TO login_failures_pkey;
ALTER TABLE throttle_counts RENAME COLUMN attempts TO failures;
ALTER TABLE throttle_counts RENAME TO login_failures;
