"""The XPath source kind of the mapping language (``source: cda``): compiled at load, namespaces,
loops, conditions, fragments, references, unmapped sections; the CLI and the pipeline's cda branch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_map_cli

from mediator.cda.safe_xml import parse_xml
from mediator.config import ConfigError
from mediator.mapping import MappingContext, load_mapping
from mediator.mapping.xpath import XmlMessage, with_default_namespace
from mediator.testing import CORPORA

ROOT = Path(__file__).resolve().parent.parent
MA_CCD = ROOT / "mappings" / "tests" / "ma_ccd.xml"

DOC = b"""<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <id root="1.2.3" extension="D1"/>
  <recordTarget><patientRole><id root="1.2.4" extension="P1"/>
    <patient><name><given>Amine</given><given>Karim</given><family>Alaoui</family></name></patient>
  </patientRole></recordTarget>
  <component><structuredBody>
    <component><section><code code="11450-4"/><entry><observation><id root="9" extension="o1"/>
      <value xsi:type="CD" code="E11"/></observation></entry>
      <entry><observation><id root="9" extension="o2"/><value xsi:type="CD" code="I10"/></observation></entry>
    </section></component>
    <component><section><code code="48765-2"/><templateId root="2.16.1"/><entry><act/></entry></section></component>
  </structuredBody></component>
</ClinicalDocument>"""


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "m.yaml"
    f.write_text(text, encoding="utf-8")
    return f


MAPPING = """
mapping: t
source: cda
let:
  doc: {template: "{h:id/@root}|{id/@extension}"}
resources:
  patient:
    resourceType: Patient
    id: {hash: [$doc]}
    fields:
      name:
        for_each: "recordTarget/patientRole/patient/name"
        fields:
          family: family
          given: {for_each: "h:given", path: "."}
  condition:
    resourceType: Condition
    for_each: "//section[code/@code='11450-4']/entry/observation"
    when: {path: "value/@code", not_in: [I10]}
    id: {hash: [id/@extension]}
    fields:
      code: {fields: {coding: [{fields: {code: "value/@code"}}]}}
      subject: {ref: patient}
  composition:
    resourceType: Composition
    id: {hash: [$doc]}
    fields:
      status: {const: final}
      type: {fields: {text: {const: doc}}}
      date: {const: "2024-01-01"}
      title: {const: t}
      author: [{ref: patient}]
      section:
        for_each: "component/structuredBody/component/section"
        fields:
          title: {path: "code/@code"}
          entry: [{ref: condition}]
