"""The compiled fast FHIR checker must agree with fhir.resources (the reference) on valid/invalid.

Agreement is checked on (1) every resource of the Microsoft converter corpus expected outputs, (2) the
Bundles our ADT mapping produces for the HL7v2 fixtures and (3) seeded random mutations of those.

Known, deliberate differences — the fast checker is *stricter* than fhir.resources, never laxer, where
FHIR JSON forbids what fhir.resources (pydantic lax mode) accepts; the mutations in ``_STRICTER`` cover them:

* ``null`` values, ``[]``, ``{}`` (fhir.resources treats them as absent, even for required elements);
* ``""`` for uri/url/canonical/markdown/xhtml (fhir_core's patterns for those match the empty string);
* JSON strings for integer/boolean/decimal (``"3"``, ``"true"``) and ``1``/``0`` for booleans (lax coercion),
  numbers for dateTime/instant (read as Unix timestamps);
* a ``null`` in a primitive array without an ``_x`` object at the same index;
* a contained resource without ``resourceType`` or with an abstract one (``Resource``, ``DomainResource``);
* ``fhir_comments`` (a DSTU2 leftover that fhir.resources still accepts) is an unknown element;
* ``uuid`` follows the FHIR regex (``urn:uuid:`` + lowercase UUID): fhir.resources (pydantic ``UUID4``) also
  takes a bare or upper-case UUID but rejects non-version-4 UUIDs, which FHIR allows — the one place where
  the fast checker accepts what the reference rejects (no corpus or mutation case hits it).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from mediator.fhir.fastcheck import check_resource
from mediator.fhir.schema import COMPLEX, PRIMITIVE, PRIMITIVE_NAMES, RESOURCE, TypeSchema, resource_schema
from mediator.fhir.validate import validate_bundle, validate_bundle_reference
from mediator.hl7v2 import parse
from mediator.mapping import MappingContext, load_mappings
from mediator.testing import CORPORA

ROOT = Path(__file__).resolve().parent.parent
CORPUS = CORPORA / "ms-fhir-converter" / "expected"
FIXTURES = ROOT / "tests" / "fixtures" / "hl7v2"

#: corpus resources on which the two validators may disagree (file name, resourceType): none today
KNOWN_CORPUS_DISAGREEMENTS: set[tuple[str, str]] = set()


def reference_valid(resource: dict[str, Any]) -> bool:
    """fhir.resources' verdict; any exception it raises on bad input (KeyError, AttributeError) is invalid."""
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except Exception:  # noqa: BLE001 - the reference crashes on some bad input
        return False
    return True


