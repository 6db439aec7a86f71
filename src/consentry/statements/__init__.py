"""Public statements and trustworthy signature collection (the service layer of issue 7).

The web layer (``consentry.web``) and the CLI call :class:`StatementService` and
:class:`OperatorService`; e-mail leaves through the durable outbox (:class:`OutboxWorker`).
The contract with the web layer is ``docs/design/statements-contract.md``.
"""

from consentry.statements.devsmtp import DevSMTPServer
from consentry.statements.emails import CanonicalEmail, canonical_email, mask_email
from consentry.statements.model import (
    InvalidationCondition,
    Operator,
    PublicSigner,
    SignatureRecord,
    SignatureState,
    SignOutcome,
    SignRequest,
    SignResult,
    StatementChanges,
    StatementSpec,
    StatementState,
    StatementView,
    TokenInfo,
)
from consentry.statements.operators import OperatorService
from consentry.statements.outbox import OutboxWorker
from consentry.statements.service import StatementService
from consentry.statements.tokens import TokenError

__all__ = [
    "CanonicalEmail",
    "DevSMTPServer",
    "InvalidationCondition",
    "Operator",
    "OperatorService",
    "OutboxWorker",
    "PublicSigner",
    "SignOutcome",
    "SignRequest",
    "SignResult",
    "SignatureRecord",
    "SignatureState",
    "StatementChanges",
    "StatementService",
    "StatementSpec",
    "StatementState",
    "StatementView",
    "TokenError",
    "TokenInfo",
    "canonical_email",
    "mask_email",
]
