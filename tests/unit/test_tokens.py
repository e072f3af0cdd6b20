"""Tokens remembers the tokens it verified: never past their expiry, never for another string."""

from __future__ import annotations

import time

import pytest

from ledger import errors
from ledger.http.auth import Tokens
from ledger.projections.users import LoginRecord

SECRET = b"unit-test-secret-of-at-least-32-bytes!"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_remembered_token_is_refused_once_expired() -> None:
    clock = Clock()
    tokens = Tokens(SECRET, ttl_s=60, clock=clock)
    token = tokens.issue(LoginRecord(7, "", 3))
    assert tokens.claims(token) == (7, 3)
    clock.now += 59
    assert tokens.claims(token) == (7, 3)  # from memory
    clock.now += 2
    for _ in range(2):
        with pytest.raises(errors.UnauthenticatedError):
            tokens.claims(token)


def test_a_remembered_token_is_refused_from_the_second_of_its_expiry() -> None:
    """As PyJWT decides for a token it has not seen: valid while now < exp."""
    clock = Clock()
    tokens = Tokens(SECRET, ttl_s=60, clock=clock)
    token = tokens.issue(LoginRecord(7, "", 3))
    assert tokens.claims(token) == (7, 3)
    clock.now = int(clock.now) + 60  # exp
    with pytest.raises(errors.UnauthenticatedError, match="invalid or expired"):
        tokens.claims(token)


def test_only_the_exact_verified_string_is_remembered() -> None:
    tokens = Tokens(SECRET, ttl_s=60)
    token = tokens.issue(LoginRecord(7, "", 3))
    assert tokens.claims(token) == (7, 3)
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(errors.UnauthenticatedError):
        tokens.claims(f"{header}.{payload}.{flipped}")
    with pytest.raises(errors.UnauthenticatedError):
        Tokens(b"another-secret-of-at-least-32-bytes!!", ttl_s=60).claims(token)


def test_memory_is_bounded_and_a_forgotten_token_still_verifies() -> None:
    tokens = Tokens(SECRET, ttl_s=60, remembered_max=3)
    issued = [tokens.issue(LoginRecord(user_id, "", 1)) for user_id in range(1, 6)]
    for user_id, token in enumerate(issued, start=1):
        assert tokens.claims(token) == (user_id, 1)
    assert len(tokens._verified) == 3
    assert tokens.claims(issued[0]) == (1, 1)
