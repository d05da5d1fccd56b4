"""More of the HL7 v2-to-FHIR IG in the shipped mappings (issue 3): `ref` with a list of targets,
XTN without a number, PD1 repetitions, OBX value types (DR, NR, VR), data-absent reasons, the
OBX-18 device and OBX-15 producer, the ordering facility known by ORC-22/23 only."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_mapping

from mediator.config import ConfigError, load_config
from mediator.fhir.validate import validate_bundle
from mediator.hl7v2 import parse
from mediator.mapping import Mapping, MappingContext, load_mapping, load_mappings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def maps() -> dict[str, Mapping]:
    return load_mappings(ROOT / "mappings")


def run(maps: dict[str, Mapping], name: str, *segments: str) -> dict:
    msg = parse(("\r".join(segments) + "\r").encode())
    cfg = load_config(ROOT / "config.yaml")
    bundle = maps[name].apply(msg, MappingContext(identifiers=cfg.identifiers)).bundle
    assert validate_bundle(bundle) == []
    return bundle


def seg(name: str, fields: dict[int, str]) -> str:
    """A segment with the given fields (1-based), the others empty."""
    out = [""] * max(fields)
    for i, v in fields.items():
        out[i - 1] = v
    return "|".join([name, *out])


def of(bundle: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


ORU_MSH = "MSH|^~\\&|LAB|LABO-CASA|DMP|DMP|20241105093000+0100||ORU^R01^ORU_R01|C9|P|2.5.1"
ADT_MSH = "MSH|^~\\&|SIH|CHU-RABAT|DMP|DMP|20241105093000+0100||ADT^A01^ADT_A01|C8|P|2.5.1"
PID = "PID|1||BK123456^^^CIN^NI||ALAOUI^Amina||19800412|F"


# ---------------------------------------------------------------------------- the language: ref: [a, b]
TAIL = """\
  doctor:
    resourceType: Practitioner
    for_each: "PD1-4[*]"
    id: {hash: ["1"]}
    fields: {identifier: [{fields: {value: "1"}}]}
  facility:
    resourceType: Organization
    for_each: "PD1-3[*]"
    id: {hash: ["1"]}
    fields: {name: "1"}
