"""Rerun what an outage failed, in bulk: filters, oldest first, never twice, dry run, audited."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
from conftest import Harness, make_harness

from mediator.testing import adt_message, node_config, running_node


async def _cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "mediator", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def _post(h: Harness, path: str, status: int) -> dict:
    async with h.http.post(h.base + path) as r:
        assert r.status == status, await r.text()
        return await r.json()


async def test_rerun_every_failed_transaction_of_a_channel_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    down = node_config(data)
    down.destinations["shr"].url = "http://127.0.0.1:9/fhir"  # the shared record is down
    down.destinations["shr"].max_attempts = 1
    messages = [adt_message(1), adt_message(2, "A08", patient=1), adt_message(3)]
    async with running_node(down) as node, aiohttp.ClientSession() as session:
        h = Harness(node, session)  # type: ignore[arg-type]
        for m in messages:
            async with session.post(h.base + "/hl7v2", data=m.encode(),
                                    headers={"Content-Type": "application/hl7-v2"}) as r:
                assert r.status == 200
        assert (await h.wait_idle()).get("Failed") == 3
    async with make_harness(data) as h:  # back up: the shipped config (sandbox shared record)
        assert "status is required" in (await _post(h, "/api/transactions/rerun", 400))["error"]
        assert "status is required" in (await _post(h, "/api/transactions/rerun?status=Successful", 400))["error"]
        dry = await _post(h, "/api/transactions/rerun?status=Failed&channel=adt-sih&dry_run=true", 200)
        assert dry["count"] == 3 and not dry["more"]
        first = await _post(h, "/api/transactions/rerun?status=Failed&channel=adt-sih&limit=2", 202)
        assert first["count"] == 2 and first["more"]
        rest = await _post(h, "/api/transactions/rerun?status=Failed&channel=adt-sih", 202)
        assert rest["count"] == 1 and not rest["more"]
        again = await _post(h, "/api/transactions/rerun?status=Failed&channel=adt-sih", 202)
        assert again["count"] == 0  # each failed transaction is rerun once
        code, out = await _cli("tx", "rerun", "--status", "Failed", "--dry-run", "--url", h.base)
        assert code == 0 and out.strip() == "0 transaction(s) would be rerun"
        code, out = await _cli("tx", "rerun", "--url", h.base)
        assert code != 0  # neither an id nor a filter: refused, nothing rerun
        originals = [r["rerun_of"] for r in first["rerun"] + rest["rerun"]]
        failed = (await h.get_json("/api/transactions?status=Failed"))["transactions"]
        assert sorted(originals) == sorted(t["id"] for t in failed)
        # oldest first (the A01 before the A08 of patient 1): the log lists newest first, by arrival
        # (ids made in one millisecond do not sort by arrival)
        assert originals == [t["id"] for t in reversed(failed)]
        statuses = await h.wait_idle()
        assert statuses.get("Successful") == 3
        assert (await h.get_json("/api/transactions?status=Failed&superseded=false"))["transactions"] == []
        assert len((await h.get_json("/api/transactions?status=Failed&superseded=true"))["transactions"]) == 3
        audit = await h.node.store.audit_log(originals[0])
        assert [a["action"] for a in audit] == ["rerun"]
