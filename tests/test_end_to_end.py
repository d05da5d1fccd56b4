"""The whole path over real sockets: MLLP/HTTP in, ACK out, mapped, routed to the sandbox shared record."""

from __future__ import annotations

import urllib.parse

import aiohttp
import pytest
from conftest import Harness, fixture_text, make_harness

from mediator.clients.mllp import MllpClient, ack_code
from mediator.hl7v2 import parse
from mediator.testing import CORPORA, adt_message, node_config, running_node

CIN = "https://dmp.sante.gov.ma/fhir/sid/cin"
CORPORA_CCDA = CORPORA / "ms-fhir-converter" / "ccda"


@pytest.fixture(params=[0, 1], ids=["in-process", "worker-process"])
async def harness(request: pytest.FixtureRequest, tmp_path):
    """Both deployments: the pipeline in the node's process, and in a worker process."""
    async with make_harness(tmp_path / "data", worker__processes=request.param) as h:
        yield h


def msa(ack: str) -> list[str]:
    return parse(ack).get_all("MSA-1") + parse(ack).get_all("MSA-2")


async def shr_search(h: Harness, rtype: str, **params: str) -> dict:
    return await h.get_json(f"/shr/fhir/{rtype}?" + urllib.parse.urlencode(params))


async def test_mllp_adt_reaches_the_shared_record(harness: Harness) -> None:
    h = harness
    c = await MllpClient.connect("127.0.0.1", h.mllp_port)
    text = fixture_text("ma_adt_a01.hl7")
    ack = await c.send(text)
    await c.close()
    assert msa(ack) == ["CA", "CHUIS-000184"]  # the fixture asks for enhanced mode (MSH-15 AL)
    txs = (await h.get_json("/api/transactions?control_id=CHUIS-000184"))["transactions"]
    assert len(txs) == 1
    tx = await h.wait_status(txs[0]["id"])
    assert tx["status"] == "Successful", tx["error"]
    found = await shr_search(h, "Patient", identifier=f"{CIN}|BK245871")
    assert found["total"] == 1
    patient = found["entry"][0]["resource"]
    families = {n.get("family") for n in patient["name"]}
    assert {"EL AMRANI", "العمراني"} <= families
    systems = [i["system"] for i in patient["identifier"]]
    assert CIN in systems and len(patient["identifier"]) == 4  # CIN, IPP, CNSS + the enterprise id (MPI)
    assert "https://dmp.sante.gov.ma/fhir/sid/enterprise" in systems
    encounters = await shr_search(h, "Encounter", patient=f"Patient/{patient['id']}")
    assert encounters["total"] == 1
    assert encounters["entry"][0]["resource"]["period"]["start"] == "2024-11-05T09:30:00+01:00"


async def test_many_messages_on_one_connection_each_acked_in_order(harness: Harness) -> None:
    h = harness
    c = await MllpClient.connect("127.0.0.1", h.mllp_port)
    msgs = [adt_message(i) for i in range(30)]
    for m in msgs:
        await c.send_raw(b"\x0b" + m.encode() + b"\x1c\x0d")
    acks = [(await c.read_answer()).decode() for _ in msgs]
    await c.close()
    assert [msa(a)[1] for a in acks] == [parse(m).control_id for m in msgs]
    assert all(msa(a)[0] == "AA" for a in acks)
    assert await h.wait_idle() == {"Successful": 30}


async def test_a01_then_a08_applied_in_order(harness: Harness) -> None:
    h = harness
    c = await MllpClient.connect("127.0.0.1", h.mllp_port)
    for i in range(5):  # several updates of one patient, the last one must win
        ack = await c.send(adt_message(100 + i, "A01" if i == 0 else "A08", patient=7,
                                       extra_pid_name=f"NAME{i}"))
        assert ack_code(ack) == "AA"
    await c.close()
    await h.wait_idle()
    cin = parse(adt_message(0, patient=7)).get("PID-3.1")
    found = await shr_search(h, "Patient", identifier=f"{CIN}|{cin}")
    assert found["total"] == 1
    assert any(n.get("family") == "NAME4" for n in found["entry"][0]["resource"]["name"])


async def test_http_hl7v2_content_types(harness: Harness) -> None:
    h = harness
    for i, ctype in enumerate(("application/hl7-v2", "x-application/hl7-v2+er7", "text/plain")):
        async with h.http.post(h.base + "/hl7v2", data=adt_message(200 + i).encode(),
                               headers={"Content-Type": ctype}) as resp:
            assert resp.status == 200
            body = await resp.text()
            assert ack_code(body) == "AA"
            assert resp.headers["X-Transaction-Id"]
    async with h.http.post(h.base + "/hl7v2", data=b"MSH|", headers={"Content-Type": "image/png"}) as resp:
        assert resp.status == 415


