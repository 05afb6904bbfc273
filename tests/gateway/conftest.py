"""Gateway fixtures live in gateway_fixtures.py so tests can also import its helpers."""

from gateway_fixtures import gateway, gateway_any_db

__all__ = ["gateway", "gateway_any_db"]
