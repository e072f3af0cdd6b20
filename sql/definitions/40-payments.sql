-- Webhook deliveries: their keys, their signatures, and the one statement that records one.
-- (How these files run: sql/definitions/10-event-log.sql.)

-- A signature buys one credit, ever.
--
-- The contract's signature covers account_id, amount, transaction_id and user_id joined without
-- separators, so one signed text can be cut into other fields ("100" + "5eae..." is also
-- "1005" + "eae...") and still verify. Each credited delivery therefore spends its key: the
-- signature for the contract's scheme, the webhook-id for Standard Webhooks (which signs the
-- raw body, so only a replayed id can be abused). receive_payment() claims the key in the
-- transaction that records the payment; a second claim fails on the primary key, whatever
-- the concurrency.
CREATE OR REPLACE FUNCTION delivery_key(data jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN data ? 'webhook_id' THEN 'webhook-id:' || (data->>'webhook_id')
                ELSE 'signature:' || lower(data->>'signature') END
$$;

-- HMAC-SHA256 (RFC 2104) in plain SQL, for Standard Webhooks signatures (PostgreSQL has
-- sha256() but no hmac() without the pgcrypto extension).
CREATE OR REPLACE FUNCTION hmac_sha256(key bytea, message bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    block     bytea := CASE WHEN length(key) > 64 THEN sha256(key) ELSE key END;
    inner_pad bytea;
    outer_pad bytea;
BEGIN
    block := block || decode(repeat('00', 64 - length(block)), 'hex');
    inner_pad := block;
    outer_pad := block;
    FOR i IN 0..63 LOOP
        inner_pad := set_byte(inner_pad, i, get_byte(block, i) # 54);  -- 0x36
        outer_pad := set_byte(outer_pad, i, get_byte(block, i) # 92);  -- 0x5c
    END LOOP;
    RETURN sha256(outer_pad || sha256(inner_pad || message));
END
$$;

CREATE OR REPLACE FUNCTION webhook_signature_holds(data jsonb, secrets bytea[], standard_keys bytea[]) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    signed bytea;
    given  text[];
    secret bytea;
BEGIN
    IF data ? 'webhook_id' THEN
        signed := convert_to((data->>'webhook_id') || '.' || (data->>'webhook_timestamp') || '.'
                             || (data->>'body'), 'UTF8');
        given := string_to_array(data->>'webhook_signature', ' ');
        FOREACH secret IN ARRAY standard_keys LOOP
            IF 'v1,' || encode(hmac_sha256(secret, signed), 'base64') = ANY (given) THEN
                RETURN true;
            END IF;
        END LOOP;
        RETURN false;
    END IF;
    signed := convert_to((data->>'account_id') || (data->>'amount') || (data->>'transaction_id')
                         || (data->>'user_id'), 'UTF8');
    FOREACH secret IN ARRAY secrets LOOP
        IF encode(sha256(signed || secret), 'hex') = lower(data->>'signature') THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
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
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET enable_seqscan = off AS $$
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
        VALUES (account_stream(p_account_id), 'AccountOpened',
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
    VALUES (account_stream(p_account_id), 'PaymentReceived', p_delivery, p_transaction_id)
    RETURNING position, recorded_at INTO v_position, v_recorded_at;

    UPDATE accounts SET balance = accounts.balance + p_amount
    WHERE id = p_account_id
    RETURNING accounts.balance INTO v_balance;

    INSERT INTO payments (id, transaction_id, user_id, account_id, amount, balance_after, created_at)
    VALUES (v_position, p_transaction_id, p_user_id, p_account_id, p_amount, v_balance, v_recorded_at);

    RETURN QUERY SELECT 'credited', v_position, p_user_id, p_account_id, p_amount, v_balance;
END
$$;

REVOKE EXECUTE ON FUNCTION receive_payment(text, bigint, bigint, numeric, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION receive_payment(text, bigint, bigint, numeric, jsonb) TO ledger_runtime;

-- Many deliveries, one statement, one commit (group commit: ledger.batching). Each delivery is
-- received as receive_payment() receives it alone, in a subtransaction of its own: a delivery
-- that fails (a spent key, a balance past its limit, a bug) is rolled back alone and reported
-- in its row, and never fails its neighbours. The caller orders the deliveries by account and
-- transaction id, so that concurrent batches take their locks in one order.
CREATE OR REPLACE FUNCTION receive_payments(
    p_transaction_ids text[],
    p_user_ids        bigint[],
    p_account_ids     bigint[],
    p_amounts         numeric[],
    p_deliveries      jsonb[]
) RETURNS TABLE (
    ordinal            integer,
    outcome            text,
    payment_id         bigint,
    user_id            bigint,
    account_id         bigint,
    amount             numeric,
    balance            numeric,
    refused_sqlstate   text,
    refused_constraint text
)
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    v_count      integer := coalesce(array_length(p_transaction_ids, 1), 0);
    v_sqlstate   text;
    v_constraint text;
BEGIN
    IF coalesce(array_length(p_user_ids, 1), 0) <> v_count
       OR coalesce(array_length(p_account_ids, 1), 0) <> v_count
       OR coalesce(array_length(p_amounts, 1), 0) <> v_count
       OR coalesce(array_length(p_deliveries, 1), 0) <> v_count THEN
        RAISE EXCEPTION 'receive_payments: the arrays differ in length';
    END IF;
    FOR i IN 1 .. v_count LOOP
        BEGIN
            RETURN QUERY
                SELECT i, r.outcome, r.payment_id, r.user_id, r.account_id, r.amount, r.balance,
                       NULL::text, NULL::text
                FROM receive_payment(p_transaction_ids[i], p_user_ids[i], p_account_ids[i],
                                     p_amounts[i], p_deliveries[i]) AS r;
        EXCEPTION WHEN OTHERS THEN  -- not a cancel (statement timeout): that ends the whole batch
            GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_constraint = CONSTRAINT_NAME;
            RETURN QUERY SELECT i, 'refused', NULL::bigint, p_user_ids[i], p_account_ids[i],
                                p_amounts[i], NULL::numeric, v_sqlstate, nullif(v_constraint, '');
        END;
    END LOOP;
END
$$;

REVOKE EXECUTE ON FUNCTION receive_payments(text[], bigint[], bigint[], numeric[], jsonb[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION receive_payments(text[], bigint[], bigint[], numeric[], jsonb[]) TO ledger_runtime;
