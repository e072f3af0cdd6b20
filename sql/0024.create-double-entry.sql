-- Double entry: every movement of money is one ledger transaction of two or more postings
-- (account, signed amount) that sum to zero. A payment posts +amount to the user's account and
-- -amount to the payment provider's clearing account (PaymentReceived events already in the
-- log are read so, unchanged); a transfer moves money between two users' accounts; a reversal
-- (a refund or a chargeback) takes money back from a user's account to the clearing account.

-- The accounts the movements need besides users' accounts. Their ids are negative, so that no
-- id a payment provider sends can ever name one, and they belong to no user.
CREATE TABLE system_accounts (
    id   bigint PRIMARY KEY CHECK (id < 0),
    kind text   NOT NULL UNIQUE,  -- what the account is for
    note text   NOT NULL
);
INSERT INTO system_accounts (id, kind, note) VALUES
    (-1, 'provider_clearing',
     'The payment provider''s clearing account: debited by every payment, credited by every reversal. '
     'It is negative by nature: what the provider owes the ledger''s users.');

-- A user's account may now go below zero, through a reversal only (a chargeback is not
-- optional); transfer_money() refuses any transfer that would take it there.
ALTER TABLE accounts DROP CONSTRAINT accounts_balance_check;

CREATE SEQUENCE transfer_ids;
CREATE TABLE transfers (
    id              bigint        PRIMARY KEY,
    position        bigint        NOT NULL UNIQUE,  -- its TransferMade event
    user_id         bigint        NOT NULL REFERENCES users (id),  -- who asked for it
    idempotency_key text          NOT NULL,
    from_account_id bigint        NOT NULL REFERENCES accounts (id),
    to_account_id   bigint        NOT NULL REFERENCES accounts (id),
    amount          numeric(20,2) NOT NULL CHECK (amount > 0),
    from_balance_after numeric(20,2) NOT NULL,  -- each account's balance after it
    to_balance_after   numeric(20,2) NOT NULL,
    created_at      timestamptz   NOT NULL,
    UNIQUE (user_id, idempotency_key),
    CHECK (from_account_id <> to_account_id)
);
CREATE INDEX transfers_from_account ON transfers (from_account_id, position);
CREATE INDEX transfers_to_account ON transfers (to_account_id, position);

CREATE SEQUENCE reversal_ids;
CREATE TABLE reversals (
    id              bigint        PRIMARY KEY,
    position        bigint        NOT NULL UNIQUE,  -- its PaymentReversed event
    payment_id      bigint        NOT NULL REFERENCES payments (id),
    user_id         bigint        NOT NULL REFERENCES users (id),  -- the admin who reversed it
    idempotency_key text          NOT NULL,
    account_id      bigint        NOT NULL REFERENCES accounts (id),
    amount          numeric(20,2) NOT NULL CHECK (amount > 0),
    reason          text          NOT NULL,
    balance_after   numeric(20,2) NOT NULL,  -- the account's balance after it
    created_at      timestamptz   NOT NULL,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX reversals_by_payment ON reversals (payment_id);
CREATE INDEX reversals_by_account ON reversals (account_id, position);

-- What the runtime role reads; it writes them only through transfer_money() and
-- reverse_payment() (sql/definitions/50-money-movement.sql). The postings of an account (its
-- history, each with the balance after it) are the view `postings` over payments, transfers
-- and reversals: no payment writes a row more than before.
GRANT SELECT ON system_accounts, transfers, reversals TO ledger_runtime, ledger_auditor;

-- Functions whose arguments change; sql/definitions/ creates them anew after the migrations.
DROP FUNCTION IF EXISTS balances_in_log(bigint[], bigint, timestamptz, xid8, bigint);
DROP FUNCTION IF EXISTS payments_in_log(bigint, timestamptz);
