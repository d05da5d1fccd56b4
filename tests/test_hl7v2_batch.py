"""HL7 v2 batches (FHS/BHS ... BTS/FTS): split, acknowledged as a batch, each message its own transaction."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest
from conftest import Harness
from hypothesis import given
from hypothesis import strategies as st

from mediator.clients.mllp import MllpClient
from mediator.hl7v2 import parse
from mediator.hl7v2.batch import build_batch_ack, is_batch, split_batch
from mediator.testing import adt_message

CIN = "https://dmp.sante.gov.ma/fhir/sid/cin"
FHS = "FHS|^~\\&|SIL|LABO-AGDAL|MEDIATOR|DMP|20261129080000+0100||||FILE-7"
BHS = "BHS|^~\\&|SIL|LABO-AGDAL|MEDIATOR|DMP|20261129080000+0100||||BATCH-42"


def batch_text(*messages: str, bts: int | None = None, file: bool = True, sep: str = "\r") -> str:
    lines = ([FHS] if file else []) + [BHS]
    body = "".join(messages).replace("\r", sep)
    trailer = [f"BTS|{len(messages) if bts is None else bts}"] + (["FTS|1"] if file else [])
    return sep.join(lines) + sep + body + sep.join(trailer) + sep


def segments(ack: str, name: str) -> list[list[str]]:
    return [line.split("|") for line in ack.split("\r") if line.startswith(name)]


# -- splitting -------------------------------------------------------------------------------------

def test_a_file_with_one_batch_splits_into_its_messages_byte_for_byte() -> None:
    m1, m2, m3 = adt_message(1), adt_message(2, "A08"), adt_message(3)
    data = ("\x0b" + batch_text(m1, m2, m3)).encode()
    assert is_batch(data) and not is_batch(m1.encode())
    batch = split_batch(data)
    assert batch.problems == []
    assert batch.file_header is not None and batch.file_header[11] == "FILE-7"
    assert [p.header[11] for p in batch.parts] == ["BATCH-42"]
    assert batch.messages == [m1.encode(), m2.encode(), m3.encode()]
    assert batch.parts[0].declared == 3 and batch.declared_batches == 1


def test_newline_separated_batch_without_file_header() -> None:
    batch = split_batch(batch_text(adt_message(1), adt_message(2), file=False, sep="\r\n").encode())
    assert batch.file_header is None and batch.problems == []
    assert [parse(m).control_id for m in batch.messages] == ["CHU-IBN-SINA-A01-00000001", "CHU-IBN-SINA-A01-00000002"]


def test_wrong_counts_and_stray_segments_are_reported_not_dropped_silently() -> None:
    data = batch_text(adt_message(1), bts=2).replace(BHS + "\r", BHS + "\rZZZ|lost\r").encode()
    batch = split_batch(data)
    assert len(batch.messages) == 1
    assert batch.problems == ["segment 3 (ZZZ) is outside any message", "batch 1: BTS-1 says 2 messages, 1 received"]


def test_an_empty_batch_is_a_batch_of_nothing() -> None:
    batch = split_batch(f"{BHS}\rBTS|0\r".encode())
    assert batch.messages == [] and batch.problems == []
    ack = build_batch_ack(batch, [[]])
    assert [s[0] for s in (line.split("|") for line in ack.split("\r") if line)] == ["BHS", "BTS"]
    assert segments(ack, "BTS")[0][1] == "0"


def test_batch_ack_swaps_sender_and_receiver_and_references_the_received_ids() -> None:
    batch = split_batch(batch_text(adt_message(1)).encode())
    ack = build_batch_ack(batch, [["MSH|^~\\&|MEDIATOR|DMP|DXCARE|CHU|x||ACK^A01|9|P|2.5\rMSA|AA|C1\r"]],
                          comment="a | note")
    fhs, bhs = segments(ack, "FHS")[0], segments(ack, "BHS")[0]
    # fields[n] is XXX-(n+1) here: FHS-3..6 = app, facility, receiving app, receiving facility
    assert fhs[2:6] == ["MEDIATOR", "DMP", "SIL", "LABO-AGDAL"] and fhs[11] == "FILE-7"
    assert bhs[2:6] == ["MEDIATOR", "DMP", "SIL", "LABO-AGDAL"] and bhs[11] == "BATCH-42"
    assert bhs[10] and bhs[10] != "BATCH-42"  # a control id of our own
    assert segments(ack, "BTS")[0] == ["BTS", "1", "a \\F\\ note"]  # the comment escaped
    assert segments(ack, "FTS")[0] == ["FTS", "1"]
    assert [s[1] for s in segments(ack, "MSA")] == ["AA"]


@given(st.sampled_from([b"BHS", b"FHS", b"\x0bFHS|"]), st.binary(max_size=300))
def test_any_bytes_after_a_batch_header_split_and_acknowledge_without_crashing(head: bytes, tail: bytes) -> None:
    batch = split_batch(head + tail)
    ack = build_batch_ack(batch, [["MSH|^~\\&|A|B\rMSA|AA|1\r"] * len(p.messages) for p in batch.parts],
                          comment="; ".join(batch.problems))
    assert ack.startswith(("FHS", "BHS")) and ack.endswith("\r")


# -- over the wire ---------------------------------------------------------------------------------

@pytest.fixture
async def harness(tmp_path: Path):
    from conftest import make_harness

    async with make_harness(tmp_path / "data") as h:
        yield h


async def _patients(h: Harness, cin: str) -> int:
    q = urllib.parse.urlencode({"identifier": f"{CIN}|{cin}"})
    return (await h.get_json(f"/shr/fhir/Patient?{q}"))["total"]


async def test_a_batch_over_mllp_gets_one_batch_ack_and_each_message_its_transaction(harness: Harness) -> None:
    h = harness
    bad = adt_message(3).replace("|19530404|", "|19530231|")  # an impossible birth date: AE for this one
    assert bad != adt_message(3)
    c = await MllpClient.connect("127.0.0.1", h.mllp_port)
    ack = await c.send(batch_text(adt_message(1), adt_message(2), bad))
    await c.close()
    assert [s[1:3] for s in segments(ack, "MSA")] == [["AA", "CHU-IBN-SINA-A01-00000001"],
                                                      ["AA", "CHU-IBN-SINA-A01-00000002"],
                                                      ["AE", "CHU-IBN-SINA-A01-00000003"]]
    assert segments(ack, "ERR")[0][2].startswith("PID^1^7")  # the bad field named
    assert segments(ack, "BTS")[0] == ["BTS", "3"] and segments(ack, "BHS")[0][11] == "BATCH-42"
    statuses = await h.wait_idle()
    assert statuses.get("Successful") == 2 and statuses.get("Rejected") == 1
    assert await _patients(h, "BK100001") == 1 and await _patients(h, "BK100002") == 1
    txs = (await h.get_json("/api/transactions?limit=10"))["transactions"]
    assert sorted(t["message_type"] for t in txs) == ["ADT^A01"] * 3  # no BATCH record: nothing was wrong


async def test_a_batch_over_http_with_a_wrong_count_is_processed_and_kept_whole(harness: Harness) -> None:
    h = harness
    data = batch_text(adt_message(4), adt_message(5), bts=3)
    async with h.http.post(h.base + "/hl7v2", data=data.encode(), headers={"Content-Type": "application/hl7-v2"}) as r:
        assert r.status == 200
        ack = (await r.read()).decode()
    assert [s[1] for s in segments(ack, "MSA")] == ["AA", "AA"]
    assert segments(ack, "BTS")[0] == ["BTS", "2", "batch 1: BTS-1 says 3 messages, 2 received"]
    await h.wait_idle()
    kept = (await h.get_json("/api/transactions?status=Rejected"))["transactions"]
    assert [t["message_type"] for t in kept] == ["BATCH"]
    tx = await h.get_json(f"/api/transactions/{kept[0]['id']}")
    assert "BTS-1 says 3 messages" in tx["error"]
    assert await _patients(h, "BK100004") == 1 and await _patients(h, "BK100005") == 1


async def test_a_resent_batch_is_not_processed_twice(harness: Harness) -> None:
    h = harness
    data = batch_text(adt_message(6), adt_message(7))
    c = await MllpClient.connect("127.0.0.1", h.mllp_port)
    first = await c.send(data)
    again = await c.send(data)
    await c.close()
    assert [s[1] for s in segments(first, "MSA")] == [s[1] for s in segments(again, "MSA")] == ["AA", "AA"]
    await h.wait_idle()
    assert len((await h.get_json("/api/transactions?limit=10"))["transactions"]) == 2
