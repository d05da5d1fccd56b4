"""External mode: a remote registry over PIXm/$match (here: this mediator's own routes), cache, breaker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mediator.config import AppConfig, ChannelConfig, ChannelSource
from mediator.pipeline.steps import StepFailed, Work
from mediator.registry.config import open_registries
from mediator.registry.http import add_registry_routes
from mediator.registry.model import PersonRecord
from mediator.registry.remote import CircuitOpen, RemoteClientRegistry, RemoteResolver
from mediator.registry.resolver import ENTERPRISE_SYSTEM
from mediator.store.base import QueuedMessage

SID = "https://dmp.sante.gov.ma/fhir/sid"


@pytest.fixture
async def remote(tmp_path: Path) -> AsyncIterator[tuple[str, Any]]:
    regs = open_registries(AppConfig(data_dir=str(tmp_path)))
    app = web.Application()
    add_registry_routes(app, regs.client, regs.providers, systems=regs.systems)
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url("/fhir")), regs
    await server.close()
    regs.close()


def work(patient: dict[str, Any]) -> Work:
    item = QueuedMessage(id="tx", channel="c", protocol="fhir", content_type="", body=b"", ordering_key="",
                         received_at=0.0, attempts=0)
    w = Work(item=item, channel=ChannelConfig(name="c", source=ChannelSource(protocol="fhir")))
    w.bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": patient}]}
    return w


PATIENT = {"resourceType": "Patient", "identifier": [{"system": f"{SID}/ipp/CHP-TAZA", "value": "42"}],
           "name": [{"family": "Lamrani", "given": ["Med"]}], "birthDate": "1978-04-12", "gender": "male"}


async def test_remote_pix_then_match_and_cache(remote: Any) -> None:
    url, regs = remote
    eid = regs.client.link(PersonRecord(source="CHU", local_id="1", identifiers={"cin": "BK245871"},
                                        family="El Amrani", given="Mohamed", birth_date="1978-04-12",
                                        sex="M")).enterprise_id
    rc = RemoteClientRegistry(url)
    resolver = RemoteResolver(rc, regs.systems)
    w = work(dict(PATIENT))
    await resolver.resolve(w)  # unknown IPP: $match finds the person
    assert w.identity["patient"]["enterprise_id"] == eid and w.identity["patient"]["link"] == "auto"
    assert any(i["system"] == ENTERPRISE_SYSTEM and i["value"] == eid for i in w.bundle["entry"][0]["resource"][
        "identifier"])
    w = work(dict(PATIENT))
    await resolver.resolve(w)
    assert w.identity["patient"]["cached"] is True
    assert await rc.pix(f"{SID}/ipp/CHU", "1") == eid  # PIXm path
    await rc.close()


async def test_remote_breaker_opens(tmp_path: Path) -> None:
    rc = RemoteClientRegistry("http://127.0.0.1:9/fhir", timeout_s=0.5, failure_threshold=2, reset_after_s=60)
    from mediator.registry.resolver import SystemMap
    resolver = RemoteResolver(rc, SystemMap(AppConfig().identifiers.systems))
    for _ in range(2):
        with pytest.raises(StepFailed, match="client registry unavailable"):
            await resolver.resolve(work(dict(PATIENT)))
    with pytest.raises(CircuitOpen):
        await rc.pix("a", "b")
    resolver.unavailable = "pass"
    w = work(dict(PATIENT))
    await resolver.resolve(w)
    assert w.identity["patient"]["link"] == "unavailable"
    await rc.close()
