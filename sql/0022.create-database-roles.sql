-- Least privilege in the database itself. Whoever runs the migrations owns the tables; the
-- service serves as ledger_runtime, which owns nothing, may not write a table, and changes the
-- ledger only through the SECURITY DEFINER functions below, each of which appends its event and
-- updates the projections it changes in one transaction. So even a compromised service can
-- only do what its API does: it cannot disable the append-only trigger, rewrite an event, or
-- credit a balance without the event that explains it. ledger_auditor reads, and nothing else.
--
-- Roles belong to the whole server, not to one database: several ledger databases on one
-- server share them (each database grants them rights on its own tables).
DO $$
BEGIN
    CREATE ROLE ledger_runtime NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- made by another ledger database's migration, or at the same moment
END
$$;
DO $$
BEGIN
    CREATE ROLE ledger_auditor NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
-- With one database URL (development), the service connects as the owner and takes the
-- runtime role for the session (SET ROLE), which needs membership (a superuser has it).
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'ledger_runtime', 'MEMBER') THEN
        EXECUTE format('GRANT ledger_runtime TO %I', current_user);
    END IF;
END
$$;

-- An admin and an auditor at once would be an auditor that can change things.
ALTER TABLE users ADD CONSTRAINT users_admin_or_auditor CHECK (NOT (is_admin AND is_auditor));

-- What auditors read: the log with password hashes replaced by their SHA-256 (redacted(),
-- sql/0005), the form the feed, exports and hash chains use. A view runs with its owner's
-- rights, so ledger_auditor reads this without any right on events itself.
CREATE VIEW audit_events AS
SELECT position, xact_id, stream, stream_version, type, redacted(data) AS data, transaction_id, hash,
       recorded_at
FROM events;

