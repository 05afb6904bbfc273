"""Orgs and their two wallets (``credit`` and ``routed``)."""
