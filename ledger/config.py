"""Settings: one frozen value, built once per process from the environment (by ledger.cli, and by
each server worker in ledger.server.workers), and the refusals of production mode. The only
reader of the environment."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ledger.signatures import SCHEMES, SIGNATURE_FIELD, STANDARD_WEBHOOKS, Webhooks, standard_key

log = logging.getLogger(__name__)
Number = TypeVar("Number", int, float)

# The contract's example secret. It is public, so the service warns when it is in use, and
# production refuses it.
PUBLIC_EXAMPLE_WEBHOOK_SECRET = "gfdmhghif38yrf9ew0jkf32"
REPO_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
DEVELOPMENT, PRODUCTION = "development", "production"
# LEDGER_DATABASE_POOLER: what stands between the service and PostgreSQL. Only transaction
# pooling changes what the service may do on a connection (ledger.db.serving_conninfo).
TRANSACTION_POOLER = "transaction"
# HS256 wants a key at least as long as its output (RFC 7518, 3.2).
JWT_SECRET_LENGTH_MIN = 32
# Words that mark a secret copied from an example rather than generated.
PLACEHOLDER_MARKS = (
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "your-secret",
    "example",
    "placeholder",
)


@dataclass(frozen=True)
class Argon2Cost:
    """argon2id parameters: OWASP's recommendation in production, the cheapest in tests.

    19 MiB, 2 passes, one lane (OWASP Password Storage Cheat Sheet; RFC 9106 allows lowering
    memory where it is scarce). One lane, so that one hashing job uses one core and the number
    of jobs bounds the CPU that hashing takes (ledger.passwords); 19 MiB, so that a job per
    core fits in a server process's memory. Hashes of other parameters still verify: each
    hash carries its own.
    """

    time_cost: int = 2
    memory_cost_kib: int = 19 * 1024
    parallelism: int = 1


CHEAPEST_ARGON2 = Argon2Cost(time_cost=1, memory_cost_kib=8, parallelism=1)


@dataclass(frozen=True)
class PasswordHashing:
    """How much password hashing a server process takes on at once: jobs_max run (one per core
    by default), waiting_max more wait; beyond that a request is answered 503."""

    jobs_max: int = os.cpu_count() or 1
    waiting_max: int = 16


@dataclass(frozen=True)
class LoginThrottle:
    """How many failed logins a key may have in a window before it is refused until the window ends.

    Two keys are counted for each attempt: the email (any email, known or not, so the answer
    tells nothing about which exist) and the client address.
    """

    failures_per_email_max: int = 10
    failures_per_address_max: int = 100
    window_s: int = 900


@dataclass(frozen=True)
class RequestThrottle:
    """How many requests of one kind a client address may make in a window (registrations)."""

    requests_per_address_max: int = 20
    window_s: int = 3600


@dataclass(frozen=True)
class Settings:
    database_url: str | None  # None: start the embedded PostgreSQL in data_dir
    data_dir: Path
    migrations_dir: Path
    webhooks: Webhooks
    jwt_secret: bytes
    token_ttl_s: int = 86400
    environment: str = DEVELOPMENT
    # The tables' owner, for migrations; None: database_url (which then also migrates).
    owner_database_url: str | None = None
    # A hot standby that serves the auditors' reads (the feed, /audit/*, export, verify);
    # None: the primary serves them too.
    replica_url: str | None = None
    # "transaction" when database_url reaches PostgreSQL through a transaction-pooling PgBouncer:
    # no startup options, no prepared statements, no migrations through it (ledger.db).
    database_pooler: str | None = None
    argon2: Argon2Cost = Argon2Cost()
    password_hashing: PasswordHashing = PasswordHashing()
    pool_size_min: int = 2
    pool_size_max: int = 20
    # How long a request waits for a connection before it is answered 503 (the database is
    # down, or every connection is busy): bounded, so an outage is never a hang.
    pool_timeout_s: float = 5.0
    # Webhook deliveries recorded together in one statement and commit (ledger.group_commit);
    # 1: each alone.
    webhook_batch_max: int = 64
    # The same for transfers.
    transfer_batch_max: int = 64
    # How long one statement of a request may run before PostgreSQL cancels it (503).
    statement_timeout_s: float = 5.0
    # How long a client may take to send a whole request (head and body) before it is closed.
    request_read_timeout_s: float = 10.0
    # On SIGTERM or Ctrl-C, how long requests in flight may take to finish before they are cut.
    shutdown_timeout_s: int = 30
    login_throttle: LoginThrottle = LoginThrottle()
    registration_throttle: RequestThrottle = RequestThrottle()

    @property
    def uses_public_webhook_secret(self) -> bool:
        return PUBLIC_EXAMPLE_WEBHOOK_SECRET.encode() in self.webhooks.secrets

    @property
    def is_production(self) -> bool:
        return self.environment == PRODUCTION


def settings_from_environment(environ: Mapping[str, str]) -> Settings:
    """Build Settings from environment variables; raise ValueError naming the variable at fault."""
    data_dir = Path(environ.get("LEDGER_DATA_DIR", ".ledger")).resolve()
    jwt_secret = environ.get("LEDGER_JWT_SECRET")
    pool_timeout_s = _number(environ, "LEDGER_POOL_TIMEOUT_S", 5.0, float)
    if not 0 < pool_timeout_s <= 600:
        raise ValueError("LEDGER_POOL_TIMEOUT_S must be a number of seconds above 0, at most 600")
    return Settings(
        database_url=_database_url(environ, "LEDGER_DATABASE_URL"),
        owner_database_url=_database_url(environ, "LEDGER_OWNER_DATABASE_URL"),
        replica_url=_database_url(environ, "LEDGER_REPLICA_URL"),
        database_pooler=_database_pooler(environ),
        environment=environment_of(environ),
        data_dir=data_dir,
        migrations_dir=_migrations_dir(environ),
        webhooks=_webhooks(environ),
        jwt_secret=jwt_secret.encode() if jwt_secret else _kept_jwt_secret_in(data_dir),
        token_ttl_s=_positive_int(environ, "LEDGER_TOKEN_TTL_S", 86400),
        password_hashing=PasswordHashing(
            jobs_max=_positive_int(environ, "LEDGER_PASSWORD_HASHING_JOBS", PasswordHashing.jobs_max),
            waiting_max=_number(
                environ, "LEDGER_PASSWORD_HASHING_WAITING_MAX", PasswordHashing.waiting_max, int
            ),
        ),
        pool_timeout_s=pool_timeout_s,
        webhook_batch_max=_positive_int(environ, "LEDGER_WEBHOOK_BATCH_MAX", 64),
        transfer_batch_max=_positive_int(environ, "LEDGER_TRANSFER_BATCH_MAX", 64),
        statement_timeout_s=_seconds(environ, "LEDGER_STATEMENT_TIMEOUT_S", 5.0),
        request_read_timeout_s=_seconds(environ, "LEDGER_REQUEST_READ_TIMEOUT_S", 10.0),
        shutdown_timeout_s=_positive_int(environ, "LEDGER_SHUTDOWN_TIMEOUT_S", 30),
        login_throttle=LoginThrottle(
            failures_per_email_max=_positive_int(environ, "LEDGER_LOGIN_FAILURES_PER_EMAIL_MAX", 10),
            failures_per_address_max=_positive_int(environ, "LEDGER_LOGIN_FAILURES_PER_ADDRESS_MAX", 100),
            window_s=_positive_int(environ, "LEDGER_LOGIN_WINDOW_S", 900),
        ),
        registration_throttle=RequestThrottle(
            requests_per_address_max=_positive_int(environ, "LEDGER_REGISTRATIONS_PER_ADDRESS_MAX", 20),
            window_s=_positive_int(environ, "LEDGER_REGISTRATION_WINDOW_S", 3600),
        ),
    )


def environment_of(environ: Mapping[str, str]) -> str:
    """Return LEDGER_ENV: development (the default) or production; raise ValueError."""
    environment = environ.get("LEDGER_ENV", DEVELOPMENT)
    if environment not in (DEVELOPMENT, PRODUCTION):
        raise ValueError(f"LEDGER_ENV must be {DEVELOPMENT} or {PRODUCTION}, not {environment!r}")
    return environment


def production_refusals(environ: Mapping[str, str]) -> list[str]:
    """Return why production mode refuses to serve with these variables: each reason names its
    variable (none: it may serve). Public and placeholder secrets are for development only."""
    refusals = []
    schemes = _webhooks(environ).schemes
    secrets_text = environ.get("LEDGER_WEBHOOK_SECRETS")
    if SIGNATURE_FIELD in schemes:
        if not secrets_text:
            refusals.append("LEDGER_WEBHOOK_SECRETS is unset: set your payment provider's secret(s)")
        elif PUBLIC_EXAMPLE_WEBHOOK_SECRET in _comma_separated(secrets_text):
            refusals.append(
                "LEDGER_WEBHOOK_SECRETS holds the contract's public example secret: anyone can sign payments"
            )
    if schemes == {STANDARD_WEBHOOKS} and not environ.get("LEDGER_STANDARD_WEBHOOK_SECRETS"):
        refusals.append("LEDGER_STANDARD_WEBHOOK_SECRETS is unset: set your provider's whsec_ secret(s)")
    jwt_secret = environ.get("LEDGER_JWT_SECRET")
    if not jwt_secret:
        refusals.append("LEDGER_JWT_SECRET is unset: set a random secret of at least 32 bytes")
    elif len(jwt_secret.encode()) < JWT_SECRET_LENGTH_MIN:
        refusals.append(f"LEDGER_JWT_SECRET is shorter than {JWT_SECRET_LENGTH_MIN} bytes")
    elif any(mark in jwt_secret.lower() for mark in PLACEHOLDER_MARKS):
        refusals.append("LEDGER_JWT_SECRET is a placeholder copied from an example: set a random secret")
    return refusals


def _webhooks(environ: Mapping[str, str]) -> Webhooks:
    secrets_text = environ.get("LEDGER_WEBHOOK_SECRETS", PUBLIC_EXAMPLE_WEBHOOK_SECRET)
    webhook_secrets = tuple(secret.encode() for secret in _comma_separated(secrets_text))
    if not webhook_secrets:
        raise ValueError("LEDGER_WEBHOOK_SECRETS holds no secret")
    try:
        standard_keys = tuple(
            standard_key(secret)
            for secret in _comma_separated(environ.get("LEDGER_STANDARD_WEBHOOK_SECRETS", ""))
        )
    except ValueError as error:
        raise ValueError(f"LEDGER_STANDARD_WEBHOOK_SECRETS: {error}") from None
    schemes = frozenset(_comma_separated(environ.get("LEDGER_WEBHOOK_SCHEMES", ",".join(SCHEMES))))
    if not schemes or not schemes <= set(SCHEMES):
        raise ValueError(f"LEDGER_WEBHOOK_SCHEMES must name one or both of {', '.join(SCHEMES)}")
    return Webhooks(secrets=webhook_secrets, standard_keys=standard_keys, schemes=schemes)


def _database_pooler(environ: Mapping[str, str]) -> str | None:
    """Return LEDGER_DATABASE_POOLER: None (unset or empty) or "transaction"; raise ValueError."""
    text = environ.get("LEDGER_DATABASE_POOLER") or None
    if text not in (None, TRANSACTION_POOLER):
        raise ValueError(
            f"LEDGER_DATABASE_POOLER must be {TRANSACTION_POOLER} (a PgBouncer in transaction mode) "
            f"or unset, not {text!r}"
        )
    return text


def _migrations_dir(environ: Mapping[str, str]) -> Path:
    """Return LEDGER_MIGRATIONS_DIR (default: the repository's sql/); raise ValueError naming it."""
    text = environ.get("LEDGER_MIGRATIONS_DIR")
    if text is None:
        return REPO_ROOT / "sql"
    if not Path(text).is_dir():
        raise ValueError(f"LEDGER_MIGRATIONS_DIR must be a directory of migrations, not {text!r}")
    return Path(text)


def _kept_jwt_secret_in(data_dir: Path) -> bytes:
    """Return kept_jwt_secret(data_dir); raise ValueError naming LEDGER_DATA_DIR when it cannot
    be kept there (not a directory, not writable)."""
    try:
        return kept_jwt_secret(data_dir)
    except OSError as error:
        message = f"LEDGER_DATA_DIR ({data_dir}) cannot keep the JWT secret: {error.strerror}"
        raise ValueError(message) from None


def _comma_separated(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _database_url(environ: Mapping[str, str], name: str) -> str | None:
    url = environ.get(name) or None
    if url and url.partition("://")[0] not in POSTGRES_URL_SCHEMES:
        raise ValueError(f"{name} must look like postgresql://user:password@host:5432/dbname")
    return url


def _number(environ: Mapping[str, str], name: str, default: Number, kind: type[Number]) -> Number:
    """Return environ[name] read as kind (default when unset); raise ValueError naming it."""
    text = environ.get(name)
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {text!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return value


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    """Return environ[name] as an integer above 0 (default when unset); raise ValueError."""
    value = _number(environ, name, default, int)
    if value <= 0:
        raise ValueError(f"{name} must be an integer above 0")
    return value


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    """Return environ[name] as seconds above 0, at most 600 (default when unset); raise ValueError."""
    value = _number(environ, name, default, float)
    if not 0 < value <= 600:
        raise ValueError(f"{name} must be a number of seconds above 0, at most 600")
    return value


def kept_jwt_secret(data_dir: Path) -> bytes:
    """Return the JWT secret kept in data_dir, generating it on first use."""
    path = data_dir / "jwt_secret"
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Written whole to a file of this process's own, created 0600 (narrowed afterwards, it
        # would be readable in between), then linked into place: link() fails if the name
        # exists, so of two processes starting at once one secret wins, and no process ever
        # reads a half-written one.
        draft = data_dir / f"jwt_secret.{os.getpid()}.new"
        draft.unlink(missing_ok=True)  # left by a killed process that had this pid
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text(encoding="ascii").strip().encode()
