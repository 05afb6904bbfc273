"""The request lifecycle and the ``/v1`` endpoints (thin over the domain packages)."""
