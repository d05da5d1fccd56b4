"""HTTP Basic authentication of senders and operators; every body read is audited."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from conftest import make_harness

from mediator.config import ClientConfig
from mediator.testing import adt_message

HL7 = {"Content-Type": "application/hl7-v2"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


async def test_required_auth_refuses_anonymous_and_wrong_passwords(tmp_path: Path) -> None:
    async with make_harness(tmp_path / "d", auth__required=True,
                            auth__clients=[ClientConfig(username="chu", password="s3cret")]) as h:
        async with h.http.post(h.base + "/hl7v2", data=adt_message(1).encode(), headers=HL7) as r:
            assert r.status == 401 and "Basic" in r.headers["WWW-Authenticate"]
        async with h.http.post(h.base + "/hl7v2", data=adt_message(1).encode(),
                               headers={**HL7, **basic("chu", "wrong")}) as r:
            assert r.status == 401
        async with h.http.get(h.base + "/api/transactions") as r:
            assert r.status == 401
        async with h.http.post(h.base + "/hl7v2", data=adt_message(1).encode(),
                               headers={**HL7, **basic("chu", "s3cret")}) as r:
            assert r.status == 200
            tx_id = r.headers["X-Transaction-Id"]
        async with h.http.get(h.base + f"/api/transactions/{tx_id}", headers=basic("chu", "s3cret")) as r:
            tx = await r.json()
            assert tx["client"] == "chu"  # the transaction log names the authenticated sender
        assert (await h.get_json("/healthz"))["status"] == "ok"  # health stays open
        audit = await h.node.store.audit_log(tx_id)  # type: ignore[union-attr]
        assert [(a["actor"], a["action"]) for a in audit] == [("chu", "read")]


async def test_optional_auth_still_checks_credentials_that_are_sent(harness) -> None:
    async with harness.http.post(harness.base + "/hl7v2", data=adt_message(2).encode(),
                                 headers={**HL7, **basic("demo", "not-the-password")}) as r:
        assert r.status == 401
    async with harness.http.post(harness.base + "/hl7v2", data=adt_message(2).encode(), headers=HL7) as r:
        assert r.status == 200
