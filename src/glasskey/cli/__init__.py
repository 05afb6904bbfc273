"""The ``glasskey`` command: serve, demo, and the everyday admin verbs (one module per group).

Admin verbs open the database in this process and call the same domain functions as the admin
API, so the CLI and the API cannot disagree; ``routes health`` asks the running server instead.
"""

from glasskey.cli import keys, ledger, research, routes, serve
from glasskey.cli.base import main
from glasskey.cli.routes import render_health

__all__ = ["keys", "ledger", "main", "render_health", "research", "routes", "serve"]
