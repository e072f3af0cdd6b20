-- The contract's test users, recorded as events like any other user, with their projections.
-- The test user is user 1 and owns account 1, so that the contract's signed webhook example
-- (user_id 1, account_id 1) credits it. Both passwords are '123456' (argon2id, default cost).
INSERT INTO events (stream, type, data) VALUES
    ('user-1', 'UserRegistered', jsonb_build_object(
        'user_id', 1, 'email', 'testuser@example.com', 'full_name', 'Test User', 'is_admin', false,
        'password_hash', '$argon2id$v=19$m=65536,t=3,p=4$2NtKo46v4Z0fkE1S+4xD+g$tpVlELyY4+dVrJYYUS9NyBmXLuX+saY+PoCi7xGblTY')),
    ('user-2', 'UserRegistered', jsonb_build_object(
        'user_id', 2, 'email', 'testadmin@example.com', 'full_name', 'Test Admin', 'is_admin', true,
        'password_hash', '$argon2id$v=19$m=65536,t=3,p=4$2NtKo46v4Z0fkE1S+4xD+g$tpVlELyY4+dVrJYYUS9NyBmXLuX+saY+PoCi7xGblTY')),
    ('account-1', 'AccountOpened', jsonb_build_object('account_id', 1, 'user_id', 1));

INSERT INTO users (id, email, full_name, password_hash, is_admin, credentials_version)
SELECT (data->>'user_id')::bigint, data->>'email', data->>'full_name', data->>'password_hash',
       (data->>'is_admin')::boolean, 1
FROM events WHERE type = 'UserRegistered' ORDER BY position;

INSERT INTO accounts (id, user_id, balance) VALUES (1, 1, 0);

ALTER SEQUENCE user_ids RESTART WITH 3;
