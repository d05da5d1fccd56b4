"""PDQm, PIXm, $match, mCSD and the review API over HTTP (aiohttp test server, real SQLite file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mediator.config import AppConfig
from mediator.registry.config import open_registries
from mediator.registry.http import MATCH_GRADE, add_registry_routes
from mediator.registry.model import PersonRecord
from mediator.registry.resolver import ENTERPRISE_SYSTEM

SID = "https://dmp.sante.gov.ma/fhir/sid"


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Any]]:
    regs = open_registries(AppConfig(data_dir=str(tmp_path)))
    app = web.Application()
    add_registry_routes(app, regs.client, regs.providers, systems=regs.systems)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, regs
    await client.close()
    regs.close()


def seed(regs: Any) -> tuple[str, str]:
    a = regs.client.link(PersonRecord(source="CHU-IBN-SINA", local_id="123456", identifiers={"cin": "BK245871"},
                                      family="EL AMRANI", given="Mohamed", family_ar="العمراني", given_ar="محمد",
                                      birth_date="1978-04-12", sex="M"))
    regs.client.link(PersonRecord(source="CLINIQUE-AGDAL", local_id="A-77", family="Elamrani", given="Med",
                                  birth_date="1978-04-12", sex="M", identifiers={"cnss": "987654321"}))
    b = regs.client.link(PersonRecord(source="CHP", local_id="55", family="Tazi", given="Omar",
                                      birth_date="1980-07-03", sex="M"))
    regs.client.link(PersonRecord(source="CHU-IBN-SINA", local_id="777", family="Tazi", given="Omar",
                                  birth_date="1980-03-07", sex="M"))  # review candidate of b
    return a.enterprise_id, b.enterprise_id


async def test_pdqm(env: Any) -> None:
    client, regs = env
    eid, _ = seed(regs)
    r = await client.get("/fhir/Patient", params={"family": "Al-Amrani", "birthdate": "1978-04-12"})
    assert r.status == 200 and r.content_type == "application/fhir+json"
    b = await r.json()
    assert b["type"] == "searchset" and b["total"] == 1
    p = b["entry"][0]["resource"]
    assert p["id"] == eid and {"system": ENTERPRISE_SYSTEM, "value": eid, "use": "official"} in p["identifier"]
    assert {"system": f"{SID}/ipp/CLINIQUE-AGDAL", "value": "A-77"} in p["identifier"]
    assert [n["family"] for n in p["name"]] == ["EL AMRANI", "العمراني"]
    r = await client.get("/fhir/Patient", params={"identifier": f"{SID}/cin|BK245871"})
    assert (await r.json())["entry"][0]["resource"]["id"] == eid
    r = await client.get("/fhir/Patient", params={"identifier": f"{SID}/ipp/CHU-IBN-SINA|123456"})
    assert (await r.json())["total"] == 1
    r = await client.get("/fhir/Patient", params={"family": "العمراني", "gender": "female"})
    assert (await r.json())["total"] == 0
    r = await client.get("/fhir/Patient")
    assert r.status == 400 and (await r.json())["resourceType"] == "OperationOutcome"
    r = await client.get(f"/fhir/Patient/{eid}")
    assert (await r.json())["birthDate"] == "1978-04-12"
    assert (await client.get("/fhir/Patient/nope")).status == 404


async def test_pixm(env: Any) -> None:
    client, regs = env
    eid, _ = seed(regs)
    r = await client.get("/fhir/Patient/$ihe-pix", params={"sourceIdentifier": f"{SID}/ipp/CHU-IBN-SINA|123456"})
    assert r.status == 200
    params = (await r.json())["parameter"]
    ids = {(p["valueIdentifier"]["system"], p["valueIdentifier"]["value"]) for p in params
           if p["name"] == "targetIdentifier"}
    assert ids == {(ENTERPRISE_SYSTEM, eid), (f"{SID}/cin", "BK245871"), (f"{SID}/cnss", "987654321"),
                   (f"{SID}/ipp/CLINIQUE-AGDAL", "A-77")}
    assert {"name": "targetId", "valueReference": {"reference": f"Patient/{eid}"}} in params
    r = await client.get("/fhir/Patient/$ihe-pix", params={"sourceIdentifier": f"{SID}/cin|BK245871",
                                                           "targetSystem": ENTERPRISE_SYSTEM})
    params = (await r.json())["parameter"]
    assert [p["valueIdentifier"]["value"] for p in params if p["name"] == "targetIdentifier"] == [eid]
    r = await client.get("/fhir/Patient/$ihe-pix", params={"sourceIdentifier": f"{SID}/cin|ZZ000000"})
    assert r.status == 404
    r = await client.get("/fhir/Patient/$ihe-pix", params={"sourceIdentifier": "urn:unknown|1"})
    assert r.status == 400
    r = await client.get("/fhir/Patient/$ihe-pix", params={"sourceIdentifier": f"{SID}/cin|BK245871",
                                                           "targetSystem": "urn:nowhere"})
    assert r.status == 403
    assert (await client.get("/fhir/Patient/$ihe-pix")).status == 400


async def test_match(env: Any) -> None:
    client, regs = env
    eid, _ = seed(regs)
    patient = {"resourceType": "Patient", "name": [{"family": "Lamrani", "given": ["Mohammed"]}],
               "birthDate": "1978-04-12", "gender": "male",
               "identifier": [{"system": f"{SID}/cin", "value": "BK245871"}]}
    body = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient},
                                                         {"name": "onlyCertainMatches", "valueBoolean": True}]}
    r = await client.post("/fhir/Patient/$match", json=body)
    assert r.status == 200
    b = await r.json()
    assert b["total"] == 1
    e = b["entry"][0]
    assert e["resource"]["id"] == eid and e["search"]["mode"] == "match" and e["search"]["score"] > 0.9
    assert e["search"]["extension"] == [{"url": MATCH_GRADE, "valueCode": "certain"}]
    assert regs.client.stats()["records"] == 4  # nothing stored
    r = await client.post("/fhir/Patient/$match", data=b"not json")
    assert r.status == 400
    r = await client.post("/fhir/Patient/$match", json={"resourceType": "Parameters", "parameter": []})
    assert r.status == 400


async def test_mcsd(env: Any) -> None:
    client, regs = env
    regs.providers.load_csv([
        {"resource_type": "Practitioner", "inpe": "123456789", "family": "ALAOUI", "given": "Said"},
        {"resource_type": "Organization", "inpe": "900100200", "name": "CHU Ibn Sina", "city": "Rabat"},
        {"resource_type": "Location", "inpe": "900100201", "name": "Service de cardiologie",
         "organization_inpe": "900100200"},
        {"resource_type": "Practitioner", "inpe": "12A", "family": "Bad"},
    ])
    r = await client.get("/fhir/Practitioner", params={"identifier": f"{SID}/inpe|123456789"})
    b = await r.json()
    assert b["total"] == 1 and b["entry"][0]["resource"]["name"][0]["family"] == "ALAOUI"
    r = await client.get("/fhir/Organization", params={"name": "chu"})
    assert (await r.json())["total"] == 1
    r = await client.get("/fhir/Location", params={"name": "cardiologie"})
    assert (await r.json())["total"] == 1
    assert regs.providers.status("12A").status == "malformed"
    assert regs.providers.status("999999999").status == "unknown"


async def test_review_api(env: Any) -> None:
    client, regs = env
    _, omar = seed(regs)
    r = await client.get("/api/registry/review")
    items = (await r.json())["items"]
    assert len(items) == 1 and items[0]["candidate"] == omar
    assert items[0]["evidence"]["birth_date"]["level"] == "swapped"
    r = await client.post(f"/api/registry/review/{items[0]['id']}", json={"decision": "link"})
    assert r.status == 200 and (await r.json())["enterprise_id"] == omar
    r = await client.post(f"/api/registry/review/{items[0]['id']}", json={"decision": "link"})
    assert r.status == 409
    r = await client.post("/api/registry/unlink", json={"source": "CHU-IBN-SINA", "local_id": "777"})
    new = (await r.json())["enterprise_id"]
    r = await client.post("/api/registry/merge", json={"from": new, "into": omar})
    assert (await r.json())["moved"] == 1
    r = await client.post("/api/registry/unmerge", json={"enterprise_id": new})
    assert (await r.json())["restored"] == 1
    r = await client.get(f"/api/registry/golden/{omar}")
    assert (await r.json())["status"] == "active"
    r = await client.get("/api/registry/audit", params={"enterprise_id": new})
    assert {"merge", "unmerge", "unlink"} <= {a["action"] for a in (await r.json())["items"]}
    assert (await client.post("/api/registry/link", json={"source": "x"})).status == 400
    assert (await client.post("/api/registry/merge", data=b"[")).status == 400
    r = await client.get("/api/registry/stats")
    assert (await r.json())["records"] == 4
