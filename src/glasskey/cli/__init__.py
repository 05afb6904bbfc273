"""The ``glasskey`` command: serve, demo, and the everyday admin verbs (one module per group).

Admin verbs open the database in this process and call the same domain functions as the admin
API, so the CLI and the API cannot disagree; ``routes health`` asks the running server instead.
Each group's module is imported only when one of its commands runs (``LAZY_COMMANDS``).
"""

from typing import Any

from glasskey.cli.base import main

__all__ = ["main", "render_health"]


def __getattr__(name: str) -> Any:
    # ``render_health`` lives with the routes verbs; importing it eagerly would load them all.
    if name == "render_health":
        from glasskey.cli.routes import render_health

        return render_health
    raise AttributeError(name)
