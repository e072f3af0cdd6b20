"""Webhook signatures, in the two schemes the service accepts.

- The contract's ("signature-field"): SHA-256 over the delivery's values and a secret, sent in
  the body's `signature` field. The values are joined without separators, so one signed text
  can be cut into other fields: the database spends each signature once (sql/0021).
- Standard Webhooks ("standard-webhooks", https://www.standardwebhooks.com): an HMAC-SHA256 of
  "<webhook-id>.<webhook-timestamp>.<raw body>" in the `webhook-signature` header. It signs the
  raw body, so it cannot be re-cut; a replayed webhook-id is spent once like a signature.

sql/0021's webhook_signature_holds() is the same rule, for `ledger verify`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

SIGNATURE_FIELD = "signature-field"
STANDARD_WEBHOOKS = "standard-webhooks"
SCHEMES = (SIGNATURE_FIELD, STANDARD_WEBHOOKS)
STANDARD_SECRET_PREFIX = "whsec_"
# The scheme's tolerance for webhook-timestamp, either way from now: a captured delivery goes
# stale, and a clock far off on either side shows.
TIMESTAMP_TOLERANCE_S = 5 * 60


@dataclass(frozen=True)
class Webhooks:
    """The schemes a delivery may use and the secrets of each (several: key rotation)."""

    secrets: tuple[bytes, ...]  # the contract's scheme
    standard_keys: tuple[bytes, ...] = ()  # Standard Webhooks: each secret's decoded key
    schemes: frozenset[str] = frozenset(SCHEMES)


def payload(account_id: str, amount: str, transaction_id: str, user_id: str) -> bytes:
    """Return what the contract's scheme signs: the values in alphabetical order of their keys, as sent."""
    return f"{account_id}{amount}{transaction_id}{user_id}".encode()


def sign(signed_payload: bytes, secret: bytes) -> str:
    """Return the lowercase hex signature of signed_payload under secret (the contract's scheme)."""
    return hashlib.sha256(signed_payload + secret).hexdigest()


def is_valid(signed_payload: bytes, signature: str, secrets: Sequence[bytes]) -> bool:
    """Return whether signature matches under any of secrets, comparing in constant time."""
    given = signature.lower().encode()
    # Every secret is tried (no early exit), so timing tells nothing about which one matched.
    matches = [hmac.compare_digest(sign(signed_payload, secret).encode(), given) for secret in secrets]
    return any(matches)


def standard_key(secret: str) -> bytes:
    """Return the key of a Standard Webhooks secret ("whsec_<base64>"); raise ValueError."""
    if not secret.startswith(STANDARD_SECRET_PREFIX):
        raise ValueError(f"a Standard Webhooks secret starts with {STANDARD_SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret.removeprefix(STANDARD_SECRET_PREFIX), validate=True)
    except binascii.Error as error:
        raise ValueError("a Standard Webhooks secret is whsec_ followed by base64") from error
    if len(key) < 24:
        raise ValueError("a Standard Webhooks key must be at least 24 bytes (192 bits)")
    return key


def standard_signature(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> str:
    """Return the Standard Webhooks signature entry ("v1,<base64>") of a delivery under key."""
    signed = webhook_id.encode() + b"." + timestamp.encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def standard_is_valid(
    webhook_id: str, timestamp: str, body: bytes, signature_header: str, keys: Sequence[bytes]
) -> bool:
    """Return whether any "v1,..." entry of the header matches under any key (constant time)."""
    given = [entry.encode() for entry in signature_header.split(" ") if entry.startswith("v1,")]
    matches = [
        hmac.compare_digest(standard_signature(key, webhook_id, timestamp, body).encode(), entry)
        for key in keys
        for entry in given
    ]
    return any(matches)
