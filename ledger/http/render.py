"""Rendering: views and outcomes in, JSON-ready values out. Money leaves as an exact Decimal
with two places, which the JSON handler writes as a number (1100.50)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ledger.audit.checksums import BalanceSummary
from ledger.audit.feed import Cursor, FeedEvent
from ledger.audit.trial_balance import TrialBalance
from ledger.commands import PaymentOutcome, ReversalOutcome, TransferOutcome
from ledger.projections.accounts import AccountView, PaymentView, PostingView
from ledger.projections.users import UserView

CENT = Decimal("0.01")


def money(amount: Decimal) -> Decimal:
    """Return amount with exactly two decimal places (amounts are whole cents already)."""
    cents = amount.quantize(CENT)
    assert cents == amount, f"{amount} is not a whole number of cents"
    return cents


def user(view: UserView) -> dict[str, Any]:
    return {
        "id": view.id,
        "email": view.email,
        "full_name": view.full_name,
        "is_admin": view.is_admin,
        "is_auditor": view.is_auditor,
    }


def account(view: AccountView) -> dict[str, Any]:
    return {"id": view.id, "balance": money(view.balance)}


def user_with_accounts(view: UserView, accounts: list[AccountView]) -> dict[str, Any]:
    return {**user(view), "accounts": [account(a) for a in accounts]}


def payment(view: PaymentView) -> dict[str, Any]:
    return {
        "id": view.id,
        "transaction_id": view.transaction_id,
        "account_id": view.account_id,
        "amount": money(view.amount),
        "created_at": view.created_at.isoformat(),
    }


def audited_payment(view: PaymentView) -> dict[str, Any]:
    return {**payment(view), "user_id": view.user_id}


def feed_page(events: list[FeedEvent], after: Cursor) -> dict[str, Any]:
    """The events and the cursor to continue from (where the reader stands if there were none)."""
    return {
        "events": [event.to_record() for event in events],
        "next": str(events[-1].cursor if events else after),
    }


def balance_summary(summary: BalanceSummary, through: Cursor, *, source: str) -> dict[str, Any]:
    return {
        "through": str(through),
        "source": source,
        "accounts": summary.accounts,
        "balance_total": money(summary.balance_total),
        "checksum": summary.checksum,
        "checksum_algorithm": "sha256 of '<account id>:<balance>' lines joined by newlines, by account id",
    }


def payment_outcome(outcome: PaymentOutcome) -> dict[str, Any]:
    return {
        "status": "credited" if outcome.is_new else "already_processed",
        "transaction_id": outcome.transaction_id,
        "account_id": outcome.account_id,
        "amount": money(outcome.amount),
        "balance": money(outcome.balance),
    }


def token(access_token: str, expires_in: int, user_id: int) -> dict[str, Any]:
    return {
        "access_token": access_token,
        "token": access_token,
        "token_type": "bearer",
        "expires_in": expires_in,
        "user_id": user_id,
    }


def transfer(outcome: TransferOutcome) -> dict[str, Any]:
    return {
        "id": outcome.id,
        "from_account_id": outcome.from_account_id,
        "to_account_id": outcome.to_account_id,
        "amount": money(outcome.amount),
        "created_at": outcome.created_at.isoformat(),
    }


def reversal(outcome: ReversalOutcome) -> dict[str, Any]:
    return {
        "id": outcome.id,
        "payment_id": outcome.payment_id,
        "account_id": outcome.account_id,
        "amount": money(outcome.amount),
        "reason": outcome.reason,
        "created_at": outcome.created_at.isoformat(),
    }


def posting(view: PostingView) -> dict[str, Any]:
    return {
        "id": view.id,
        "transaction_id": view.transaction_id,
        "kind": view.kind,
        "amount": money(view.amount),
        "balance_after": money(view.balance_after),
        "created_at": view.created_at.isoformat(),
    }


def trial_balance(balance: TrialBalance, as_of: str | None) -> dict[str, Any]:
    return {
        "as_of": as_of,
        "kinds": [
            {"kind": kind.kind, "accounts": kind.accounts, "balance": money(kind.balance)}
            for kind in balance.kinds
        ],
        "total": money(balance.total),
    }