"""


def write(tmp_path: Path, body: str) -> Path:
    return write_mapping(tmp_path, body, tail=TAIL)


def test_ref_with_a_list_of_targets_gives_every_one_of_each_in_turn(tmp_path: Path) -> None:
    f = write(tmp_path, "generalPractitioner: {ref: [facility, doctor]}\n")
    msg = parse(("\r".join([ADT_MSH, PID, "PD1|||CLINIQUE A~CLINIQUE B|D1^X~D2^Y"]) + "\r").encode())
    bundle = load_mapping(f).apply(msg, MappingContext()).bundle
    refs = [r["reference"].split("/")[0] for r in of(bundle, "Patient")[0]["generalPractitioner"]]
    assert refs == ["Organization", "Organization", "Practitioner", "Practitioner"]
    assert validate_bundle(bundle) == []
    # on a single element: the first found
    f = write(tmp_path, "managingOrganization: {ref: [facility, doctor]}\n")
    assert "managingOrganization" not in of(load_mapping(f).apply(
        parse(("\r".join([ADT_MSH, PID]) + "\r").encode()), MappingContext()).bundle, "Patient")[0]


def test_ref_list_with_an_unknown_target_is_refused(tmp_path: Path) -> None:
    f = write(tmp_path, "generalPractitioner: {ref: [facility, nobody]}\n")
    with pytest.raises(ConfigError) as ei:
        load_mapping(f)
    assert any("nobody" in e.problem and e.line == 9 for e in ei.value.errors)


# ---------------------------------------------------------------------------- XTN
def test_xtn_without_number_has_no_system_but_a_data_absent_reason(maps: dict[str, Mapping]) -> None:
    b = run(maps, "oru_to_fhir.yaml", ORU_MSH, PID,
            seg("NK1", {1: "1", 2: "BENANI^Omar", 3: "BRO", 40: "^WPN^^^^522"}),
            seg("NK1", {1: "2", 2: "BENANI^Sara", 3: "SIS", 40: "^PRN^^^212^522^4561234^12"}),
            seg("NK1", {1: "3", 2: "BENANI^Ali", 3: "BRO", 40: "0612345678"}))
    tel = [rp["telecom"][0] for rp in sorted(of(b, "RelatedPerson"), key=lambda r: r["name"][0]["given"][0])]
    ali, omar, sara = tel
    assert "system" not in omar and "value" not in omar and omar["use"] == "work"
    assert omar["_system"]["extension"][0] == {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                               "valueCode": "unknown"}
    # IG: the number from country, area, local number and extension
    assert sara["value"] == "+212 522 4561234 X12" and sara["system"] == "phone" and "_system" not in sara
    # a number without equipment type stays a phone
    assert ali == {"system": "phone", "value": "0612345678"}
    # NK1-40 is also the patient's contact telecom (IG NK1[Patient])
    contacts = of(b, "Patient")[0]["contact"]
    assert any(t.get("value") == "0612345678" for c in contacts for t in c.get("telecom", []))


# ---------------------------------------------------------------------------- PD1
def test_pd1_every_primary_facility_and_doctor_and_congregation(maps: dict[str, Mapping]) -> None:
    b = run(maps, "adt_to_fhir.yaml", ADT_MSH, "EVN|A01|20241105093000+0100", PID,
            seg("PD1", {3: "CLINIQUE A^^11~CLINIQUE B^^22",
                        4: "1234^IDRISSI^Karim^^^^^^INPE~5678^FASSI^Leila^^^^^^INPE",
                        14: "Mosquee Hassan II~^^^^^^^^^MOSQ-9"}),
            "PV1|1|O")
    patient = of(b, "Patient")[0]
    kinds = [r["reference"].split("/")[0] for r in patient["generalPractitioner"]]
    assert kinds == ["Organization", "Organization", "Practitioner", "Practitioner"]
    congregation = [e["valueString"] for e in patient["extension"]
                    if e["url"] == "http://hl7.org/fhir/StructureDefinition/patient-congregation"]
    assert congregation == ["Mosquee Hassan II", "MOSQ-9"]


def test_birth_time_and_marital_display(maps: dict[str, Mapping]) -> None:
    b = run(maps, "adt_to_fhir.yaml", ADT_MSH,
            seg("PID", {1: "1", 3: "BK1^^^CIN^NI", 5: "ALAOUI^Amina", 7: "198004120830", 8: "F^Female", 16: "M^Marié"}))
    p = of(b, "Patient")[0]
    assert p["birthDate"] == "1980-04-12" and p["gender"] == "female"
    assert p["_birthDate"]["extension"][0]["url"] == "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
    assert p["_birthDate"]["extension"][0]["valueDateTime"].startswith("1980-04-12T08:30")
    assert p["maritalStatus"]["coding"][0]["display"] == "Marié"


# ---------------------------------------------------------------------------- OBX
def test_obx_value_types_and_absent_values(maps: dict[str, Mapping]) -> None:
    b = run(maps, "oru_to_fhir.yaml", ORU_MSH, PID,
            "OBR|1||F1|GLU^Glycemie^L|||20241105080000+0100",
            "OBX|1|DR|P^Period^L||20241101^20241105||||||F",
            "OBX|2|NR|R^Range^L||1^10||||||F",
            "OBX|3|VR|V^Varies^L||Low^High||||||F",
            "OBX|4|ST|N^Not asked^L||||||||N",
            "OBX|5|ST|E^Empty^L||||||||F",
            "OBX|6|SN|Q^Qty^L||>^1^.^3|mL||||F",
            seg("OBX", {1: "7", 2: "NM", 3: "D^Device^L", 5: "5", 11: "F", 18: "EQ-42^LABO"}))
    obs = {o["code"]["coding"][0]["code"]: o for o in of(b, "Observation")}
    assert obs["P"]["valuePeriod"] == {"start": "2024-11-01", "end": "2024-11-05"}
    assert obs["R"]["valueRange"] == {"low": {"value": 1}, "high": {"value": 10}}
    assert obs["V"]["valueString"] == "Low-High"
    assert obs["N"]["dataAbsentReason"]["coding"][0]["code"] == "not-asked"
    assert obs["E"]["dataAbsentReason"]["coding"][0]["code"] == "unknown"
    assert "dataAbsentReason" not in obs["P"]
    assert obs["Q"]["valueQuantity"]["value"] == 1 and obs["Q"]["valueQuantity"]["comparator"] == ">"
    device = [d for d in of(b, "Device") if d["identifier"][0]["value"] == "EQ-42"]
    assert len(device) == 1
    assert obs["D"]["device"]["reference"] == f"Device/{device[0]['id']}"


def test_obx15_producer_and_ordering_facility_without_name(maps: dict[str, Mapping]) -> None:
    b = run(maps, "oru_to_fhir.yaml", ORU_MSH, PID,
            seg("ORC", {1: "RE", 3: "F1", 22: "12 Rue Atlas^^Casablanca^^20000^MAR", 23: "^WPN^PH^^212^522^4561234"}),
            seg("OBR", {1: "1", 3: "F1", 4: "GLU^Glycemie^L", 7: "20241105080000+0100",
                        16: "1234^IDRISSI^Karim^^^^^^INPE"}),
            seg("OBX", {1: "1", 2: "NM", 3: "GLU^Glycemie^L", 5: "5.2", 6: "mmol/L", 11: "F",
                        15: "LAB-7^Laboratoire Atlas^LOCAL"}))
    orgs = {o.get("name"): o for o in of(b, "Organization")}
    assert "Laboratoire Atlas" in orgs
    assert orgs["Laboratoire Atlas"]["identifier"][0]["value"] == "LAB-7"
    contact = [o for o in of(b, "Organization") if o.get("address", [{}])[0].get("city") == "Casablanca"]
    assert contact and contact[0]["telecom"][0]["value"] == "+212 522 4561234"
    role = of(b, "PractitionerRole")[0]
    assert role["organization"]["reference"] == f"Organization/{contact[0]['id']}"
    assert of(b, "ServiceRequest")[0]["requester"]["reference"] == f"PractitionerRole/{role['id']}"
