"""The provider's signature: the contract's example, rotation, and what is signed."""

from ledger import signatures
from ledger.config import PUBLIC_EXAMPLE_WEBHOOK_SECRET

EXAMPLE_SIGNATURE = "7b47e41efe564a062029da3367bde8844bea0fb049f894687cee5d57f2858bc8"
EXAMPLE_PAYLOAD = signatures.payload("1", "100", "5eae174f-7cd0-472c-bd36-35660f00132b", "1")


def test_the_contract_example_signs_as_published() -> None:
    assert signatures.sign(EXAMPLE_PAYLOAD, PUBLIC_EXAMPLE_WEBHOOK_SECRET.encode()) == EXAMPLE_SIGNATURE


def test_any_configured_secret_verifies() -> None:
    secrets = (b"new-secret", PUBLIC_EXAMPLE_WEBHOOK_SECRET.encode())
    assert signatures.is_valid(EXAMPLE_PAYLOAD, EXAMPLE_SIGNATURE, secrets)
    assert signatures.is_valid(EXAMPLE_PAYLOAD, EXAMPLE_SIGNATURE.upper(), secrets)
    assert not signatures.is_valid(EXAMPLE_PAYLOAD, EXAMPLE_SIGNATURE, (b"new-secret",))


def test_the_amount_is_signed_as_written() -> None:
    secret = PUBLIC_EXAMPLE_WEBHOOK_SECRET.encode()
    as_integer = signatures.sign(signatures.payload("1", "100", "t", "1"), secret)
    as_fraction = signatures.sign(signatures.payload("1", "100.0", "t", "1"), secret)
    assert as_integer != as_fraction
