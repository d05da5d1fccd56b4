"""Serve the console's static files (no build step, no external assets)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")


def add_console_routes(app: web.Application) -> None:
    app.router.add_get("/console", redirect)
    app.router.add_get("/console/", index)
    app.router.add_static("/console/static/", STATIC, show_index=False)
