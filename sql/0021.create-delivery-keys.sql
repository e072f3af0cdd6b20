-- A signature buys one credit, ever.
--
-- The contract's signature covers account_id, amount, transaction_id and user_id joined without
-- separators, so one signed text can be cut into other fields ("100" + "5eae..." is also
-- "1005" + "eae...") and still verify. Each credited delivery therefore spends its key: the
-- signature for the contract's scheme, the webhook-id for Standard Webhooks (which signs the
-- raw body, so only a replayed id can be abused). receive_payment() claims the key in the
-- transaction that records the payment; a second claim fails on the primary key, whatever
-- the concurrency.
CREATE FUNCTION delivery_key(data jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN data ? 'webhook_id' THEN 'webhook-id:' || (data->>'webhook_id')
                ELSE 'signature:' || lower(data->>'signature') END
$$;

CREATE TABLE delivery_keys (
    key            text PRIMARY KEY,  -- delivery_key() of the delivery that spent it
    transaction_id text NOT NULL
);

-- Payments recorded before this migration: the first to use a key keeps it. A key recorded
-- under two transaction ids is what `ledger verify` reports as reused_signature.
INSERT INTO delivery_keys (key, transaction_id)
SELECT DISTINCT ON (delivery_key(data)) delivery_key(data), transaction_id
FROM events
WHERE type = 'PaymentReceived'
ORDER BY delivery_key(data), position;

-- HMAC-SHA256 (RFC 2104) in plain SQL, for Standard Webhooks signatures (PostgreSQL has
-- sha256() but no hmac() without the pgcrypto extension).
CREATE FUNCTION hmac_sha256(key bytea, message bytea) RETURNS bytea
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

-- A recorded delivery's signature, checked again (ledger/signatures.py is the same rule for
-- one delivery), under any of the secrets of its scheme:
--   the contract's: SHA-256 of account_id, amount, transaction_id and user_id as sent, then
--     the secret;
--   Standard Webhooks: HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<raw body>", base64,
--     among the space-separated "v1,<signature>" entries the provider sent.
-- No subquery, so that `ledger verify` can run it in parallel workers.
DROP FUNCTION webhook_signature_holds(jsonb, bytea[]);
CREATE FUNCTION webhook_signature_holds(data jsonb, secrets bytea[], standard_keys bytea[]) RETURNS boolean
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

-- `?as_of=<position>`: an account's balance then is the balance_after of its last payment at
-- or before that position, one index lookup instead of a sum over the account's payments.
CREATE INDEX payments_by_account ON payments (account_id, id);
