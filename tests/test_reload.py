"""Channels and mappings reload when their files change; a bad file is refused, the previous ones serve."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from conftest import Harness, make_harness

from mediator.clients.mllp import MllpClient, ack_code
from mediator.testing import REPO, adt_message


async def send(h: Harness, msg: str) -> str:
    c = await MllpClient.connect("127.0.0.1", h.mllp_port)
    try:
        return await c.send(msg)
    finally:
        await c.close()


async def eventually(check, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("processes", [0, 1], ids=["in-process", "worker-process"])
async def test_reload_on_change_and_refusal_of_a_bad_file(tmp_path: Path, processes: int) -> None:
    channels, mappings = tmp_path / "channels", tmp_path / "mappings"
    shutil.copytree(REPO / "channels", channels)
    shutil.copytree(REPO / "mappings", mappings)
    adt = channels / "adt-sih.yaml"
    original = adt.read_text()
    adt.write_text(original.replace('"ADT^A01", ', ""))  # ADT^A01 not taken at first
    async with make_harness(tmp_path / "data", channels_dir=str(channels), mappings_dir=str(mappings),
                            worker__processes=processes) as h:
        assert ack_code(await send(h, adt_message(1))) == "AR"
        adt.write_text(original)  # the integrator adds ADT^A01: picked up without a restart

        async def a01_taken() -> bool:
            return ack_code(await send(h, adt_message(2, control_id=f"probe-{asyncio.get_running_loop().time()}"))) \
                == "AA"
        await eventually(a01_taken)

        mapping = mappings / "adt_to_fhir.yaml"
        mapping.write_text(mapping.read_text().replace("resourceType: Patient", "resourceType: Pateint", 1))
        await asyncio.sleep(2.5)  # the watcher sees it and refuses it
        ack = await send(h, adt_message(3))
        assert ack_code(ack) == "AA"
        statuses = await h.wait_idle()
        assert statuses.get("Failed") is None  # the previous mapping kept serving


async def test_a_reload_asked_while_a_worker_starts_neither_ends_it_nor_is_lost(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """SIGHUP's default action ends a process, and a worker needs seconds before it handles it: one that
    comes while the worker starts waits (blocked from exec on) and is served once it is ready."""
    async with make_harness(tmp_path / "data", worker__processes=1, logging__level="info") as h:
        workers = h.node.workers
        assert workers is not None
        workers.reload()  # right after the spawn: the worker is still starting Python
        assert ack_code(await send(h, adt_message(1))) == "AA"
        statuses = await h.wait_idle(timeout=120)
        assert statuses.get("Successful") == 1
        assert workers.restarts == 0
        seen = ""

        async def worker_reloaded() -> bool:
            nonlocal seen
            seen += capfd.readouterr().err
            return '"reload.done"' in seen
        await eventually(worker_reloaded, timeout=60)


async def test_a_worker_restarted_while_the_files_are_broken_serves_what_the_node_accepted(tmp_path: Path) -> None:
    """The node refuses a broken mapping and keeps serving the previous one; a worker that dies then is
    restarted on those same definitions instead of waiting for a fix with its partition queued."""
    mappings = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", mappings)
    async with make_harness(tmp_path / "data", mappings_dir=str(mappings), worker__processes=1) as h:
        workers = h.node.workers
        assert workers is not None
        assert ack_code(await send(h, adt_message(1))) == "AA"
        await h.wait_idle(timeout=120)  # the worker is up
        mapping = mappings / "adt_to_fhir.yaml"
        mapping.write_text(mapping.read_text().replace("resourceType: Patient", "resourceType: Pateint", 1))
        workers.procs[0].kill()
        assert ack_code(await send(h, adt_message(2))) == "AA"

        async def restarted() -> bool:
            return workers.restarts == 1
        await eventually(restarted)
        statuses = await h.wait_idle(timeout=120)
        assert statuses.get("Successful") == 2 and statuses.get("Failed") is None
