"""Sandbox shared record: transactions, versioning, conditional writes, search, $everything, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mediator.sandbox.shr import create_shr_app

FHIR = {"Content-Type": "application/fhir+json"}
BASE = "/shr/fhir"
CIN = "urn:oid:2.16.504.1.1"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    root = web.Application()
    root.add_subapp(BASE, create_shr_app(tmp_path / "shr.db"))
    async with TestClient(TestServer(root)) as c:
        yield c


async def post_bundle(client: TestClient, bundle: dict[str, Any] | bytes) -> tuple[int, dict[str, Any]]:
    data = bundle if isinstance(bundle, bytes) else orjson.dumps(bundle)
    resp = await client.post(f"{BASE}/", data=data, headers=FHIR)
    assert resp.content_type == "application/fhir+json"
    return resp.status, orjson.loads(await resp.read())


def patient(pid: str | None = None, cin: str = "BK245871", family: str = "El Amrani") -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": CIN, "value": cin}],
        "name": [
            {"family": family, "given": ["Fatima Zahra"]},
            {"family": "العمراني", "given": ["فاطمة الزهراء"]},
        ],
        "gender": "female",
    }
    if pid:
        res["id"] = pid
    return res


def tx(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


async def test_transaction_resolves_urn_uuid_references(client: TestClient) -> None:
    status, body = await post_bundle(
        client,
        tx(
            {
                "fullUrl": "urn:uuid:0b7c1a4e-0000-4000-8000-000000000001",
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:0b7c1a4e-0000-4000-8000-000000000002",
                "resource": {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"code": "AMB"},
                    "subject": {"reference": "urn:uuid:0b7c1a4e-0000-4000-8000-000000000001"},
                },
                "request": {"method": "POST", "url": "Encounter"},
            },
        ),
    )
    assert status == 200 and body["type"] == "transaction-response"
    responses = [e["response"] for e in body["entry"]]
    assert [r["status"] for r in responses] == ["201 Created", "201 Created"]
    assert all(r["etag"] == 'W/"1"' and r["lastModified"] for r in responses)
    pat_loc, enc_loc = responses[0]["location"], responses[1]["location"]
    assert pat_loc.startswith("Patient/") and pat_loc.endswith("/_history/1")
    enc = await client.get(f"{BASE}/{enc_loc.rsplit('/_history', 1)[0]}")
    assert enc.status == 200
    assert (await enc.json(content_type=None))["subject"]["reference"] == pat_loc.rsplit("/_history", 1)[0]


async def test_idempotent_put_and_versioning(client: TestClient) -> None:
    entry = {"resource": patient("p1"), "request": {"method": "PUT", "url": "Patient/p1"}}
    _, first = await post_bundle(client, tx(entry))
    _, again = await post_bundle(client, tx(entry))
    assert first["entry"][0]["response"]["status"] == "201 Created"
    assert again["entry"][0]["response"]["status"] == "200 OK"
    assert again["entry"][0]["response"]["location"] == "Patient/p1/_history/1"
    changed = {"resource": patient("p1", family="Lamrani"), "request": {"method": "PUT", "url": "Patient/p1"}}
    _, third = await post_bundle(client, tx(changed))
    assert third["entry"][0]["response"]["etag"] == 'W/"2"'
    v1 = await (await client.get(f"{BASE}/Patient/p1/_history/1")).json(content_type=None)
    current = await client.get(f"{BASE}/Patient/p1")
    assert current.headers["ETag"] == 'W/"2"'
    assert v1["name"][0]["family"] == "El Amrani"
    assert (await current.json(content_type=None))["name"][0]["family"] == "Lamrani"


async def test_conditional_create_and_conditional_put(client: TestClient) -> None:
    cond = {
        "resource": patient(),
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={CIN}|BK245871"},
    }
    _, first = await post_bundle(client, tx(cond))
    _, second = await post_bundle(client, tx(cond))
    assert first["entry"][0]["response"]["status"] == "201 Created"
    assert second["entry"][0]["response"]["status"] == "200 OK"
    assert second["entry"][0]["response"]["location"] == first["entry"][0]["response"]["location"]
    put = {
        "resource": patient(family="Alaoui"),
        "request": {"method": "PUT", "url": f"Patient?identifier={CIN}|BK245871"},
    }
    _, third = await post_bundle(client, tx(put))
    assert (
        third["entry"][0]["response"]["location"].split("/")[1]
        == first["entry"][0]["response"]["location"].split("/")[1]
    )
    assert third["entry"][0]["response"]["etag"] == 'W/"2"'
    # two patients share a value without system: identifier search returns both, conditional → 412
    await post_bundle(
        client,
        tx({"resource": patient("p9", cin="BK245871"), "request": {"method": "PUT", "url": "Patient/p9"}}),
    )
    status, body = await post_bundle(
        client, tx({**cond, "request": {**cond["request"], "ifNoneExist": "identifier=BK245871"}})
    )
    assert status == 412 and body["resourceType"] == "OperationOutcome"


async def test_search_identifier_round_trips_arabic(client: TestClient) -> None:
    await post_bundle(
        client, tx({"resource": patient("p2"), "request": {"method": "PUT", "url": "Patient/p2"}})
    )
    for query in (f"identifier={CIN}|BK245871", "identifier=BK245871", "_id=p2"):
        resp = await client.get(f"{BASE}/Patient?{query}")
        raw = await resp.read()
        body = orjson.loads(raw)
        assert body["type"] == "searchset" and body["total"] == 1, query
        assert body["entry"][0]["resource"]["name"][1] == {"family": "العمراني", "given": ["فاطمة الزهراء"]}
        assert "العمراني".encode() in raw
    none = await (await client.get(f"{BASE}/Patient?identifier=other|BK245871")).json(content_type=None)
    assert none["total"] == 0 and "entry" not in none


async def test_search_by_patient_paging_and_everything(client: TestClient) -> None:
    entries = [{"resource": patient("p3"), "request": {"method": "PUT", "url": "Patient/p3"}}]
    for i in range(3):
        obs = {
            "resourceType": "Observation",
            "id": f"o{i}",
            "status": "final",
            "code": {"text": "glucose"},
            "subject": {"reference": "Patient/p3"},
        }
        entries.append({"resource": obs, "request": {"method": "PUT", "url": f"Observation/o{i}"}})
    doc = {
        "resourceType": "DocumentReference",
        "id": "d1",
        "status": "current",
        "subject": {"reference": "Patient/p3"},
        "content": [{"attachment": {"contentType": "text/plain"}}],
    }
    entries.append({"resource": doc, "request": {"method": "PUT", "url": "DocumentReference/d1"}})
    status, _ = await post_bundle(client, tx(*entries))
    assert status == 200
    page = await (await client.get(f"{BASE}/Observation?patient=Patient/p3&_count=2")).json(content_type=None)
    assert page["total"] == 3 and len(page["entry"]) == 2
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    page2 = await (await client.get(BASE + nxt.split(BASE, 1)[1])).json(content_type=None)
    assert len(page2["entry"]) == 1 and not any(link["relation"] == "next" for link in page2["link"])
    by_subject = await (await client.get(f"{BASE}/DocumentReference?subject=p3")).json(content_type=None)
    assert by_subject["total"] == 1
    everything = await (await client.get(f"{BASE}/Patient/p3/$everything")).json(content_type=None)
    types = sorted(e["resource"]["resourceType"] for e in everything["entry"])
    assert types == ["DocumentReference", "Observation", "Observation", "Observation", "Patient"]
    assert (await client.get(f"{BASE}/Patient/nope/$everything")).status == 404


async def test_transaction_is_all_or_nothing(client: TestClient) -> None:
    ok = {"resource": patient("p4"), "request": {"method": "PUT", "url": "Patient/p4"}}
    bad = {
        "resource": {"resourceType": "Patient", "id": "other"},
        "request": {"method": "PUT", "url": "Patient/p5"},
    }
    status, body = await post_bundle(client, tx(ok, bad))
    assert status == 400
    assert body["issue"][0]["expression"] == ["Bundle.entry[1].resource.id"]
    assert (await client.get(f"{BASE}/Patient/p4")).status == 404
    # failure discovered while writing (conditional create matching twice) also rolls back
    await post_bundle(
        client, tx({"resource": patient("a", cin="X1"), "request": {"method": "PUT", "url": "Patient/a"}})
    )
    await post_bundle(
        client, tx({"resource": patient("b", cin="X1"), "request": {"method": "PUT", "url": "Patient/b"}})
    )
    cond = {
        "resource": patient(cin="X1"),
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=X1"},
    }
    status, body = await post_bundle(client, tx(ok, cond))
    assert status == 412 and (await client.get(f"{BASE}/Patient/p4")).status == 404


async def test_errors_are_operation_outcomes(client: TestClient) -> None:
    status, body = await post_bundle(client, b'{"resourceType": "Bundle", "type": ')
    assert status == 400 and body["issue"][0]["code"] == "invalid"
    status, body = await post_bundle(
        client, tx({"resource": {"resourceType": "Foo"}, "request": {"method": "POST", "url": "Foo"}})
    )
    assert status == 422 and body["issue"][0]["code"] == "not-supported"
    assert body["issue"][0]["expression"] == ["Bundle.entry[0].request.url"]
    status, body = await post_bundle(client, tx({"resource": patient(), "request": {"method": "PUT"}}))
    assert status == 400 and body["issue"][0]["expression"] == ["Bundle.entry[0].request.url"]
    dangling = {
        "resource": {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"},
        },
        "request": {"method": "POST", "url": "Encounter"},
    }
    status, body = await post_bundle(client, tx(dangling))
    assert status == 400 and body["issue"][0]["expression"] == ["Bundle.entry[0]"]
    resp = await client.get(f"{BASE}/Patient/missing")
    assert resp.status == 404 and (await resp.json(content_type=None))["resourceType"] == "OperationOutcome"
    assert (await client.get(f"{BASE}/Foo/1")).status == 400
    assert (await client.get(f"{BASE}/Patient?name=x")).status == 400


async def test_rest_create_update_delete_and_metadata(client: TestClient) -> None:
    resp = await client.post(
        f"{BASE}/Patient", data=orjson.dumps(patient()), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 201 and "/_history/1" in resp.headers["Location"]
    pid = (await resp.json(content_type=None))["id"]
    resp = await client.put(
        f"{BASE}/Patient/{pid}", data=orjson.dumps(patient(pid, family="X")), headers=FHIR
    )
    assert resp.status == 200 and resp.headers["ETag"] == 'W/"2"'
    resp = await client.put(
        f"{BASE}/Patient/{pid}", data=orjson.dumps(patient(pid)), headers={**FHIR, "If-Match": 'W/"1"'}
    )
    assert resp.status == 412
    assert (await client.delete(f"{BASE}/Patient/{pid}")).status == 200
    assert (await client.get(f"{BASE}/Patient/{pid}")).status == 410
    meta = await (await client.get(f"{BASE}/metadata")).json(content_type=None)
    assert meta["resourceType"] == "CapabilityStatement" and meta["fhirVersion"] == "4.0.1"


async def test_concurrent_transactions_share_commits_but_fail_alone(client: TestClient) -> None:
    import asyncio

    def put(pid: str) -> dict[str, Any]:
        return {"resource": patient(pid, cin=f"C{pid}"), "request": {"method": "PUT", "url": f"Patient/{pid}"}}

    # a failure discovered while writing (Patient/dup twice) must roll back only its own bundle
    bundles = [tx(put(f"g{i}")) if i % 5 else tx(put(f"g{i}"), put("dup"), put("dup")) for i in range(40)]
    results = await asyncio.gather(*(post_bundle(client, b) for b in bundles))
    for i, (status, _) in enumerate(results):
        assert status == (200 if i % 5 else 400), i
        found = (await client.get(f"{BASE}/Patient/g{i}")).status
        assert found == (200 if i % 5 else 404), i
    assert (await client.get(f"{BASE}/Patient/dup")).status == 404
