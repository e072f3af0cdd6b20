-- The current definition of every function, trigger and view of the event log. These files
-- (sql/definitions/, in name order) run after the migrations at every `ledger migrate` or
-- `ledger serve` that migrates, as the tables' owner, so each body here is the one in force:
-- change a function here, never in a migration. A migration still creates tables, and drops
-- a function whose signature changes (CREATE OR REPLACE cannot change it).
--
-- Every command function (SECURITY DEFINER: what the service calls to record something) runs
-- with `SET enable_seqscan = off`. Each of its statements reaches its rows by a key that has an
-- index, but PL/pgSQL keeps a statement's plan for the life of the connection, and a plan made
-- while a table was small or known to be empty (a fresh database after VACUUM ANALYZE) is a
-- sequential scan. It stayed one while the table grew under load, until autovacuum next
-- analyzed it: each payment then read every earlier payment. With sequential scans off, the
-- plan is the index's whatever the statistics say.

-- History is never rewritten: the database itself refuses it, whoever asks.
CREATE OR REPLACE FUNCTION refuse_event_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE OR REPLACE TRIGGER events_refuse_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_change();

CREATE OR REPLACE TRIGGER events_refuse_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_change();

-- The feed's horizon: every transaction below it has ended, as far as this database's events
-- can tell. pg_snapshot_xmin() alone would do, but it is cluster-wide: one long transaction in
-- another database of the same server would hold every reader here back. So the horizon is the
-- oldest transaction still running in this statement's snapshot, leaving out those that
-- pg_stat_activity or pg_prepared_xacts place in another database. A transaction whose
-- database cannot be told (it ended since, or its session is hidden) counts as ours: the
-- horizon only ever errs low, which delays a reader but never skips an event.
-- On a hot standby a snapshot lists no running transactions at all (PostgreSQL keeps the ones
-- it knows of from the primary's WAL elsewhere), only its xmin, the oldest of them: there the
-- horizon is that xmin, which cannot tell databases apart either, and so also errs low.
CREATE OR REPLACE FUNCTION feed_horizon() RETURNS xid8
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN pg_is_in_recovery() THEN pg_snapshot_xmin(pg_current_snapshot()) ELSE COALESCE(
        (SELECT min(running.xid)
         FROM pg_snapshot_xip(pg_current_snapshot()) AS running (xid)
         WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity AS a
                           WHERE a.backend_xid = xid(running.xid) AND a.datname <> current_database())
           AND NOT EXISTS (SELECT 1 FROM pg_prepared_xacts AS p
                           WHERE p.transaction = xid(running.xid) AND p.database <> current_database())),
        pg_snapshot_xmax(pg_current_snapshot())) END
$$;

-- What leaves the service in place of a password hash: its SHA-256, which commits to the value
-- without revealing it. The hash chain covers this redacted form, so an auditor holding only
-- an export can recompute every hash. Idempotent: a redacted value stays as it is, so an
-- export loaded into another database chains to the same hashes. Webhook signatures stay:
-- they are the provider's evidence for each payment (no secret: they cross the network with
-- every delivery), and whoever holds the provider's secret can check them again offline.
CREATE OR REPLACE FUNCTION redacted(data jsonb) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    -- One expression (no subquery), so that PostgreSQL inlines it into the calling statement:
    -- it runs once per appended event and once per event verified.
    SELECT CASE WHEN data->>'password_hash' NOT LIKE 'sha256:%'
        THEN jsonb_set(data, '{password_hash}',
                       to_jsonb('sha256:' || encode(sha256(convert_to(data->>'password_hash', 'UTF8')), 'hex')))
        ELSE data END
$$;

-- One link of a stream's chain: SHA-256 over the previous event's hash (empty for the first)
-- and the SHA-256 of the event's canonical content: its type, stream, version and redacted
-- data (PostgreSQL's text of the jsonb, which is canonical: keys sorted, one spelling per
-- value), joined by the unit separator U+001F, which none of them can hold unescaped. Hashing
-- the content apart lets `ledger verify` digest every event independently, in parallel.
CREATE OR REPLACE FUNCTION event_digest(type text, stream text, stream_version integer, data jsonb) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256(convert_to(
        type || chr(31) || stream || chr(31) || stream_version || chr(31) || redacted(data)::text, 'UTF8'))
$$;

CREATE OR REPLACE FUNCTION event_hash(previous bytea, type text, stream text, stream_version integer, data jsonb)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256(previous || event_digest(type, stream, stream_version, data))
$$;

-- Every new event is chained as it is appended, in the appending transaction. Writing the
-- stream's head row locks it, so appends to one stream take turns (the commands already hold
-- that stream's projection row) while other streams never wait: no ledger-wide lock.
CREATE OR REPLACE FUNCTION chain_event() RETURNS trigger
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
CREATE OR REPLACE TRIGGER events_chain
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION chain_event();

-- Double entry, enforced by the database: a ledger transaction that lists its postings (a
-- transfer, a reversal) has two or more, none of them zero, and they sum to exactly zero.
CREATE OR REPLACE FUNCTION refuse_unbalanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    legs  integer;
    total numeric;
    zeros integer;
BEGIN
    IF NEW.type IN ('TransferMade', 'PaymentReversed') OR NEW.data ? 'postings' THEN
        IF jsonb_typeof(NEW.data->'postings') IS DISTINCT FROM 'array' THEN
            RAISE EXCEPTION 'a % lists its postings', NEW.type USING ERRCODE = 'check_violation';
        END IF;
        SELECT count(*), sum((leg->>'amount')::numeric), count(*) FILTER (WHERE (leg->>'amount')::numeric = 0)
        INTO legs, total, zeros
        FROM jsonb_array_elements(NEW.data->'postings') AS leg;
        IF legs < 2 OR total IS DISTINCT FROM 0 OR zeros > 0 THEN
            RAISE EXCEPTION 'unbalanced ledger transaction: % postings summing to %', legs, total
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-- Named to fire before events_chain (triggers of one event fire in name order). The WHEN
-- clause is the function's own condition: every other event (a payment's postings are implied,
-- a user's event has none) skips the call, which was a few percent of a payment's cost.
CREATE OR REPLACE TRIGGER events_balanced
    BEFORE INSERT ON events
    FOR EACH ROW
    WHEN (NEW.type IN ('TransferMade', 'PaymentReversed') OR NEW.data ? 'postings')
    EXECUTE FUNCTION refuse_unbalanced();

-- What auditors read: the log with password hashes replaced by their SHA-256 (redacted(),
-- sql/0005), the form the feed, exports and hash chains use. A view runs with its owner's
-- rights, so ledger_auditor reads this without any right on events itself.
CREATE OR REPLACE VIEW audit_events AS
SELECT position, xact_id, stream, stream_version, type, redacted(data) AS data, transaction_id, hash,
       recorded_at
FROM events;
GRANT SELECT ON audit_events TO ledger_runtime, ledger_auditor;
