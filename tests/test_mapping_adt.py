"""The shipped ADT mapping on Moroccan fixtures and on the Microsoft converter's ADT samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediator.fhir.validate import validate_bundle
from mediator.hl7v2 import parse
from mediator.mapping import Mapping, MappingContext, MappingError, load_mapping, load_mappings
from mediator.testing import CORPORA

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "hl7v2"
CORPUS = CORPORA / "ms-fhir-converter" / "hl7v2"
SID = "https://dmp.sante.gov.ma/fhir/sid"
LANG = "http://hl7.org/fhir/StructureDefinition/language"


@pytest.fixture(scope="module")
def adt() -> Mapping:
    return load_mapping(ROOT / "mappings" / "adt_to_fhir.yaml")


def run(m: Mapping, name: str) -> tuple[dict, dict]:
    result = m.apply(parse((FIXTURES / name).read_bytes()), MappingContext())
    by_type: dict = {}
    for e in result.bundle["entry"]:
        by_type.setdefault(e["resource"]["resourceType"], e["resource"])
    return result.__dict__, by_type


def test_all_mapping_files_load() -> None:
    maps = load_mappings(ROOT / "mappings")
    assert "adt_to_fhir.yaml" in maps
    assert maps["adt_to_fhir.yaml"].message_types[:1] == ["ADT^A01"]


@pytest.mark.parametrize("name", ["ma_adt_a01.hl7", "ma_adt_a04.hl7", "ma_adt_a08.hl7", "ma_adt_a01_minimal.hl7"])
def test_fixtures_map_to_valid_bundles(adt: Mapping, name: str) -> None:
    result, _ = run(adt, name)
    assert result["bundle"]["type"] == "transaction"
    assert validate_bundle(result["bundle"]) == []


def test_a01_patient(adt: Mapping) -> None:
    result, res = run(adt, "ma_adt_a01.hl7")
    p = res["Patient"]
    ids = {(i["system"], i["value"], i["type"]["coding"][0]["code"]) for i in p["identifier"]}
    assert ids == {(f"{SID}/cin", "BK245871", "NI"), (f"{SID}/ipp/CHU-IBN-SINA", "123456", "PI"),
                   (f"{SID}/cnss", "987654321", "SS")}
    assert result["patient_key"] == f"{SID}/cin|BK245871"
    latin, arabic = p["name"]
    assert (latin["family"], latin["given"], latin["use"]) == ("EL AMRANI", ["Mohamed"], "official")
    assert latin["extension"] == [{"url": LANG, "valueCode": "fr"}]
    assert (arabic["family"], arabic["given"]) == ("العمراني", ["محمد"])
    assert arabic["extension"] == [{"url": LANG, "valueCode": "ar"}]
    assert (p["gender"], p["birthDate"]) == ("male", "1978-04-12")
    assert p["address"][0]["city"] == "Rabat" and p["address"][0]["country"] == "MA"
    assert {t["use"] for t in p["telecom"] if "use" in t} == {"home", "work"}
    assert result["unmapped"] == ["ZPD"]  # NK1 -> RelatedPerson; the Z-segment is reported


def test_a01_encounter_and_practitioner(adt: Mapping) -> None:
    _, res = run(adt, "ma_adt_a01.hl7")
    enc, doc, pat = res["Encounter"], res["Practitioner"], res["Patient"]
    assert enc["status"] == "in-progress" and enc["class"]["code"] == "IMP"
    assert enc["identifier"][0]["system"] == f"{SID}/encounter/CHU-IBN-SINA"
    assert enc["identifier"][0]["value"] == "V2024-000871"
    assert enc["period"] == {"start": "2024-11-05T09:30:00+01:00"}
    assert enc["subject"] == {"reference": f"Patient/{pat['id']}"}
    assert enc["participant"][0]["individual"] == {"reference": f"Practitioner/{doc['id']}"}
    assert enc["participant"][0]["type"][0]["coding"][0]["code"] == "ATND"
    # INPE is a configured identifier system: the system says who assigns it, no assigner Organization
    assert doc["identifier"] == [{"system": f"{SID}/inpe", "value": "123456789"}]
    assert doc["name"][0]["family"] == "ALAOUI"
    assert enc["location"][0]["location"]["reference"] == f"Location/{res['Location']['id']}"


def test_a08_discharge_and_ids_stable(adt: Mapping) -> None:
    a01, r01 = run(adt, "ma_adt_a01.hl7")
    a08, r08 = run(adt, "ma_adt_a08.hl7")
    assert r08["Encounter"]["status"] == "finished"
    assert r08["Encounter"]["period"]["end"] == "2024-11-07T10:00:00+01:00"
    # the same patient, visit and doctor from another message: the same ids (updates, not copies)
    for t in ("Patient", "Encounter", "Practitioner"):
        assert r01[t]["id"] == r08[t]["id"]
    again, _ = run(adt, "ma_adt_a01.hl7")
    assert again["bundle"] == a01["bundle"]


def test_a04_and_minimal(adt: Mapping) -> None:
    _, a04 = run(adt, "ma_adt_a04.hl7")
    assert a04["Encounter"]["class"]["code"] == "AMB" and a04["Encounter"]["status"] == "in-progress"
    assert a04["Patient"]["gender"] == "female"
    result, res = run(adt, "ma_adt_a01_minimal.hl7")
    assert result["patient_key"] == f"{SID}/ipp/CHP-TEMARA|55821"
    assert res["Patient"]["birthDate"] == "1985"
    assert res["Encounter"]["class"]["code"] == "EMER"
    assert "Practitioner" not in res and "Location" not in res


ADT_SAMPLES = sorted(CORPUS.glob("ADT*.hl7")) if CORPUS.is_dir() else []


@pytest.mark.skipif(not ADT_SAMPLES, reason="corpus not available")
def test_corpus_adt_messages_map_to_valid_bundles(adt: Mapping) -> None:
    checked = 0
    for f in ADT_SAMPLES:
        msg = parse(f.read_bytes())
        try:
            result = adt.apply(msg, MappingContext())
        except MappingError:
            continue  # a clear, located error is acceptable; any other exception fails the test
        assert validate_bundle(result.bundle) == [], f.name
        if msg.type_key.split("^")[1] in ("A01", "A04", "A08"):
            checked += 1
    assert checked >= 6


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_TEXT = st.text(alphabet=st.sampled_from("AZaz09 +-.&^~\\é\u0639\u0645"), max_size=20)


@settings(max_examples=40, deadline=None)
@given(name=_TEXT, dob=_TEXT, sex=_TEXT, start=_TEXT)
def test_arbitrary_values_map_or_fail_cleanly(adt: Mapping, name: str, dob: str, sex: str, start: str) -> None:
    esc = str.maketrans({"\\": "\\E\\"})
    text = (FIXTURES / "ma_adt_a01.hl7").read_text(encoding="utf-8")
    text = text.replace("EL AMRANI^Mohamed", name.translate(esc)).replace("19780412", dob.translate(esc))
    text = text.replace("|M|||12", f"|{sex.translate(esc)}|||12").replace("20241105093000+0100", start)
    try:
        result = adt.apply(parse(text), MappingContext())
    except MappingError as exc:
        assert len(dob.strip()) < 4 or dob.strip() not in exc.text  # no patient values in errors
        return
    assert validate_bundle(result.bundle) == []


def test_message_header_becomes_a_provenance(adt: Mapping) -> None:
    result, by = run(adt, "ma_adt_a01.hl7")
    prov, device, org = by["Provenance"], by["Device"], by["Organization"]
    assert prov["recorded"] == "2024-11-05T09:30:00+01:00"   # EVN-2, its offset kept
    assert prov["activity"]["coding"][0]["code"] == "A01"
    assert {t["reference"] for t in prov["target"]} == {f"Patient/{by['Patient']['id']}",
                                                         f"Encounter/{by['Encounter']['id']}"}
    author = prov["agent"][0]
    assert author["who"] == {"reference": f"Device/{device['id']}"}
    assert author["onBehalfOf"] == {"reference": f"Organization/{org['id']}"}
    assert device["deviceName"][0]["name"] == "DXCARE" and org["name"] == "CHU-IBN-SINA"
    assert prov["entity"][0]["what"]["identifier"]["value"] == "CHUIS-000184"   # MSH-10
    # another message about the same patient: another Provenance, the same Device and Organization
    raw = (FIXTURES / "ma_adt_a08.hl7").read_bytes()
    other = adt.apply(parse(raw), MappingContext()).bundle
    ids = {e["resource"]["resourceType"]: e["resource"]["id"] for e in other["entry"]}
    assert ids["Device"] == device["id"] and ids["Organization"] == org["id"] and ids["Provenance"] != prov["id"]
    assert validate_bundle(result["bundle"]) == []


def test_ms_corpus_segments_become_resources(adt: Mapping) -> None:
    if not (CORPUS / "ADT-A01-01.hl7").is_file():
        pytest.skip("corpus not available")
    raw = (CORPUS / "ADT-A01-01.hl7").read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    bundle = adt.apply(parse(raw), MappingContext()).bundle
    types = {e["resource"]["resourceType"] for e in bundle["entry"]}
    # PD1/ROL -> PractitionerRole, GT1 -> Account guarantor, PV1-54 -> EpisodeOfCare, OBX, IN1/IN2, DG1, PR1
    assert {"Provenance", "Device", "PractitionerRole", "Account", "EpisodeOfCare", "Observation", "Coverage",
            "Condition", "Procedure", "AllergyIntolerance", "RelatedPerson"} <= types
    assert validate_bundle(bundle) == []
