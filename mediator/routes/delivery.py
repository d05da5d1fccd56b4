"""Delivery with retries: exponential backoff with jitter, a bounded number of attempts, each logged."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import structlog

from mediator.routes.destination import BODY_KEPT, Destination, Request, Response
from mediator.store.base import RouteAttempt, Store

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class RouteOutcome:
    route: str
    delivered: bool
    skipped: bool
    error: str
    attempts: int
    unrecorded: list[RouteAttempt] = field(default_factory=list)  # attempts the caller records with the outcome


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Delay before attempt ``attempt + 1`` (attempt counts from 1): full jitter on an exponential."""
    ceiling = min(maximum, initial * (2 ** (attempt - 1)))
    return random.uniform(ceiling / 2, ceiling)


async def deliver(dest: Destination, requests: list[Request], tx_id: str, store: Store,
                  *, sleep: float | None = None) -> RouteOutcome:
    """Send every request of one route in order; retry each per the destination's policy.

    Attempts are written to the transaction log before each backoff (so an operator sees a route
    that is retrying); the last ones come back in ``unrecorded`` to be written with the final status.
    """
    if not requests:
        return RouteOutcome(dest.name, False, True, "", 0)
    total = 0
    log_: list[RouteAttempt] = []
    for req in requests:
        attempt = 0
        while True:
            attempt += 1
            total += 1
            started = time.time()
            resp = await dest.send(req)
            last = attempt >= dest.cfg.max_attempts
            outcome = "delivered" if resp.delivered else ("retry" if resp.retryable and not last else "failed")
            log_.append(RouteAttempt(
                tx_id=tx_id, route=dest.name, attempt=attempt, started_at=started, duration_ms=resp.duration_ms,
                request_url=req.url, request_body=req.body[:BODY_KEPT].decode("utf-8", "replace"),
                response_status=resp.status, response_body=resp.body, error=resp.error, outcome=outcome))
            if resp.delivered:
                break
            if outcome == "failed":
                return RouteOutcome(dest.name, False, False, _describe(resp), total, log_)
            delay = sleep if sleep is not None else backoff_delay(attempt, dest.cfg.backoff_initial_s,
                                                                  dest.cfg.backoff_max_s)
            log.info("route.retry", route=dest.name, tx_id=tx_id, attempt=attempt, status=resp.status,
                     delay_s=round(delay, 3))
            await store.record_attempts(log_)
            log_ = []
            await asyncio.sleep(delay)
    return RouteOutcome(dest.name, True, False, "", total, log_)


def _describe(resp: Response) -> str:
    if resp.status is None:
        return f"no answer from {resp.url}: {resp.error}"
    return f"HTTP {resp.status} from {resp.url}"
