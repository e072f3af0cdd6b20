"""argon2id password hashing, run off the event loop (each call takes tens of milliseconds)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ledger.config import Argon2Cost


class Passwords:
    def __init__(self, cost: Argon2Cost) -> None:
        self._hasher = PasswordHasher(
            time_cost=cost.time_cost, memory_cost=cost.memory_cost_kib, parallelism=cost.parallelism
        )
        # Verified when the email is unknown, so that an unknown email and a wrong password
        # cost the same time and cannot be told apart.
        self._decoy_hash = self._hasher.hash("decoy password, never matches")

    async def hash(self, password: str) -> str:
        """Return the argon2id hash of password."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Return whether password matches password_hash (None: spend the time, return False)."""
        if password_hash is None:
            await asyncio.to_thread(self._matches, self._decoy_hash, password)
            return False
        return await asyncio.to_thread(self._matches, password_hash, password)

    def _matches(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
