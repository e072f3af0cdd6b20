DROP INDEX payments_by_account;
DROP FUNCTION webhook_signature_holds(jsonb, bytea[], bytea[]);
CREATE FUNCTION webhook_signature_holds(data jsonb, secrets bytea[]) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    signed bytea := convert_to((data->>'account_id') || (data->>'amount') || (data->>'transaction_id')
                               || (data->>'user_id'), 'UTF8');
    given  text := lower(data->>'signature');
    secret bytea;
BEGIN
    FOREACH secret IN ARRAY secrets LOOP
        IF encode(sha256(signed || secret), 'hex') = given THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END
$$;
DROP FUNCTION hmac_sha256(bytea, bytea);
DROP TABLE delivery_keys;
DROP FUNCTION delivery_key(jsonb);
