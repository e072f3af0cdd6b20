-- The users view and the use cases that change it. (How these files run:
-- sql/definitions/10-event-log.sql.)

-- One user event applied to the users view. It names no schema: the rebuild (`ledger replay`)
-- applies the log through it into temporary tables that shadow the live ones, while the
-- functions below, whose search_path is pinned, apply it to the live table.
CREATE OR REPLACE FUNCTION apply_user_event(p_type text, p_data jsonb) RETURNS void
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
CREATE OR REPLACE FUNCTION apply_user_events(through_position bigint, through_time timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    event   record;
    applied bigint := 0;
BEGIN
    FOR event IN
        SELECT type, data FROM events
        WHERE type IN ('UserRegistered', 'UserUpdated', 'UserDeleted')
          AND in_log_cut(position, recorded_at, xact_id, through_position, through_time, NULL, NULL)
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
CREATE OR REPLACE FUNCTION register_user(
    p_email text, p_full_name text, p_password_hash text, p_is_admin boolean, p_is_auditor boolean
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET enable_seqscan = off AS $$
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
    INSERT INTO events (stream, type, data) VALUES (user_stream(v_user_id), 'UserRegistered', v_data);
    RETURN v_user_id;
END
$$;

-- Some fields of a live user (NULL leaves a field as it is). outcome: 'updated' with the user
-- as it is now, 'user_not_found', or 'role_conflict' (admin and auditor at once); only
-- 'updated' records anything. A new password or another email revokes earlier tokens: the
-- credentials version grows.
CREATE OR REPLACE FUNCTION update_user(
    p_user_id bigint, p_email text, p_full_name text, p_password_hash text, p_is_admin boolean,
    p_is_auditor boolean
) RETURNS TABLE (
    outcome text, id bigint, email text, full_name text, is_admin boolean, is_auditor boolean,
    credentials_version integer
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET enable_seqscan = off AS $$
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
    INSERT INTO events (stream, type, data) VALUES (user_stream(p_user_id), 'UserUpdated', v_data);
    RETURN QUERY SELECT 'updated', u.id, u.email, u.full_name, u.is_admin, u.is_auditor,
                        u.credentials_version
                 FROM users AS u WHERE u.id = p_user_id;
END
$$;

-- A live user deleted (its events stay); returns 'deleted' or 'user_not_found'.
CREATE OR REPLACE FUNCTION delete_user(p_user_id bigint) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET enable_seqscan = off AS $$
DECLARE
    v_data jsonb := jsonb_build_object('user_id', p_user_id);
BEGIN
    -- The row lock makes a concurrent payment to this user wait, or wait for it.
    PERFORM 1 FROM users AS u WHERE u.id = p_user_id AND NOT u.deleted FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'user_not_found';
    END IF;
    PERFORM apply_user_event('UserDeleted', v_data);
    INSERT INTO events (stream, type, data) VALUES (user_stream(p_user_id), 'UserDeleted', v_data);
    RETURN 'deleted';
END
$$;

REVOKE EXECUTE ON FUNCTION
    register_user(text, text, text, boolean, boolean),
    update_user(bigint, text, text, text, boolean, boolean),
    delete_user(bigint)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    register_user(text, text, text, boolean, boolean),
    update_user(bigint, text, text, text, boolean, boolean),
    delete_user(bigint)
    TO ledger_runtime;
