"""Settings from the environment: defaults, secrets, the kept JWT secret, bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

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
