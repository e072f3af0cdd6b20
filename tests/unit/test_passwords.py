"""Password hashing, alone: the right password matches, no other does, no password matches a
user who does not exist, a hash records the configured cost, and the settings bound the hashing
under way."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

from argon2 import Type, extract_parameters

from ledger.config import CHEAPEST_ARGON2, Argon2Cost, PasswordHashing
from ledger.passwords import HashingBusyError, Passwords


async def test_only_the_right_password_matches_and_none_matches_no_user() -> None:
    passwords = Passwords(CHEAPEST_ARGON2)
    password_hash = await passwords.hash("correct horse")
    assert await passwords.verify(password_hash, "correct horse")
    assert not await passwords.verify(password_hash, "correct horse!")
    assert not await passwords.verify("not an argon2 hash", "correct horse")
    # An unknown email: the time of a verification is spent, and nothing matches.
    assert not await passwords.verify(None, "correct horse")


async def test_the_settings_bound_how_many_hashes_run_and_wait() -> None:
    passwords = Passwords.of(CHEAPEST_ARGON2, PasswordHashing(jobs_max=1, waiting_max=1))
    for _ in range(3):  # each time: the places of the hashes done are free again, no more
        outcomes = await asyncio.gather(*(passwords.hash("pw") for _ in range(3)), return_exceptions=True)
        refused = [outcome for outcome in outcomes if isinstance(outcome, HashingBusyError)]
        assert len(refused) == 1, outcomes  # one runs, one waits, the third is turned away


async def test_no_more_than_jobs_max_hashes_run_at_once() -> None:
    passwords = Passwords(CHEAPEST_ARGON2, jobs_max=2, waiting_max=10)
    hasher = passwords._hasher
    running, most = 0, 0
    lock = threading.Lock()

    def timed_hash(password: str) -> str:  # a hash that takes long enough for the others to queue
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return hasher.hash(password)

    passwords._hasher = SimpleNamespace(hash=timed_hash)  # type: ignore[assignment]
    await asyncio.gather(*(passwords.hash("pw") for _ in range(8)))
    assert most == 2


async def test_a_hash_records_the_configured_cost() -> None:
    cost = Argon2Cost(time_cost=2, memory_cost_kib=64, parallelism=1)
    parameters = extract_parameters(await Passwords(cost).hash("pw"))
    assert (parameters.type, parameters.time_cost, parameters.memory_cost, parameters.parallelism) == (
        Type.ID,
        2,
        64,
        1,
    )
