"""Segment groups and the other language additions: for_each chains, first_of, nearest refs, functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediator.config import ConfigError
from mediator.fhir.validate import validate_bundle
from mediator.hl7v2 import parse
from mediator.mapping import MappingContext, load_mapping

MSG = "\r".join([
    "MSH|^~\\&|LAB|LABO-A|DMP|DMP|20241106142530+0100||ORU^R01|M1|P|2.5.1",
    "PID|1||AB1^^^CIN^NI||DOE^Jane||19800101|F",
    "ORC|RE|P1|F1",
    "OBR|1|P1|F1|NFS^CBC^L",
    "NTE|1||order note",
    "OBX|1|NM|HB^Hb^L||11,2|g/dl|12.0-16.0|L|||F",
    "NTE|1||obx note 1",
    "NTE|2||obx note 2",
    "OBX|2|SN|CRP^CRP^L||<^5|mg/l|<5|N|||F",
    "SPM|1|S1",
    "ORC|RE|P2|F2",
    "OBR|2|P2|F2|GLY^Glucose^L",
    "OBX|1|ST|ASP^Aspect^L||Limpide||||||F",
    "OBX|2|SN|ALB^Alb^L||^20^-^30|mg/l||N|||F",
    "SPM|1|S2",
    "ZZZ|1",
]) + "\r"

HEAD = """\
mapping: t
message_types: [ORU^R01]
x-order: &order {group: OBR, leading: [ORC], members: [NTE, OBX, SPM]}
x-obs: &obs {group: OBX, members: [NTE]}
resources:
  patient:
    resourceType: Patient
    id: {hash: [PID-3.1]}
"""


def load(tmp_path: Path, body: str) -> object:
    f = tmp_path / "m.yaml"
    f.write_text(HEAD + body, encoding="utf-8")
    return load_mapping(f)


def apply(tmp_path: Path, body: str, msg: str = MSG) -> tuple[dict, list[str]]:
    r = load(tmp_path, body).apply(parse(msg), MappingContext())
    return r.bundle, r.unmapped


def of(bundle: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


REPORT = """\
  specimen:
    resourceType: Specimen
    for_each: [*order, "SPM[*]"]
    id: {hash: [OBR-3, "2"]}
    fields:
      subject: {ref: patient}
  report:
    resourceType: DiagnosticReport
    for_each: *order
    id: {hash: [OBR-3]}
    fields:
      status: {const: final}
      code: {fields: {text: OBR-4.2}}
      subject: {ref: patient}
      specimen: {ref: specimen}
      result: {ref: observation}
  observation:
    resourceType: Observation
    for_each: [*order, *obs]
    id: {hash: [OBR-3, OBX-1]}
    fields:
      status: {const: final}
      code: {fields: {text: OBX-3.2}}
      identifier: {fields: {value: {template: "{ORC-2}/{OBX-1}"}}}
      specimen: {ref: specimen}
      note: {for_each: "NTE[*]", fields: {text: "3"}}
"""


def test_order_groups_with_nearest_references(tmp_path: Path) -> None:
    bundle, unmapped = apply(tmp_path, REPORT)
    assert validate_bundle(bundle) == []
    reports, obs, specs = of(bundle, "DiagnosticReport"), of(bundle, "Observation"), of(bundle, "Specimen")
    assert [r["code"]["text"] for r in reports] == ["CBC", "Glucose"]
    assert len(obs) == 4 and len(specs) == 2
    # each report lists its own order's observations and specimen only
    ids = {o["identifier"][0]["value"]: f"Observation/{o['id']}" for o in obs}
    assert [r["reference"] for r in reports[0]["result"]] == [ids["P1/1"], ids["P1/2"]]
    assert [r["reference"] for r in reports[1]["result"]] == [ids["P2/1"], ids["P2/2"]]
    assert reports[0]["specimen"] == [{"reference": f"Specimen/{specs[0]['id']}"}]
    assert obs[3]["specimen"] == {"reference": f"Specimen/{specs[1]['id']}"}
    # NTEs follow their OBX: the OBSERVATION group; the order's NTE is not an OBX note
    assert [n["text"] for n in obs[0]["note"]] == ["obx note 1", "obx note 2"]
    assert "note" not in obs[1]
    assert unmapped == ["ZZZ"]   # every OBR/OBX/NTE/SPM/ORC is read inside the groups


def test_group_keys_checked_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load(tmp_path, """\
  o:
    resourceType: Observation
    for_each: {group: OBX, member: [NTE]}
    id: {hash: [OBX-1]}
