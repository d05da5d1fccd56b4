"""CDA R2 -> FHIR R4 with the declarative mapping ``mappings/cda_to_fhir.yaml`` (XPath sources),
on the public C-CDA corpora and the French-language Moroccan fixture ``mappings/tests/ma_ccd.xml``."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from mediator.cda.safe_xml import XmlInputError, parse_xml
from mediator.fhir.validate import validate_bundle
from mediator.mapping import Mapping, MappingContext, MappingError, load_mapping
from mediator.mapping.xpath import XmlMessage
from mediator.testing import CORPORA

ROOT = Path(__file__).resolve().parent.parent
MAPPING = ROOT / "mappings" / "cda_to_fhir.yaml"
MA_CCD = ROOT / "mappings" / "tests" / "ma_ccd.xml"
MS_CCDA = sorted((CORPORA / "ms-fhir-converter" / "ccda").glob("*.ccda"))
HL7_EXAMPLES = CORPORA / "hl7-c-cda-examples"


@pytest.fixture(scope="module")
def mapping() -> Mapping:
    return load_mapping(MAPPING, codes_dir=ROOT / "mappings" / "codes")


def run(mapping: Mapping, raw: bytes) -> Any:
    return mapping.apply(XmlMessage(parse_xml(raw), raw), MappingContext())


def resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


@pytest.mark.parametrize("path", MS_CCDA, ids=lambda p: p.name)
def test_ms_converter_documents_give_valid_bundles(mapping: Mapping, path: Path) -> None:
    raw = path.read_bytes()
    result = run(mapping, raw)
    assert validate_bundle(result.bundle) == []
    types = {e["resource"]["resourceType"] for e in result.bundle["entry"]}
    assert {"Patient", "Composition", "DocumentReference"} <= types
    doc, = resources(result.bundle, "DocumentReference")
    assert base64.b64decode(doc["content"][0]["attachment"]["data"]) == raw   # the document as received
    assert all(e["request"]["method"] == "PUT" for e in result.bundle["entry"])


def test_ccd_sections_become_resources(mapping: Mapping) -> None:
    bundle = run(mapping, (CORPORA / "ms-fhir-converter" / "ccda" / "C-CDA_R2-1_CCD.xml.ccda").read_bytes()).bundle
    for rtype in ("Condition", "AllergyIntolerance", "MedicationStatement", "Medication", "DiagnosticReport",
                  "Observation", "Immunization", "Procedure"):
        assert resources(bundle, rtype), rtype
    vitals = [o for o in resources(bundle, "Observation")
              if o["category"][0]["coding"][0]["code"] == "vital-signs"]
    assert vitals and all(o["subject"]["reference"].startswith("Patient/") for o in vitals)
    report = resources(bundle, "DiagnosticReport")[0]
    ids = {f"Observation/{o['id']}" for o in resources(bundle, "Observation")}
    assert report["result"] and {r["reference"] for r in report["result"]} <= ids   # its own results


def test_hl7_examples_full_documents_map_and_fragments_are_refused_precisely(mapping: Mapping) -> None:
    full = refused = 0
    for f in sorted(HL7_EXAMPLES.rglob("*.xml")):
        raw = f.read_bytes()
        try:
            root = parse_xml(raw)
        except XmlInputError:
            refused += 1
            continue
        if root.tag == "{urn:hl7-org:v3}ClinicalDocument":
            full += 1
            assert validate_bundle(mapping.apply(XmlMessage(root, raw), MappingContext()).bundle) == [], f
        else:  # a section example: no patient -> the rule and the XPath are named
            with pytest.raises(MappingError, match=r"patient_role.*recordTarget/patientRole"):
                mapping.apply(XmlMessage(root, raw), MappingContext())
    assert full >= 15 and refused > 0


def test_moroccan_ccd_keeps_french_narrative_arabic_names_and_offsets(mapping: Mapping) -> None:
    result = run(mapping, MA_CCD.read_bytes())
    bundle = result.bundle
    assert validate_bundle(bundle) == []
    comp, = resources(bundle, "Composition")
    divs = [s["text"]["div"] for s in comp["section"]]
    assert any("pénicilline" in d for d in divs) and all(d.startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
                                                         for d in divs)
    assert comp["date"] == "2024-11-05T09:30:00+01:00"
    patient, = resources(bundle, "Patient")
    langs = {n["family"]: n["extension"][0]["valueCode"] for n in patient["name"]}
    assert langs == {"Tazi": "fr", "التازي": "ar"}
    assert patient["birthDate"] == "1978-04-12" and patient["gender"] == "female"
    allergy, = resources(bundle, "AllergyIntolerance")
    assert allergy["code"]["text"] == "pénicilline"          # the narrative the originalText references
    assert allergy["reaction"][0]["severity"] == "severe" and allergy["category"] == ["medication"]
    glucose = next(o for o in resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == "1558-6")
    assert glucose["valueQuantity"] == {"value": 1.26, "unit": "g/L", "system": "http://unitsofmeasure.org",
                                        "code": "g/L"}
    assert glucose["referenceRange"][0]["low"]["value"] == 0.7
    enc, = resources(bundle, "Encounter")
    assert enc["period"] == {"start": "2024-11-01T08:00:00+01:00", "end": "2024-11-05T09:00:00+01:00"}
    # every section with entries is mapped (the goals section too); nothing reported as unmapped
    assert result.unmapped == []
    goal, = resources(bundle, "Goal")
    assert goal["target"][0]["detailRange"]["high"]["value"] == 7 and goal["lifecycleStatus"] == "active"
    assert resources(bundle, "ServiceRequest")[0]["intent"] == "order"   # the plan of care's planned test
    assert result.patient_key == "urn:oid:2.16.504.1.99.1|BE123456"


def test_ids_are_stable_and_derived_from_source_ids(mapping: Mapping) -> None:
    raw = MA_CCD.read_bytes()
    first, again = run(mapping, raw).bundle, run(mapping, raw).bundle
    assert [e["fullUrl"] for e in first["entry"]] == [e["fullUrl"] for e in again["entry"]]
    other = raw.replace(b'extension="PB-1-OBS"', b'extension="PB-2-OBS"')
    cond1, = resources(first, "Condition")
    cond2, = resources(run(mapping, other).bundle, "Condition")
    assert cond1["id"] != cond2["id"]
    assert resources(first, "Patient")[0]["id"] == resources(run(mapping, other).bundle, "Patient")[0]["id"]


def test_configured_identifier_systems(mapping: Mapping) -> None:
    from mediator.config import IdentifierConfig

    ctx = MappingContext(identifiers=IdentifierConfig(aliases={"urn:oid:2.16.504.1.99.1": "cin"}))
    raw = MA_CCD.read_bytes()
    patient, = resources(mapping.apply(XmlMessage(parse_xml(raw), raw), ctx).bundle, "Patient")
    assert {"system": "https://dmp.sante.gov.ma/fhir/sid/cin", "value": "BE123456"} in patient["identifier"]


# ------------------------------------------------------------------------------------------ bad input
def test_missing_record_target_names_the_rule_and_the_xpath(mapping: Mapping) -> None:
    raw = MA_CCD.read_bytes()
    start, end = raw.index(b"<recordTarget>"), raw.index(b"</recordTarget>") + len(b"</recordTarget>")
    with pytest.raises(MappingError) as exc:
        run(mapping, raw[:start] + raw[end:])
    assert exc.value.rule == "$patient_role" and exc.value.source_path == "recordTarget/patientRole"
    assert "cda_to_fhir.yaml:" in str(exc.value)


def test_garbage_document_date_fails_naming_the_rule(mapping: Mapping) -> None:
    raw = MA_CCD.read_bytes().replace(b'<effectiveTime value="20241105093000+0100"/>',
                                      b'<effectiveTime value="2024-11-05 nonsense"/>', 1)
    with pytest.raises(MappingError) as exc:
        run(mapping, raw)
    assert exc.value.rule == "composition.date" and exc.value.source_path == "effectiveTime/@value"
    assert "nonsense" not in str(exc.value)   # no source values in error texts


def test_garbage_entry_date_is_dropped_and_reported(mapping: Mapping) -> None:
    raw = MA_CCD.read_bytes().replace(b'<effectiveTime value="1995"/>', b'<effectiveTime value="199513"/>')
    result = run(mapping, raw)
    assert validate_bundle(result.bundle) == []
    proc, = resources(result.bundle, "Procedure")
    assert "performedDateTime" not in proc
    assert any("procedure.performedDateTime" in u and "effectiveTime" in u for u in result.unmapped)


def test_unknown_section_is_reported_not_failed(mapping: Mapping) -> None:
    raw = MA_CCD.read_bytes().replace(b'code="47519-4"', b'code="99999-9"').replace(
        b'root="2.16.840.1.113883.10.20.22.2.7.1"', b'root="1.2.3.4"').replace(
        b'root="2.16.840.1.113883.10.20.22.4.14"', b'root="1.2.3.5"')   # a local section and entry template
    result = run(mapping, raw)
    assert "section 99999-9 [1.2.3.4]" in result.unmapped
    assert not resources(result.bundle, "Procedure")
    comp, = resources(result.bundle, "Composition")
    assert any(s["title"] == "Interventions" for s in comp["section"])   # its narrative is kept


def test_not_a_cda_document_is_refused_precisely(mapping: Mapping) -> None:
    with pytest.raises(MappingError, match="recordTarget/patientRole"):
        run(mapping, b"<notcda/>")
