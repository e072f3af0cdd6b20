"""Settings from the environment: defaults, secrets, the kept JWT secret, bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.config import PUBLIC_EXAMPLE_WEBHOOK_SECRET, settings_from_environment


def test_defaults_use_the_public_secret_and_the_embedded_database(tmp_path: Path) -> None:
    settings = settings_from_environment({"LEDGER_DATA_DIR": str(tmp_path)})
    assert settings.database_url is None
    assert settings.webhook_secrets == (PUBLIC_EXAMPLE_WEBHOOK_SECRET.encode(),)
    assert settings.uses_public_webhook_secret
    assert settings.token_ttl_s == 86400


def test_several_webhook_secrets_are_read_for_rotation(tmp_path: Path) -> None:
    settings = settings_from_environment(
        {"LEDGER_DATA_DIR": str(tmp_path), "LEDGER_WEBHOOK_SECRETS": "new-one, old-one ,"}
    )
    assert settings.webhook_secrets == (b"new-one", b"old-one")
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
    ],
)
def test_bad_values_are_refused(tmp_path: Path, environ: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        settings_from_environment({"LEDGER_DATA_DIR": str(tmp_path), **environ})
