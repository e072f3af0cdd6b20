"""Password hashing, the answers alone: the right password matches, no other does, and no
password matches a user who does not exist."""

from __future__ import annotations

from ledger.config import CHEAPEST_ARGON2
from ledger.passwords import Passwords


async def test_only_the_right_password_matches_and_none_matches_no_user() -> None:
    passwords = Passwords(CHEAPEST_ARGON2)
    password_hash = await passwords.hash("correct horse")
    assert await passwords.verify(password_hash, "correct horse")
    assert not await passwords.verify(password_hash, "correct horse!")
    assert not await passwords.verify("not an argon2 hash", "correct horse")
    # An unknown email: the time of a verification is spent, and nothing matches.
    assert not await passwords.verify(None, "correct horse")
