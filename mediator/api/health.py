"""``/healthz`` (the process answers), ``/readyz`` (ready to accept), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

READY = web.AppKey("ready", Callable[[], bool])
REGISTRY = web.AppKey("registry", CollectorRegistry)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready = request.app[READY]()
    return web.json_response({"status": "ready" if ready else "not ready"}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


class GaugeCollector:
    """Exposes numbers read at scrape time (backlog, connections, store commits)."""

    def __init__(self, gauges: dict[str, tuple[str, Callable[[], float]]]) -> None:
        self.gauges = gauges

    def collect(self):  # type: ignore[no-untyped-def]
        for name, (doc, read) in self.gauges.items():
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], float(read()))
            yield g


def add_health_routes(app: web.Application, ready: Callable[[], bool], registry: CollectorRegistry) -> None:
    app[READY] = ready
    app[REGISTRY] = registry
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
