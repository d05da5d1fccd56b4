"""Sandbox CNSS: claim submission, idempotent resubmission, listing, reading, validation errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from fhir.resources.R4B.claimresponse import ClaimResponse

from mediator.sandbox.cnss import create_cnss_sandbox_app

BASE = "/sandbox/cnss"
FHIR = {"Content-Type": "application/fhir+json"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    root = web.Application()
    root.add_subapp(BASE, create_cnss_sandbox_app(tmp_path / "cnss.db"))
    async with TestClient(TestServer(root)) as c:
        yield c


def claim(number: str = "FSE-2025-0001", *, total: bool = True) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Claim",
        "identifier": [{"system": "urn:oid:2.16.504.1.9", "value": number}],
        "status": "active",
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]
        },
        "use": "claim",
        "patient": {"reference": "Patient/p1"},
        "created": "2025-01-02",
        "provider": {"identifier": {"system": "urn:oid:2.16.504.1.4", "value": "123456789"}},
        "priority": {"coding": [{"code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/c1"}}],
    }
    if total:
        res["total"] = {"value": 250.0, "currency": "MAD"}
    return res


async def post(client: TestClient, body: dict[str, Any] | bytes) -> tuple[int, dict[str, Any]]:
    resp = await client.post(
        f"{BASE}/claims", data=body if isinstance(body, bytes) else orjson.dumps(body), headers=FHIR
    )
    return resp.status, orjson.loads(await resp.read())


async def test_claim_is_answered_and_resubmission_is_idempotent(client: TestClient) -> None:
    status, first = await post(client, claim())
    assert status == 201
    ClaimResponse.model_validate(first)
    assert first["outcome"] == "complete" and first["request"]["reference"].startswith("Claim/")
    status, again = await post(client, claim())
    assert status == 200 and again == first
    status, queued = await post(client, claim("FSE-2025-0002", total=False))
    assert status == 201 and queued["outcome"] == "queued" and queued["id"] != first["id"]
    listing = await (await client.get(f"{BASE}/claims")).json(content_type=None)
    assert listing["total"] == 2 and len(listing["entry"]) == 4
    claim_id = first["request"]["reference"].split("/")[1]
    stored = await (await client.get(f"{BASE}/claims/{claim_id}")).json(content_type=None)
    assert stored["resourceType"] == "Claim" and stored["identifier"][0]["value"] == "FSE-2025-0001"
    by_response = await (await client.get(f"{BASE}/claims/{first['id']}")).json(content_type=None)
    assert by_response == first
    assert (await client.get(f"{BASE}/claims/unknown")).status == 404


async def test_bundle_of_claims(client: TestClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": claim("A")},
            {"resource": {"resourceType": "Patient", "id": "p1"}},
            {"resource": claim("B")},
        ],
    }
    status, body = await post(client, bundle)
    assert status == 201 and [e["resource"]["resourceType"] for e in body["entry"]] == ["ClaimResponse"] * 2
    status, _ = await post(client, bundle)
    assert status == 200


async def test_invalid_claims_get_operation_outcomes(client: TestClient) -> None:
    status, body = await post(client, b"{not json")
    assert status == 400 and body["resourceType"] == "OperationOutcome"
    bad = claim()
    del bad["patient"]
    bad["created"] = "yesterday"
    status, body = await post(client, bad)
    assert status == 400
    expressions = {i["expression"][0] for i in body["issue"]}
    assert {"Claim.patient", "Claim.created"} <= expressions
    status, body = await post(
        client, {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": bad}]}
    )
    assert status == 400 and body["issue"][0]["expression"][0].startswith("Bundle.entry[0].resource.")
    status, body = await post(client, {"resourceType": "Patient"})
    assert status == 400
