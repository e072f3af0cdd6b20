-- What auditors need from the log: a gap-free feed order, a hash chain per stream, and the
-- auditor role.

-- The feed order. xact_id is the writing transaction's id: a reader is only handed events of
-- transactions older than the oldest one still running, so that a transaction that drew its
-- positions early but commits late is never skipped by a reader that already moved past them.
-- (Existing rows get this migration's id: they were all committed long ago.)
ALTER TABLE events ADD COLUMN xact_id xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX events_in_feed_order ON events (xact_id, position);

-- The feed's horizon: every transaction below it has ended, as far as this database's events
-- can tell. pg_snapshot_xmin() alone would do, but it is cluster-wide: one long transaction in
-- another database of the same server would hold every reader here back. So the horizon is the
-- oldest transaction still running in this statement's snapshot, leaving out those that
-- pg_stat_activity or pg_prepared_xacts place in another database. A transaction whose
-- database cannot be told (it ended since, or its session is hidden) counts as ours: the
-- horizon only ever errs low, which delays a reader but never skips an event.
CREATE FUNCTION feed_horizon() RETURNS xid8
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(
        (SELECT min(running.xid)
         FROM pg_snapshot_xip(pg_current_snapshot()) AS running (xid)
         WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity AS a
                           WHERE a.backend_xid = xid(running.xid) AND a.datname <> current_database())
           AND NOT EXISTS (SELECT 1 FROM pg_prepared_xacts AS p
                           WHERE p.transaction = xid(running.xid) AND p.database <> current_database())),
        pg_snapshot_xmax(pg_current_snapshot()))
$$;

-- What leaves the service in place of a password hash: its SHA-256, which commits to the value
-- without revealing it. The hash chain covers this redacted form, so an auditor holding only
-- an export can recompute every hash. Idempotent: a redacted value stays as it is, so an
-- export loaded into another database chains to the same hashes. Webhook signatures stay:
-- they are the provider's evidence for each payment (no secret: they cross the network with
-- every delivery), and whoever holds the provider's secret can check them again offline.
CREATE FUNCTION redacted(data jsonb) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    -- One expression (no subquery), so that PostgreSQL inlines it into the calling statement:
    -- it runs once per appended event and once per event verified.
    SELECT CASE WHEN data->>'password_hash' NOT LIKE 'sha256:%'
        THEN jsonb_set(data, '{password_hash}',
                       to_jsonb('sha256:' || encode(sha256(convert_to(data->>'password_hash', 'UTF8')), 'hex')))
        ELSE data END
$$;

-- The contract's webhook signature, checked again (ledger/signatures.py is the same rule for
-- one delivery): SHA-256 of account_id, amount, transaction_id and user_id as sent, then the
-- secret, under any of the secrets. A function without a subquery, so that `ledger verify`
-- can run it in parallel workers.
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

-- One link of a stream's chain: SHA-256 over the previous event's hash (empty for the first)
-- and the SHA-256 of the event's canonical content: its type, stream, version and redacted
-- data (PostgreSQL's text of the jsonb, which is canonical: keys sorted, one spelling per
-- value), joined by the unit separator U+001F, which none of them can hold unescaped. Hashing
-- the content apart lets `ledger verify` digest every event independently, in parallel.
CREATE FUNCTION event_digest(type text, stream text, stream_version integer, data jsonb) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256(convert_to(
        type || chr(31) || stream || chr(31) || stream_version || chr(31) || redacted(data)::text, 'UTF8'))
$$;

CREATE FUNCTION event_hash(previous bytea, type text, stream text, stream_version integer, data jsonb)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256(previous || event_digest(type, stream, stream_version, data))
$$;

-- Each stream's last version and hash: the head that `ledger verify` checks the chain against
-- (a removed last event leaves the head pointing past the chain's end).
CREATE TABLE stream_heads (
    stream  text    PRIMARY KEY,
    version integer NOT NULL,
    hash    bytea   NOT NULL
);

ALTER TABLE events ADD COLUMN stream_version integer;
ALTER TABLE events ADD COLUMN hash bytea;

-- Chain the events already in the log, in log order. The only time this migration's author
-- lifts the append-only trigger: the columns are new, no recorded value changes.
ALTER TABLE events DISABLE TRIGGER events_refuse_update_delete;
DO $$
DECLARE
    event record;
    head  stream_heads%ROWTYPE;
BEGIN
    FOR event IN SELECT position, stream, type, data FROM events ORDER BY position LOOP
        SELECT * INTO head FROM stream_heads WHERE stream = event.stream;
        IF NOT FOUND THEN
            head := ROW(event.stream, 0, '\x'::bytea);
            INSERT INTO stream_heads VALUES (head.*);
        END IF;
        UPDATE stream_heads
        SET version = head.version + 1,
            hash = event_hash(head.hash, event.type, event.stream, head.version + 1, event.data)
        WHERE stream = event.stream
        RETURNING * INTO head;
        UPDATE events SET stream_version = head.version, hash = head.hash WHERE position = event.position;
    END LOOP;
END
$$;
ALTER TABLE events ENABLE TRIGGER events_refuse_update_delete;

ALTER TABLE events ALTER COLUMN stream_version SET NOT NULL;
ALTER TABLE events ALTER COLUMN hash SET NOT NULL;
-- Replaces events_by_stream: the same lookups, and a stream's versions are unique.
CREATE UNIQUE INDEX events_by_stream_version ON events (stream, stream_version);
DROP INDEX events_by_stream;

-- Every new event is chained as it is appended, in the appending transaction. Writing the
-- stream's head row locks it, so appends to one stream take turns (the commands already hold
-- that stream's projection row) while other streams never wait: no ledger-wide lock.
CREATE FUNCTION chain_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Most appends extend a stream that exists: update its head first.
    UPDATE stream_heads AS head
    SET version = head.version + 1,
        hash = event_hash(head.hash, NEW.type, NEW.stream, head.version + 1, NEW.data)
    WHERE head.stream = NEW.stream
    RETURNING head.version, head.hash INTO NEW.stream_version, NEW.hash;
    IF NOT FOUND THEN
        INSERT INTO stream_heads AS head (stream, version, hash)
        VALUES (NEW.stream, 1, event_hash('\x'::bytea, NEW.type, NEW.stream, 1, NEW.data))
        ON CONFLICT (stream) DO NOTHING
        RETURNING head.version, head.hash INTO NEW.stream_version, NEW.hash;
        IF NOT FOUND THEN  -- a concurrent first append to this stream committed first
            UPDATE stream_heads AS head
            SET version = head.version + 1,
                hash = event_hash(head.hash, NEW.type, NEW.stream, head.version + 1, NEW.data)
            WHERE head.stream = NEW.stream
            RETURNING head.version, head.hash INTO NEW.stream_version, NEW.hash;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER events_chain
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION chain_event();

-- The auditor role: reads everything, changes nothing. Granted and revoked by UserUpdated.
ALTER TABLE users ADD COLUMN is_auditor boolean NOT NULL DEFAULT false;
