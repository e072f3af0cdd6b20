"""Amounts of money as requests write them: the rules every amount that moves money obeys."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from ledger import errors

AMOUNT_MAX = Decimal(10) ** 12
AMOUNT_PLACES_MAX = 2
# Beyond this no amount can be valid; keeps Decimal away from huge exponents.
AMOUNT_TEXT_LENGTH_MAX = 40
# A valid string amount is written plainly, as the contract writes it ("100.50"): no sign,
# no exponent, no leading zero.
PLAIN_DECIMAL_STRING = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?")


def check_amount(amount_text: str, is_string: bool) -> None:
    """Refuse (InvalidAmountError) an amount that is not plain, above 0, at most AMOUNT_MAX and
    in whole cents."""
    if "e" in amount_text or "E" in amount_text:
        # An exponent is how "250" and a transaction id starting with "e9" became 250e9:
        # amounts are written plainly, as numbers and as strings.
        raise errors.InvalidAmountError(
            "An amount is written in plain decimal notation, such as 100.50: no exponent.", field="amount"
        )
    if not _is_valid_amount(amount_text):
        raise errors.InvalidAmountError(field="amount")
    if is_string and not PLAIN_DECIMAL_STRING.fullmatch(amount_text):
        raise errors.InvalidAmountError(
            'A string amount is a plain decimal such as "100.50": no sign, exponent or leading zero.',
            field="amount",
        )


def _is_valid_amount(amount_text: str) -> bool:
    """Return whether the amount is above 0, at most AMOUNT_MAX, with at most 2 decimal places."""
    if len(amount_text) > AMOUNT_TEXT_LENGTH_MAX:
        return False
    try:
        amount = Decimal(amount_text)
    except InvalidOperation:  # not a number Decimal takes
        return False
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # finite: the shape read admits no NaN or Infinity
    return 0 < amount <= AMOUNT_MAX and exponent >= -AMOUNT_PLACES_MAX