""")
    (err,) = ei.value.errors
    assert err.line == 11 and "member" in err.problem and "members" in err.problem


def test_first_of_position_join_and_values(tmp_path: Path) -> None:
    bundle, _ = apply(tmp_path, """\
  observation:
    resourceType: Observation
    for_each: [*order, *obs]
    id: {hash: [OBR-3, {fn: position}]}
    fields:
      status: {const: final}
      code: {fields: {text: {fn: join, path: "NTE[*]-3", args: {sep: " | "}}}}
      valueQuantity:
        when: {path: OBX-2, in: [NM, SN]}
        fields:
          value: {first: [{path: OBX-5.2, as: decimal}, {path: OBX-5, as: decimal}]}
          comparator: {path: OBX-5.1, when: {path: OBX-2, equals: SN}}
""")
    obs = of(bundle, "Observation")
    assert obs[0]["code"]["text"] == "obx note 1 | obx note 2"
    assert obs[0]["valueQuantity"] == {"value": 11.2}          # decimal comma accepted
    assert obs[1]["valueQuantity"] == {"value": 5, "comparator": "<"}
    assert len({o["id"] for o in obs}) == 4


def test_range_and_base64_functions(tmp_path: Path) -> None:
    bundle, _ = apply(tmp_path, """\
  observation:
    resourceType: Observation
    for_each: [*order, *obs]
    id: {hash: [OBR-3, OBX-1]}
    fields:
      status: {const: final}
      code: {fields: {text: {fn: base64, path: OBX-3.2}}}
      referenceRange:
        - fields:
            low: {fields: {value: {fn: range_low, path: OBX-7}}}
            high: {fields: {value: {fn: range_high, path: OBX-7}}}
""")
    obs = of(bundle, "Observation")
    assert obs[0]["referenceRange"] == [{"low": {"value": 12.0}, "high": {"value": 16.0}}]
    assert obs[1]["referenceRange"] == [{"high": {"value": 5}}]
    assert obs[0]["code"]["text"] == "SGI="


def test_instant_needs_a_time(tmp_path: Path) -> None:
    bundle, _ = apply(tmp_path, """\
  observation:
    resourceType: Observation
    for_each: "OBX[*]"
    id: {hash: ["1", "3.1"]}
    fields:
      status: {const: final}
      code: {fields: {text: "3.2"}}
      issued: {first: [MSH-7, PID-7]}
      effectiveInstant: PID-7
""")
    o = of(bundle, "Observation")[0]
    assert o["issued"] == "2024-11-06T14:25:30+01:00" and "effectiveInstant" not in o


def test_x_keys_hold_anchors_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text(HEAD + "whatever: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_mapping(f)
    assert "whatever" in str(ei.value)


def test_all_of_selects_with_every_selector_keeping_each_chain(tmp_path: Path) -> None:
    # the OBX of the orders and an OBX of the patient (right after PID): one Practitioner per OBX-16,
    # each Observation referring to its own one (the chains stay those of each selector)
    msg = MSG.replace("PID|1||AB1^^^CIN^NI||DOE^Jane||19800101|F",
                      "PID|1||AB1^^^CIN^NI||DOE^Jane||19800101|F\rOBX|1|NM|POIDS^Poids^L||62|kg|||||F|||||9^PAT")
    msg = msg.replace("OBX|1|ST|ASP^Aspect^L||Limpide||||||F", "OBX|1|ST|ASP^Aspect^L||Limpide||||||F|||||7^LAB")
    bundle, unmapped = apply(tmp_path, """\
  observer:
    resourceType: Practitioner
    for_each: [{all_of: [[*order, *obs], [{group: PID, members: [OBX]}, *obs]]}, "OBX-16[1]"]
    id: {hash: ["1"]}
    fields:
      name: [{fields: {family: "2"}}]
  observation:
    resourceType: Observation
    for_each: {all_of: [[*order, *obs], [{group: PID, members: [OBX]}, *obs]]}
    id: {hash: [OBX-3.1]}
    fields:
      status: {const: final}
      code: {fields: {text: OBX-3.2}}
      performer: {ref: observer}
""", msg)
    obs = {o["code"]["text"]: o for o in of(bundle, "Observation")}
    assert set(obs) == {"Poids", "Hb", "CRP", "Aspect", "Alb"}
    by_id = {p["id"]: p["name"][0]["family"] for p in of(bundle, "Practitioner")}
    assert [by_id[r["reference"].split("/")[1]] for r in obs["Poids"]["performer"]] == ["PAT"]
    assert [by_id[r["reference"].split("/")[1]] for r in obs["Aspect"]["performer"]] == ["LAB"]
    assert len(by_id) == 2
    assert not validate_bundle(bundle)


def test_all_of_needs_a_list(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load(tmp_path, """\
  observation:
    resourceType: Observation
    for_each: {all_of: OBX}
    id: {hash: [OBX-3.1]}
    fields:
      status: {const: final}
""")
    assert "all_of" in str(ei.value)
