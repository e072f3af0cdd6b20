-- The event log: the one source of truth. Every projection can be rebuilt from it.
CREATE TABLE events (
    position       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream         text        NOT NULL,   -- 'user-<id>' or 'account-<id>'
    type           text        NOT NULL,
    data           jsonb       NOT NULL,
    transaction_id text        UNIQUE,     -- the payment provider's id; a payment is appended once, ever
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_transaction_id_on_payments_only
        CHECK ((type = 'PaymentReceived') = (transaction_id IS NOT NULL))
);

CREATE INDEX events_by_stream ON events (stream, position);

-- History is never rewritten: the database itself refuses it, whoever asks.
CREATE FUNCTION refuse_event_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER events_refuse_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_change();

CREATE TRIGGER events_refuse_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();
