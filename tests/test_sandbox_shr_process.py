"""The sandbox shared record in its own process (the default): routes reach it directly, /shr/fhir on
the node forwards to it, a child that dies is restarted, and it ends with its node."""

from __future__ import annotations

import os
import signal
import urllib.parse
from pathlib import Path

import pytest
from conftest import make_harness

from mediator.clients.mllp import MllpClient, ack_code
from mediator.hl7v2 import parse
from mediator.testing import adt_message

CIN = "https://dmp.sante.gov.ma/fhir/sid/cin"


async def send(port: int, msg: str) -> str:
    c = await MllpClient.connect("127.0.0.1", port)
    try:
        return await c.send(msg)
    finally:
        await c.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone as far as we care
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("processes", [0, 1], ids=["in-process", "worker-process"])
async def test_routes_reach_the_process_and_the_node_forwards_reads(tmp_path: Path, processes: int) -> None:
    async with make_harness(tmp_path / "data", worker__processes=processes) as h:
        shr = h.node.shr_process
        assert shr is not None and h.node.cfg.sandbox.shr_port == shr.port
        msg = adt_message(1)
        assert ack_code(await send(h.mllp_port, msg)) == "AA"
        tx = (await h.get_json(f"/api/transactions?control_id={parse(msg).control_id}"))["transactions"][0]
        tx = await h.wait_status(tx["id"])
        assert tx["status"] == "Successful", tx["error"]
        attempt = tx["routes"][0]
        assert attempt["request_url"].startswith(shr.url)  # straight to the process, not through the node
        cin = parse(msg).get("PID-3.1")
        found = await h.get_json("/shr/fhir/Patient?" + urllib.parse.urlencode({"identifier": f"{CIN}|{cin}"}))
        assert found["total"] == 1
        assert found["entry"][0]["fullUrl"].startswith(f"{h.base}/shr/fhir/Patient/")  # the node's public base
        pid = found["entry"][0]["resource"]["id"]
        async with h.http.get(f"{h.base}/shr/fhir/Patient/{pid}") as resp:
            assert resp.status == 200 and resp.headers["ETag"] == 'W/"1"'
            assert resp.headers["Content-Type"].startswith("application/fhir+json")
        async with h.http.get(f"{h.base}/shr/fhir/Patient/does-not-exist") as resp:
            assert resp.status == 404
            assert (await resp.json(content_type=None))["resourceType"] == "OperationOutcome"
        put = {"resourceType": "Patient", "id": "via-proxy", "name": [{"family": "Tazi"}]}
        async with h.http.put(f"{h.base}/shr/fhir/Patient/via-proxy", json=put,
                              headers={"Content-Type": "application/fhir+json"}) as resp:
            assert resp.status == 201
            assert resp.headers["Location"].startswith(f"{h.base}/shr/fhir/Patient/via-proxy/_history/1")


async def test_a_dead_sandbox_is_restarted_and_deliveries_resume(tmp_path: Path) -> None:
    async with make_harness(tmp_path / "data", worker__processes=0, destinations__shr__max_attempts=10,
                            destinations__shr__backoff_initial_s=0.2) as h:
        shr = h.node.shr_process
        assert shr is not None and shr.proc is not None
        first_pid = shr.proc.pid
        os.kill(first_pid, signal.SIGKILL)
        assert ack_code(await send(h.mllp_port, adt_message(2))) == "AA"  # accepted meanwhile: delivered later
        statuses = await h.wait_idle(timeout=60)
        assert statuses == {"Successful": 1}
        assert shr.restarts == 1 and shr.proc.pid != first_pid
        async with h.http.get(f"{h.base}/shr/fhir/metadata") as resp:
            assert resp.status == 200
    assert not _alive(shr.proc.pid)  # stopped with the node


async def test_the_node_forwards_a_clear_error_while_the_sandbox_is_down(tmp_path: Path) -> None:
    async with make_harness(tmp_path / "data", worker__processes=0) as h:
        shr = h.node.shr_process
        assert shr is not None
        await shr.stop()  # down (and not restarted: stopped on purpose)
        async with h.http.get(f"{h.base}/shr/fhir/metadata") as resp:
            assert resp.status == 502
            outcome = await resp.json(content_type=None)
            assert outcome["issue"][0]["code"] == "transient"


async def test_the_sandbox_can_still_run_inside_the_node(tmp_path: Path) -> None:
    async with make_harness(tmp_path / "data", worker__processes=0, sandbox__shr_process=False) as h:
        assert h.node.shr_process is None
        msg = adt_message(3)
        assert ack_code(await send(h.mllp_port, msg)) == "AA"
        assert await h.wait_idle() == {"Successful": 1}
        tx = (await h.get_json(f"/api/transactions?control_id={parse(msg).control_id}"))["transactions"][0]
        tx = await h.get_json(f"/api/transactions/{tx['id']}")
        assert tx["routes"][0]["request_url"].startswith(f"{h.base}/shr/fhir")


async def test_a_sandbox_port_already_taken_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    import socket

    from mediator.sandbox.shr_process import SandboxStartError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SandboxStartError, match=f"port {port}"):
            async with make_harness(tmp_path / "data", worker__processes=0, sandbox__shr_port=port):
                pass


def test_only_urls_under_the_sandbox_path_go_to_its_process() -> None:
    from mediator.config import AppConfig

    cfg = AppConfig()
    cfg.http.port, cfg.sandbox.shr_port = 8080, 5555
    assert cfg.destination_url("{self}/shr/fhir/") == "http://127.0.0.1:5555/"
    assert cfg.destination_url("{self}/shr/fhir") == "http://127.0.0.1:5555"
    assert cfg.destination_url("{self}/shr/fhirX/") == "http://127.0.0.1:8080/shr/fhirX/"
    assert cfg.destination_url("{self}/sandbox/cnss/claims") == "http://127.0.0.1:8080/sandbox/cnss/claims"
    assert cfg.destination_url("https://dmp.example.ma/fhir") == "https://dmp.example.ma/fhir"
    cfg.sandbox.shr_process = False
    assert cfg.destination_url("{self}/shr/fhir/") == "http://127.0.0.1:8080/shr/fhir/"
