"""Upstream providers: one module per API family behind the small interface of ``base``."""
