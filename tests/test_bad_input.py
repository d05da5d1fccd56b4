"""Bad input: a precise NAK or OperationOutcome, the message kept in the log, the server still serving."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp
import pytest
from conftest import Harness

from mediator.clients.mllp import MllpClient, frame
from mediator.hl7v2 import parse
from mediator.testing import adt_message, node_config, running_node

HL7 = {"Content-Type": "application/hl7-v2"}
FHIR = {"Content-Type": "application/fhir+json"}
XML = {"Content-Type": "application/xml"}


async def post_hl7(h: Harness, data: bytes) -> tuple[str, str]:
    async with h.http.post(h.base + "/hl7v2", data=data, headers=HL7) as resp:
        assert resp.status == 200  # every HL7 answer, AE and AR included
        return await resp.text(), resp.headers.get("X-Transaction-Id", "")


def err(ack: str) -> tuple[str, str, str]:
    """(MSA-1, ERR-2 location segment^field, ERR-3 code) of a NAK."""
    m = parse(ack)
    return m.get("MSA-1") or "", f"{m.get('ERR-2.1')}-{m.get('ERR-2.3')}", m.get("ERR-3.1") or ""


async def still_serving(h: Harness) -> None:
    c = await MllpClient.connect("127.0.0.1", h.mllp_port)
    ack = await c.send(adt_message(999_999, control_id=f"ALIVE-{id(c)}"))
    await c.close()
    assert parse(ack).get("MSA-1") == "AA"
    assert (await h.get_json("/healthz"))["status"] == "ok"


async def rejected(h: Harness, tx_id: str) -> dict:
    tx = await h.get_json(f"/api/transactions/{tx_id}")
    assert tx["status"] == "Rejected"
    return tx


GOOD = adt_message(1)

HL7_CASES = {
    "no MSH": (b"PID|1||123\rPV1|1|I", "AE", "MSH", "100"),
    "invalid encoding characters": (GOOD.replace("MSH|^~\\&|", "MSH|^^^^|", 1).encode(), "AE", "MSH-2", None),
    "unknown message type": (GOOD.replace("ADT^A01^ADT_A01", "ZZZ^Z99").encode(), "AR", "MSH-9", "200"),
    "unknown event": (GOOD.replace("ADT^A01^ADT_A01", "ADT^A99").encode(), "AR", "MSH-9", "201"),
    "unsupported version": (GOOD.replace("|P|2.5|", "|P|9.9|").encode(), "AR", "MSH-12", "203"),
    "unsupported processing id": (GOOD.replace("|P|2.5|", "|X|2.5|").encode(), "AR", "MSH-11", "202"),
    "invalid UTF-8": (GOOD.encode().replace(b"Rabat", b"Rab\xff\xfet"), "AE", "MSH-18", "102"),
    "impossible date": (GOOD.replace(parse(GOOD).get("PID-7") or "", "20240231").encode(), "AE", "PID-7", "102"),
    "binary garbage": (bytes(b for b in range(256) if b not in (0x0B, 0x1C)) * 4, "AE", "MSH", None),
}


@pytest.mark.parametrize("case", list(HL7_CASES))
async def test_hl7_bad_input_gets_precise_nak_and_is_kept(harness: Harness, case: str) -> None:
    data, code, location, table = HL7_CASES[case]
    ack, tx_id = await post_hl7(harness, data)
    msa, loc, err3 = err(ack)
    assert msa == code, ack
    assert loc.startswith(location.split("-")[0]) and (location == loc or "-" not in location or loc == location), ack
    if table:
        assert err3 == table, ack
    tx = await rejected(harness, tx_id)
    assert tx["request"].get("body") is not None or tx["request"].get("body_base64")
    # over MLLP: the same answer, on a connection that stays usable
    c = await MllpClient.connect("127.0.0.1", harness.mllp_port)
    await c.send_raw(frame(data))
    assert err((await c.read_answer()).decode("utf-8"))[0] == code
    assert parse(await c.send(adt_message(2, control_id=f"after-{case}"))).get("MSA-1") == "AA"
    await c.close()
    await still_serving(harness)


async def test_random_bytes_with_framing_characters_over_mllp(harness: Harness) -> None:
    import random

    rng = random.Random(7)
    c = await MllpClient.connect("127.0.0.1", harness.mllp_port)
    for _ in range(20):
        await c.send_raw(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))))
    await c.send_raw(b"\x1c\x0d")  # close whatever frame the noise left open
    await c.close()
    await still_serving(harness)


async def test_msa2_echoes_control_id_even_when_unparseable(harness: Harness) -> None:
    bad = GOOD.replace("MSH|^~\\&|", "MSH|^^^^|", 1).encode()
    ack, _ = await post_hl7(harness, bad)
    assert parse(ack).get("MSA-2") == parse(GOOD).control_id


async def test_sql_like_text_in_names_is_stored_verbatim(harness: Harness) -> None:
    h = harness
    evil = "O'BRIEN'); DROP TABLE transactions;--"
    msg = adt_message(3, extra_pid_name=evil)
    ack, tx_id = await post_hl7(h, msg.encode())
    assert parse(ack).get("MSA-1") == "AA"
    tx = await h.wait_status(tx_id)
    assert tx["status"] == "Successful"
    patient = next(r for r in tx["result"]["resources"] if r.startswith("Patient/"))
    names = (await h.get_json(f"/shr/fhir/{patient}"))["name"]
    assert any(n.get("family") == evil for n in names)
    await still_serving(h)


async def test_truncated_frame_over_mllp(harness: Harness) -> None:
    c = await MllpClient.connect("127.0.0.1", harness.mllp_port)
    await c.send_raw(b"\x0b" + GOOD[:60].encode() + frame(adt_message(4)))
    first, second = (await c.read_answer()).decode(), (await c.read_answer()).decode()
    await c.close()
    assert parse(first).get("MSA-1") == "AE" and parse(first).get("ERR-3.1") == "100"
    assert parse(second).get("MSA-1") == "AA"
    txs = (await harness.get_json("/api/transactions?status=Rejected"))["transactions"]
    assert any("truncated" in t["error"] for t in txs)


@pytest.mark.parametrize("body,status,code", [
    (b'{"resourceType": "Patient", ', 400, "invalid"),
    (b'{"resourceType": "Spaceship", "id": "x"}', 422, "not-supported"),
    (b"[" * 10000 + b"]" * 10000, 400, "invalid"),
    (b'{"resourceType": "Bundle", "type": "weird"}', 400, None),
    (b'"just a string"', 400, None),
])
async def test_fhir_bad_input(harness: Harness, body: bytes, status: int, code: str | None) -> None:
    h = harness
    async with h.http.post(h.base + "/fhir", data=body, headers=FHIR) as resp:
        assert resp.status == status
        outcome = await resp.json(content_type=None)
        tx_id = resp.headers["X-Transaction-Id"]
    assert outcome["resourceType"] == "OperationOutcome"
    if code:
        assert outcome["issue"][0]["code"] == code
    await rejected(h, tx_id)
    await still_serving(h)


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&xxe;</title></ClinicalDocument>"""
BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol3;</title></ClinicalDocument>"""


@pytest.mark.parametrize("body", [XXE, BOMB, b"<ClinicalDocument><unclosed>", b"<notcda/>"])
async def test_cda_bad_input(harness: Harness, body: bytes) -> None:
    h = harness
    async with h.http.post(h.base + "/cda", data=body, headers=XML) as resp:
        assert resp.status == 400
        text = await resp.text()
        tx_id = resp.headers["X-Transaction-Id"]
    assert "root:" not in text  # nothing from /etc/passwd
    outcome = json.loads(text)
    assert outcome["issue"][0]["diagnostics"]
    await rejected(h, tx_id)
    await still_serving(h)


async def test_oversize_message_refused_with_ar(tmp_path: Path) -> None:
    cfg = node_config(tmp_path / "d", mllp__max_frame_bytes=2000, http__max_body_bytes=2000)
    async with running_node(cfg) as node, aiohttp.ClientSession() as session:
        h = Harness(node, session)  # type: ignore[arg-type]
        big = adt_message(5).replace("Rue Ibn Battouta", "X" * 5000)
        ack, tx_id = await post_hl7(h, big.encode())
        assert err(ack)[0] == "AR" and "exceeds" in (parse(ack).get("ERR-8") or "")
        assert parse(ack).get("MSA-2") == parse(big).control_id
        await rejected(h, tx_id)
        c = await MllpClient.connect("127.0.0.1", h.mllp_port)
        assert err(await c.send(big))[0] == "AR"
        assert parse(await c.send(adt_message(6))).get("MSA-1") == "AA"
        await c.close()


async def test_slow_loris_clients_do_not_exhaust_the_listener(tmp_path: Path) -> None:
    cfg = node_config(tmp_path / "d", mllp__max_connections=20, mllp__frame_timeout_s=0.5,
                      mllp__idle_timeout_s=1.0)
    async with running_node(cfg) as node, aiohttp.ClientSession() as session:
        h = Harness(node, session)  # type: ignore[arg-type]
        slow = [await MllpClient.connect("127.0.0.1", h.mllp_port) for _ in range(40)]
        for c in slow:
            with contextlib.suppress(ConnectionError):
                await c.send_raw(b"\x0bMSH|^~\\&|")  # starts a frame, never finishes it
        await asyncio.sleep(2.0)  # frame timeout + sweep
        assert len(node.mllp.connections) == 0  # type: ignore[union-attr]
        for c in slow:
            await c.close()
        await still_serving(h)
