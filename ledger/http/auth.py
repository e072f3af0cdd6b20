"""Bearer tokens: HS256 JWTs issued at login, checked on every request but the public ones.

A token names its user (sub) and the user's credentials_version (ver). It is refused when the
user is deleted or the version moved on (a password or email change): each request reads the
user's row, so revocation is immediate and admin rights come from the database, not the token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import jwt
from psycopg_pool import AsyncConnectionPool

from ledger import db, errors
from ledger.projections import users
from ledger.projections.users import LoginRecord

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "ver", "iat", "exp"]

# Who may call a route (its access in ledger.http.routes). AUDIT: read-only routes over
# everyone's data, for admins and auditors. An auditor holds no ADMIN right, so every write
# refuses it.
PUBLIC, USER, AUDIT, ADMIN = "public", "user", "audit", "admin"

T = TypeVar("T")


@dataclass(frozen=True)
class Claims:
    """What a valid token says; the user may since have been deleted or changed credentials."""

    user_id: int
    credentials_version: int


def revoked_unless_found(found: T | None) -> T:
    """Return what a statement that also checked the token's user found; raise
    UnauthenticatedError when it found no live user with the token's credentials version."""
    if found is None:
        raise errors.UnauthenticatedError("The token was revoked.")
    return found


class Tokens:
    """Issues tokens, and checks them, remembering the ones it already verified.

    PyJWT's decode is a large share of the server's CPU on GET /user/accounts, and a client
    sends the same token again and again. A verified token's claims are kept, keyed by the
    whole token text (signature included), so only that exact string is ever answered from
    memory, and its expiry is checked on every use. Revocation is not cached: it is read from
    the database on every request, as before.
    """

    def __init__(
        self,
        secret: bytes,
        ttl_s: int,
        *,
        clock: Callable[[], float] = time.time,
        remembered_max: int = 10_000,
    ) -> None:
        self._secret = secret
        self.ttl_s = ttl_s
        self._clock = clock
        self._remembered_max = remembered_max
        self._verified: dict[str, tuple[int, int, float]] = {}  # token: user id, version, exp

    def issue(self, record: LoginRecord) -> str:
        """Return a signed token for the user of record."""
        now = int(self._clock())
        claims = {
            "sub": str(record.id),
            "ver": record.credentials_version,
            "iat": now,
            "exp": now + self.ttl_s,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def claims(self, token: str) -> tuple[int, int]:
        """Return (user id, credentials version) of a valid token; raise UnauthenticatedError."""
        remembered = self._verified.get(token)
        if remembered is not None:
            user_id, version, expires_at = remembered
            if self._clock() >= expires_at:  # as PyJWT: valid while now < exp
                raise errors.UnauthenticatedError("The token is invalid or expired.")
            return user_id, version
        user_id, version, expires_at = self._verify(token)
        if len(self._verified) >= self._remembered_max:
            del self._verified[next(iter(self._verified))]  # the oldest: bounded memory
        self._verified[token] = (user_id, version, expires_at)
        return user_id, version

    def _verify(self, token: str) -> tuple[int, int, float]:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], options={"require": REQUIRED_CLAIMS}
            )
            user_id, version, expires_at = int(claims["sub"]), claims["ver"], float(claims["exp"])
        except (jwt.InvalidTokenError, ValueError, TypeError) as error:
            raise errors.UnauthenticatedError("The token is invalid or expired.") from error
        if not isinstance(version, int) or isinstance(version, bool):
            raise errors.UnauthenticatedError("The token is invalid or expired.")
        return user_id, version, expires_at


class Authentication:
    """Falcon middleware: puts the token's live user in req.context.user, or refuses, by the
    access of the route (access_of: by path template, from ledger.http.routes).

    A resource open to every user may declare `checks_revocation = True`: its one statement
    reads its data only for a live user with the token's credentials version (and tells when
    there is none, see revoked_unless_found). The middleware then checks the token alone and
    puts its Claims in req.context.claims, which saves a round trip and a pool checkout on
    the hottest read (GET /user/accounts).
    """

    def __init__(self, pool: AsyncConnectionPool, tokens: Tokens, access_of: Mapping[str, str]) -> None:
        self._pool = pool
        self._tokens = tokens
        self._access_of = access_of

    async def process_resource(self, req: Any, resp: Any, resource: Any, params: Any) -> None:
        if resource is None:  # no such route (404), or static files (the /docs page's assets)
            return
        access = self._access_of[req.uri_template]
        if access == PUBLIC:
            return
        scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.UnauthenticatedError()
        user_id, version = self._tokens.claims(token.strip())
        if getattr(resource, "checks_revocation", False):
            assert access == USER, "only a resource open to every user checks revocation itself"
            req.context.claims = Claims(user_id, version)
            return
        async with db.connection(self._pool) as conn:
            user = revoked_unless_found(await users.token_user(conn, user_id, version))
        if access == ADMIN and not user.is_admin:
            raise errors.ForbiddenError()
        if access == AUDIT and not (user.is_admin or user.is_auditor):
            raise errors.ForbiddenError()
        req.context.user = user
