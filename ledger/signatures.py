"""The payment provider's webhook signature: SHA-256 over the delivery's values and a secret."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence


def payload(account_id: str, amount: str, transaction_id: str, user_id: str) -> bytes:
    """Return what is signed: the values in alphabetical order of their keys, as sent."""
    return f"{account_id}{amount}{transaction_id}{user_id}".encode()


def sign(signed_payload: bytes, secret: bytes) -> str:
    """Return the lowercase hex signature of signed_payload under secret."""
    return hashlib.sha256(signed_payload + secret).hexdigest()


def is_valid(signed_payload: bytes, signature: str, secrets: Sequence[bytes]) -> bool:
    """Return whether signature matches under any of secrets, comparing in constant time."""
    given = signature.lower().encode()
    # Every secret is tried (no early exit), so timing tells nothing about which one matched.
    matches = [hmac.compare_digest(sign(signed_payload, secret).encode(), given) for secret in secrets]
    return any(matches)
