"""C-CDA sections beyond the CCD core: goals (Goal), health concerns (Condition category health-concern),
care team (CareTeam), advance directives (Consent), interventions and outcomes, reason for referral
(ServiceRequest), medical equipment (Device + DeviceUseStatement), instructions (Communication), imaging
reports (ImagingStudy, Observation); French narrative kept; every section with entries either mapped or
reported as not mapped (an entry's author alone does not map it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mediator.cda.safe_xml import parse_xml
from mediator.fhir.validate import validate_bundle
from mediator.mapping import Mapping, MappingContext, load_mapping
from mediator.mapping.xpath import XmlMessage
from mediator.testing import CORPORA

ROOT = Path(__file__).resolve().parent.parent
DS = ROOT / "mappings" / "tests" / "ma_discharge_summary.xml"
MS = CORPORA / "ms-fhir-converter" / "ccda"
CDA = {"Content-Type": "application/hl7-cda+xml"}
HEALTH_CONCERN = "http://hl7.org/fhir/us/core/CodeSystem/condition-category"


@pytest.fixture(scope="module")
def mapping() -> Mapping:
    return load_mapping(ROOT / "mappings" / "cda_to_fhir.yaml")


def run(mapping: Mapping, raw: bytes) -> Any:
    result = mapping.apply(XmlMessage(parse_xml(raw), raw), MappingContext())
    assert validate_bundle(result.bundle) == []
    return result


def of(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def test_moroccan_discharge_summary_sections(mapping: Mapping) -> None:
    result = run(mapping, DS.read_bytes())
    b = result.bundle
    assert result.unmapped == []   # every section with entries is mapped
    goal, = of(b, "Goal")
    assert goal["lifecycleStatus"] == "active"
    assert goal["description"]["text"] == "Saturation en oxygène supérieure ou égale à 92 % avant la sortie."
    assert goal["target"][0]["detailRange"]["low"]["value"] == 92 and goal["target"][0]["dueDate"] == "2024-11-05"
    assert goal["priority"]["coding"][0]["code"] == "394849002" and "expressedBy" in goal
    concerns = [c for c in of(b, "Condition") if c["category"][0]["coding"][0]["system"] == HEALTH_CONCERN]
    assert sorted(c["code"]["text"] for c in concerns) == ["Insuffisance respiratoire aiguë",
                                                           "Isolement social : vit seule, sans aidant."]
    team, = of(b, "CareTeam")
    assert team["name"] == "Équipe de médecine interne" and len(team["participant"]) == 2
    assert team["participant"][0]["role"][0]["text"] == "médecin traitant"
    members = {p["member"]["reference"] for p in team["participant"]}
    assert members <= {f"Practitioner/{p['id']}" for p in of(b, "Practitioner")}
    consent, = of(b, "Consent")
    assert consent["scope"]["coding"][0]["code"] == "adr" and consent["dateTime"] == "2024-11-03"
    assert consent["provision"]["code"][0]["text"] == "Ne pas réanimer"
    assert consent["sourceReference"]["reference"] == f"DocumentReference/{of(b, 'DocumentReference')[0]['id']}"
    done, = of(b, "Procedure")
    assert done["code"]["text"] == "Oxygénothérapie" and done["performedPeriod"]["end"] == "2024-11-04"
    requests = {r["identifier"][0]["value"]: r for r in of(b, "ServiceRequest")}
    assert requests["INT-2"]["intent"] == "plan"
    assert requests["ADR-1"]["category"][0]["coding"][0]["code"] == "3457005"
    assert requests["ADR-1"]["priority"] == "routine" and "requester" in requests["ADR-1"]
    outcome, = of(b, "Observation")
    assert outcome["valueQuantity"]["value"] == 95
    device, = of(b, "Device")
    use, = of(b, "DeviceUseStatement")
    assert use["device"]["reference"] == f"Device/{device['id']}" and use["timingPeriod"] == {"start": "2024-11-05"}
    # the French narrative of every section is kept, entries listed under their section
    comp, = of(b, "Composition")
    titles = {s["title"]: s for s in comp["section"]}
    assert "Reconsulter en urgence" in titles["Consignes de sortie"]["text"]["div"]
    told, = of(b, "Communication")
    assert told["payload"][0]["contentString"] == "Reconsulter en urgence en cas de fièvre ou d'essoufflement."
    assert told["category"][0]["coding"][0]["code"] == "instruction" and "sender" in told
    assert "refuse l'intubation" in titles["Directives anticipées"]["text"]["div"]
    assert titles["Équipe de soins"]["entry"] == [{"reference": f"CareTeam/{team['id']}"}]
    assert titles["Matériel médical"]["entry"][0]["reference"].startswith(("Device/", "DeviceUseStatement/"))
    # stable ids: a rerun gives the same Bundle
    assert run(mapping, DS.read_bytes()).bundle == b


def test_advance_directive_of_the_ms_ccd_becomes_consent(mapping: Mapping) -> None:
    b = run(mapping, (MS / "C-CDA_R2-1_CCD.xml.ccda").read_bytes()).bundle
    consent, = of(b, "Consent")
    assert consent["identifier"][0]["value"] == "urn:uuid:af6ebdf2-d996-11e2-a5b8-f23c91aec05e"
    assert consent["category"][0]["coding"][0]["code"] == "45473-6" and consent["dateTime"] == "2011-02-19"
    assert consent["provision"]["code"][0]["coding"][0]["code"] == "304253006"


def test_no_known_health_concern_is_a_refuted_health_concern(mapping: Mapping) -> None:
    result = run(mapping, (MS / "PROBLEMS_in_Empty_C-CDA_2.1-C-CDAR2.1.ccda").read_bytes())
    concern, = [c for c in of(result.bundle, "Condition") if c["category"][0]["coding"][0]["code"] == "health-concern"]
    assert concern["verificationStatus"]["coding"][0]["code"] == "refuted"
    assert concern["code"]["text"] == "No Known Health Concerns on 07/22/2015"
    assert result.unmapped == []


def test_devices_sharing_a_product_id_stay_distinct(mapping: Mapping) -> None:
    b = run(mapping, (MS / "Referral_Note.ccda").read_bytes()).bundle
    assert sorted(d["type"]["coding"][0]["code"] for d in of(b, "Device")) == ["14106009", "303406003", "87405001"]
    assert len(of(b, "DeviceUseStatement")) == 3


def test_care_plan_goals_interventions_outcomes(mapping: Mapping) -> None:
    result = run(mapping, (MS / "Care_Plan.ccda").read_bytes())
    assert result.unmapped == []
    goal, = of(result.bundle, "Goal")
    assert goal["target"][0]["detailRange"]["low"] == {"value": 92, "unit": "%", "system": "http://unitsofmeasure.org",
                                                       "code": "%"}
    assert {"ServiceRequest", "Procedure", "Observation"} <= {e["resource"]["resourceType"]
                                                             for e in result.bundle["entry"]}


def test_diagnostic_imaging_report_catalog_findings_and_impressions(mapping: Mapping) -> None:
    result = run(mapping, (MS / "Diagnostic_Imaging_Report.ccda").read_bytes())
    assert result.unmapped == []
    study, = of(result.bundle, "ImagingStudy")
    assert study["identifier"][0] == {"system": "urn:dicom:uid",
                                      "value": "urn:oid:1.2.840.113619.2.62.994044785528.114289542805"}
    series, = study["series"]
    assert series["modality"]["code"] == "CR" and len(series["instance"]) == study["numberOfInstances"] == 2
    assert series["instance"][0]["sopClass"]["code"] == "urn:oid:1.2.840.10008.5.1.4.1.1.1"
    imaging = [o for o in of(result.bundle, "Observation") if o["category"][0]["coding"][0]["code"] == "imaging"]
    assert {o["code"]["coding"][0]["code"] for o in imaging} == {"121071", "121073"}
    assert any("round density" in o["valueString"] for o in imaging)


def test_instructions_of_the_ms_ambulatory_ccd_become_communications(mapping: Mapping) -> None:
    result = run(mapping, (MS / "170.314B2_Amb_CCD.ccda").read_bytes())
    assert result.unmapped == []
    texts = sorted(c["payload"][0]["contentString"] for c in of(result.bundle, "Communication"))
    assert texts == ["Asthma Management resources and instructions provided during admission",
                     "diet and exercise counseling material provided during visit"]


def test_a_section_whose_entries_only_name_an_author_is_reported(mapping: Mapping) -> None:
    """Nothing dropped silently: the Practitioner made from an entry's author does not map the entry."""
    raw = DS.read_bytes()
    local = raw.replace(b'code="69730-0"', b'code="99999-1"').replace(
        b'root="2.16.840.1.113883.10.20.22.2.45"', b'root="1.2.3.9"')   # the instructions, as a local section
    assert local != raw
    result = run(mapping, local)
    assert result.unmapped == ["section 99999-1 [1.2.3.9]"]
    assert not of(result.bundle, "Communication")
    assert any(p["identifier"][0]["value"] == "INPE-123456" for p in of(result.bundle, "Practitioner"))


async def test_posted_discharge_summary_is_filed_with_its_sections(harness) -> None:
    h = harness
    async with h.http.post(h.base + "/cda", data=DS.read_bytes(), headers=CDA) as r:
        assert r.status == 202, await r.text()
        tx_id = r.headers["X-Transaction-Id"]
    tx = await h.wait_status(tx_id)
    assert tx["status"] == "Successful", tx["error"]
    assert tx["channel"] == "cda-discharge-summaries" and tx["result"]["unmapped"] == []
    kinds = {x.split("/")[0] for x in tx["result"]["resources"]}
    assert {"Goal", "CareTeam", "Consent", "DeviceUseStatement", "ServiceRequest"} <= kinds
    comp = next(x for x in tx["result"]["resources"] if x.startswith("Composition/"))
    stored = await h.get_json(f"/shr/fhir/{comp}")
    assert any("Saturation en oxygène" in s["text"]["div"] for s in stored["section"])
