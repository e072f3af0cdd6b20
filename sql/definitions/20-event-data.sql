-- The data of the account events, read in one place, and the ledger's balance rule, written
-- once: the rebuild, the as-of reads and the audit checksum all use balances_in_log(). (How
-- these files run: sql/definitions/10-event-log.sql.)

-- The streams: every event of an account, or of a user, is appended to its stream.
CREATE OR REPLACE FUNCTION account_stream(account_id bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'account-' || account_id
$$;

CREATE OR REPLACE FUNCTION user_stream(user_id bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'user-' || user_id
$$;

-- AccountOpened: {"account_id", "user_id"}.
CREATE OR REPLACE VIEW log_accounts_opened AS
SELECT position, xact_id, recorded_at, stream,
       (data->>'account_id')::bigint AS account_id, (data->>'user_id')::bigint AS user_id
FROM events
WHERE type = 'AccountOpened';

-- PaymentReceived: the delivery as received; amount is the text the provider sent.
CREATE OR REPLACE VIEW log_payments AS
SELECT position, xact_id, recorded_at, stream, transaction_id,
       (data->>'user_id')::bigint AS user_id, (data->>'account_id')::bigint AS account_id,
       (data->>'amount')::numeric AS amount
FROM events
WHERE type = 'PaymentReceived';

-- TransferMade: {"transfer_id", "user_id" (who asked), "idempotency_key", "from_account_id",
-- "to_account_id", "amount", "postings"}.
CREATE OR REPLACE VIEW log_transfers AS
SELECT position, xact_id, recorded_at, (data->>'transfer_id')::bigint AS transfer_id,
       (data->>'user_id')::bigint AS user_id, data->>'idempotency_key' AS idempotency_key,
       (data->>'from_account_id')::bigint AS from_account_id, (data->>'to_account_id')::bigint AS to_account_id,
       (data->>'amount')::numeric AS amount
FROM events
WHERE type = 'TransferMade';

-- PaymentReversed: {"reversal_id", "payment_id", "transaction_id" (the payment's), "user_id"
-- (the admin), "idempotency_key", "account_id", "amount", "reason", "postings"}.
CREATE OR REPLACE VIEW log_reversals AS
SELECT position, xact_id, recorded_at, (data->>'reversal_id')::bigint AS reversal_id,
       (data->>'payment_id')::bigint AS payment_id, (data->>'user_id')::bigint AS user_id,
       data->>'idempotency_key' AS idempotency_key, (data->>'account_id')::bigint AS account_id,
       (data->>'amount')::numeric AS amount, data->>'reason' AS reason
FROM events
WHERE type = 'PaymentReversed';

-- UserRegistered, UserUpdated (only the fields that changed) and UserDeleted, field by field:
-- a field is NULL where the event leaves it as it was. (apply_user_event() applies the same
-- data to the users view.)
CREATE OR REPLACE VIEW log_user_events AS
SELECT position, xact_id, recorded_at, stream, stream_version, type,
       (data->>'user_id')::bigint AS user_id, data->>'email' AS email, data->>'full_name' AS full_name,
       (data->>'is_admin')::boolean AS is_admin, (data->>'is_auditor')::boolean AS is_auditor
FROM events
WHERE type IN ('UserRegistered', 'UserUpdated', 'UserDeleted');

-- Whether an event is within a cut of the log: up to a position, up to a time (its
-- transaction's start, when PostgreSQL stamps recorded_at), or up to a cursor of the feed
-- (the feed's order: writing transaction, then position). NULL: no limit of that kind. One
-- expression, so that PostgreSQL inlines it and a constant NULL drops out of the plan.
CREATE OR REPLACE FUNCTION in_log_cut(
    event_position bigint, event_recorded_at timestamptz, event_xact_id xid8,
    through_position bigint, through_time timestamptz, through_xact_id xid8, through_xact_position bigint
) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (through_position IS NULL OR event_position <= through_position)
       AND (through_time IS NULL OR event_recorded_at <= through_time)
       AND (through_xact_id IS NULL
            OR (event_xact_id, event_position) <= (through_xact_id, through_xact_position))
$$;

-- The payment provider's clearing account (system_accounts, sql/0024).
CREATE OR REPLACE FUNCTION provider_clearing_account() RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT -1::bigint
$$;

-- Every posting of the log: (account, signed amount) legs of each ledger transaction, which sum
-- to zero. A PaymentReceived posts +amount to the user's account and -amount to the provider's
-- clearing account (events recorded before double entry are read so, unchanged); a transfer
-- or a reversal lists its postings in its data ("postings": [{"account_id", "amount"}, ...]),
-- and the database refuses one whose postings do not sum to zero (refuse_unbalanced()).
CREATE OR REPLACE VIEW log_postings AS
SELECT position, xact_id, recorded_at, 'payment' AS kind, transaction_id AS reference, account_id, amount
FROM log_payments
UNION ALL
SELECT position, xact_id, recorded_at, 'payment', transaction_id, provider_clearing_account(), -amount
FROM log_payments
UNION ALL
SELECT e.position, e.xact_id, e.recorded_at,
       CASE e.type WHEN 'TransferMade' THEN 'transfer' ELSE 'reversal' END,
       CASE e.type WHEN 'TransferMade' THEN 'transfer-' || (e.data->>'transfer_id')
                   ELSE 'reversal-' || (e.data->>'reversal_id') END,
       (leg->>'account_id')::bigint, (leg->>'amount')::numeric
FROM events AS e CROSS JOIN LATERAL jsonb_array_elements(e.data->'postings') AS leg
WHERE e.type IN ('TransferMade', 'PaymentReversed');

-- THE BALANCE RULE: an account's balance is the sum of its postings; a user's account exists
-- once its AccountOpened event does, a system account always. Every account within the cut,
-- with its owner (none for a system account) and its balance then. The live writes
-- (receive_payment(), transfer_money(), reverse_payment()) keep the same sums one ledger
-- transaction at a time, and `ledger replay` compares the two. The balances of all accounts
-- sum to zero.
CREATE OR REPLACE FUNCTION balances_in_log(
    through_position bigint, through_time timestamptz, through_xact_id xid8, through_xact_position bigint
) RETURNS TABLE (account_id bigint, user_id bigint, balance numeric)
LANGUAGE sql STABLE AS $$
    SELECT accounts.account_id, accounts.user_id, COALESCE(posted.balance, 0)::numeric(20,2)
    FROM (
        SELECT o.account_id, o.user_id
        FROM log_accounts_opened AS o
        WHERE in_log_cut(o.position, o.recorded_at, o.xact_id,
                         through_position, through_time, through_xact_id, through_xact_position)
        UNION ALL
        SELECT id, NULL FROM system_accounts
    ) AS accounts
    LEFT JOIN (
        SELECT p.account_id, sum(p.amount) AS balance
        FROM log_postings AS p
        WHERE in_log_cut(p.position, p.recorded_at, p.xact_id,
                         through_position, through_time, through_xact_id, through_xact_position)
        GROUP BY p.account_id
    ) AS posted ON posted.account_id = accounts.account_id
$$;

-- The same rule one posting at a time: each posting within the cut (posted_at: its event's
-- position) with the balance its account had after it (the running sum in log order), as the
-- projections keep it.
CREATE OR REPLACE FUNCTION postings_in_log(through_position bigint, through_time timestamptz)
RETURNS TABLE (posted_at bigint, kind text, reference text, account_id bigint, amount numeric,
               balance_after numeric, recorded_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT p.position, p.kind, p.reference, p.account_id, p.amount,
           sum(p.amount) OVER (PARTITION BY p.account_id ORDER BY p.position), p.recorded_at
    FROM log_postings AS p
    WHERE in_log_cut(p.position, p.recorded_at, p.xact_id, through_position, through_time, NULL, NULL)
$$;

-- The postings of the projections: every leg of every payment, transfer and reversal, with the
-- balance after it for a user's account (a system account's is not kept: see
-- ledger_balances). An account's history, newest first, is one index range per table.
CREATE OR REPLACE VIEW postings AS
SELECT account_id, id AS position, 'payment' AS kind, transaction_id, amount, balance_after, created_at
FROM payments
UNION ALL
SELECT provider_clearing_account(), id, 'payment', transaction_id, -amount, NULL, created_at
FROM payments
UNION ALL
SELECT from_account_id, position, 'transfer', 'transfer-' || id, -amount, from_balance_after, created_at
FROM transfers
UNION ALL
SELECT to_account_id, position, 'transfer', 'transfer-' || id, amount, to_balance_after, created_at
FROM transfers
UNION ALL
SELECT account_id, position, 'reversal', 'reversal-' || id, -amount, balance_after, created_at
FROM reversals
UNION ALL
SELECT provider_clearing_account(), position, 'reversal', 'reversal-' || id, amount, NULL, created_at
FROM reversals;

-- Every account's balance as the service keeps it: a user's, in accounts (kept by each write);
-- a system account's, the sum of its postings, computed here when it is read, so that no
-- payment waits on another for the clearing account's row. kind: 'user' or the system kind.
CREATE OR REPLACE VIEW ledger_balances AS
SELECT id AS account_id, user_id, 'user' AS kind, balance FROM accounts
UNION ALL
SELECT s.id, NULL, s.kind,
       (SELECT COALESCE(sum(p.amount), 0) FROM postings AS p WHERE p.account_id = s.id)::numeric(20,2)
FROM system_accounts AS s;

GRANT SELECT ON log_accounts_opened, log_payments, log_transfers, log_reversals, log_user_events, log_postings,
                postings, ledger_balances
    TO ledger_runtime, ledger_auditor;
