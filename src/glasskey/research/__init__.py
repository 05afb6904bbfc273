"""The research assistant: market research on a key's quick and deep models.

A job reads price series and documents, computes its figures locally (``metrics``), plans its
model calls (``plan``), shows permission, runtime and cost before anything runs (``preflight``),
runs every call through the gateway's own request lifecycle with the person's key (``runner``),
and writes a report whose numbers come only from the computation (``report``). Jobs are rows in
the database (``tables``, ``jobs``). Research support, not financial advice.
"""

NOTICE = "Research support, not financial advice."

__all__ = ["NOTICE"]
