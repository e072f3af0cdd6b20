"""A webhook delivery's rules: its signature in the scheme it uses, then the amount rules.

ledger.http.parse reads a delivery's shape (a Delivery); accepted() applies the rules in the
contract's order and returns the PaymentReceived that ledger.commands.receive_payment records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ledger import errors, money, signatures
from ledger.events import PaymentReceived
from ledger.signatures import Webhooks


@dataclass(frozen=True)
class StandardWebhookHeaders:
    """The three headers of a Standard Webhooks delivery, well-formed (ledger.http.parse)."""

    webhook_id: str
    timestamp: str  # seconds since 1970, as sent
    signature: str  # space-separated "v1,<base64>" entries


@dataclass(frozen=True)
class Delivery:
    """A delivery as received: its fields of the right types, nothing checked yet."""

    transaction_id: str
    user_id: int
    account_id: int
    amount: str  # as written: a JSON number's text or a string's content
    amount_is_string: bool
    signature: str | None  # the contract's scheme
    standard_headers: StandardWebhookHeaders | None  # the Standard Webhooks scheme
    raw: bytes  # the body as received, which Standard Webhooks signs


def accepted(delivery: Delivery, webhooks: Webhooks, now_s: float | None = None) -> PaymentReceived:
    """Return the payment a delivery asks for, checked in the contract's order.

    The signature of the delivery's scheme (InvalidSignatureError), then the amount rules
    (InvalidAmountError).
    """
    if delivery.standard_headers is None:
        payment = _signature_field_payment(delivery, webhooks)
    else:
        payment = _standard_payment(delivery, delivery.standard_headers, webhooks, now_s or time.time())
    money.check_amount(delivery.amount, delivery.amount_is_string)
    return payment


def _signature_field_payment(delivery: Delivery, webhooks: Webhooks) -> PaymentReceived:
    assert delivery.signature is not None, "ledger.http.parse requires it of this scheme"
    if signatures.SIGNATURE_FIELD not in webhooks.schemes:
        raise errors.InvalidSignatureError(
            "Deliveries signed in the body's signature field are not accepted here: sign them with "
            "Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature)."
        )
    signed = signatures.payload(
        str(delivery.account_id), delivery.amount, delivery.transaction_id, str(delivery.user_id)
    )
    if not signatures.is_valid(signed, delivery.signature, webhooks.secrets):
        raise errors.InvalidSignatureError()
    return PaymentReceived(
        delivery.transaction_id,
        delivery.user_id,
        delivery.account_id,
        delivery.amount,
        signature=delivery.signature,
    )


def _standard_payment(
    delivery: Delivery, headers: StandardWebhookHeaders, webhooks: Webhooks, now_s: float
) -> PaymentReceived:
    if signatures.STANDARD_WEBHOOKS not in webhooks.schemes:
        raise errors.InvalidSignatureError("Standard Webhooks deliveries are not accepted here.")
    if abs(int(headers.timestamp) - now_s) > signatures.TIMESTAMP_TOLERANCE_S:
        raise errors.InvalidSignatureError(
            "webhook-timestamp must be the time of signing in seconds since 1970, within "
            f"{signatures.TIMESTAMP_TOLERANCE_S // 60} minutes of now."
        )
    if not signatures.standard_is_valid(
        headers.webhook_id, headers.timestamp, delivery.raw, headers.signature, webhooks.standard_keys
    ):
        raise errors.InvalidSignatureError()
    try:
        body_text = delivery.raw.decode("utf-8")
    except UnicodeDecodeError:  # the scheme signs UTF-8 text
        raise errors.MalformedRequestError("A Standard Webhooks body is UTF-8.") from None
    return PaymentReceived(
        delivery.transaction_id,
        delivery.user_id,
        delivery.account_id,
        delivery.amount,
        webhook_id=headers.webhook_id,
        webhook_timestamp=headers.timestamp,
        webhook_signature=headers.signature,
        body=body_text,
    )
