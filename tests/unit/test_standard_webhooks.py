"""Standard Webhooks, its rules alone: the secrets, signatures made by the scheme's reference
library (not by our code), the timestamp's tolerance, and the payment a delivery becomes."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks import Webhook

from ledger import deliveries, errors, signatures
from ledger.events import PaymentReceived
from ledger.http import parse
from tests.support import ROTATED_STANDARD_WEBHOOK_KEY, STANDARD_WEBHOOK_KEY, webhooks_for_tests

SIGNED_AT = 1_700_000_000  # seconds since 1970
BODY = {"transaction_id": "tx-standard-1", "user_id": 7, "account_id": 70, "amount": "12.50"}


def signed(
    body: dict[str, Any] = BODY, *, key: bytes = STANDARD_WEBHOOK_KEY, webhook_id: str = "msg_1"
) -> tuple[bytes, dict[str, str]]:
    """Return a raw body and its three headers (lower-case names), signed by the reference library."""
    raw = json.dumps(body)
    signature = Webhook(key).sign(webhook_id, datetime.fromtimestamp(SIGNED_AT, UTC), raw)
    headers = {"webhook-id": webhook_id, "webhook-timestamp": str(SIGNED_AT), "webhook-signature": signature}
    return raw.encode(), headers


def accept(raw: bytes, headers: dict[str, str], now_s: float = SIGNED_AT, **webhooks: Any) -> PaymentReceived:
    """Read and check a delivery as the webhook does, at now_s."""
    received = parse.payment_delivery(raw, headers.get)
    return deliveries.accepted(received, dataclasses.replace(webhooks_for_tests(), **webhooks), now_s)


def secret_of(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


def test_a_secret_gives_its_key() -> None:
    key = bytes(range(24))
    assert signatures.standard_key(secret_of(key)) == key


@pytest.mark.parametrize(
    ("secret", "names"),
    [
        (base64.b64encode(bytes(24)).decode(), "whsec_"),
        ("whsec_not base64!", "base64"),
        (secret_of(bytes(range(24)))[:12] + "!" + secret_of(bytes(range(24)))[12:], "base64"),
        (secret_of(bytes(23)), "24 bytes"),
    ],
)
def test_a_secret_that_is_not_whsec_base64_of_24_bytes_is_refused_saying_why(secret: str, names: str) -> None:
    with pytest.raises(ValueError, match=names):
        signatures.standard_key(secret)


def test_the_reference_librarys_signature_verifies_under_any_configured_key() -> None:
    for key in (STANDARD_WEBHOOK_KEY, ROTATED_STANDARD_WEBHOOK_KEY):
        raw, headers = signed(key=key)
        assert accept(raw, headers).amount == "12.50"


def test_one_good_entry_among_several_in_the_header_verifies() -> None:
    raw, headers = signed()
    headers["webhook-signature"] = "v1,bm90IGl0 v1a,x " + headers["webhook-signature"]
    assert accept(raw, headers).webhook_signature == headers["webhook-signature"]


def test_entries_are_separated_by_spaces_only() -> None:
    """As the scheme writes them (and its reference library splits them): a tab is no separator."""
    raw, headers = signed()
    tabbed = {**headers, "webhook-signature": "v1,bm90IGl0\t" + headers["webhook-signature"]}
    with pytest.raises(errors.InvalidSignatureError):
        accept(raw, tabbed)


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-id": "msg_2"},
        {"webhook-timestamp": str(SIGNED_AT + 1)},
        {"webhook-signature": "v1,bm90IHRoZSBzaWduYXR1cmU="},
    ],
)
def test_a_header_that_differs_from_what_was_signed_is_refused(change: dict[str, str]) -> None:
    raw, headers = signed()
    with pytest.raises(errors.InvalidSignatureError):
        accept(raw, {**headers, **change}, SIGNED_AT + 1)


def test_a_signature_under_another_key_or_with_another_version_is_refused() -> None:
    raw, headers = signed(key=b"a key the service does not have, 32b")
    with pytest.raises(errors.InvalidSignatureError):
        accept(raw, headers)
    raw, headers = signed()
    headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v2,")
    with pytest.raises(errors.InvalidSignatureError):
        accept(raw, headers)


def test_a_body_other_than_the_signed_one_is_refused() -> None:
    raw, headers = signed()
    with pytest.raises(errors.InvalidSignatureError):
        accept(raw.replace(b"12.50", b"12.55"), headers)


@pytest.mark.parametrize("offset_s", [-signatures.TIMESTAMP_TOLERANCE_S, signatures.TIMESTAMP_TOLERANCE_S])
def test_a_timestamp_at_the_tolerance_either_way_is_accepted(offset_s: int) -> None:
    raw, headers = signed()
    assert accept(raw, headers, SIGNED_AT + offset_s).transaction_id == "tx-standard-1"


@pytest.mark.parametrize(
    "offset_s", [-signatures.TIMESTAMP_TOLERANCE_S - 1, signatures.TIMESTAMP_TOLERANCE_S + 1]
)
def test_a_timestamp_beyond_the_tolerance_either_way_is_refused(offset_s: int) -> None:
    raw, headers = signed()
    with pytest.raises(errors.InvalidSignatureError, match="5 minutes"):
        accept(raw, headers, SIGNED_AT + offset_s)


def test_a_delivery_becomes_the_payment_with_its_evidence() -> None:
    raw, headers = signed()
    assert accept(raw, headers) == PaymentReceived(
        "tx-standard-1",
        7,
        70,
        "12.50",
        webhook_id="msg_1",
        webhook_timestamp=str(SIGNED_AT),
        webhook_signature=headers["webhook-signature"],
        body=raw.decode(),
    )


def test_a_scheme_turned_off_refuses_its_deliveries() -> None:
    raw, headers = signed()
    with pytest.raises(errors.InvalidSignatureError, match="Standard Webhooks"):
        accept(raw, headers, schemes=frozenset({signatures.SIGNATURE_FIELD}))


def test_a_signed_body_that_is_not_utf_8_is_refused_saying_so() -> None:
    # JSON in UTF-16 parses (json.loads reads it), and its signature holds over its bytes; the
    # scheme signs UTF-8 text, so the payment's recorded body could not be kept as it came.
    raw = json.dumps(BODY).encode("utf-16")
    signature = signatures.standard_signature(STANDARD_WEBHOOK_KEY, "msg_16", str(SIGNED_AT), raw)
    headers = {"webhook-id": "msg_16", "webhook-timestamp": str(SIGNED_AT), "webhook-signature": signature}
    with pytest.raises(errors.MalformedRequestError, match="UTF-8"):
        accept(raw, headers)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
@pytest.mark.parametrize("sent_empty", [False, True], ids=["absent", "empty"])
def test_a_delivery_with_only_some_of_the_three_headers_is_refused_naming_the_one_missing(
    missing: str, sent_empty: bool
) -> None:
    # Not read as a delivery signed in its body instead: it has no signature field either, and
    # the sender plainly meant Standard Webhooks.
    raw, headers = signed()
    if sent_empty:
        headers[missing] = ""
    else:
        del headers[missing]
    with pytest.raises(errors.InvalidSignatureError) as refused:
        parse.payment_delivery(raw, headers.get)
    assert refused.value.message == f"The {missing} header is missing."


def test_a_webhook_id_is_1_to_256_printable_characters() -> None:
    longest = "m" * parse.WEBHOOK_ID_LENGTH_MAX
    raw, headers = signed(webhook_id=longest)
    assert accept(raw, headers).webhook_id == longest
    rule = f"webhook-id must be 1 to {parse.WEBHOOK_ID_LENGTH_MAX} printable characters."
    for refused in (longest + "m", "tab\there"):
        raw, headers = signed(webhook_id=refused)
        with pytest.raises(errors.InvalidSignatureError) as refusal:
            accept(raw, headers)
        assert refusal.value.message == rule


@pytest.mark.parametrize("timestamp", ["1700000000.5", "-1700000000", "soon", "1" * 20])
def test_a_webhook_timestamp_other_than_whole_seconds_is_refused_saying_so(timestamp: str) -> None:
    raw, headers = signed()
    headers["webhook-timestamp"] = timestamp
    rule = "webhook-timestamp must be the time of signing in seconds since 1970."
    with pytest.raises(errors.InvalidSignatureError) as refused:
        parse.payment_delivery(raw, headers.get)
    assert refused.value.message == rule
