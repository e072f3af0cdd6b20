"""Settings from the environment: defaults, secrets, the kept JWT secret, bad values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from ledger import config, db
from ledger.config import PUBLIC_EXAMPLE_WEBHOOK_SECRET, LoginThrottle, settings_from_environment


def test_defaults_use_the_public_secret_and_the_embedded_database(tmp_path: Path) -> None:
    settings = settings_from_environment({"LEDGER_DATA_DIR": str(tmp_path)})
    assert settings.database_url is None
    assert settings.webhooks.secrets == (PUBLIC_EXAMPLE_WEBHOOK_SECRET.encode(),)
    assert settings.uses_public_webhook_secret
    assert settings.token_ttl_s == 86400


def test_several_webhook_secrets_are_read_for_rotation(tmp_path: Path) -> None:
    settings = settings_from_environment(
        {"LEDGER_DATA_DIR": str(tmp_path), "LEDGER_WEBHOOK_SECRETS": "new-one, old-one ,"}
    )
    assert settings.webhooks.secrets == (b"new-one", b"old-one")
    assert not settings.uses_public_webhook_secret


def test_a_generated_jwt_secret_is_kept_in_the_data_dir(tmp_path: Path) -> None:
    first = settings_from_environment({"LEDGER_DATA_DIR": str(tmp_path)}).jwt_secret
    second = settings_from_environment({"LEDGER_DATA_DIR": str(tmp_path)}).jwt_secret
    assert first == second
    assert len(first) >= 64
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o077 == 0, "the secret file must be private"
    given = settings_from_environment({"LEDGER_DATA_DIR": str(tmp_path), "LEDGER_JWT_SECRET": "set"})
    assert given.jwt_secret == b"set"


@pytest.mark.parametrize(
    "environ",
    [
        {"LEDGER_WEBHOOK_SECRETS": " , "},
        {"LEDGER_TOKEN_TTL_S": "0"},
        {"LEDGER_TOKEN_TTL_S": "soon"},
        {"LEDGER_DATABASE_URL": "mysql://root@localhost/db"},
        {"LEDGER_POOL_TIMEOUT_S": "0"},
        {"LEDGER_POOL_TIMEOUT_S": "nan"},
        {"LEDGER_LOGIN_FAILURES_PER_EMAIL_MAX": "0"},
        {"LEDGER_LOGIN_FAILURES_PER_ADDRESS_MAX": "many"},
        {"LEDGER_LOGIN_WINDOW_S": "-5"},
        {"LEDGER_SHUTDOWN_TIMEOUT_S": "0"},
    ],
)
def test_bad_values_are_refused(tmp_path: Path, environ: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        settings_from_environment({"LEDGER_DATA_DIR": str(tmp_path), **environ})


def test_the_login_throttle_and_the_pool_timeout_are_read(tmp_path: Path) -> None:
    settings = settings_from_environment(
        {
            "LEDGER_DATA_DIR": str(tmp_path),
            "LEDGER_LOGIN_FAILURES_PER_EMAIL_MAX": "3",
            "LEDGER_LOGIN_FAILURES_PER_ADDRESS_MAX": "7",
            "LEDGER_LOGIN_WINDOW_S": "60",
            "LEDGER_POOL_TIMEOUT_S": "2.5",
            "LEDGER_SHUTDOWN_TIMEOUT_S": "12",
        }
    )
    assert settings.login_throttle == LoginThrottle(3, 7, 60)
    assert settings.pool_timeout_s == 2.5
    assert settings.shutdown_timeout_s == 12
    defaults = settings_from_environment({"LEDGER_DATA_DIR": str(tmp_path)})
    assert defaults.login_throttle == LoginThrottle()
    assert defaults.pool_timeout_s == 5.0


# One bad value for each variable that takes a value (LEDGER_JWT_SECRET takes any: production's
# refusals judge it). "{tmp}" is the test's own directory; "{file}" is a file in it.
BAD_VALUES = [
    ("LEDGER_ENV", "staging"),
    ("LEDGER_DATABASE_URL", "mysql://root@localhost/db"),
    ("LEDGER_OWNER_DATABASE_URL", "sqlite:///ledger.db"),
    ("LEDGER_DATABASE_POOLER", "session"),
    ("LEDGER_REPLICA_URL", "mysql://replica/ledger"),
    ("LEDGER_DATA_DIR", "{file}"),
    ("LEDGER_MIGRATIONS_DIR", "{tmp}/no-such-directory"),
    ("LEDGER_WEBHOOK_SECRETS", " , "),
    ("LEDGER_STANDARD_WEBHOOK_SECRETS", "not-a-whsec-secret"),
    ("LEDGER_WEBHOOK_SCHEMES", "carrier-pigeon"),
    ("LEDGER_TOKEN_TTL_S", "0"),
    ("LEDGER_PASSWORD_HASHING_JOBS", "0"),
    ("LEDGER_PASSWORD_HASHING_WAITING_MAX", "-1"),
    ("LEDGER_POOL_TIMEOUT_S", "nan"),
    ("LEDGER_STATEMENT_TIMEOUT_S", "0"),
    ("LEDGER_WEBHOOK_BATCH_MAX", "0"),
    ("LEDGER_TRANSFER_BATCH_MAX", "-1"),
    ("LEDGER_REQUEST_READ_TIMEOUT_S", "601"),
    ("LEDGER_SHUTDOWN_TIMEOUT_S", "soon"),
    ("LEDGER_LOGIN_FAILURES_PER_EMAIL_MAX", "0"),
    ("LEDGER_LOGIN_FAILURES_PER_ADDRESS_MAX", "many"),
    ("LEDGER_LOGIN_WINDOW_S", "-5"),
    ("LEDGER_REGISTRATIONS_PER_ADDRESS_MAX", "1.5"),
    ("LEDGER_REGISTRATION_WINDOW_S", "0"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
def test_a_bad_value_is_refused_with_its_variables_name(tmp_path: Path, variable: str, value: str) -> None:
    (tmp_path / "file").write_text("not a directory")
    value = value.format(tmp=tmp_path, file=tmp_path / "file")
    with pytest.raises(ValueError, match=variable):
        settings_from_environment({"LEDGER_DATA_DIR": str(tmp_path), variable: value})


def test_every_variable_the_settings_read_has_a_bad_value_above() -> None:
    source = Path(config.__file__).read_text()
    read = set(re.findall(r'"(LEDGER_[A-Z_]+)"', source)) - {"LEDGER_JWT_SECRET"}
    assert read == {variable for variable, _ in BAD_VALUES}


def test_the_pooler_setting_reads_transaction_or_nothing(tmp_path: Path) -> None:
    base = {"LEDGER_DATA_DIR": str(tmp_path)}
    assert settings_from_environment(base).database_pooler is None
    assert settings_from_environment(base | {"LEDGER_DATABASE_POOLER": ""}).database_pooler is None
    pooled = settings_from_environment(base | {"LEDGER_DATABASE_POOLER": "transaction"})
    assert pooled.database_pooler == "transaction"


def test_behind_a_transaction_pooler_the_serving_connections_send_no_startup_options() -> None:
    """PgBouncer refuses a client that sends options; without a pooler they carry the role and
    the timeout."""
    url = "postgresql://ledger_app@pgbouncer:6432/ledger?options=-c%20search_path%3Dpublic"
    direct = conninfo_to_dict(db.serving_conninfo(url, statement_timeout_s=2.5))
    assert direct["options"] == "-c search_path=public -c role=ledger_runtime -c statement_timeout=2500"
    pooled = conninfo_to_dict(db.serving_conninfo(url, statement_timeout_s=2.5, pooler="transaction"))
    assert "options" not in pooled or "role" not in str(pooled["options"])
    assert pooled["application_name"] == "ledger"
