"""LedgerError and its subclasses: every refusal the service answers, each with a stable code.

The HTTP status of each lives in one table, `ledger.http.errors.STATUS_OF`.
"""

from __future__ import annotations


class LedgerError(Exception):
    code = "ledger_error"
    message = "The request was refused."

    def __init__(self, message: str | None = None, **details: object) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details


# Bad input: the request cannot be understood or breaks a field rule.
class MalformedRequestError(LedgerError):
    code = "malformed_request"
    message = "The body must be a JSON object."


class InvalidFieldError(LedgerError):
    code = "invalid_field"
    message = "A field is missing or has a wrong value."


class InvalidQueryError(LedgerError):
    code = "invalid_query"
    message = "A query parameter has a wrong value."


class BodyTooLargeError(LedgerError):
    code = "body_too_large"
    message = "The request body is too large."


# Authentication and authorisation.
class InvalidCredentialsError(LedgerError):
    code = "invalid_credentials"
    message = "Wrong email or password."


class TooManyAttemptsError(LedgerError):
    code = "too_many_attempts"
    message = "Too many failed logins; try again after the number of seconds in Retry-After."


class UnauthenticatedError(LedgerError):
    code = "unauthenticated"
    message = "A valid bearer token is required."


class ForbiddenError(LedgerError):
    code = "forbidden"
    message = "This needs an admin."


# Refusals by a rule.
class EmailTakenError(LedgerError):
    code = "email_taken"
    message = "That email is already taken."


class UserNotFoundError(LedgerError):
    code = "user_not_found"
    message = "No such user."


class CannotDeleteSelfError(LedgerError):
    code = "cannot_delete_self"
    message = "An admin cannot delete itself."


class RoleConflictError(LedgerError):
    code = "role_conflict"
    message = "A user cannot be both an admin and an auditor: an auditor changes nothing."


class InvalidSignatureError(LedgerError):
    code = "invalid_signature"
    message = "The signature does not match the delivery."


class InvalidAmountError(LedgerError):
    code = "invalid_amount"
    message = "The amount must be above 0, at most 10^12, with at most 2 decimal places."


class AccountOwnerMismatchError(LedgerError):
    code = "account_owner_mismatch"
    message = "The account belongs to another user."


class BalanceLimitError(LedgerError):
    code = "balance_limit_exceeded"
    message = "This payment would take the balance past the largest amount the ledger holds."


class SignatureReusedError(LedgerError):
    code = "signature_reused"
    message = (
        "This signature was already used by another transaction: a signed delivery buys one credit, "
        "and its text cannot be cut into other fields."
    )


class WebhookIdReusedError(LedgerError):
    code = "webhook_id_reused"
    message = "This webhook-id was already used by another transaction."


class TransactionConflictError(LedgerError):
    code = "transaction_conflict"
    message = "This transaction_id was already used with other values."


class InvalidIdempotencyKeyError(LedgerError):
    code = "invalid_idempotency_key"
    message = "An Idempotency-Key header of 1 to 255 printable characters is required."


class AccountNotFoundError(LedgerError):
    code = "account_not_found"
    message = "No user's account has that id."


class SameAccountError(LedgerError):
    code = "same_account"
    message = "A transfer goes from one account to another."


class InsufficientFundsError(LedgerError):
    code = "insufficient_funds"
    message = "The source account holds less than the amount."


class IdempotencyConflictError(LedgerError):
    code = "idempotency_conflict"
    message = "This Idempotency-Key was already used for another request."


class PaymentNotFoundError(LedgerError):
    code = "payment_not_found"
    message = "No payment has that id."


class ReversalExceedsPaymentError(LedgerError):
    code = "reversal_exceeds_payment"
    message = "The payment's reversals would sum to more than the payment."


class NotFoundError(LedgerError):
    code = "not_found"
    message = "No such resource."
