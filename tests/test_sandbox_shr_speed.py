"""Sandbox shared record: the faster write path (one read of the current rows per Bundle, rows written
together, reference scan on the whole resource) keeps the semantics of the entry-by-entry one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from mediator.fhir.inbound import FhirInputError
from mediator.sandbox.shr_store import ShrStore, _resolve_references, _walk_elements, _walk_references

CIN = "urn:oid:2.16.504.1.1"


def _oracle(resource: dict[str, Any], mapping: dict[str, str] | None) -> list[tuple[str, str]]:
    """The plain recursive walk that :func:`_walk_references` must agree with."""
    found: list[tuple[str, str]] = []

    def walk(top: str, node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str):
                if mapping is not None and ref in mapping:
                    ref = node["reference"] = mapping[ref]
                elif mapping is not None and ref.startswith("urn:uuid:"):
                    raise AssertionError("unresolved")
                if ref.startswith("Patient/"):
                    found.append((top, ref.split("/_history/", 1)[0]))
            for v in node.values():
                walk(top, v)
        elif isinstance(node, list):
            for v in node:
                walk(top, v)

    for top, value in resource.items():
        if isinstance(value, dict | list):
            walk(top, value)
    return found


RESOURCES: list[dict[str, Any]] = [
    {"resourceType": "Practitioner", "id": "a", "name": [{"family": "X"}]},
    {"resourceType": "Device", "owner": {"reference": "Organization/o"}},
    {"resourceType": "Encounter", "subject": {"reference": "Patient/p/_history/3"},
     "participant": [{"individual": {"reference": "Practitioner/a"}}]},
    {"resourceType": "Provenance", "target": [{"reference": "Patient/p"}, {"reference": "urn:uuid:1"}],
     "agent": [{"who": {"reference": "urn:uuid:2"}}]},
    {"resourceType": "Observation", "subject": {"reference": 'Patient/q"\\x'},
     "note": [{"text": '"reference":"Patient/fake"'}]},
    {"resourceType": "Basic", "reference": "Patient/top-level-scalar", "code": {"text": "x"}},
    {"resourceType": "Basic", "reference": "urn:uuid:1", "author": {"reference": "Patient/r"}},
    {"resourceType": "Basic", "meta": {"tag": [{"extension": [{"valueReference": {"reference": "Patient/m"}}]}]}},
]


@pytest.mark.parametrize("mapping", [None, {"urn:uuid:1": "Patient/new", "urn:uuid:2": "Device/d"}])
@pytest.mark.parametrize("index", range(len(RESOURCES)))
def test_walk_references_agrees_with_a_plain_walk(index: int, mapping: dict[str, str] | None) -> None:
    mine, theirs = orjson.loads(orjson.dumps(RESOURCES[index])), orjson.loads(orjson.dumps(RESOURCES[index]))
    assert sorted(_walk_references(mine, mapping)) == sorted(_oracle(theirs, mapping))
    assert mine == theirs  # same rewriting


@pytest.mark.parametrize("index", range(len(RESOURCES)))
def test_bundle_path_with_urn_uuid_full_urls_agrees(index: int) -> None:
    """The write path of a Bundle whose fullUrls are all ``urn:uuid:`` (byte search, patient references
    listed later, only when written) finds what the plain walk finds."""
    mapping = {"urn:uuid:1": "Patient/new", "urn:uuid:2": "Device/d"}
    mine, theirs = orjson.loads(orjson.dumps(RESOURCES[index])), orjson.loads(orjson.dumps(RESOURCES[index]))
    found = _resolve_references(mine, mapping, uuid_keys=True)
    if found is None:
        found = _walk_elements(mine, None)
    assert sorted(found) == sorted(_oracle(theirs, mapping))
    assert mine == theirs


def test_unresolved_urn_uuid_is_rejected() -> None:
    with pytest.raises(FhirInputError):
        _walk_references({"resourceType": "Encounter", "subject": {"reference": "urn:uuid:9"}}, {})


def _tx(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


def _patient(cin: str, family: str = "El Amrani") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "identifier": [{"system": CIN, "value": cin}],
            "name": [{"family": family}]}


def _encounter(status: str = "finished") -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": "e1", "status": status, "class": {"code": "AMB"},
            "subject": {"reference": "Patient/p1"}}


@pytest.fixture
def store(tmp_path: Path) -> ShrStore:
    s = ShrStore(tmp_path / "shr.db")
    yield s
    s.close()


def _responses(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["response"] for e in bundle["entry"]]


def test_identical_re_put_keeps_version_and_last_updated(store: ShrStore) -> None:
    first = _responses(store.process_bundle(_tx(_patient("BK1"), _encounter())))
    again = _responses(store.process_bundle(_tx(_patient("BK1"), _encounter())))
    assert [r["status"] for r in first] == ["201 Created", "201 Created"]
    assert [r["status"] for r in again] == ["200 OK", "200 OK"]
    assert [(r["etag"], r["lastModified"], r["location"]) for r in again] == [
        (r["etag"], r["lastModified"], r["location"]) for r in first
    ]


def test_changed_update_reindexes_identifiers_and_patient_references(store: ShrStore) -> None:
    store.process_bundle(_tx(_patient("BK1"), _encounter()))
    out = _responses(store.process_bundle(_tx(_patient("BK2"), _encounter("in-progress"))))
    assert [r["etag"] for r in out] == ['W/"2"', 'W/"2"']
    assert store.find_by_identifier("Patient", f"{CIN}|BK1") == []
    assert store.find_by_identifier("Patient", f"{CIN}|BK2") == ["p1"]
    assert store.search("Encounter", [("patient", "p1")], count=10, offset=0).total == 1
    everything = store.everything("p1")
    assert everything is not None and len(everything) == 2
    raw = store.read("Encounter", "e1")
    assert raw is not None and raw[0] is not None
    assert orjson.loads(raw[0])["meta"]["versionId"] == "2"


def test_delete_unindexes_and_recreate_counts_on(store: ShrStore) -> None:
    store.process_bundle(_tx(_patient("BK1"), _encounter()))
    deleted = store.process_bundle({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": "Encounter/e1"}}]})
    assert _responses(deleted)[0]["etag"] == 'W/"2"'
    assert store.search("Encounter", [("patient", "p1")], count=10, offset=0).total == 0
    again = _responses(store.process_bundle(_tx(_encounter())))
    assert again[0]["status"] == "201 Created" and again[0]["etag"] == 'W/"3"'


def test_group_commit_bundles_see_each_others_writes(store: ShrStore) -> None:
    results = store.process_bundles([
        _tx(_patient("BK1")),
        _tx(_patient("BK1")),
        _tx(_patient("BK3")),
        {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": _encounter(), "request": {"method": "PUT", "url": "Encounter/e1", "ifMatch": 'W/"7"'}}]},
    ])
    assert [_responses(r)[0]["etag"] for r in results[:3]] == ['W/"1"', 'W/"1"', 'W/"2"']
    assert isinstance(results[3], FhirInputError) and results[3].status == 412
    assert store.read("Encounter", "e1") is None  # the failed bundle left nothing behind


def test_failed_entry_rolls_back_the_whole_bundle(store: ShrStore) -> None:
    bundle = _tx(_patient("BK1"), _encounter())
    bundle["entry"].append({"resource": {"resourceType": "Observation", "id": "o1", "status": "final",
                                         "code": {"text": "x"}, "subject": {"reference": "urn:uuid:x"}},
                            "request": {"method": "PUT", "url": "Observation/o1"}})
    with pytest.raises(FhirInputError):
        store.process_bundle(bundle)
    assert store.read("Patient", "p1") is None and store.find_by_identifier("Patient", "BK1") == []
