"""The mapping language: load-time checks with file and line, run-time errors, rules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import MAPPING_HEAD, write_mapping

from mediator.config import ConfigError
from mediator.fhir.validate import validate_bundle
from mediator.hl7v2 import parse
from mediator.mapping import MappingContext, MappingError, load_mapping

MSG = "\r".join([
    "MSH|^~\\&|APP|FAC-A|DMP|DMP|20241105093000+0100||ADT^A01|C1|P|2.5|||||MAR|UNICODE UTF-8",
    "PID|1||BK1^^^CIN^NI~77^^^FAC-A^PI||DOE^Jane||19800230|F",
    "ZPD|1|AMO^CNSS|X",
    "OBX|1|NM|1^a||5",
    "OBX|2|NM|2^b||6",
]) + "\r"

HEAD = MAPPING_HEAD


write = write_mapping


def load_error(f: Path) -> list:
    with pytest.raises(ConfigError) as ei:
        load_mapping(f)
    return ei.value.errors


def apply(f: Path, msg: str = MSG):
    return load_mapping(f).apply(parse(msg), MappingContext())


def test_typo_key_named_with_file_and_line(tmp_path: Path) -> None:
    f = write(tmp_path, "gender: {path: PID-8, mapp: x.yaml}\n")
    (err,) = load_error(f)
    assert err.file == str(f) and err.line == 9 and "mapp" in err.problem and "patient.gender" in err.problem


def test_unknown_element_and_resource(tmp_path: Path) -> None:
    f = write(tmp_path, "birthdate: PID-7\nname: {fields: {famly: PID-5.1}}\n")
    errs = load_error(f)
    assert [e.line for e in errs] == [9, 10]
    assert "birthdate" in errs[0].problem and "birthDate" in errs[0].problem  # a suggestion
    assert "famly" in errs[1].problem
    g = write(tmp_path, "", head=HEAD.replace("resourceType: Patient", "resourceType: Patiant") + "      a: PID-1\n")
    (err,) = load_error(g)
    assert err.line == 6 and "Patiant" in err.problem


def test_bad_paths(tmp_path: Path) -> None:
    f = write(tmp_path, "gender: PID-8..1\nbirthDate: '7'\nname: {for_each: 'PID-5[*]', fields: {family: '3[*]'}}\n")
    errs = load_error(f)
    assert [e.line for e in errs] == [9, 10, 11]
    assert "PID-8..1" in errs[0].problem and "outside for_each" in errs[1].problem


def test_missing_code_map_and_fragment(tmp_path: Path) -> None:
    f = write(tmp_path, "gender: {path: PID-8, map: codes/nope.yaml}\nname: {for_each: 'PID-5[*]', use: xpn}\n")
    errs = load_error(f)
    assert [e.line for e in errs] == [9, 10]
    assert "nope.yaml" in errs[0].problem and "xpn" in errs[1].problem


def test_wrong_shapes_refused(tmp_path: Path) -> None:
    f = write(tmp_path, "name: PID-5.1\ngender: {fields: {x: PID-8}}\nsubject: {ref: nobody}\n",
              head=HEAD.replace("Patient", "Encounter"))
    errs = load_error(f)
    assert len(errs) == 3 and all(e.file == str(f) for e in errs)


def test_fragment_error_names_fragment_file(tmp_path: Path) -> None:
    (tmp_path / "frag.yaml").write_text("fragments:\n  n:\n    datatype: HumanName\n    fields:\n"
                                        "      famly: '1'\n", encoding="utf-8")
    f = write(tmp_path, "name: {for_each: 'PID-5[*]', use: n}\n", head="uses: [frag.yaml]\n" + HEAD)
    (err,) = load_error(f)
    assert err.file.endswith("frag.yaml") and err.line == 5


def test_required_missing_and_impossible_date(tmp_path: Path) -> None:
    f = write(tmp_path, "gender: {path: PID-99, required: true}\n")
    with pytest.raises(MappingError) as ei:
        apply(f)
    e = ei.value
    assert (e.rule, e.source_path, e.line) == ("patient.gender", "PID-99", 9)
    assert str(e).startswith(f"{f}:9 rule 'patient.gender' (PID-99): ")
    g = write(tmp_path, "birthDate: PID-7\n")
    with pytest.raises(MappingError) as ei:
        apply(g)
    assert ei.value.rule == "patient.birthDate" and ei.value.source_path == "PID-7"
    assert "19800230" not in str(ei.value)  # no patient values in errors


def test_strict_code_map(tmp_path: Path) -> None:
    f = write(tmp_path, "gender: {path: PID-8, map: {strict: true, entries: {M: male}}}\n")
    with pytest.raises(MappingError, match="code map"):
        apply(f)


def test_z_segment_template_when_and_unmapped(tmp_path: Path) -> None:
    f = write(tmp_path, """\
        gender: {path: ZPD-2.2, map: {entries: {CNSS: female}}}
        name:
          - fields:
              text: {template: "{PID-5.2} {PID-5.1} {PID-5.3}"}
              family: {path: PID-5.1, when: {path: ZPD-3, in: [X, Y]}}
              given: [{path: PID-5.2, when: {path: ZPD-3, equals: Z}}]
        identifier:
          for_each: "PID-3[*]"
          when: {path: "5", equals: NI}
          fields: {value: "1", system: {fn: identifier_system}}
        """)
    result = apply(f)
    p = result.bundle["entry"][0]["resource"]
    assert p["gender"] == "female"
    assert p["name"] == [{"text": "Jane DOE", "family": "DOE"}]
    assert p["identifier"] == [{"value": "BK1", "system": "https://dmp.sante.gov.ma/fhir/sid/cin"}]
    assert result.unmapped == ["OBX[1]", "OBX[2]"]
    assert validate_bundle(result.bundle) == []


def test_for_each_segments_and_empty_results_omitted(tmp_path: Path) -> None:
    head = HEAD.replace("    id: {hash: [PID-3.1]}", "    for_each: 'OBX[*]'\n    id: {hash: [PID-3.1, '1']}")
    head = head.replace("resourceType: Patient", "resourceType: Observation")
    f = write(tmp_path, """\
        status: {const: final}
        code: {fields: {text: "3.2", coding: {fields: {system: {const: "http://x"}, code: "3.9"}}}}
        valueQuantity: {fields: {value: "5"}}
        note: {fields: {text: "99"}}
        """, head=head)
    result = apply(f)
    obs = [e["resource"] for e in result.bundle["entry"]]
    assert [o["valueQuantity"]["value"] for o in obs] == [5, 6]
    assert obs[0]["code"] == {"text": "a"} and "note" not in obs[0]  # const-only coding dropped
    assert result.unmapped == ["ZPD"]
    assert len({o["id"] for o in obs}) == 2


def test_validate_bundle_reports_bad_element_and_dangling_reference() -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "request": {"method": "PUT", "url": "Encounter/e"},
         "resource": {"resourceType": "Encounter", "id": "e", "status": "in-progress",
                      "class": {"code": "IMP"}, "period": {"start": "2024-13-45"},
                      "subject": {"reference": "Patient/nope"}}}]}
    errors = validate_bundle(bundle)
    assert any(e.startswith("Bundle.entry[0].resource(Encounter).period.start") for e in errors)
    assert any("subject.reference" in e and "does not resolve" in e for e in errors)


def test_concat_first_value_condition_and_keep_unmapped(tmp_path: Path) -> None:
    f = write(tmp_path, """\
        name:
          - fields:
              text: {concat: [PID-5.2, PID-5.1, PID-5.9], sep: "/"}
              family: {first: [PID-5.9, PID-5.1]}
        gender: {path: PID-8, map: {keep_unmapped: true, entries: {M: male}}}
        identifier:
          for_each: "PID-3[*]"
          when: {value: {fn: identifier_kind}, in: [ipp]}
          fields: {value: "1"}
        deceasedBoolean: {const: false, when: {missing: PID-30}}
        """)
    p = apply(f).bundle["entry"][0]["resource"]
    assert p["name"] == [{"text": "Jane/DOE", "family": "DOE"}]
    assert p["gender"] == "F" and p["identifier"] == [{"value": "77"}] and p["deceasedBoolean"] is False


def test_missing_id_is_a_mapping_error(tmp_path: Path) -> None:
    f = write(tmp_path, "gender: PID-8\n", head=HEAD.replace("[PID-3.1]", "[PID-30]"))
    with pytest.raises(MappingError) as ei:
        apply(f)
    assert ei.value.rule == "patient" and ei.value.line == 5


def test_shared_resources_from_a_fragment_file(tmp_path: Path) -> None:
    (tmp_path / "shared.yaml").write_text(textwrap.dedent("""\
        resources:
          org:
            resourceType: Organization
            when: {exists: MSH-4.1}
            id: {hash: [MSH-4.1]}
            fields:
              name: MSH-4.1
          note_person:
            resourceType: RelatedPerson
            id: {hash: [PID-3.1]}
            fields:
              patient: {ref: patient}
        """), encoding="utf-8")
    head = HEAD.replace("message_types: [ADT^A01]\n", "message_types: [ADT^A01]\nuses: [shared.yaml]\n")
    f = write(tmp_path, "managingOrganization: {ref: org}\n", head=head)
    bundle = apply(f).bundle
    org = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Organization")
    patient = bundle["entry"][0]["resource"]
    assert org["name"] == "FAC-A" and patient["managingOrganization"] == {"reference": f"Organization/{org['id']}"}
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Patient", "Organization", "RelatedPerson"]
    assert validate_bundle(bundle) == []
    # a mapping's own resource of the same name replaces the shared one
    own = head + "      managingOrganization: {ref: org}\n  org:\n    resourceType: Organization\n" \
        "    id: {hash: [MSH-3.1]}\n    fields:\n      name: MSH-3.1\n"
    f2 = tmp_path / "own.yaml"
    f2.write_text(own, encoding="utf-8")
    orgs = [e["resource"] for e in apply(f2).bundle["entry"] if e["resource"]["resourceType"] == "Organization"]
    assert [o["name"] for o in orgs] == ["APP"]


def test_shared_resource_errors_name_the_fragment_file(tmp_path: Path) -> None:
    shared = tmp_path / "shared.yaml"
    shared.write_text("resources:\n  org:\n    resourceType: Organization\n    id: {hash: [MSH-4.1]}\n"
                      "    fields:\n      nmae: MSH-4.1\n", encoding="utf-8")
    head = HEAD.replace("message_types: [ADT^A01]\n", "message_types: [ADT^A01]\nuses: [shared.yaml]\n")
    (err,) = load_error(write(tmp_path, "gender: {const: female}\n", head=head))
    assert err.file == str(shared) and err.line == 6 and "nmae" in err.problem


def test_objects_whose_inputs_are_absent_are_skipped_whole(tmp_path: Path) -> None:
    # the probes: an object, a list or a for_each reading only absent components gives nothing, and
    # the same rules give the object as soon as one of its inputs is there
    f = write(tmp_path, """\
        identifier:
          - for_each: "PID-3[*]"
            fields:
              value: "1"
              period: {fields: {start: "7", end: "8"}}
              assigner: {fields: {display: "4.1", identifier: {fields: {value: "4.2"}}}}
              type: {fields: {coding: {fields: {system: {const: "http://x"}, code: "5"}}}}
        telecom:
          - for_each: "PID-13[*]"
            fields: {value: "1", extension: [{fields: {url: {const: "http://a"}, valueString: "6"}}]}
        """)
    msg = MSG.replace("PID|1||BK1^^^CIN^NI~77^^^FAC-A^PI||DOE^Jane||19800230|F",
                      "PID|1||BK1~77^^^FAC-A&1.2.3&ISO^PI^^20200101||DOE^Jane||19800230|F|||||^^^^^522")
    p = apply(f, msg).bundle["entry"][0]["resource"]
    assert p["identifier"][0] == {"value": "BK1"}
    assert p["identifier"][1] == {"value": "77", "period": {"start": "2020-01-01"},
                                  "assigner": {"display": "FAC-A", "identifier": {"value": "1.2.3"}},
                                  "type": {"coding": [{"system": "http://x", "code": "PI"}]}}
    assert p["telecom"] == [{"extension": [{"url": "http://a", "valueString": "522"}]}]
