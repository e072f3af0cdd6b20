"""Settings: one frozen value, built once from the environment by `ledger.__main__`."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# The contract's example secret. It is public, so the service warns when it is in use.
PUBLIC_EXAMPLE_WEBHOOK_SECRET = "gfdmhghif38yrf9ew0jkf32"
REPO_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


@dataclass(frozen=True)
class Argon2Cost:
    """argon2id parameters: the library's defaults in production, the cheapest in tests."""

    time_cost: int = 3
    memory_cost_kib: int = 65536
    parallelism: int = 4


CHEAPEST_ARGON2 = Argon2Cost(time_cost=1, memory_cost_kib=8, parallelism=1)


@dataclass(frozen=True)
class LoginThrottle:
    """How many failed logins a key may have in a window before it is refused until the window ends.

    Two keys are counted for each failure: the email (any email, known or not, so the answer
    tells nothing about which exist) and the client address.
    """

    failures_per_email_max: int = 10
    failures_per_address_max: int = 100
    window_s: int = 900


@dataclass(frozen=True)
class Settings:
    database_url: str | None  # None: start the embedded PostgreSQL in data_dir
    data_dir: Path
    migrations_dir: Path
    webhook_secrets: tuple[bytes, ...]
    jwt_secret: bytes
    token_ttl_s: int = 86400
    argon2: Argon2Cost = Argon2Cost()
    pool_size_min: int = 2
    pool_size_max: int = 20
    # How long a request waits for a connection before it is answered 503 (the database is
    # down, or every connection is busy): bounded, so an outage is never a hang.
    pool_timeout_s: float = 5.0
    # On SIGTERM or Ctrl-C, how long requests in flight may take to finish before they are cut.
    shutdown_timeout_s: int = 30
    login_throttle: LoginThrottle = LoginThrottle()

    @property
    def uses_public_webhook_secret(self) -> bool:
        return PUBLIC_EXAMPLE_WEBHOOK_SECRET.encode() in self.webhook_secrets


def settings_from_environment(environ: Mapping[str, str]) -> Settings:
    """Build Settings from environment variables; raise ValueError on a bad value."""
    data_dir = Path(environ.get("LEDGER_DATA_DIR", ".ledger")).resolve()
    secrets_text = environ.get("LEDGER_WEBHOOK_SECRETS", PUBLIC_EXAMPLE_WEBHOOK_SECRET)
    webhook_secrets = tuple(s.strip().encode() for s in secrets_text.split(",") if s.strip())
    if not webhook_secrets:
        raise ValueError("LEDGER_WEBHOOK_SECRETS holds no secret")
    jwt_secret = environ.get("LEDGER_JWT_SECRET")
    token_ttl_s = int(environ.get("LEDGER_TOKEN_TTL_S", "86400"))
    if token_ttl_s <= 0:
        raise ValueError("LEDGER_TOKEN_TTL_S must be a positive number of seconds")
    database_url = environ.get("LEDGER_DATABASE_URL") or None
    if database_url and database_url.partition("://")[0] not in POSTGRES_URL_SCHEMES:
        raise ValueError("LEDGER_DATABASE_URL must look like postgresql://user:password@host:5432/dbname")
    pool_timeout_s = float(environ.get("LEDGER_POOL_TIMEOUT_S", "5"))
    if not 0 < pool_timeout_s <= 600:
        raise ValueError("LEDGER_POOL_TIMEOUT_S must be a number of seconds above 0, at most 600")
    shutdown_timeout_s = _positive_int(environ, "LEDGER_SHUTDOWN_TIMEOUT_S", 30)
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        migrations_dir=Path(environ.get("LEDGER_MIGRATIONS_DIR", REPO_ROOT / "sql")),
        webhook_secrets=webhook_secrets,
        jwt_secret=jwt_secret.encode() if jwt_secret else kept_jwt_secret(data_dir),
        token_ttl_s=token_ttl_s,
        pool_timeout_s=pool_timeout_s,
        shutdown_timeout_s=shutdown_timeout_s,
        login_throttle=LoginThrottle(
            failures_per_email_max=_positive_int(environ, "LEDGER_LOGIN_FAILURES_PER_EMAIL_MAX", 10),
            failures_per_address_max=_positive_int(environ, "LEDGER_LOGIN_FAILURES_PER_ADDRESS_MAX", 100),
            window_s=_positive_int(environ, "LEDGER_LOGIN_WINDOW_S", 900),
        ),
    )


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    """Return environ[name] as an integer above 0 (default when unset); raise ValueError."""
    value = int(environ.get(name, str(default)))
    if value <= 0:
        raise ValueError(f"{name} must be an integer above 0")
    return value


def kept_jwt_secret(data_dir: Path) -> bytes:
    """Return the JWT secret kept in data_dir, generating it on first use."""
    path = data_dir / "jwt_secret"
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # O_EXCL: two processes starting at once cannot each write their own secret.
        try:
            with path.open("x", encoding="ascii") as file:
                file.write(secrets.token_hex(32))
            path.chmod(0o600)
        except FileExistsError:
            pass
    return path.read_text(encoding="ascii").strip().encode()
