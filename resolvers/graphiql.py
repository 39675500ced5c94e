"""GraphiQL, the in-browser GraphQL IDE of dev mode, served entirely by the gateway.

Strawberry's own page loads React and GraphiQL from a public CDN, so on an offline or locked-down
network it stays blank. This page is strawberry's with every asset pointing at the copies vendored
under `static/graphiql/` (their versions, sources and licences are in the README there), which
`assets()` serves at ASSETS_PATH. Production mounts neither.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Final

from gateway.portal_site import StaticDirectory

_STATIC: Final = Path(__file__).resolve().parent / "static"

ASSETS_PATH: Final = "/graphiql"
"""Where the page's scripts and styles are served; the page names them relative to /graphql."""


@cache
def page() -> str:
    """The GraphiQL page's HTML."""
    return (_STATIC / "graphiql.html").read_text(encoding="utf-8")


def assets() -> StaticDirectory:
    """The ASGI app serving the vendored scripts, styles and their licences."""
    return StaticDirectory(directory=_STATIC / "graphiql")
