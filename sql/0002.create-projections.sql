-- Read models. Each row here follows from the event log; `ledger replay` proves it.
CREATE SEQUENCE user_ids;  -- ids of new users; never reused, not a projection

CREATE TABLE users (
    id                  bigint  PRIMARY KEY,
    email               text    NOT NULL,   -- stored as given, compared in lower case
    full_name           text    NOT NULL,
    password_hash       text    NOT NULL,
    is_admin            boolean NOT NULL,
    credentials_version integer NOT NULL,   -- bumped on a password or email change: revokes tokens
    deleted             boolean NOT NULL DEFAULT false
);

-- A live user's email is unique; a deleted user's email may be taken again.
CREATE UNIQUE INDEX users_live_email ON users (lower(email)) WHERE NOT deleted;

CREATE TABLE accounts (
    id      bigint        PRIMARY KEY,      -- chosen by the payment provider
    user_id bigint        NOT NULL REFERENCES users (id),
    balance numeric(20,2) NOT NULL DEFAULT 0 CHECK (balance >= 0)
);

CREATE INDEX accounts_by_user ON accounts (user_id, id);

CREATE TABLE payments (
    id             bigint        PRIMARY KEY,  -- the position of its PaymentReceived event
    transaction_id text          NOT NULL UNIQUE,
    user_id        bigint        NOT NULL REFERENCES users (id),
    account_id     bigint        NOT NULL REFERENCES accounts (id),
    amount         numeric(20,2) NOT NULL CHECK (amount > 0),
    balance_after  numeric(20,2) NOT NULL,     -- kept so that a re-delivery gets its original answer
    created_at     timestamptz   NOT NULL
);

CREATE INDEX payments_by_user ON payments (user_id, id DESC);
