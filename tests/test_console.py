"""The operator console in a real headless Chromium (Debian's chromium): list, causes, one transaction."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from conftest import Harness

from mediator.clients.mllp import MllpClient
from mediator.hl7v2 import parse
from mediator.testing import adt_message

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


async def render(url: str, tmp: Path, screenshot: Path | None = None) -> str:
    """The DOM of ``url`` once its scripts have run (and their fetches answered)."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=8000", "--window-size=1400,1000"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    proc = await asyncio.create_subprocess_exec(*args, url, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return out.decode("utf-8", "replace")


async def test_console_lists_groups_and_opens_transactions(harness: Harness, tmp_path: Path) -> None:
    h = harness
    c = await MllpClient.connect("127.0.0.1", h.mllp_port)
    good = adt_message(11)
    await c.send(good)
    await c.send(adt_message(12).replace("|P|2.5|", "|P|9.9|"))  # refused: AR 203
    await c.close()
    bad = {"resourceType": "Patient", "id": "p-bad", "birthDate": "2024-13-45"}
    async with h.http.post(h.base + "/fhir", json=bad, headers={"Content-Type": "application/fhir+json"}) as r:
        assert r.status == 202  # accepted: the failure comes at validation, after the ACK
    await h.wait_idle()

    dom = await render(h.base + "/console/", tmp_path)
    assert 'data-ready="1"' in dom
    assert parse(good).control_id in dom
    for status in ("Successful", "Rejected", "Failed"):
        assert f'class="status s-{status}"' in dom
    assert "Failures by cause" in dom and "validate: the mapped Bundle is not valid FHIR R4" in dom
    assert "<script>alert" not in dom

    tx_id = (await h.get_json("/api/transactions?status=Successful"))["transactions"][0]["id"]
    dom = await render(h.base + f"/console/#tx={tx_id}", tmp_path)
    assert tx_id in dom and "delivered" in dom and "PID|1||" in dom
    await render(h.base + "/console/", tmp_path, screenshot=tmp_path / "console.png")
    assert (tmp_path / "console.png").stat().st_size > 10_000


async def test_console_shows_values_as_text_not_html(harness: Harness, tmp_path: Path) -> None:
    h = harness
    evil = adt_message(13, control_id="<img src=x onerror=alert(1)>")
    c = await MllpClient.connect("127.0.0.1", h.mllp_port)
    await c.send(evil)
    await c.close()
    await h.wait_idle()
    dom = await render(h.base + "/console/", tmp_path)
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom and "<img src=x" not in dom