async def test_duplicate_gets_the_original_ack_and_is_not_processed_twice(harness: Harness) -> None:
    h = harness
    msg = adt_message(300)
    c = await MllpClient.connect("127.0.0.1", h.mllp_port)
    first = await c.send(msg)
    second = await c.send(msg)
    await c.close()
    async with h.http.post(h.base + "/hl7v2", data=msg.encode(),
                           headers={"Content-Type": "application/hl7-v2"}) as resp:
        third = await resp.text()
    assert first == second == third
    await h.wait_idle()
    txs = (await h.get_json(f"/api/transactions?control_id={parse(msg).control_id}"))["transactions"]
    assert len(txs) == 1 and txs[0]["duplicates"] == 2


async def test_enhanced_mode_ne_sends_nothing_and_al_sends_ca(harness: Harness) -> None:
    h = harness
    ne = adt_message(400).replace("|P|2.5|||||MAR", "|P|2.5|||NE|NE|MAR")
    al = adt_message(401).replace("|P|2.5|||||MAR", "|P|2.5|||AL|NE|MAR")
    c = await MllpClient.connect("127.0.0.1", h.mllp_port)
    await c.send_raw(b"\x0b" + ne.encode() + b"\x1c\x0d")
    ack = await c.send(al)
    await c.close()
    assert msa(ack) == ["CA", parse(al).control_id]  # the NE message produced no answer


async def test_fhir_transaction_and_cda_document_reach_the_shared_record(harness: Harness) -> None:
    h = harness
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": "urn:uuid:7d3f0c1e-0000-4000-8000-000000000001",
        "resource": {"resourceType": "Patient", "id": "fhir-in-1",
                     "identifier": [{"system": CIN, "value": "AB123456"}],
                     "name": [{"family": "Tazi", "given": ["Salma"]}]},
        "request": {"method": "PUT", "url": "Patient/fhir-in-1"}}]}
    async with h.http.post(h.base + "/fhir", json=bundle, headers={"Content-Type": "application/fhir+json"}) as r:
        assert r.status == 202, await r.text()
        tx_id = r.headers["X-Transaction-Id"]
    assert (await h.wait_status(tx_id))["status"] == "Successful"
    assert (await h.get_json("/shr/fhir/Patient/fhir-in-1"))["name"][0]["family"] == "Tazi"

    cda = (CORPORA_CCDA / "CCD.ccda").read_bytes()
    async with h.http.post(h.base + "/cda", data=cda, headers={"Content-Type": "application/hl7-cda+xml"}) as r:
        assert r.status == 202, await r.text()
        tx_id = r.headers["X-Transaction-Id"]
    tx = await h.wait_status(tx_id)
    assert tx["status"] == "Successful", tx["error"]
    docs = [x for x in tx["result"]["resources"] if x.startswith("DocumentReference/")]
    doc = await h.get_json(f"/shr/fhir/{docs[0]}")
    assert doc["content"][0]["attachment"]["contentType"] == "application/hl7-cda+xml"


async def test_operator_lists_opens_and_reruns(harness: Harness) -> None:
    h = harness
    c = await MllpClient.connect("127.0.0.1", h.mllp_port)
    msg = adt_message(500)
    await c.send(msg)
    await c.close()
    cin = parse(msg).get("PID-3.1")
    listed = (await h.get_json(f"/api/transactions?patient={cin}&channel=adt-sih"))["transactions"]
    assert len(listed) == 1
    tx = await h.wait_status(listed[0]["id"])
    assert tx["request"]["body"] == msg
    assert tx["routes"][0]["response_status"] == 200 and tx["routes"][0]["outcome"] == "delivered"
    patient_ref = next(r for r in tx["result"]["resources"] if r.startswith("Patient/"))
    before = await h.get_json(f"/shr/fhir/{patient_ref}")
    async with h.http.post(h.base + f"/api/transactions/{tx['id']}/rerun") as resp:
        assert resp.status == 202
        rerun = await resp.json()
    again = await h.wait_status(rerun["id"])
    assert again["status"] == "Successful" and again["rerun_of"] == tx["id"]
    after = await h.get_json(f"/shr/fhir/{patient_ref}")
    assert after["meta"]["versionId"] == before["meta"]["versionId"]  # same ids: an update, not a duplicate
    found = await shr_search(h, "Patient", identifier=f"{CIN}|{cin}")
    assert found["total"] == 1
    bad = await h.get_json("/api/transactions?status=Nope", status=400)
    assert "status" in bad["error"]
    await h.get_json("/api/transactions/NOPE", status=404)


