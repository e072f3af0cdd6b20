"""argon2id password hashing, off the event loop and bounded.

Each hash takes tens of milliseconds of one core. Unbounded, a burst of registrations or logins
queued for threads without end while every other request waited for the CPU; and when those
requests held database connections, payments waited for a connection too. So hashing runs on
threads of its own, at most jobs_max at once (one per core by default; each job is single-lane,
see config.Argon2Cost), with at most waiting_max more waiting: past that, HashingBusyError,
which the service answers 503 with Retry-After. Callers hash before they take a connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ledger.config import Argon2Cost, PasswordHashing

T = TypeVar("T")


class HashingBusyError(Exception):
    """Every hashing job is taken and the queue is full: try again shortly (503, not a 4xx)."""


class Passwords:
    def __init__(
        self,
        cost: Argon2Cost,
        *,
        jobs_max: int = PasswordHashing.jobs_max,
        waiting_max: int = PasswordHashing.waiting_max,
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=cost.time_cost, memory_cost=cost.memory_cost_kib, parallelism=cost.parallelism
        )
        self._executor = ThreadPoolExecutor(max_workers=jobs_max, thread_name_prefix="argon2")
        self._admitted = 0  # running or waiting; only the event loop's thread changes it
        self._admitted_max = jobs_max + waiting_max
        # Verified when the email is unknown, so that an unknown email and a wrong password
        # cost the same time and cannot be told apart.
        self._decoy_hash = self._hasher.hash("decoy password, never matches")

    @classmethod
    def of(cls, cost: Argon2Cost, hashing: PasswordHashing) -> Passwords:
        return cls(cost, jobs_max=hashing.jobs_max, waiting_max=hashing.waiting_max)

    async def hash(self, password: str) -> str:
        """Return the argon2id hash of password; raise HashingBusyError."""
        return await self._run(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Return whether password matches password_hash (None: spend the time, return False);
        raise HashingBusyError."""
        if password_hash is None:
            await self._run(self._matches, self._decoy_hash, password)
            return False
        return await self._run(self._matches, password_hash, password)

    async def _run(self, job: Callable[..., T], *args: str) -> T:
        if self._admitted >= self._admitted_max:
            raise HashingBusyError()
        self._admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, job, *args)
        finally:
            self._admitted -= 1

    def _matches(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
