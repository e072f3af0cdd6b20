-- Money moving between accounts: transfers between users' accounts, and reversals of payments.
-- Each is one statement, its own transaction: it appends one event that lists the ledger
-- transaction's postings (refuse_unbalanced() checks that they sum to zero) and updates the
-- projections. (How these files run: sql/definitions/10-event-log.sql.)
--
-- Locks are always taken in the same order, so that two movements never wait on each other in
-- a circle: the idempotency key's advisory lock, then users' rows (FOR SHARE, by id), then the
-- payment's row (reversals), then accounts' rows (FOR UPDATE, by id). receive_payment() takes
-- a user's row, then an account's, in that order too.

-- The guard shared by both: an amount of whole cents, above 0, at most 10^12.
CREATE OR REPLACE FUNCTION is_amount(amount numeric) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT amount IS NOT NULL AND amount > 0 AND amount <= 1000000000000 AND amount = round(amount, 2)
$$;

-- A transfer from one of a user's accounts to any user's account. outcome:
--   'created'              recorded now: the transfer
--   'seen'                 this user already used this key for the same transfer: the original
--   'idempotency_conflict' this user already used this key for another transfer
--   'same_account'         from and to are one account
--   'not_yours'            the source is not one of this (live) user's accounts
--   'account_not_found'    no live user's account has the destination's id
--   'insufficient_funds'   the source holds less than the amount (or is below zero)
-- Only 'created' records anything.
CREATE OR REPLACE FUNCTION transfer_money(
    p_user_id bigint, p_idempotency_key text, p_from_account_id bigint, p_to_account_id bigint, p_amount numeric
) RETURNS TABLE (
    outcome text, transfer_id bigint, from_account_id bigint, to_account_id bigint, amount numeric,
    created_at timestamptz
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
    v_seen       transfers%ROWTYPE;
    v_owner      bigint;
    v_to_owner   bigint;
    v_balance    numeric;
    v_id         bigint;
    v_data       jsonb;
    v_position   bigint;
    v_recorded   timestamptz;
    v_from_after numeric;
    v_to_after   numeric;
BEGIN
    IF NOT is_amount(p_amount) OR p_idempotency_key IS NULL OR length(p_idempotency_key) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'transfer_money: amount % or idempotency key is not one the service sends', p_amount;
    END IF;
    -- Requests with one key take turns: a retry that arrives while the first attempt still runs
    -- waits for it, then finds its transfer below. 1952541044: 'tran'.
    PERFORM pg_advisory_xact_lock(1952541044, hashtext(p_user_id || ':' || p_idempotency_key));
    SELECT * INTO v_seen FROM transfers AS t WHERE t.user_id = p_user_id AND t.idempotency_key = p_idempotency_key;
    IF FOUND THEN
        RETURN QUERY SELECT
            CASE WHEN (v_seen.from_account_id, v_seen.to_account_id, v_seen.amount)
                      = (p_from_account_id, p_to_account_id, p_amount)
                 THEN 'seen' ELSE 'idempotency_conflict' END,
            v_seen.id, v_seen.from_account_id, v_seen.to_account_id, v_seen.amount, v_seen.created_at;
        RETURN;
    END IF;
    IF p_from_account_id = p_to_account_id THEN
        RETURN QUERY SELECT 'same_account', NULL::bigint, p_from_account_id, p_to_account_id, p_amount, NULL::timestamptz;
        RETURN;
    END IF;

    -- Owners never change: read them, then lock both users (a deletion waits for us, or we for it).
    SELECT a.user_id INTO v_owner FROM accounts AS a WHERE a.id = p_from_account_id;
    SELECT a.user_id INTO v_to_owner FROM accounts AS a WHERE a.id = p_to_account_id;
    PERFORM 1 FROM users AS u WHERE u.id IN (p_user_id, v_to_owner) ORDER BY u.id FOR SHARE;
    IF v_owner IS DISTINCT FROM p_user_id
       OR NOT EXISTS (SELECT 1 FROM users AS u WHERE u.id = p_user_id AND NOT u.deleted) THEN
        RETURN QUERY SELECT 'not_yours', NULL::bigint, p_from_account_id, p_to_account_id, p_amount, NULL::timestamptz;
        RETURN;
    END IF;
    IF v_to_owner IS NULL OR NOT EXISTS (SELECT 1 FROM users AS u WHERE u.id = v_to_owner AND NOT u.deleted) THEN
        RETURN QUERY SELECT 'account_not_found', NULL::bigint, p_from_account_id, p_to_account_id, p_amount,
                            NULL::timestamptz;
        RETURN;
    END IF;

    -- Both accounts, in id order: transfers both ways between two accounts never deadlock.
    PERFORM 1 FROM accounts AS a WHERE a.id IN (p_from_account_id, p_to_account_id) ORDER BY a.id FOR UPDATE;
    SELECT a.balance INTO v_balance FROM accounts AS a WHERE a.id = p_from_account_id;
    IF v_balance < p_amount THEN
        RETURN QUERY SELECT 'insufficient_funds', NULL::bigint, p_from_account_id, p_to_account_id, p_amount,
                            NULL::timestamptz;
        RETURN;
    END IF;

    v_id := nextval('transfer_ids');
    v_data := jsonb_build_object(
        'transfer_id', v_id, 'user_id', p_user_id, 'idempotency_key', p_idempotency_key,
        'from_account_id', p_from_account_id, 'to_account_id', p_to_account_id, 'amount', p_amount::numeric(20,2)::text,
        'postings', jsonb_build_array(
            jsonb_build_object('account_id', p_from_account_id, 'amount', (-p_amount)::numeric(20,2)::text),
            jsonb_build_object('account_id', p_to_account_id, 'amount', p_amount::numeric(20,2)::text)));
    INSERT INTO events (stream, type, data) VALUES ('transfer-' || v_id, 'TransferMade', v_data)
    RETURNING position, recorded_at INTO v_position, v_recorded;
    UPDATE accounts AS a SET balance = a.balance - p_amount WHERE a.id = p_from_account_id
    RETURNING a.balance INTO v_from_after;
    UPDATE accounts AS a SET balance = a.balance + p_amount WHERE a.id = p_to_account_id
    RETURNING a.balance INTO v_to_after;
    INSERT INTO transfers (id, position, user_id, idempotency_key, from_account_id, to_account_id, amount,
                           from_balance_after, to_balance_after, created_at)
    VALUES (v_id, v_position, p_user_id, p_idempotency_key, p_from_account_id, p_to_account_id, p_amount,
            v_from_after, v_to_after, v_recorded);
    RETURN QUERY SELECT 'created', v_id, p_from_account_id, p_to_account_id, p_amount, v_recorded;
END
$$;

-- Transfers that arrive together (ledger.group_commit), made in one statement and one commit, each
-- answered as if it had come alone. Each is made for the caller of a token: p_credentials_versions
-- are the tokens' versions, and a transfer whose user is deleted or whose version moved on (a
-- password or email change) is answered 'revoked' and makes nothing.
--
-- The batch is first made in one subtransaction. Should any transfer fail there (a bug, a
-- balance beyond numeric(20,2), a deadlock), that is undone and each transfer is made again in
-- a subtransaction of its own, so one's failure (refused_sqlstate) never fails another. A
-- subtransaction per transfer from the start would cost each one its own transaction id.
--
-- Every lock the batch will need is taken first, in the one order above (the keys' advisory locks
-- by hash, the users by id, the accounts by id): two batches, or a batch and a lone transfer,
-- then never wait on each other in a circle, however their accounts overlap. Should that fail
-- (a deadlock with a payment, which locks its user, then its account, one at a time), each
-- transfer takes its own locks as it goes, and one that loses a deadlock is told so
-- (refused_sqlstate 40P01) and made again alone by the caller.
CREATE OR REPLACE FUNCTION make_transfers(
    p_user_ids              bigint[],
    p_credentials_versions  integer[],
    p_idempotency_keys      text[],
    p_from_account_ids      bigint[],
    p_to_account_ids        bigint[],
    p_amounts               numeric[]
) RETURNS TABLE (
    ordinal integer, outcome text, transfer_id bigint, from_account_id bigint, to_account_id bigint,
    amount numeric, created_at timestamptz, refused_sqlstate text
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
    v_count      integer := coalesce(array_length(p_user_ids, 1), 0);
    v_made       record;
    v_token_live boolean[];
    -- What the batch made, by ordinal, while it may still be undone.
    v_outcomes   text[] := '{}';
    v_ids        bigint[] := '{}';
    v_froms      bigint[] := '{}';
    v_tos        bigint[] := '{}';
    v_amounts    numeric[] := '{}';
    v_times      timestamptz[] := '{}';
    v_sqlstate   text;
BEGIN
    IF coalesce(array_length(p_credentials_versions, 1), 0) <> v_count
       OR coalesce(array_length(p_idempotency_keys, 1), 0) <> v_count
       OR coalesce(array_length(p_from_account_ids, 1), 0) <> v_count
       OR coalesce(array_length(p_to_account_ids, 1), 0) <> v_count
       OR coalesce(array_length(p_amounts, 1), 0) <> v_count THEN
        RAISE EXCEPTION 'make_transfers: the arrays differ in length';
    END IF;
    IF v_count > 1 THEN
        BEGIN
            PERFORM pg_advisory_xact_lock(1952541044, k.hash)
            FROM (SELECT DISTINCT hashtext(u || ':' || key) AS hash
                  FROM unnest(p_user_ids, p_idempotency_keys) AS t (u, key) ORDER BY 1) AS k;
            PERFORM 1 FROM users AS u
            WHERE u.id = ANY (p_user_ids)
               OR u.id IN (SELECT a.user_id FROM accounts AS a WHERE a.id = ANY (p_to_account_ids))
            ORDER BY u.id FOR SHARE;
            PERFORM 1 FROM accounts AS a
            WHERE a.id = ANY (p_from_account_ids) OR a.id = ANY (p_to_account_ids)
            ORDER BY a.id FOR UPDATE;
        EXCEPTION WHEN deadlock_detected OR lock_not_available THEN
            NULL;  -- each transfer locks its own, below
        END;
    END IF;

    -- Whether each token's user is live, with the token's credentials version (after the users'
    -- locks above, when they were taken: a deletion or a password change waits for the batch).
    SELECT array_agg(EXISTS (SELECT 1 FROM users AS u WHERE u.id = t.user_id AND NOT u.deleted
                                                       AND u.credentials_version = t.version)
                     ORDER BY t.n)
    INTO v_token_live
    FROM unnest(p_user_ids, p_credentials_versions) WITH ORDINALITY AS t (user_id, version, n);

    BEGIN
        FOR i IN 1 .. v_count LOOP
            v_froms[i] := p_from_account_ids[i];
            v_tos[i] := p_to_account_ids[i];
            v_amounts[i] := p_amounts[i];
            IF NOT v_token_live[i] THEN
                v_outcomes[i] := 'revoked';
            ELSE
                SELECT * INTO v_made
                FROM transfer_money(p_user_ids[i], p_idempotency_keys[i], p_from_account_ids[i],
                                    p_to_account_ids[i], p_amounts[i]) AS t;
                v_outcomes[i] := v_made.outcome;
                v_ids[i] := v_made.transfer_id;
                v_froms[i] := v_made.from_account_id;
                v_tos[i] := v_made.to_account_id;
                v_amounts[i] := v_made.amount;
                v_times[i] := v_made.created_at;
            END IF;
        END LOOP;
    EXCEPTION WHEN OTHERS THEN  -- not a cancel (statement timeout): that ends the whole batch
        v_outcomes := NULL;
    END;
    IF v_outcomes IS NOT NULL THEN
        RETURN QUERY
            SELECT i, v_outcomes[i], v_ids[i], v_froms[i], v_tos[i], v_amounts[i], v_times[i], NULL::text
            FROM generate_series(1, v_count) AS i;
        RETURN;
    END IF;

    FOR i IN 1 .. v_count LOOP
        BEGIN
            IF NOT v_token_live[i] THEN
                RETURN QUERY SELECT i, 'revoked', NULL::bigint, p_from_account_ids[i], p_to_account_ids[i],
                                    p_amounts[i], NULL::timestamptz, NULL::text;
            ELSE
                RETURN QUERY
                    SELECT i, t.outcome, t.transfer_id, t.from_account_id, t.to_account_id, t.amount, t.created_at,
                           NULL::text
                    FROM transfer_money(p_user_ids[i], p_idempotency_keys[i], p_from_account_ids[i],
                                        p_to_account_ids[i], p_amounts[i]) AS t;
            END IF;
        EXCEPTION WHEN OTHERS THEN  -- not a cancel (statement timeout): that ends the whole batch
            GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE;
            RETURN QUERY SELECT i, 'refused', NULL::bigint, p_from_account_ids[i], p_to_account_ids[i],
                                p_amounts[i], NULL::timestamptz, v_sqlstate;
        END;
    END LOOP;
END
$$;

-- A refund or a chargeback: all or part of a received payment taken back from the user's account
-- (which may go below zero: a chargeback is not optional) to the provider's clearing account.
-- outcome: 'created', 'seen', 'idempotency_conflict' (as for transfers, per admin and key),
-- 'payment_not_found', 'reversal_exceeds_payment' (the payment's reversals would sum to more
-- than its amount). Only 'created' records anything.
CREATE OR REPLACE FUNCTION reverse_payment(
    p_user_id bigint, p_idempotency_key text, p_payment_id bigint, p_amount numeric, p_reason text
) RETURNS TABLE (
    outcome text, reversal_id bigint, payment_id bigint, account_id bigint, amount numeric, reason text,
    created_at timestamptz
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
    v_seen     reversals%ROWTYPE;
    v_payment  payments%ROWTYPE;
    v_reversed numeric;
    v_id       bigint;
    v_data     jsonb;
    v_position bigint;
    v_recorded timestamptz;
    v_after    numeric;
BEGIN
    IF NOT is_amount(p_amount) OR p_reason IS NULL OR p_idempotency_key IS NULL
       OR length(p_idempotency_key) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'reverse_payment: amount %, reason or idempotency key is not one the service sends', p_amount;
    END IF;
    PERFORM pg_advisory_xact_lock(1919252082, hashtext(p_user_id || ':' || p_idempotency_key));  -- 'reve'
    SELECT * INTO v_seen FROM reversals AS r WHERE r.user_id = p_user_id AND r.idempotency_key = p_idempotency_key;
    IF FOUND THEN
        RETURN QUERY SELECT
            CASE WHEN (v_seen.payment_id, v_seen.amount, v_seen.reason) = (p_payment_id, p_amount, p_reason)
                 THEN 'seen' ELSE 'idempotency_conflict' END,
            v_seen.id, v_seen.payment_id, v_seen.account_id, v_seen.amount, v_seen.reason, v_seen.created_at;
        RETURN;
    END IF;

    -- The payment's row lock makes reversals of one payment take turns: their sum is read after
    -- every earlier one committed.
    SELECT * INTO v_payment FROM payments AS p WHERE p.id = p_payment_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'payment_not_found', NULL::bigint, p_payment_id, NULL::bigint, p_amount, p_reason,
                            NULL::timestamptz;
        RETURN;
    END IF;
    SELECT COALESCE(sum(r.amount), 0) INTO v_reversed FROM reversals AS r WHERE r.payment_id = p_payment_id;
    IF v_reversed + p_amount > v_payment.amount THEN
        RETURN QUERY SELECT 'reversal_exceeds_payment', NULL::bigint, p_payment_id, v_payment.account_id, p_amount,
                            p_reason, NULL::timestamptz;
        RETURN;
    END IF;

    PERFORM 1 FROM accounts AS a WHERE a.id = v_payment.account_id FOR UPDATE;
    v_id := nextval('reversal_ids');
    v_data := jsonb_build_object(
        'reversal_id', v_id, 'payment_id', p_payment_id, 'transaction_id', v_payment.transaction_id,
        'user_id', p_user_id, 'idempotency_key', p_idempotency_key, 'account_id', v_payment.account_id,
        'amount', p_amount::numeric(20,2)::text, 'reason', p_reason,
        'postings', jsonb_build_array(
            jsonb_build_object('account_id', v_payment.account_id, 'amount', (-p_amount)::numeric(20,2)::text),
            jsonb_build_object('account_id', provider_clearing_account(), 'amount', p_amount::numeric(20,2)::text)));
    INSERT INTO events (stream, type, data) VALUES ('reversal-' || v_id, 'PaymentReversed', v_data)
    RETURNING position, recorded_at INTO v_position, v_recorded;
    UPDATE accounts AS a SET balance = a.balance - p_amount WHERE a.id = v_payment.account_id
    RETURNING a.balance INTO v_after;
    INSERT INTO reversals (id, position, payment_id, user_id, idempotency_key, account_id, amount, reason,
                           balance_after, created_at)
    VALUES (v_id, v_position, p_payment_id, p_user_id, p_idempotency_key, v_payment.account_id, p_amount,
            p_reason, v_after, v_recorded);
    RETURN QUERY SELECT 'created', v_id, p_payment_id, v_payment.account_id, p_amount, p_reason, v_recorded;
END
$$;

REVOKE EXECUTE ON FUNCTION
    transfer_money(bigint, text, bigint, bigint, numeric),
    make_transfers(bigint[], integer[], text[], bigint[], bigint[], numeric[]),
    reverse_payment(bigint, text, bigint, numeric, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    transfer_money(bigint, text, bigint, bigint, numeric),
    make_transfers(bigint[], integer[], text[], bigint[], bigint[], numeric[]),
    reverse_payment(bigint, text, bigint, numeric, text)
    TO ledger_runtime;