-- One user event applied to the users view. It names no schema: the rebuild (`ledger replay`)
-- applies the log through it into temporary tables that shadow the live ones, while the
-- functions below, whose search_path is pinned, apply it to the live table.
CREATE FUNCTION apply_user_event(p_type text, p_data jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    CASE p_type
    WHEN 'UserRegistered' THEN
        INSERT INTO users (id, email, full_name, password_hash, is_admin, is_auditor, credentials_version)
        VALUES ((p_data->>'user_id')::bigint, p_data->>'email', p_data->>'full_name',
                p_data->>'password_hash', (p_data->>'is_admin')::boolean,
                COALESCE((p_data->>'is_auditor')::boolean, false),  -- absent before the auditor role
                1);
    WHEN 'UserUpdated' THEN
        UPDATE users SET
            email = COALESCE(p_data->>'email', email),
            full_name = COALESCE(p_data->>'full_name', full_name),
            password_hash = COALESCE(p_data->>'password_hash', password_hash),
            is_admin = COALESCE((p_data->>'is_admin')::boolean, is_admin),
            is_auditor = COALESCE((p_data->>'is_auditor')::boolean, is_auditor),
            credentials_version = (p_data->>'credentials_version')::integer
        WHERE id = (p_data->>'user_id')::bigint;
    WHEN 'UserDeleted' THEN
        UPDATE users SET deleted = true WHERE id = (p_data->>'user_id')::bigint;
    END CASE;
END
$$;

-- The rebuild's users (`ledger replay`): every user event of the log up to a cut (NULL: no
-- limit), applied in log order into whatever tables `users` names for the caller.
CREATE FUNCTION apply_user_events(through_position bigint, through_time timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    event   record;
    applied bigint := 0;
BEGIN
    FOR event IN
        SELECT type, data FROM events
        WHERE type IN ('UserRegistered', 'UserUpdated', 'UserDeleted')
          AND (through_position IS NULL OR position <= through_position)
          AND (through_time IS NULL OR recorded_at <= through_time)
        ORDER BY position
    LOOP
        PERFORM apply_user_event(event.type, event.data);
        applied := applied + 1;
    END LOOP;
    RETURN applied;
END
$$;

-- Each user use case applies its event before appending it. The order matters: applying is
-- where the statement may wait on the unique email index for another transaction (one that
-- frees or takes the email). Appending only afterwards draws the event's position after that
-- transaction committed, so the log's order is one in which a replay can apply every event.

-- A new user; returns its id. users_live_email refuses a taken email (unique_violation).
CREATE FUNCTION register_user(
    p_email text, p_full_name text, p_password_hash text, p_is_admin boolean, p_is_auditor boolean
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_user_id bigint;
    v_data    jsonb;
BEGIN
    IF p_password_hash NOT LIKE '$argon2%' THEN  -- a guard: never a password in clear
        RAISE EXCEPTION 'register_user: the password must arrive hashed with argon2';
    END IF;
    v_user_id := nextval('user_ids');
    v_data := jsonb_build_object('user_id', v_user_id, 'email', p_email, 'full_name', p_full_name,
                                 'password_hash', p_password_hash, 'is_admin', p_is_admin,
                                 'is_auditor', p_is_auditor);
    PERFORM apply_user_event('UserRegistered', v_data);
    INSERT INTO events (stream, type, data) VALUES ('user-' || v_user_id, 'UserRegistered', v_data);
    RETURN v_user_id;
END
$$;

-- Some fields of a live user (NULL leaves a field as it is). outcome: 'updated' with the user
-- as it is now, 'user_not_found', or 'role_conflict' (admin and auditor at once); only
-- 'updated' records anything. A new password or another email revokes earlier tokens: the
-- credentials version grows.
CREATE FUNCTION update_user(
    p_user_id bigint, p_email text, p_full_name text, p_password_hash text, p_is_admin boolean,
    p_is_auditor boolean
) RETURNS TABLE (
    outcome text, id bigint, email text, full_name text, is_admin boolean, is_auditor boolean,
    credentials_version integer
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_current users%ROWTYPE;
    v_data    jsonb;
BEGIN
    IF p_password_hash NOT LIKE '$argon2%' THEN
        RAISE EXCEPTION 'update_user: the password must arrive hashed with argon2';
    END IF;
    -- The row lock orders this change with another one, a deletion, or a payment to the user.
    SELECT * INTO v_current FROM users AS u WHERE u.id = p_user_id AND NOT u.deleted FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'user_not_found', p_user_id, NULL::text, NULL::text, NULL::boolean,
                            NULL::boolean, NULL::integer;
        RETURN;
    END IF;
    IF COALESCE(p_is_admin, v_current.is_admin) AND COALESCE(p_is_auditor, v_current.is_auditor) THEN
        RETURN QUERY SELECT 'role_conflict', p_user_id, NULL::text, NULL::text, NULL::boolean,
                            NULL::boolean, NULL::integer;
        RETURN;
    END IF;
    v_data := jsonb_strip_nulls(jsonb_build_object(
        'user_id', p_user_id,
        'credentials_version', v_current.credentials_version
            + CASE WHEN p_password_hash IS NOT NULL OR p_email <> v_current.email THEN 1 ELSE 0 END,
        'email', p_email, 'full_name', p_full_name, 'password_hash', p_password_hash,
        'is_admin', p_is_admin, 'is_auditor', p_is_auditor));
    PERFORM apply_user_event('UserUpdated', v_data);
    INSERT INTO events (stream, type, data) VALUES ('user-' || p_user_id, 'UserUpdated', v_data);
    RETURN QUERY SELECT 'updated', u.id, u.email, u.full_name, u.is_admin, u.is_auditor,
                        u.credentials_version
                 FROM users AS u WHERE u.id = p_user_id;
END
$$;

-- A live user deleted (its events stay); returns 'deleted' or 'user_not_found'.
CREATE FUNCTION delete_user(p_user_id bigint) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_data jsonb := jsonb_build_object('user_id', p_user_id);
BEGIN
    -- The row lock makes a concurrent payment to this user wait, or wait for it.
    PERFORM 1 FROM users AS u WHERE u.id = p_user_id AND NOT u.deleted FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'user_not_found';
    END IF;
    PERFORM apply_user_event('UserDeleted', v_data);
    INSERT INTO events (stream, type, data) VALUES ('user-' || p_user_id, 'UserDeleted', v_data);
    RETURN 'deleted';
END
$$;

-- One webhook delivery, one statement, one round trip (see sql/0003 for the outcomes). Now
-- also: the delivery's key is spent (sql/0021), and the delivery recorded must be the payment
-- credited, so that no caller can credit one amount under another's evidence.
CREATE OR REPLACE FUNCTION receive_payment(
    p_transaction_id text,
    p_user_id        bigint,
    p_account_id     bigint,
    p_amount         numeric,
    p_delivery       jsonb
) RETURNS TABLE (
    outcome    text,
    payment_id bigint,
    user_id    bigint,
    account_id bigint,
    amount     numeric,
    balance    numeric
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_owner       bigint;
    v_position    bigint;
    v_recorded_at timestamptz;
    v_balance     numeric;
    v_body        jsonb;
BEGIN
    -- Guards, not input validation (the service validates first): a wrong call is a bug, or
    -- someone calling with the service's login.
    IF p_amount IS NULL OR p_amount <= 0 OR p_amount > 1000000000000 OR p_amount <> round(p_amount, 2) THEN
        RAISE EXCEPTION 'receive_payment: amount % is not a positive amount of cents up to 10^12', p_amount;
    END IF;
    IF NOT COALESCE(
           p_delivery->>'amount' ~ '^(0|[1-9][0-9]*)(\.[0-9]{1,2})?$'  -- plain decimal, as sent
           AND (p_delivery->>'amount')::numeric = p_amount
           AND p_delivery->>'transaction_id' = p_transaction_id
           AND p_delivery->>'user_id' = p_user_id::text
           AND p_delivery->>'account_id' = p_account_id::text
           AND (p_delivery ? 'signature') <> (p_delivery ? 'webhook_id'), false) THEN
        RAISE EXCEPTION 'receive_payment: the delivery recorded is not the payment credited';
    END IF;
    IF p_delivery ? 'webhook_id' THEN  -- Standard Webhooks: the signed body says the same
        v_body := (p_delivery->>'body')::jsonb;
        IF NOT COALESCE(
               v_body->>'transaction_id' = p_transaction_id
               AND v_body->>'user_id' = p_user_id::text
               AND v_body->>'account_id' = p_account_id::text
               AND (v_body->>'amount')::numeric = p_amount, false) THEN
            RAISE EXCEPTION 'receive_payment: the signed body is not the payment credited';
        END IF;
    END IF;
    -- Each statement below must see what committed before it started (the check after the lock).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'receive_payment needs READ COMMITTED, not %',
            current_setting('transaction_isolation');
    END IF;

    -- Deliveries of the same transaction_id take turns; others never wait on this lock.
    -- Once we hold it, any earlier delivery of this id has committed or rolled back, and the
    -- next statement (a fresh snapshot under READ COMMITTED) sees its payment if there is one.
    -- The UNIQUE constraint on events.transaction_id stays the last word: a second append fails.
    PERFORM pg_advisory_xact_lock(1818520933, hashtext(p_transaction_id));  -- 1818520933: 'ledg'

    RETURN QUERY
        SELECT 'seen', p.id, p.user_id, p.account_id, p.amount, p.balance_after
        FROM payments AS p
        WHERE p.transaction_id = p_transaction_id;
    IF FOUND THEN
        RETURN;
    END IF;

    -- FOR SHARE: a concurrent deletion of this user waits for us (and we for it).
    PERFORM 1 FROM users AS u WHERE u.id = p_user_id AND NOT u.deleted FOR SHARE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'user_not_found', NULL::bigint, p_user_id, p_account_id, p_amount, NULL::numeric;
        RETURN;
    END IF;

    INSERT INTO accounts (id, user_id, balance) VALUES (p_account_id, p_user_id, 0)
    ON CONFLICT (id) DO NOTHING;
    IF FOUND THEN
        INSERT INTO events (stream, type, data)
        VALUES ('account-' || p_account_id, 'AccountOpened',
                jsonb_build_object('account_id', p_account_id, 'user_id', p_user_id));
    END IF;

    -- The account row lock orders concurrent credits of one account.
    SELECT a.user_id INTO v_owner FROM accounts AS a WHERE a.id = p_account_id FOR UPDATE;
    IF v_owner <> p_user_id THEN
        RETURN QUERY SELECT 'account_owner_mismatch', NULL::bigint, v_owner, p_account_id, p_amount, NULL::numeric;
        RETURN;
    END IF;

    -- The delivery's key is spent here, last before the append: a key already spent (a
    -- re-cut signature, a replayed webhook-id) raises unique_violation on delivery_keys_pkey,
    -- which undoes this whole call, the account opened above included. A concurrent claim
    -- of the same key waits for this transaction, then fails the same way.
    INSERT INTO delivery_keys (key, transaction_id) VALUES (delivery_key(p_delivery), p_transaction_id);

    INSERT INTO events (stream, type, data, transaction_id)
    VALUES ('account-' || p_account_id, 'PaymentReceived', p_delivery, p_transaction_id)
    RETURNING position, recorded_at INTO v_position, v_recorded_at;

    UPDATE accounts SET balance = accounts.balance + p_amount
    WHERE id = p_account_id
    RETURNING accounts.balance INTO v_balance;

    INSERT INTO payments (id, transaction_id, user_id, account_id, amount, balance_after, created_at)
    VALUES (v_position, p_transaction_id, p_user_id, p_account_id, p_amount, v_balance, v_recorded_at);

    RETURN QUERY SELECT 'credited', v_position, p_user_id, p_account_id, p_amount, v_balance;
END
$$;

-- The runtime role: reads what the service reads, writes only through the functions above.
-- (The login throttle's counters are granted with their table, sql/0023.)
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ledger_runtime, ledger_auditor;
GRANT SELECT ON events, audit_events, users, accounts, payments, stream_heads, _yoyo_migration
    TO ledger_runtime;
REVOKE EXECUTE ON FUNCTION
    receive_payment(text, bigint, bigint, numeric, jsonb),
    register_user(text, text, text, boolean, boolean),
    update_user(bigint, text, text, text, boolean, boolean),
    delete_user(bigint)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    receive_payment(text, bigint, bigint, numeric, jsonb),
    register_user(text, text, text, boolean, boolean),
    update_user(bigint, text, text, text, boolean, boolean),
    delete_user(bigint)
    TO ledger_runtime;

-- The auditors' role, for `ledger verify` and `ledger export` with a login of their own: the
-- redacted log, the heads and the balances; no password hash, no write.
GRANT SELECT ON audit_events, stream_heads, accounts, payments TO ledger_auditor;