"""


def test_xpath_mapping_loops_conditions_references_and_unmapped_sections(tmp_path: Path) -> None:
    m = load_mapping(write(tmp_path, MAPPING))
    result = m.apply(parse_xml(DOC), MappingContext())   # an lxml element is accepted too
    entries = [e["resource"] for e in result.bundle["entry"]]
    patient = entries[0]
    assert patient["name"] == [{"family": "Alaoui", "given": ["Amine", "Karim"]}]
    conditions = [r for r in entries if r["resourceType"] == "Condition"]
    assert [c["code"]["coding"][0]["code"] for c in conditions] == ["E11"]      # 'when' filtered I10
    assert conditions[0]["subject"] == {"reference": f"Patient/{patient['id']}"}
    comp = entries[-1]
    problems, allergies = comp["section"]
    assert problems["entry"] == [{"reference": f"Condition/{conditions[0]['id']}"}]  # only its own section's
    assert "entry" not in allergies
    assert result.unmapped == ["section 48765-2 [2.16.1]"]


def test_ignore_sections(tmp_path: Path) -> None:
    m = load_mapping(write(tmp_path, MAPPING + "ignore_sections: ['48765-2']\n"))
    assert m.apply(parse_xml(DOC), MappingContext()).unmapped == []


def test_bad_xpath_is_refused_at_load_with_line_and_rule(tmp_path: Path) -> None:
    f = write(tmp_path, MAPPING.replace('family: family', 'family: "family[["'))
    with pytest.raises(ConfigError) as exc:
        load_mapping(f)
    text = str(exc.value)
    assert f"{f}:14:" in text and "patient.name.family" in text and "XPath" in text


def test_unknown_prefix_and_groups_are_refused(tmp_path: Path) -> None:
    f = write(tmp_path, MAPPING.replace('family: family', 'family: "zz:family"'))
    with pytest.raises(ConfigError, match="zz:family"):
        load_mapping(f)
    f = write(tmp_path, MAPPING.replace('for_each: "recordTarget/patientRole/patient/name"',
                                        'for_each: {group: PID}'))
    with pytest.raises(ConfigError, match="segment groups are for HL7 v2"):
        load_mapping(f)


@pytest.mark.parametrize(("expr", "expected"), [
    ("recordTarget/patientRole/id[@root='1.2']", "d_:recordTarget/d_:patientRole/d_:id[@root='1.2']"),
    ("string(h:title)", "string(h:title)"),
    ("count(entry) div 2", "count(d_:entry) div 2"),
    ("ancestor::act[1]/statusCode/@code", "ancestor::d_:act[1]/d_:statusCode/@code"),
    ("value[@xsi:type='PQ']/@value", "d_:value[@xsi:type='PQ']/@value"),
    ("*/text() | ../node()", "*/text() | ../node()"),
    ("attribute::code and self::section", "attribute::code and self::d_:section"),
])
def test_default_namespace(expr: str, expected: str) -> None:
    assert with_default_namespace(expr) == expected


run_cli = run_map_cli


def test_map_run_chooses_the_cda_mapping(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert run_cli("run", str(MA_CCD)) == 0
    out, err = capsys.readouterr()
    bundle = json.loads(out)
    assert any(e["resource"]["resourceType"] == "Composition" for e in bundle["entry"])
    assert "cda_to_fhir.yaml" in err and "unmapped sections: none" in err
    assert "Tazi" not in err


def test_map_test_runs_the_cda_fixture(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert run_cli("test", "ma_ccd") == 0
    assert "PASS ma_ccd.xml (cda_to_fhir.yaml" in capsys.readouterr().out


def test_xml_message_from_an_element_keeps_a_document() -> None:
    msg = XmlMessage.of(parse_xml(MA_CCD.read_bytes()))
    assert msg.type_key == "CDA 34133-9" and msg.raw.startswith(b"<?xml")


async def test_pipeline_maps_a_cda_document_and_records_unmapped_sections(harness) -> None:
    h = harness
    async with h.http.post(h.base + "/cda", data=MA_CCD.read_bytes(),
                           headers={"Content-Type": "application/hl7-cda+xml"}) as r:
        assert r.status == 202, await r.text()
        tx_id = r.headers["X-Transaction-Id"]
    tx = await h.wait_status(tx_id)
    assert tx["status"] == "Successful", tx["error"]
    kinds = {x.split("/")[0] for x in tx["result"]["resources"]}
    assert {"Patient", "Composition", "Condition", "Observation", "DocumentReference"} <= kinds
    assert tx["result"]["unmapped"] == []
    comp = next(x for x in tx["result"]["resources"] if x.startswith("Composition/"))
    stored = await h.get_json(f"/shr/fhir/{comp}")
    assert "pénicilline" in stored["section"][0]["text"]["div"]


async def test_pipeline_fails_a_document_without_patient_precisely(harness) -> None:
    h = harness
    raw = (CORPORA / "ms-fhir-converter" / "ccda" / "CCD.ccda").read_bytes()
    start, end = raw.index(b"<recordTarget>"), raw.index(b"</recordTarget>") + len(b"</recordTarget>")
    async with h.http.post(h.base + "/cda", data=raw[:start] + raw[end:],
                           headers={"Content-Type": "application/hl7-cda+xml"}) as r:
        tx_id = r.headers["X-Transaction-Id"]
    tx = await h.wait_status(tx_id, ("Failed",))
    assert "rule '$patient_role' (recordTarget/patientRole): required value is missing" in tx["error"]


@pytest.mark.parametrize("path", ["id/@extension", "recordTarget/patientRole/id/@root", "title", "@classCode",
                                  "component/structuredBody/component/section/code/@code", "h:setId/@root",
                                  "recordTarget/patientRole/patient/name/given", "nothing/@here"])
def test_simple_paths_read_what_xpath_reads(path: str) -> None:
    from mediator.mapping.model import Scope
    from mediator.mapping.xpath import XPathSource, leaf

    src = XPathSource()
    msg = XmlMessage.of(parse_xml(MA_CCD.read_bytes()))
    assert src.simple(path) is not None
    scope = Scope(msg, MappingContext())
    assert src.reader(path)(scope) == leaf(src.compile(path)(msg.root))
