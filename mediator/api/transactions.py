"""``/api/transactions``: list with filters, open one (request, route attempts), rerun.

Every read of a message body is audited (who, when, which transaction).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from mediator.inbound.auth import CLIENT
from mediator.store.base import QueuedMessage, Status, Store, TransactionFilter

STORE = web.AppKey("store", Store)
RESUBMIT = web.AppKey("resubmit", Callable[[QueuedMessage], None])

FILTERS = ("status", "channel", "since", "until", "control_id", "patient", "message_type", "limit", "before",
           "superseded")
RERUNNABLE = (Status.FAILED.value, Status.COMPLETED_WITH_ERRORS.value, Status.REJECTED.value)


class BadParam(ValueError):
    pass


def parse_time(value: str, name: str) -> float:
    """Epoch seconds or an ISO 8601 date/time (offset honoured; none means UTC)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadParam(f"{name}: expected epoch seconds or ISO 8601, got {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def filter_from_query(q: dict[str, str]) -> TransactionFilter:
    unknown = sorted(set(q) - set(FILTERS))
    if unknown:
        raise BadParam(f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(FILTERS)}")
    status = q.get("status")
    if status and status not in {s.value for s in Status}:
        raise BadParam(f"status: one of {', '.join(s.value for s in Status)}")
    try:
        limit = int(q.get("limit", "50"))
    except ValueError:
        raise BadParam("limit: expected an integer") from None
    if not 1 <= limit <= 1000:
        raise BadParam("limit: between 1 and 1000")
    superseded = q.get("superseded")
    if superseded not in (None, "true", "false"):
        raise BadParam("superseded: true or false")
    return TransactionFilter(
        status=status, channel=q.get("channel"), control_id=q.get("control_id"), patient=q.get("patient"),
        message_type=q.get("message_type"), limit=limit, before=q.get("before"),
        superseded=None if superseded is None else superseded == "true",
        since=parse_time(q["since"], "since") if "since" in q else None,
        until=parse_time(q["until"], "until") if "until" in q else None)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def present(tx: dict[str, Any]) -> dict[str, Any]:
    out = dict(tx)
    for k in ("received_at", "updated_at"):
        if k in out:
            out[k] = _iso(out[k])
    if "body" in out:
        body = bytes(out.pop("body"))
        try:
            out["request"] = {"content_type": out.get("content_type"), "body": body.decode("utf-8")}
        except UnicodeDecodeError:
            out["request"] = {"content_type": out.get("content_type"),
                              "body_base64": base64.b64encode(body).decode()}
    if "result" in out and isinstance(out["result"], str):
        out["result"] = orjson.loads(out["result"]) if out["result"] else None
    if "attempts_log" in out:
        out["routes"] = out.pop("attempts_log")
        for a in out["routes"]:
            a["started_at"] = _iso(a["started_at"])
    return out


def actor_of(request: web.Request) -> str:
    return request.get(CLIENT) or f"anonymous@{request.remote}"


async def list_transactions(request: web.Request) -> web.Response:
    try:
        flt = filter_from_query(dict(request.query))
    except BadParam as exc:
        return web.json_response({"error": str(exc)}, status=400)
    rows = await request.app[STORE].list_transactions(flt)
    nxt = None
    if len(rows) == flt.limit:
        query = dict(request.query)
        query["before"] = rows[-1]["id"]
        nxt = str(request.rel_url.with_query(query))
    return web.json_response({"transactions": [present(r) for r in rows], "next": nxt})


async def get_transaction(request: web.Request) -> web.Response:
    store = request.app[STORE]
    tx_id = request.match_info["tx_id"]
    tx = await store.get_transaction(tx_id)
    if tx is None:
        return web.json_response({"error": f"no transaction {tx_id}"}, status=404)
    await store.audit(actor_of(request), "read", tx_id)
    return web.json_response(present(tx))


async def rerun_transaction(request: web.Request) -> web.Response:
    store = request.app[STORE]
    tx_id = request.match_info["tx_id"]
    queued = await store.rerun(tx_id)
    if queued is None:
        return web.json_response({"error": f"no transaction {tx_id}"}, status=404)
    await store.audit(actor_of(request), "rerun", tx_id)
    request.app[RESUBMIT](queued)
    return web.json_response({"id": queued.id, "rerun_of": tx_id, "status": Status.QUEUED.value}, status=202)


async def rerun_matching(request: web.Request) -> web.Response:
    """Rerun every transaction a filter selects (after an outage: ``status=Failed&channel=...``).

    ``status`` is required and must be a final one that can be replayed (Failed, Completed with
    errors, Rejected); transactions already rerun are skipped, so calling again continues where the
    previous call stopped. ``limit`` (default 100, at most 500) bounds one call; ``more`` says
    whether more match. ``dry_run=true`` only counts. Each rerun is audited.
    """
    query = dict(request.query)
    dry_run = query.pop("dry_run", "false")
    if dry_run not in ("true", "false"):
        return web.json_response({"error": "dry_run: true or false"}, status=400)
    if query.get("status") not in RERUNNABLE:
        return web.json_response({"error": f"status is required: one of {', '.join(RERUNNABLE)}"}, status=400)
    query.setdefault("limit", "100")
    query["superseded"] = "false"
    try:
        flt = filter_from_query(query)
    except BadParam as exc:
        return web.json_response({"error": str(exc)}, status=400)
    store = request.app[STORE]
    limit = flt.limit
    if limit > 500:
        return web.json_response({"error": "limit: at most 500 per call (call again for more)"}, status=400)
    flt.limit, flt.oldest_first = limit + 1, True  # oldest first: one patient's messages replay in order
    rows = await store.list_transactions(flt)
    more, rows = len(rows) > limit, rows[:limit]
    if dry_run == "true":
        return web.json_response({"count": len(rows), "more": more, "dry_run": True,
                                  "ids": [r["id"] for r in rows]})
    actor, done = actor_of(request), []
    for r in rows:
        queued = await store.rerun(r["id"])
        if queued is None:
            continue
        await store.audit(actor, "rerun", r["id"])
        request.app[RESUBMIT](queued)
        done.append({"id": queued.id, "rerun_of": r["id"]})
    return web.json_response({"count": len(done), "more": more, "rerun": done}, status=202)


async def stats(request: web.Request) -> web.Response:
    """Transactions per status (the operator's first look)."""
    return web.json_response({"statuses": await request.app[STORE].counts()})


def add_transaction_routes(app: web.Application, store: Store, resubmit: Callable[[QueuedMessage], None]) -> None:
    app[STORE] = store
    app[RESUBMIT] = resubmit
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/transactions", list_transactions)
    app.router.add_get("/api/transactions/{tx_id}", get_transaction)
    app.router.add_post("/api/transactions/rerun", rerun_matching)
    app.router.add_post("/api/transactions/{tx_id}/rerun", rerun_transaction)
