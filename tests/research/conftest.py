"""Research tests use the gateway fixtures (a real server with seeded routes and keys)."""

from gateway_fixtures import gateway, gateway_any_db

__all__ = ["gateway", "gateway_any_db"]
