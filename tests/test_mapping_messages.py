"""The shipped mappings for ORU, ORM/OML, RDE/RDS, VXU, MDM, SIU and ADT^A40 on Moroccan fixtures and
on the Microsoft converter's samples: valid Bundles, every reference resolved, stable ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mediator.config import load_config
from mediator.fhir.validate import validate_bundle
from mediator.hl7v2 import parse
from mediator.mapping import Mapping, MappingContext, load_mappings
from mediator.mapping.cli import choose_mapping
from mediator.testing import CORPORA

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "hl7v2"
SID = "https://dmp.sante.gov.ma/fhir/sid"
MS = CORPORA / "ms-fhir-converter" / "hl7v2"


@pytest.fixture(scope="module")
def maps() -> dict[str, Mapping]:
    return load_mappings(ROOT / "mappings")


def mapped(maps: dict[str, Mapping], name: str, data: bytes | None = None) -> tuple[Mapping, dict, list[str]]:
    raw = data if data is not None else (FIXTURES / name).read_bytes()
    msg = parse(raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r"))
    cfg = load_config(ROOT / "config.yaml")
    m, _ = choose_mapping(cfg, msg, maps)
    assert m is not None, name
    r = m.apply(msg, MappingContext(identifiers=cfg.identifiers))
    return m, r.bundle, r.unmapped


def of(bundle: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


@pytest.mark.parametrize("name,mapping", [
    ("ma_oru_r01.hl7", "oru_to_fhir"), ("ma_orm_o01.hl7", "orders_to_fhir"),
    ("ma_rde_o11.hl7", "pharmacy_to_fhir"), ("ma_vxu_v04.hl7", "vxu_to_fhir"), ("ma_mdm_t02.hl7", "mdm_to_fhir"),
    ("ma_siu_s12.hl7", "siu_to_fhir"), ("ma_adt_a40.hl7", "adt_to_fhir"),
])
def test_moroccan_fixtures_give_valid_bundles(maps: dict[str, Mapping], name: str, mapping: str) -> None:
    m, bundle, _ = mapped(maps, name)
    assert m.name == mapping
    assert validate_bundle(bundle) == []
    assert validate_bundle(bundle, strict=True) == []
    # a rerun gives the same ids: the shared record updates instead of duplicating
    assert mapped(maps, name)[1] == bundle


def test_oru_lab_report(maps: dict[str, Mapping]) -> None:
    _, bundle, unmapped = mapped(maps, "ma_oru_r01.hl7")
    assert unmapped == []
    reports, obs = of(bundle, "DiagnosticReport"), of(bundle, "Observation")
    assert len(reports) == 2 and len(obs) == 15
    hb = next(o for o in obs if o["code"]["coding"][0]["code"] == "HB")
    assert hb["code"]["coding"][1] == {"system": "http://loinc.org", "code": "718-7"}   # local code -> LOINC
    assert hb["valueQuantity"] == {"value": 11.2, "unit": "g/dl", "system": "http://unitsofmeasure.org",
                                   "code": "g/dL"}
    assert hb["referenceRange"][0]["low"] == {"value": 12.0}
    assert hb["interpretation"][0]["coding"][0]["code"] == "L"
    assert hb["effectiveDateTime"] == "2024-11-06T08:15:00+01:00"   # the offset is kept
    by_code = {o["code"]["coding"][0]["code"]: o for o in obs}
    assert by_code["HT"]["valueQuantity"]["value"] == 35.1          # decimal comma
    assert by_code["CRP"]["valueQuantity"]["comparator"] == "<"     # SN with a comparator
    assert by_code["ALB"]["valueRange"]["high"]["value"] == 30      # SN range
    assert by_code["WIDAL"]["valueRatio"]["denominator"]["value"] == 160
    assert by_code["HBSAG"]["valueCodeableConcept"]["coding"][0]["code"] == "NEG"
    assert by_code["ASPECT"]["valueString"] == "Limpide"
    assert by_code["VGM"]["note"] == [{"text": "Microcytose : un bilan martial est conseillé."}]
    doc = of(bundle, "DocumentReference")[0]                        # ED: the PDF, referenced
    assert doc["content"][0]["attachment"]["contentType"] == "application/pdf"
    assert by_code["CR"]["derivedFrom"] == [{"reference": f"DocumentReference/{doc['id']}"}]
    # the first report holds the CBC results only, with its specimen, based on its order
    first = {r["reference"] for r in reports[0]["result"]}
    assert first == {f"Observation/{by_code[c]['id']}" for c in ("HB", "GB", "PLQ", "HT", "VGM")}
    order = of(bundle, "ServiceRequest")[0]
    assert reports[0]["basedOn"] == [{"reference": f"ServiceRequest/{order['id']}"}]
    assert order["note"] == [{"text": "Prélèvement réalisé à jeun."}]
    assert {i["type"]["coding"][0]["code"]: i["value"] for i in order["identifier"]} == {
        "PLAC": "CMD-88412", "FILL": "LAB-24-110642"}
    # the prescriber and the biologist by INPE; the patient by CIN, Arabic name kept
    inpe = {p["identifier"][0]["value"] for p in of(bundle, "Practitioner")}
    assert inpe == {"118273645", "207845113"}
    # IG ORC-12: the requester is a PractitionerRole (ordering provider) of the prescriber
    ref = order["requester"]["reference"]
    (role,) = [r for r in of(bundle, "PractitionerRole") if ref == f"PractitionerRole/{r['id']}"]
    assert role["code"][0]["coding"][0]["code"] == "OP"
    assert role["practitioner"]["reference"].startswith("Practitioner/")
    patient = of(bundle, "Patient")[0]
    assert patient["identifier"][0] == {"value": "CD456789", "system": f"{SID}/cin",  # CIN: a system, no assigner
                                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                             "code": "NI"}]}}
    assert patient["name"][1]["family"] == "بنجلون"


def test_oru_ids_follow_source_identifiers(maps: dict[str, Mapping]) -> None:
    raw = (FIXTURES / "ma_oru_r01.hl7").read_bytes()
    _, a, _ = mapped(maps, "", raw)
    # another message control id, same orders: same resources (but the Provenance: one per message)
    _, b, _ = mapped(maps, "", raw.replace(b"LAB-20241106-0042", b"LAB-20241106-0099"))

    def urls(bundle: dict) -> list[str]:
        return [e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] != "Provenance"]
    assert urls(a) == urls(b)
    assert len(of(a, "Provenance")) == len(of(b, "Provenance")) == 1
    assert of(a, "Provenance")[0]["id"] != of(b, "Provenance")[0]["id"]


def test_a40_links_the_merged_record(maps: dict[str, Mapping]) -> None:
    _, bundle, _ = mapped(maps, "ma_adt_a40.hl7")
    survivor, merged = of(bundle, "Patient")
    assert survivor["link"] == [{"other": {"reference": f"Patient/{merged['id']}"}, "type": "replaces"}]
    assert merged["link"] == [{"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}]
    assert merged["active"] is False and merged["identifier"][0]["value"] == "991204"


def test_pharmacy_dosage(maps: dict[str, Mapping]) -> None:
    _, bundle, _ = mapped(maps, "ma_rde_o11.hl7")
    (mr,) = of(bundle, "MedicationRequest")
    dosage = mr["dosageInstruction"][0]
    assert dosage["route"]["coding"][0]["code"] == "PO"
    assert dosage["timing"]["code"]["coding"][0]["code"] == "TID"
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 1
    assert mr["dispenseRequest"]["quantity"]["value"] == 15
    assert mr["status"] == "active" and mr["intent"] == "order"


def test_vxu_siu_mdm(maps: dict[str, Mapping]) -> None:
    _, vxu, _ = mapped(maps, "ma_vxu_v04.hl7")
    (imm,) = of(vxu, "Immunization")
    assert imm["vaccineCode"]["coding"][0] == {"system": "http://hl7.org/fhir/sid/cvx", "code": "08",
                                               "display": "Hépatite B pédiatrique"}
    assert imm["lotNumber"] == "HB24-0917" and imm["primarySource"] is True
    assert imm["programEligibility"][0]["coding"][0]["code"] == "PNI"
    _, siu, _ = mapped(maps, "ma_siu_s12.hl7")
    (appt,) = of(siu, "Appointment")
    assert appt["start"] == "2024-11-20T10:00:00+01:00" and appt["status"] == "booked"
    assert len(appt["participant"]) == 3 and appt["comment"] == "Apporter les derniers bilans biologiques."
    _, mdm, _ = mapped(maps, "ma_mdm_t02.hl7")
    (doc,) = of(mdm, "DocumentReference")
    assert doc["docStatus"] == "final" and doc["content"][0]["attachment"]["contentType"].startswith("text/plain")


@pytest.mark.skipif(not MS.is_dir(), reason="shared corpora not available")
def test_every_ms_converter_sample_maps_to_a_valid_bundle(maps: dict[str, Mapping]) -> None:
    bad = []
    for f in sorted(MS.glob("*.hl7")):
        msg = parse(f.read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r"))
        cfg = load_config(ROOT / "config.yaml")
        m, _ = choose_mapping(cfg, msg, maps)
        if m is None:
            continue
        problems = validate_bundle(m.apply(msg, MappingContext(identifiers=cfg.identifiers)).bundle)
        if problems:
            bad.append((f.name, problems[:2]))
    assert bad == []


def test_expected_fixture_files_are_json(maps: dict[str, Mapping]) -> None:
    for f in (ROOT / "mappings" / "tests").glob("*.expected.json"):
        assert json.loads(f.read_text(encoding="utf-8"))["resourceType"] == "Bundle"
