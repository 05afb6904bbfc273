"""Fixtures shared by the CLI tests: a clean environment and settings given as variables."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests control every GLASSKEY_* variable; none leaks in from the shell running them."""
    for name in list(os.environ):
        if name.startswith("GLASSKEY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {
        "GLASSKEY_DATA_DIR": str(tmp_path),
        "GLASSKEY_ADMIN_TOKEN": "admin-token-for-tests-0123456789",
        "GLASSKEY_KEY_PEPPER": "pepper-for-tests-0123456789abcdef",
        "GLASSKEY_ENCRYPTION_KEY": "dGVzdC1lbmNyeXB0aW9uLWtleS0wMTIzNDU2Nzg5YWI=",
        "GLASSKEY_ALLOW_PRIVATE_UPSTREAMS": "true",
    }
