"""Identifier systems of FHIR and CDA input normalised to the configured ones."""

from __future__ import annotations

from mediator.config import IdentifierConfig
from mediator.fhir.normalize import cda_root_system, identifier_normalizer

CIN = "https://dmp.sante.gov.ma/fhir/sid/cin"
CNSS = "https://dmp.sante.gov.ma/fhir/sid/cnss"


def test_aliases_kinds_and_authorities_are_rewritten_everywhere() -> None:
    cfg = IdentifierConfig(aliases={"urn:oid:2.16.504.1.99.1": "cin", "http://old.cnss.ma/immat": "cnss"})
    normalize = identifier_normalizer(cfg)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [
            {"system": "urn:oid:2.16.504.1.99.1", "value": "BK1"},
            {"system": "CNSS", "value": "123"},
            {"system": "http://old.cnss.ma/immat", "value": "456"},
            {"system": "https://hospital.example/ipp", "value": "7"},
        ]}},
        {"resource": {"resourceType": "Claim", "patient": {"identifier": {"system": "cin", "value": "BK1"}}}},
    ]}
    assert normalize(bundle) == 4
    ids = bundle["entry"][0]["resource"]["identifier"]
    assert [i["system"] for i in ids] == [CIN, CNSS, CNSS, "https://hospital.example/ipp"]
    assert bundle["entry"][1]["resource"]["patient"]["identifier"]["system"] == CIN
    assert normalize(bundle) == 0  # idempotent


def test_cda_roots() -> None:
    system_for = cda_root_system(IdentifierConfig(aliases={"urn:oid:2.16.504.1.99.1": "cin"}))
    assert system_for("2.16.504.1.99.1") == CIN
    assert system_for("2.16.840.1.113883.19.5") == "urn:oid:2.16.840.1.113883.19.5"
