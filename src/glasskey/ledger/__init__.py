"""The double-entry ledger: accounts, two-phase transfers, derived balances and their audit."""

from glasskey.ledger.accounts import (
    SYSTEM_REVENUE,
    SYSTEM_TOPUP_SOURCE,
    Balance,
    ensure_system_accounts,
    get_balance,
    open_account,
)
from glasskey.ledger.audit import AuditReport, audit
from glasskey.ledger.transfers import (
    POSTED,
    VOIDED,
    CreatePending,
    InsufficientFunds,
    ResolvePending,
    Transfer,
    TransferNotPending,
    create_pending,
    create_posted,
    expire_pending,
    get_transfer,
    list_transfers,
    pending_transfer,
    post_pending,
    void_pending,
)

__all__ = [
    "POSTED",
    "SYSTEM_REVENUE",
    "SYSTEM_TOPUP_SOURCE",
    "VOIDED",
    "AuditReport",
    "Balance",
    "CreatePending",
    "InsufficientFunds",
    "ResolvePending",
    "Transfer",
    "TransferNotPending",
    "audit",
    "create_pending",
    "create_posted",
    "ensure_system_accounts",
    "expire_pending",
    "get_balance",
    "get_transfer",
    "list_transfers",
    "open_account",
    "pending_transfer",
    "post_pending",
    "void_pending",
]
