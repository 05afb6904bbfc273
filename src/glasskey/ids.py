"""Identifiers: short, prefixed, random, and safe to show (none of them is a secret)."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """``new_id("req") -> "req_5f0c2a9e1b7d4c3a8e6f1d2c"`` (96 random bits)."""
    return f"{prefix}_{secrets.token_hex(12)}"
