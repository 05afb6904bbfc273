"""Alerts: notices about keys and wallets that need attention (budgets running out, failures, empty wallets)."""
