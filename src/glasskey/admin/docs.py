"""The admin API's interactive docs page, with Swagger UI served from the installed package.

FastAPI's own docs page loads Swagger UI from a CDN, so it is a blank page offline. Here the
page's script and stylesheet are Swagger UI 5 (which reads OpenAPI 3.1, as FastAPI writes it) as
the ``fastapi-offline`` wheel ships it, mounted by the dashboard at ``SWAGGER_UI_ASSETS`` (a public
path, like the dashboard's own static files); Swagger UI's online validator is off. No page
glasskey serves loads anything from outside.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse

SWAGGER_UI_ASSETS = "/static/swagger-ui"
# Only the wheel's static files are used, not its code (which would patch the app).
SWAGGER_UI_DIRECTORY = Path(str(files("fastapi_offline") / "static"))


def add_docs_page(app: FastAPI, path: str = "/docs") -> None:
    """Serve the docs page at ``path`` of ``app`` (which must be built with ``docs_url=None``)."""

    async def docs_page(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title}: docs",
            swagger_js_url=f"{SWAGGER_UI_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI_ASSETS}/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
            # The validator badge is an image fetched from swagger.io for every page view.
            swagger_ui_parameters={"validatorUrl": None, "deepLinking": True},
        )

    # A plain route, outside the API's dependencies: the page is public, as FastAPI's own docs page is.
    app.add_route(path, docs_page, methods=["GET"], include_in_schema=False)
