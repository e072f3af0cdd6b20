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

-- THE BALANCE RULE: an account's balance is the sum of the amounts of its PaymentReceived
-- events, and an account exists once its AccountOpened event does. Every account opened
-- within the cut (of account_ids, or of all when NULL), with its owner and its balance then.
-- The live credit in receive_payment() keeps the same sum one payment at a time, and
-- `ledger replay` compares the two.
--
-- A single SELECT (LANGUAGE sql, STABLE): PostgreSQL inlines it into the calling query, so a
-- call for a few accounts reads their streams through the stream index, and a call for all
-- reads the log in one pass.
CREATE OR REPLACE FUNCTION balances_in_log(
    account_ids bigint[],
    through_position bigint, through_time timestamptz, through_xact_id xid8, through_xact_position bigint
) RETURNS TABLE (account_id bigint, user_id bigint, balance numeric)
LANGUAGE sql STABLE AS $$
    SELECT o.account_id, o.user_id, COALESCE(credited.balance, 0)::numeric(20,2)
    FROM log_accounts_opened AS o
    LEFT JOIN (
        SELECT p.account_id, sum(p.amount) AS balance
        FROM log_payments AS p
        WHERE (account_ids IS NULL OR p.stream = ANY (ARRAY(SELECT account_stream(a) FROM unnest(account_ids) AS a)))
          AND in_log_cut(p.position, p.recorded_at, p.xact_id,
                         through_position, through_time, through_xact_id, through_xact_position)
        GROUP BY p.account_id
    ) AS credited ON credited.account_id = o.account_id
    WHERE (account_ids IS NULL OR o.stream = ANY (ARRAY(SELECT account_stream(a) FROM unnest(account_ids) AS a)))
      AND in_log_cut(o.position, o.recorded_at, o.xact_id,
                     through_position, through_time, through_xact_id, through_xact_position)
$$;

-- The same rule one payment at a time: each payment within the cut (payment_id: its event's
-- position) with the balance its account had after it (the running sum in log order), as
-- the payments view keeps it.
CREATE OR REPLACE FUNCTION payments_in_log(through_position bigint, through_time timestamptz)
RETURNS TABLE (payment_id bigint, transaction_id text, user_id bigint, account_id bigint, amount numeric,
               balance_after numeric, recorded_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT p.position, p.transaction_id, p.user_id, p.account_id, p.amount,
           sum(p.amount) OVER (PARTITION BY p.account_id ORDER BY p.position), p.recorded_at
    FROM log_payments AS p
    WHERE in_log_cut(p.position, p.recorded_at, p.xact_id, through_position, through_time, NULL, NULL)
$$;

GRANT SELECT ON log_accounts_opened, log_payments, log_user_events TO ledger_runtime, ledger_auditor;
