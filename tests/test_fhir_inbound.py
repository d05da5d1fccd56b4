"""FHIR inbound checks: safe JSON parsing, resource types, model validation, OperationOutcome."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediator.fhir.inbound import (
    FhirInputError,
    check_resource,
    is_resource_type,
    json_depth,
    parse_fhir_json,
)
from mediator.fhir.outcome import operation_outcome, outcome_response
from mediator.testing import CORPORA

EXPECTED = CORPORA / "ms-fhir-converter/expected/hl7v2/ADT_A01/ADT-A01-01-expected.json"


def test_malformed_json_is_400_with_position() -> None:
    with pytest.raises(FhirInputError) as info:
        parse_fhir_json(b'{"resourceType": "Patient",\n "id": }')
    assert info.value.status == 400 and info.value.code == "invalid"
    assert "line 2" in info.value.diagnostics


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_deep_nesting_is_refused_without_crashing(opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    body = opener * 10_000 + b"1" + closer * 10_000
    with pytest.raises(FhirInputError, match="too deeply nested") as info:
        parse_fhir_json(body)
    assert info.value.status == 400
    with pytest.raises(FhirInputError, match="too deeply nested"):
        parse_fhir_json(b"[" * 2_000_000)  # would crash some orjson versions: refused before parsing


def test_json_depth_ignores_brackets_in_strings() -> None:
    assert json_depth(b'{"a": "[[[{{{", "b": [[1]]}') == 3
    assert json_depth(b'"\\"[["') == 0


def _true_depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_true_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_true_depth(v) for v in value), default=0)
    return 0


_JSON_TEXT = st.text(alphabet='[]{}"\\\nab\u0645', max_size=8)
_JSON = st.recursive(st.none() | st.integers() | _JSON_TEXT,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_JSON_TEXT, inner, max_size=3),
                     max_leaves=20)


@given(_JSON)
def test_json_depth_is_the_true_depth_whatever_the_strings_hold(value: object) -> None:
    assert json_depth(json.dumps(value, ensure_ascii=False).encode()) == _true_depth(value)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"[1, 2]", 400, "invalid"),
        (b'{"id": "x"}', 400, "required"),
        (b'{"resourceType": "Foo"}', 422, "not-supported"),
        (b'{"resourceType": "HumanName"}', 422, "not-supported"),  # a datatype, not a resource
        (b'{"resourceType": "Bundle", "type": "searchset"}', 400, "invalid"),
    ],
)
def test_envelope_errors(body: bytes, status: int, code: str) -> None:
    with pytest.raises(FhirInputError) as info:
        parse_fhir_json(body)
    assert (info.value.status, info.value.code) == (status, code)
    if b"Bundle" in body:
        assert info.value.expression == "Bundle.type"
    if b"Foo" in body:
        assert "Foo" in info.value.diagnostics


def test_too_large_is_refused() -> None:
    with pytest.raises(FhirInputError) as info:
        parse_fhir_json(b'{"resourceType": "Patient"}', max_bytes=10)
    assert info.value.status == 413


def test_resource_type_list() -> None:
    assert (
        is_resource_type("Patient") and is_resource_type("DocumentReference") and is_resource_type("Bundle")
    )
    assert not is_resource_type("patient") and not is_resource_type("Address") and not is_resource_type("")


def test_invalid_birth_date_names_the_element() -> None:
    issues = check_resource(parse_fhir_json(b'{"resourceType": "Patient", "birthDate": "1990-13-45"}'))
    assert [(i[0], i[3]) for i in issues] == [("error", "Patient.birthDate")]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "id": "a"},
                "request": {"method": "PUT", "url": "Patient/a"},
            },
            {
                "resource": {"resourceType": "Patient", "name": [{"given": [3]}], "birthDate": "x"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": {"resourceType": "Nope"}, "request": {"method": "POST", "url": "Nope"}},
        ],
    }
    expressions = {i[3] for i in check_resource(bundle)}
    assert expressions == {
        "Bundle.entry[1].resource.birthDate",
        "Bundle.entry[1].resource.name[0].given[0]",
        "Bundle.entry[2].resource.resourceType",
    }


@pytest.mark.skipif(not EXPECTED.exists(), reason="corpora not available")
def test_good_transaction_bundle_passes() -> None:
    doc = orjson.loads(EXPECTED.read_bytes())
    doc["type"] = "transaction"
    parsed = parse_fhir_json(orjson.dumps(doc))
    assert check_resource(parsed) == []


async def test_outcome_response_is_fhir_json() -> None:
    outcome = operation_outcome([("error", "invalid", "bad", "Patient.birthDate")])
    assert outcome["issue"] == [
        {"severity": "error", "code": "invalid", "diagnostics": "bad", "expression": ["Patient.birthDate"]}
    ]
    resp = outcome_response(422, code="not-supported", diagnostics="unknown resource type 'Foo'")
    assert resp.status == 422 and resp.content_type == "application/fhir+json"
    assert orjson.loads(resp.body)["issue"][0]["code"] == "not-supported"
    assert FhirInputError(400, "invalid", "x").response().status == 400
