DROP FUNCTION receive_payment(text, bigint, bigint, numeric, jsonb);