async def test_health_ready_metrics(harness: Harness) -> None:
    h = harness
    assert (await h.get_json("/healthz"))["status"] == "ok"
    assert (await h.get_json("/readyz"))["status"] == "ready"
    c = await MllpClient.connect("127.0.0.1", h.mllp_port)
    await c.send(adt_message(77))
    await c.send(adt_message(77))
    await c.close()
    async with h.http.get(h.base + "/metrics") as resp:
        text = await resp.text()
    assert "mediator_worker_backlog" in text
    assert 'mediator_messages_received_total{answer="AA",protocol="hl7v2",transport="mllp"} 2.0' in text
    assert 'mediator_duplicates_total{protocol="hl7v2"} 1.0' in text


async def test_destination_down_fails_with_reason_after_retries(tmp_path) -> None:
    cfg = node_config(tmp_path / "d")
    cfg.destinations["shr"].url = "http://127.0.0.1:9/fhir"  # nothing listens there
    cfg.destinations["shr"].max_attempts = 3
    cfg.destinations["shr"].backoff_initial_s = 0.01
    async with running_node(cfg) as node, aiohttp.ClientSession() as session:
        h = Harness(node, session)  # type: ignore[arg-type]
        async with session.post(h.base + "/hl7v2", data=adt_message(1).encode(),
                                headers={"Content-Type": "application/hl7-v2"}) as resp:
            assert ack_code(await resp.text()) == "AA"  # accepted: stored before routing
            tx_id = resp.headers["X-Transaction-Id"]
        tx = await h.wait_status(tx_id)
        assert tx["status"] == "Failed", tx
        assert "route shr" in tx["error"] and "no answer" in tx["error"]
        assert [a["attempt"] for a in tx["routes"]] == [1, 2, 3]
        assert [a["outcome"] for a in tx["routes"]] == ["retry", "retry", "failed"]



async def test_rerun_of_a_refused_message_after_the_channel_is_fixed(tmp_path) -> None:
    import shutil

    from mediator.testing import REPO

    channels = tmp_path / "channels"
    shutil.copytree(REPO / "channels", channels)
    adt = channels / "adt-sih.yaml"
    original = adt.read_text()
    adt.write_text(original.replace('message_types: ["ADT^A01"', 'message_types: ["ADT^A04"'))
    data = tmp_path / "data"
    msg = adt_message(900)
    async with make_harness(data, channels_dir=str(channels), mappings_dir=str(REPO / "mappings")) as h:
        async with h.http.post(h.base + "/hl7v2", data=msg.encode(),
                               headers={"Content-Type": "application/hl7-v2"}) as r:
            assert ack_code(await r.text()) == "AR"  # no channel takes ADT^A01 (yet)
            refused = r.headers["X-Transaction-Id"]
        async with h.http.post(h.base + f"/api/transactions/{refused}/rerun") as r:
            still = (await r.json())["id"]
        tx = await h.wait_status(still)
        assert tx["status"] == "Failed" and "no channel takes this message" in tx["error"]
    adt.write_text(original)  # the integrator adds ADT^A01 to the channel and restarts
    async with make_harness(data, channels_dir=str(channels), mappings_dir=str(REPO / "mappings")) as h:
        async with h.http.post(h.base + f"/api/transactions/{refused}/rerun") as r:
            rerun = (await r.json())["id"]
        tx = await h.wait_status(rerun)
        assert tx["status"] == "Successful" and tx["channel"] == "adt-sih"


def with_field(msg: str, segment: str, index: int, value: str) -> str:
    """``msg`` with field ``index`` of its first ``segment`` set to ``value``."""
    out = []
    for seg in msg.split("\r"):
        if seg.startswith(segment + "|"):
            fields = seg.split("|")
            fields += [""] * (index + 1 - len(fields))
            fields[index] = value
            seg = "|".join(fields)
            segment = "\x00"  # only the first one
        out.append(seg)
    return "\r".join(out)


async def test_an_unreadable_optional_value_is_left_out_and_the_transaction_flagged(harness: Harness) -> None:
    """PID-29 (death date) 30 February: the patient still reaches the shared record, without that
    value, and the transaction says so (Completed with errors, naming the rule and the field)."""
    h = harness
    msg = with_field(adt_message(500), "PID", 29, "20230230")
    c = await MllpClient.connect("127.0.0.1", h.mllp_port)
    ack = await c.send(msg)
    await c.close()
    assert ack_code(ack) == "AA"  # the door checks what the message cannot do without; PID-29 is not that
    txs = (await h.get_json(f"/api/transactions?control_id={parse(msg).control_id}"))["transactions"]
    tx = await h.wait_status(txs[0]["id"])
    assert tx["status"] == "Completed with errors"
    assert "patient.deceasedDateTime" in tx["error"] and "PID-29" in tx["error"] and "20230230" not in tx["error"]
    cin = parse(msg).get("PID-3.1")
    found = await shr_search(h, "Patient", identifier=f"{CIN}|{cin}")
    assert found["total"] == 1 and "deceasedDateTime" not in found["entry"][0]["resource"]
