"""The admin API (``/admin/api``): orgs, wallets, ledger, keys, routes, prices and receipts, for operators."""

from glasskey.admin.api import build_admin_app

__all__ = ["build_admin_app"]
