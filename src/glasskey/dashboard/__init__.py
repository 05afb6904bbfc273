"""The dashboard: the gateway's facts for people, as server-rendered pages at ``/``.

Pages are thin: they call the same domain functions as ``/v1`` and the admin API and render
Jinja2 templates. Everything a page loads (CSS, one small script, no library) ships in this
package. See ``docs/dashboard.md``.
"""

from glasskey.dashboard.app import build_dashboard

__all__ = ["build_dashboard"]