def _resources(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if doc.get("resourceType") == "Bundle":
        for entry in doc.get("entry") or []:
            if isinstance(entry.get("resource"), dict):
                yield entry["resource"]
    else:
        yield doc


def corpus_resources() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for f in sorted(CORPUS.glob("**/*.json")):
        for r in _resources(json.loads(f.read_text(encoding="utf-8"))):
            out.append((f.name, r))
    return out


def fixture_bundles() -> list[tuple[str, dict[str, Any]]]:
    adt = load_mappings(ROOT / "mappings")["adt_to_fhir.yaml"]
    return [(f.name, adt.apply(parse(f.read_bytes()), MappingContext()).bundle) for f in sorted(FIXTURES.glob("*.hl7"))]


# ---------------------------------------------------------------------------------------------------------------
# (1) and (2): real resources


@pytest.mark.skipif(not CORPUS.is_dir(), reason="converter corpus not available")
def test_agrees_with_fhir_resources_on_converter_corpus() -> None:
    resources = corpus_resources()
    assert len(resources) > 1000
    disagreements = []
    invalid = 0
    for name, r in resources:
        ref = reference_valid(r)
        invalid += not ref
        if ref != (not check_resource(r)) and (name, r["resourceType"]) not in KNOWN_CORPUS_DISAGREEMENTS:
            disagreements.append((name, r["resourceType"], check_resource(r)[:3]))
    assert disagreements == []
    assert invalid > 0  # the corpus does exercise the invalid side


def test_fixture_bundles_are_valid_for_both() -> None:
    bundles = fixture_bundles()
    assert len(bundles) >= 4
    for name, bundle in bundles:
        assert validate_bundle(bundle) == [], name
        assert validate_bundle_reference(bundle) == [], name
        for entry in bundle["entry"]:
            assert reference_valid(entry["resource"]) and check_resource(entry["resource"]) == []


# ---------------------------------------------------------------------------------------------------------------
# (3) mutations

Site = tuple[dict[str, Any], str, tuple[Any, ...], TypeSchema]


def _sites(obj: dict[str, Any], ts: TypeSchema) -> Iterator[Site]:
    """Every (container, key, spec, type) of a valid resource, recursively."""
    elements = ts.build().elements
    assert elements is not None
    for key, value in obj.items():
        spec = elements.get(key)
        if spec is None:
            continue
        yield obj, key, spec, ts
        is_list, kind, target = spec[0], spec[1], spec[2]
        items = value if is_list else [value]
        for item in items:
            if not isinstance(item, dict):
                continue
            if kind == COMPLEX:
                yield from _sites(item, target)
            elif kind == RESOURCE:
                sub = resource_schema(item["resourceType"])
                assert sub is not None
                yield from _sites(item, sub)


_STRINGY = {"string", "code", "id", "oid", "markdown", "uri", "url", "canonical", "xhtml", "base64Binary", "uuid"}
_TEMPORAL = {"date", "dateTime", "instant"}
_EMPTY_OK_IN_REFERENCE = {"uri", "url", "canonical", "markdown", "xhtml"}


def _prim_name(spec: tuple[Any, ...]) -> str | None:
    return PRIMITIVE_NAMES.get(spec[2]) if spec[1] == PRIMITIVE else None


def mutate(resource: dict[str, Any], op: str, rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    """Mutation ``op`` at a random site of a valid resource: ``(op, mutated copy)``, ``None`` if not applicable."""
    r = copy.deepcopy(resource)
    ts = resource_schema(r["resourceType"])
    assert ts is not None
    sites = list(_sites(r, ts))
    rng.shuffle(sites)
    for container, key, spec, owner in sites:
        is_list, value = spec[0], container[key]
        name = _prim_name(spec)
        if op == "drop-required" and any(key == req for req, _ in owner.required) and not container.get(f"_{key}"):
            del container[key]
        elif op == "rename":
            container[f"{key}Zz"] = container.pop(key)
        elif op == "wrap-in-list" and not is_list:
            container[key] = [value]
        elif op == "unwrap-list" and is_list:
            container[key] = value[0]
        elif op == "bad-date" and name in _TEMPORAL:
            if is_list:
                value[0] = "2024-13-01"
            else:
                container[key] = "2024-13-01"
        elif op == "int-for-string" and name in _STRINGY and not is_list:
            container[key] = 42
        elif op == "bool-for-string" and name in _STRINGY | _TEMPORAL and not is_list:
            container[key] = True
        elif op == "empty-string" and name is not None and name not in _EMPTY_OK_IN_REFERENCE and not is_list:
            container[key] = ""
        elif op == "second-choice" and spec[3] is not None:
            group = spec[3]
            others = [k for k, s in owner.build().elements.items() if s[3] == group and k != key]
            other_spec = owner.build().elements[rng.choice(others)]  # type: ignore[index]
            other = next(k for k, s in owner.elements.items() if s is other_spec)  # type: ignore[union-attr]
            container[other] = _any_valid(other_spec[2]) if other_spec[1] == PRIMITIVE else {"id": "x"}
        elif op == "wrong-resourceType" and key == "id" and owner.resource_type is not None:
            container["resourceType"] = "Basic" if owner.resource_type != "Basic" else "Patient"
        # stricter than fhir.resources
        elif op == "null":
            container[key] = None
        elif op == "empty-list" and is_list:
            container[key] = []
        elif op == "empty-object" and spec[1] == COMPLEX and not is_list:
            container[key] = {}
        elif op == "empty-uri" and name in _EMPTY_OK_IN_REFERENCE and not is_list:
            container[key] = ""
        elif op == "string-for-number" and name in ("integer", "positiveInt", "unsignedInt", "decimal", "boolean"):
            container[key] = "1" if name != "boolean" else "true"
        else:
            continue
        return op, r
    return None


def _any_valid(checker: Any) -> Any:
    for candidate in ("2020", True, 1, "10:00:00", "2020-01-01T00:00:00Z", "urn:oid:1.2", "x",
                      "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"):
        if checker(candidate) is None:
            return candidate
    raise AssertionError("no valid sample value")


_AGREE = ["drop-required", "rename", "wrap-in-list", "unwrap-list", "bad-date", "int-for-string", "bool-for-string",
          "empty-string", "second-choice", "wrong-resourceType"]
_STRICTER = ["null", "empty-list", "empty-object", "empty-uri", "string-for-number"]


def _mutation_sources() -> list[dict[str, Any]]:
    sources = [e["resource"] for _, b in fixture_bundles() for e in b["entry"]]
    if CORPUS.is_dir():
        valid = [r for _, r in corpus_resources() if reference_valid(r)]
        sources += random.Random(7).sample(valid, min(250, len(valid)))
    return sources


def test_mutations_agree_with_fhir_resources() -> None:
    rng = random.Random(20241105)
    counts: dict[str, list[int]] = {}
    disagreements = []
    lenient_reference = 0
    for resource in _mutation_sources():
        for op in _AGREE + _STRICTER:
            mutated = mutate(resource, op, rng)
            if mutated is None:
                continue
            op, r = mutated
            fast_ok, ref_ok = not check_resource(r), reference_valid(r)
            counts.setdefault(op, [0, 0])[0] += 1
            if op in _STRICTER:
                assert not fast_ok, (op, r["resourceType"])  # FHIR JSON forbids it; the fast checker says so
                lenient_reference += ref_ok
                continue
            if fast_ok != ref_ok:
                counts[op][1] += 1
                disagreements.append((op, r["resourceType"], check_resource(r)[:2]))
    total = sum(n for n, _ in counts.values())
    assert total >= 2000, counts
    assert all(counts.get(op, [0])[0] >= 10 for op in _AGREE + _STRICTER), counts
    assert disagreements == []
    assert lenient_reference > 0  # documents the known stricter-than-reference cases


# ---------------------------------------------------------------------------------------------------------------
# messages and rules


def test_messages_name_elements_never_values() -> None:
    bad = {"resourceType": "Patient", "birthDate": "1980-02-30", "gender": " SECRETVALUE",
           "name": [{"family": "DOE"}, {"family": 5, "given": ["SECRET", ""]}], "secret": "SECRETVALUE"}
    errors = check_resource(bad)
    assert "Patient.birthDate: not a valid date" in errors
    assert "Patient.name[1].family: expected a string" in errors
    assert "Patient.name[1].given[1]: empty string" in errors
    assert "Patient.gender: not a valid code" in errors
    assert "Patient.secret: unknown element" in errors
    assert not any("SECRET" in e or "1980" in e for e in errors)
    assert check_resource({"resourceType": "Encounter", "class": {"code": "IMP"}}) == ["Encounter.status: required"]


def test_rules() -> None:
    ok = {"resourceType": "Encounter", "status": "planned", "class": {"code": "AMB"}}
    assert check_resource(ok) == []
    # a required primitive may be carried by its _x sibling with an extension
    ext = {"extension": [{"url": "http://x", "valueString": "unknown"}]}
    assert check_resource({**ok, "status": None} | {"_status": ext}) == ["Encounter.status: null is not allowed"]
    assert check_resource({"resourceType": "Encounter", "class": {"code": "AMB"}, "_status": ext}) == []
    assert check_resource({**ok, "_status": "x"}) == ["Encounter._status: expected an object"]
    assert check_resource({**ok, "_class": {}}) == ["Encounter._class: unknown element"]
    assert check_resource({**ok, "participant": {"type": []}}) == ["Encounter.participant: expected a list"]
    assert check_resource({**ok, "participant": [{"period": {"start": "2024-01-01T10:00:00"}}]}) == [
        "Encounter.participant[0].period.start: not a valid dateTime"]
    assert check_resource({**ok, "resourceType": "Patient"}) != []
    # choice types
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    assert check_resource({**obs, "valueString": "a", "valueInteger": 1}) == [
        "Observation.value[x]: more than one choice type present"]
    assert check_resource({**obs, "valueInteger": 2**31}) == ["Observation.valueInteger: out of range for integer"]
    assert check_resource({**obs, "valueQuantity": {"value": "1.5"}}) == [
        "Observation.valueQuantity.value: expected a number"]
    # primitive arrays: a null needs an _x object at the same index
    name = {"given": [None, "b"], "_given": [{"extension": [{"url": "u", "valueCode": "x"}]}, None]}
    assert check_resource({"resourceType": "Patient", "name": [name]}) == []
    assert check_resource({"resourceType": "Patient", "name": [{"given": [None]}]}) == [
        "Patient.name[0].given[0]: null is not allowed"]
    # Resource-typed elements dispatch on resourceType
    assert check_resource({"resourceType": "Patient", "contained": [{"resourceType": "Nope"}]}) == [
        "Patient.contained[0].resourceType: unknown resource type"]
    assert check_resource({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "x": 1}]}) == [
        "Patient.contained[0].x: unknown element"]


def test_validate_bundle_paths_and_strict_mode() -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "p"}},
        {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Encounter", "status": "planned",
                                               "class": {"code": "IMP"}, "period": {"start": "2024-13-45"},
                                               "subject": {"reference": "Patient/p"}}}]}
    assert validate_bundle(bundle) == ["Bundle.entry[1].resource(Encounter).period.start: not a valid dateTime"]
    strict = validate_bundle(bundle, strict=True)
    assert len(strict) == 1 and strict[0].startswith("Bundle.entry[1].resource(Encounter).period.start: ")
    assert validate_bundle_reference(bundle) == strict
