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
