"""The API's documents for people and tools: /openapi.json, and /docs, Swagger UI on it."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any

from falcon.asgi import Request, Response

Schema = dict[str, Any]


def swagger_ui_directory() -> Path:
    """Return the Swagger UI assets shipped by the swagger-ui-py package (swagger-ui-bundle.js,
    swagger-ui.css), without importing it (its module loads Jinja, PyYAML and handlers for other
    web frameworks, none of which this service needs); raise RuntimeError if it is missing."""
    spec = find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>ledger API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/docs.js"></script>
</body>
</html>
"""

# In a file of its own, not inline: the page can then be served with a strict CSP (script-src 'self').
DOCS_SCRIPT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null
});
"""
DOCS_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"


class OpenApiDocument:
    """GET /openapi.json."""

    def __init__(self, document: Schema) -> None:
        self._document = document

    async def on_get(self, req: Request, resp: Response) -> None:
        resp.media = self._document


class DocsPage:
    """GET /docs: Swagger UI on /openapi.json, from assets served by this service (no CDN)."""

    async def on_get(self, req: Request, resp: Response) -> None:
        resp.content_type = "text/html; charset=utf-8"
        resp.set_header("Content-Security-Policy", DOCS_CSP)
        resp.text = DOCS_PAGE


class DocsScript:
    """GET /docs/docs.js: the page's script."""

    async def on_get(self, req: Request, resp: Response) -> None:
        resp.content_type = "text/javascript; charset=utf-8"
        resp.text = DOCS_SCRIPT
