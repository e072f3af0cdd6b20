"""HTTP fixtures: a falcon.testing conductor on the app, and users with tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import falcon.testing
import pytest
from psycopg_pool import AsyncConnectionPool

from ledger.config import Settings
from ledger.http.auth import Tokens
from ledger.passwords import Passwords
from ledger.projections.users import LoginRecord, UserView
from tests.support import create_user


@dataclass(frozen=True)
class Person:
    user: UserView
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
async def client(app) -> AsyncIterator[falcon.testing.ASGIConductor]:  # noqa: ANN001
    async with falcon.testing.ASGIConductor(app) as conductor:
        yield conductor


@pytest.fixture(scope="session")
def tokens(settings: Settings) -> Tokens:
    return Tokens(settings.jwt_secret, settings.token_ttl_s)


@pytest.fixture
def make_person(
    pool: AsyncConnectionPool, passwords: Passwords, tokens: Tokens
) -> Callable[..., Awaitable[Person]]:
    async def make(is_admin: bool = False) -> Person:
        async with pool.connection() as conn:
            user = await create_user(conn, passwords, is_admin=is_admin)
        return Person(user, tokens.issue(LoginRecord(user.id, "", user.credentials_version)))

    return make


@pytest.fixture
async def person(make_person) -> Person:  # noqa: ANN001
    return await make_person()


@pytest.fixture
async def admin(make_person) -> Person:  # noqa: ANN001
    return await make_person(is_admin=True)
