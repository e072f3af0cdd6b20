"""The hand-written SQL mutants: each one small textual change in one function of
sql/definitions/, and the tests that should notice it.

`original` must occur exactly once in its file (the command refuses to run a mutant whose text has
moved on, instead of reporting it as a survivor). The tests are pytest node ids or files; they run
against a fresh database built from the mutated definitions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SqlMutant:
    name: str
    file: str  # under sql/definitions/
    original: str
    replacement: str
    tests: tuple[str, ...]


EVENT_LOG = "10-event-log.sql"
EVENT_DATA = "20-event-data.sql"
USERS = "30-users.sql"
PAYMENTS = "40-payments.sql"
MONEY = "50-money-movement.sql"

# The tests most mutants answer to, by what they watch.
VERIFY = "tests/db/test_verify.py"
REPLAY = "tests/db/test_replay.py"
FEED = "tests/db/test_feed.py"
PAYMENTS_DB = "tests/db/test_payments.py"
MONEY_DB = "tests/db/test_money_movement.py"
MONEY_HTTP = "tests/http/test_money.py"
GUARDS = "tests/db/test_database_guards.py"
EXPORT = "tests/db/test_export.py"
STANDARD_WEBHOOKS = "tests/security/test_standard_webhooks.py"
RESPLIT = "tests/security/test_signature_resplit.py"
GROUP_COMMIT = "tests/db/test_group_commit.py"
TRANSFER_BATCHES = "tests/db/test_transfer_batches.py"
STANDBY_FEED = "tests/e2e/test_failover.py::test_the_feed_on_the_standby_has_no_gaps_while_the_primary_writes"
PROPERTIES = "tests/property/test_ledger_properties.py"
PLANS = "tests/db/test_plans.py"

SQL_MUTANTS: tuple[SqlMutant, ...] = (
    # The event log: append-only, chained, fed to auditors below a horizon.
    SqlMutant(
        "append-only-lets-update-through",
        EVENT_LOG,
        "BEFORE UPDATE OR DELETE ON events",
        "BEFORE DELETE ON events",
        ("tests/db/test_event_log.py", GUARDS),
    ),
    SqlMutant(
        "append-only-lets-truncate-through",
        EVENT_LOG,
        "BEGIN\n    RAISE EXCEPTION 'the event log is append-only",
        "BEGIN\n    IF TG_OP = 'TRUNCATE' THEN RETURN NULL; END IF;\n"
        "    RAISE EXCEPTION 'the event log is append-only",
        ("tests/db/test_event_log.py",),
    ),
    SqlMutant(
        "feed-horizon-newest-running",
        EVENT_LOG,
        "SELECT min(running.xid)",
        "SELECT max(running.xid)",
        (FEED,),
    ),
    SqlMutant(
        "feed-horizon-ignores-this-database",
        EVENT_LOG,
        "a.backend_xid = xid(running.xid) AND a.datname <> current_database()",
        "a.backend_xid = xid(running.xid) AND a.datname = current_database()",
        (FEED,),
    ),
    SqlMutant(
        "feed-horizon-past-everything",
        EVENT_LOG,
        "pg_snapshot_xmax(pg_current_snapshot()))",
        "pg_snapshot_xmax(pg_current_snapshot()) + 1000)",
        (FEED,),
    ),
    SqlMutant(
        "redaction-leaves-password-hashes",
        EVENT_LOG,
        "data->>'password_hash' NOT LIKE 'sha256:%'",
        "data->>'password_hash' LIKE 'sha256:%'",
        (FEED, EXPORT),
    ),
    SqlMutant(
        "chain-digest-leaves-out-the-data",
        EVENT_LOG,
        "stream_version || chr(31) || redacted(data)::text, 'UTF8'))",
        "stream_version, 'UTF8'))",
        (VERIFY, EXPORT, GUARDS),
    ),
    SqlMutant(
        "chain-digest-leaves-out-the-type",
        EVENT_LOG,
        "type || chr(31) || stream || chr(31) || stream_version",
        "stream || chr(31) || stream_version",
        (VERIFY, EXPORT, GUARDS),
    ),
    SqlMutant(
        "chain-forgets-the-previous-hash",
        EVENT_LOG,
        "    SELECT sha256(previous || event_digest(type, stream, stream_version, data))",
        "    SELECT sha256(event_digest(type, stream, stream_version, data))",
        (VERIFY, EXPORT, GUARDS),
    ),
    SqlMutant(
        "chain-keeps-the-version",
        EVENT_LOG,
        "update its head first.\n    UPDATE stream_heads AS head\n    SET version = head.version + 1,",
        "update its head first.\n    UPDATE stream_heads AS head\n    SET version = head.version,",
        (VERIFY, "tests/db/test_event_log.py", GUARDS),
    ),
    SqlMutant(
        "chain-hashes-the-old-version",
        EVENT_LOG,
        "update its head first.\n    UPDATE stream_heads AS head\n    SET version = head.version + 1,\n"
        "        hash = event_hash(head.hash, NEW.type, NEW.stream, head.version + 1, NEW.data)",
        "update its head first.\n    UPDATE stream_heads AS head\n    SET version = head.version + 1,\n"
        "        hash = event_hash(head.hash, NEW.type, NEW.stream, head.version, NEW.data)",
        (VERIFY, EXPORT, GUARDS),
    ),
    SqlMutant(
        "unbalanced-zero-leg-accepted",
        EVENT_LOG,
        "OR zeros > 0 THEN",
        "OR zeros > 1 THEN",
        (MONEY_DB, GUARDS),
    ),
    SqlMutant(
        "unbalanced-needs-one-leg",
        EVENT_LOG,
        "IF legs < 2 OR",
        "IF legs < 1 OR",
        (MONEY_DB, GUARDS),
    ),
    SqlMutant(
        "unbalanced-by-a-cent-accepted",
        EVENT_LOG,
        "total IS DISTINCT FROM 0 OR",
        "abs(total) > 0.01 OR",
        (MONEY_DB, GUARDS),
    ),
    SqlMutant(
        "unbalanced-checks-only-listed-postings",
        EVENT_LOG,
        "IF NEW.type IN ('TransferMade', 'PaymentReversed') OR NEW.data ? 'postings' THEN",
        "IF NEW.data ? 'postings' THEN",
        (MONEY_DB, GUARDS),
    ),
    SqlMutant(
        "balanced-trigger-skips-other-types-with-postings",
        EVENT_LOG,
        "WHEN (NEW.type IN ('TransferMade', 'PaymentReversed') OR NEW.data ? 'postings')",
        "WHEN (NEW.type IN ('TransferMade', 'PaymentReversed'))",
        (MONEY_DB, GUARDS),
    ),
    # The balance rule and the cuts of the log.
    SqlMutant(
        "cut-leaves-out-its-last-position",
        EVENT_DATA,
        "(through_position IS NULL OR event_position <= through_position)",
        "(through_position IS NULL OR event_position < through_position)",
        (MONEY_HTTP, "tests/http/test_auditors.py", "tests/property/test_ledger_properties.py"),
    ),
    SqlMutant(
        "cut-by-time-leaves-out-its-instant",
        EVENT_DATA,
        "(through_time IS NULL OR event_recorded_at <= through_time)",
        "(through_time IS NULL OR event_recorded_at < through_time)",
        ("tests/http/test_auditors.py", "tests/property/test_ledger_properties.py"),
    ),
    SqlMutant(
        "cut-by-cursor-leaves-out-its-event",
        EVENT_DATA,
        "(event_xact_id, event_position) <= (through_xact_id, through_xact_position)",
        "(event_xact_id, event_position) < (through_xact_id, through_xact_position)",
        (EXPORT, FEED),
    ),
    SqlMutant(
        "clearing-leg-of-a-payment-has-its-sign",
        EVENT_DATA,
        "'payment', transaction_id, provider_clearing_account(), -amount",
        "'payment', transaction_id, provider_clearing_account(), amount",
        (MONEY_HTTP, REPLAY),
    ),
    SqlMutant(
        "balance-of-an-account-without-postings-is-not-zero",
        EVENT_DATA,
        "COALESCE(posted.balance, 0)::numeric(20,2)",
        "COALESCE(posted.balance, 0.01)::numeric(20,2)",
        (MONEY_HTTP, REPLAY, "tests/property/test_double_entry.py"),
    ),
    SqlMutant(
        "running-balance-in-reverse",
        EVENT_DATA,
        "sum(p.amount) OVER (PARTITION BY p.account_id ORDER BY p.position)",
        "sum(p.amount) OVER (PARTITION BY p.account_id ORDER BY p.position DESC)",
        (REPLAY, EXPORT, "tests/property/test_double_entry.py"),
    ),
    SqlMutant(
        "transfer-source-posting-is-positive",
        EVENT_DATA,
        "SELECT from_account_id, position, 'transfer', 'transfer-' || id, -amount",
        "SELECT from_account_id, position, 'transfer', 'transfer-' || id, amount",
        (MONEY_HTTP,),
    ),
    SqlMutant(
        "clearing-balance-reads-users-postings",
        EVENT_DATA,
        "FROM postings AS p WHERE p.account_id = s.id",
        "FROM postings AS p WHERE p.account_id <> s.id",
        (MONEY_HTTP, MONEY_DB),
    ),
    # Users.
    SqlMutant(
        "register-user-takes-a-password-in-clear",
        USERS,
        "IF p_password_hash NOT LIKE '$argon2%' THEN  -- a guard: never a password in clear",
        "IF false THEN  -- a guard: never a password in clear",
        (GUARDS,),
    ),
    SqlMutant(
        "role-conflict-sees-only-the-change",
        USERS,
        "IF COALESCE(p_is_admin, v_current.is_admin) AND COALESCE(p_is_auditor, v_current.is_auditor) THEN",
        "IF p_is_admin AND p_is_auditor THEN",
        ("tests/http/test_auditors.py",),
    ),
    SqlMutant(
        "email-change-keeps-tokens",
        USERS,
        "p_password_hash IS NOT NULL OR p_email <> v_current.email THEN 1",
        "p_password_hash IS NOT NULL THEN 1",
        ("tests/http/test_auth.py",),
    ),
    SqlMutant(
        "deleting-a-deleted-user",
        USERS,
        "PERFORM 1 FROM users AS u WHERE u.id = p_user_id AND NOT u.deleted FOR UPDATE;",
        "PERFORM 1 FROM users AS u WHERE u.id = p_user_id FOR UPDATE;",
        ("tests/http/test_admin.py",),
    ),
    SqlMutant(
        "replayed-deletion-undeletes",
        USERS,
        "UPDATE users SET deleted = true WHERE",
        "UPDATE users SET deleted = false WHERE",
        ("tests/http/test_admin.py", REPLAY),
    ),
    # Payments: receive_payment() and the signatures verify checks again.
    SqlMutant(
        "receive-payment-takes-zero",
        PAYMENTS,
        "IF p_amount IS NULL OR p_amount <= 0 OR",
        "IF p_amount IS NULL OR p_amount < 0 OR",
        (GUARDS,),
    ),
    SqlMutant(
        "receive-payment-takes-more-than-the-largest",
        PAYMENTS,
        "OR p_amount > 1000000000000 OR p_amount <> round(p_amount, 2)",
        "OR p_amount > 10000000000000 OR p_amount <> round(p_amount, 2)",
        (GUARDS,),
    ),
    SqlMutant(
        "receive-payment-takes-fractions-of-cents",
        PAYMENTS,
        "OR p_amount <> round(p_amount, 2) THEN",
        "OR p_amount <> round(p_amount, 3) THEN",
        (GUARDS,),
    ),
    SqlMutant(
        "recorded-delivery-may-name-another-amount",
        PAYMENTS,
        "AND (p_delivery->>'amount')::numeric = p_amount\n",
        "\n",
        ("tests/security/test_database_roles.py", GUARDS),
    ),
    SqlMutant(
        "recorded-delivery-may-name-another-user",
        PAYMENTS,
        "AND p_delivery->>'user_id' = p_user_id::text\n",
        "\n",
        ("tests/security/test_database_roles.py", GUARDS),
    ),
    SqlMutant(
        "signed-body-may-name-another-amount",
        PAYMENTS,
        "AND (v_body->>'amount')::numeric = p_amount, false)",
        ", false)",
        (STANDARD_WEBHOOKS, GUARDS),
    ),
    SqlMutant(
        "redelivery-credits-again",
        PAYMENTS,
        "WHERE p.transaction_id = p_transaction_id;\n    IF FOUND THEN",
        "WHERE p.transaction_id = p_transaction_id;\n    IF false THEN",
        (PAYMENTS_DB,),
    ),
    SqlMutant(
        "deleted-user-is-paid",
        PAYMENTS,
        "WHERE u.id = p_user_id AND NOT u.deleted FOR SHARE;",
        "WHERE u.id = p_user_id FOR SHARE;",
        (PAYMENTS_DB, "tests/http/test_webhook.py"),
    ),
    SqlMutant(
        "another-users-account-is-credited",
        PAYMENTS,
        "IF v_owner <> p_user_id THEN",
        "IF v_owner < p_user_id THEN",
        (PAYMENTS_DB, "tests/http/test_webhook.py"),
    ),
    SqlMutant(
        "delivery-key-is-never-spent",
        PAYMENTS,
        "INSERT INTO delivery_keys (key, transaction_id) "
        "VALUES (delivery_key(p_delivery), p_transaction_id);",
        "",
        (RESPLIT, STANDARD_WEBHOOKS),
    ),
    SqlMutant(
        "delivery-key-is-case-sensitive",
        PAYMENTS,
        "ELSE 'signature:' || lower(data->>'signature') END",
        "ELSE 'signature:' || (data->>'signature') END",
        (RESPLIT, GUARDS),
    ),
    SqlMutant(
        "delivery-key-of-standard-webhooks-is-the-signature",
        PAYMENTS,
        "SELECT CASE WHEN data ? 'webhook_id' THEN 'webhook-id:' || (data->>'webhook_id')",
        "SELECT CASE WHEN data ? 'webhook_id' THEN 'webhook-id:' || (data->>'webhook_signature')",
        (STANDARD_WEBHOOKS,),
    ),
    SqlMutant(
        "balance-is-overwritten",
        PAYMENTS,
        "SET balance = accounts.balance + p_amount",
        "SET balance = p_amount",
        (PAYMENTS_DB,),
    ),
    SqlMutant(
        "verify-signature-is-case-sensitive",
        PAYMENTS,
        "= lower(data->>'signature') THEN",
        "= (data->>'signature') THEN",
        (VERIFY, GUARDS),
    ),
    SqlMutant(
        "verify-signature-leaves-out-the-user",
        PAYMENTS,
        "|| (data->>'transaction_id')\n                         || (data->>'user_id'), 'UTF8');",
        "|| (data->>'transaction_id'), 'UTF8');",
        (VERIFY,),
    ),
    SqlMutant(
        "verify-standard-webhooks-wrong-version",
        PAYMENTS,
        "IF 'v1,' || encode(hmac_sha256(secret, signed), 'base64') = ANY (given) THEN",
        "IF 'v1,' || encode(sha256(secret || signed), 'base64') = ANY (given) THEN",
        (STANDARD_WEBHOOKS,),
    ),
    SqlMutant(
        "hmac-inner-pad",
        PAYMENTS,
        "get_byte(block, i) # 54);",
        "get_byte(block, i) # 55);",
        (STANDARD_WEBHOOKS,),
    ),
    SqlMutant(
        "verify-standard-webhooks-any-key-but-the-last",
        PAYMENTS,
        "            END IF;\n        END LOOP;\n        RETURN false;\n    END IF;",
        "            END IF;\n            EXIT;\n        END LOOP;\n        RETURN false;\n    END IF;",
        (STANDARD_WEBHOOKS,),
    ),
    # Transfers and reversals.
    SqlMutant(
        "is-amount-takes-zero",
        MONEY,
        "amount IS NOT NULL AND amount > 0 AND",
        "amount IS NOT NULL AND amount >= 0 AND",
        (MONEY_DB,),
    ),
    SqlMutant(
        "is-amount-takes-more-than-the-largest",
        MONEY,
        "amount <= 1000000000000 AND",
        "amount <= 10000000000000 AND",
        (MONEY_DB, GUARDS),
    ),
    SqlMutant(
        "is-amount-takes-fractions-of-cents",
        MONEY,
        "amount = round(amount, 2)",
        "amount = round(amount, 3)",
        (MONEY_DB,),
    ),
    SqlMutant(
        "transfer-overdraws-by-a-cent",
        MONEY,
        "IF v_balance < p_amount THEN",
        "IF v_balance + 0.01 < p_amount THEN",
        (MONEY_HTTP, MONEY_DB, GUARDS),
    ),
    SqlMutant(
        "transfer-refuses-the-whole-balance",
        MONEY,
        "IF v_balance < p_amount THEN",
        "IF v_balance <= p_amount THEN",
        (MONEY_DB,),
    ),
    SqlMutant(
        "transfer-from-someone-elses-account",
        MONEY,
        "IF v_owner IS DISTINCT FROM p_user_id",
        "IF v_owner IS NULL",
        (MONEY_HTTP,),
    ),
    SqlMutant(
        "transfer-to-a-deleted-users-account",
        MONEY,
        "IF v_to_owner IS NULL OR NOT EXISTS "
        "(SELECT 1 FROM users AS u WHERE u.id = v_to_owner AND NOT u.deleted)",
        "IF v_to_owner IS NULL",
        (MONEY_HTTP, GUARDS),
    ),
    SqlMutant(
        "transfer-retry-with-another-amount-is-seen",
        MONEY,
        "= (p_from_account_id, p_to_account_id, p_amount)",
        "= (p_from_account_id, p_to_account_id, v_seen.amount)",
        (MONEY_HTTP,),
    ),
    SqlMutant(
        "transfer-to-the-same-account",
        MONEY,
        "IF p_from_account_id = p_to_account_id THEN",
        "IF false THEN",
        (MONEY_HTTP,),
    ),
    SqlMutant(
        "transfer-credits-the-source",
        MONEY,
        "SET balance = a.balance + p_amount WHERE a.id = p_to_account_id",
        "SET balance = a.balance + p_amount WHERE a.id = p_from_account_id",
        (MONEY_HTTP,),
    ),
    SqlMutant(
        "transfer-batch-takes-a-revoked-token",
        MONEY,
        "AND u.credentials_version = t.version)",
        ")",
        (TRANSFER_BATCHES, MONEY_HTTP),
    ),
    SqlMutant(
        "transfer-batch-takes-no-lock-ahead",
        MONEY,
        "    IF v_count > 1 THEN\n        BEGIN\n            PERFORM pg_advisory_xact_lock",
        "    IF false THEN\n        BEGIN\n            PERFORM pg_advisory_xact_lock",
        (TRANSFER_BATCHES,),
    ),
    SqlMutant(
        "transfer-batch-fails-with-one-transfer",
        MONEY,
        "        v_outcomes := NULL;\n",
        "        RAISE;\n",
        (TRANSFER_BATCHES,),
    ),
    SqlMutant(
        "reversal-may-exceed-its-payment-in-parts",
        MONEY,
        "IF v_reversed + p_amount > v_payment.amount THEN",
        "IF p_amount > v_payment.amount THEN",
        (MONEY_HTTP, MONEY_DB),
    ),
    SqlMutant(
        "reversal-of-the-whole-payment-refused",
        MONEY,
        "IF v_reversed + p_amount > v_payment.amount THEN",
        "IF v_reversed + p_amount >= v_payment.amount THEN",
        (MONEY_HTTP, GUARDS),
    ),
    SqlMutant(
        "reversal-without-a-reason",
        MONEY,
        "IF NOT is_amount(p_amount) OR p_reason IS NULL OR",
        "IF NOT is_amount(p_amount) OR",
        (GUARDS,),
    ),
    SqlMutant(
        "reversal-key-may-be-empty",
        MONEY,
        "       OR length(p_idempotency_key) NOT BETWEEN 1 AND 255 THEN",
        "       OR length(p_idempotency_key) NOT BETWEEN 0 AND 255 THEN",
        (MONEY_DB,),
    ),
    SqlMutant(
        "reversal-retry-with-another-reason-is-seen",
        MONEY,
        "= (p_payment_id, p_amount, p_reason)",
        "= (p_payment_id, p_amount, v_seen.reason)",
        (MONEY_HTTP,),
    ),
    SqlMutant(
        "reversal-takes-from-the-clearing-account-twice",
        MONEY,
        "jsonb_build_object('account_id', v_payment.account_id, 'amount', (-p_amount)::numeric(20,2)::text)",
        "jsonb_build_object('account_id', provider_clearing_account(), "
        "'amount', (-p_amount)::numeric(20,2)::text)",
        (MONEY_HTTP, MONEY_DB),
    ),
    # Group commit: many deliveries in one statement, each answered as if alone.
    SqlMutant(
        "a-failed-delivery-fails-its-batch",
        PAYMENTS,
        "EXCEPTION WHEN OTHERS THEN  -- not a cancel",
        "EXCEPTION WHEN division_by_zero THEN  -- not a cancel",
        (GROUP_COMMIT,),
    ),
    SqlMutant(
        "a-batch-answers-in-another-order",
        PAYMENTS,
        "SELECT i, r.outcome, r.payment_id",
        "SELECT v_count + 1 - i, r.outcome, r.payment_id",
        (GROUP_COMMIT, PROPERTIES),
    ),
    # Plans by key, whatever the statistics (sql/definitions/10-event-log.sql).
    SqlMutant(
        "receive-payment-may-plan-a-scan",
        PAYMENTS,
        "SET enable_seqscan = off AS $$\nDECLARE\n    v_owner ",
        "AS $$\nDECLARE\n    v_owner ",
        (PLANS,),
    ),
    SqlMutant(
        "transfer-money-may-plan-a-scan",
        MONEY,
        "SET enable_seqscan = off AS $$\n#variable_conflict use_column\nDECLARE\n    v_seen       transfers",
        "AS $$\n#variable_conflict use_column\nDECLARE\n    v_seen       transfers",
        (PLANS,),
    ),
    SqlMutant(
        "feed-horizon-on-a-standby-reads-its-snapshot-as-a-primarys",
        EVENT_LOG,
        "SELECT CASE WHEN pg_is_in_recovery() THEN",
        "SELECT CASE WHEN false THEN",
        (STANDBY_FEED,),
    ),
)
