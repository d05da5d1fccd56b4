"""Language features for the HL7 v2-to-FHIR IG: resources made inside a rule (``resource:``),
primitive extensions (``_family``), invalid optional values dropped while required ones stay strict."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MAPPING_HEAD, write_mapping

from mediator.config import ConfigError, IdentifierConfig
from mediator.fhir.validate import validate_bundle
from mediator.hl7v2 import parse
from mediator.mapping import MappingContext, MappingError, load_mapping

MSG = "\r".join([
    "MSH|^~\\&|APP|FAC-A|DMP|DMP|20241105093000+0100||ADT^A01|C1|P|2.5",
    "PID|1||BK1^^^CIN^NI~77^^^FAC-A&1.2.3&ISO^PI~78^^^FAC-A&1.2.3&ISO^PI||VAN DER BERG&VAN&BERG&DE&ROOS^Jane"
    "||19800230|F",
]) + "\r"

HEAD = MAPPING_HEAD

ASSIGNER = """\
identifier:
  for_each: "PID-3[*]"
  fields:
    value: "1"
    assigner:
      for_each: "4"
      when: {not: {value: {fn: authority_is_system, path: "1"}, equals: "true"}}
      resource: {type: Organization, id: {hash: ["1"]}, display: "1"}
      fields:
        name: "1"
        identifier: [{fields: {value: "2", system: {const: "urn:ietf:rfc:3986"}}}]
"""


OWN = "http://hl7.org/fhir/StructureDefinition/humanname-own-prefix"


write = write_mapping


def apply(f: Path, msg: str = MSG):
    return load_mapping(f).apply(parse(msg), MappingContext())


def test_resource_rule_adds_one_entry_per_id_and_references_it(tmp_path: Path) -> None:
    result = apply(write(tmp_path, ASSIGNER))
    entries = result.bundle["entry"]
    patient = entries[0]["resource"]
    # CIN is a configured identifier system (config identifiers.by_authority): no Organization
    assert "assigner" not in patient["identifier"][0]
    ref = patient["identifier"][1]["assigner"]
    assert ref["display"] == "FAC-A" and patient["identifier"][2]["assigner"] == ref
    orgs = [e for e in entries if e["resource"]["resourceType"] == "Organization"]
    assert len(orgs) == 1   # two identifiers, one assigning authority
    org = orgs[0]
    assert ref["reference"] == f"Organization/{org['resource']['id']}"
    assert org["resource"]["name"] == "FAC-A" and org["resource"]["identifier"][0]["value"] == "1.2.3"
    assert org["request"] == {"method": "PUT", "url": ref["reference"]}
    assert validate_bundle(result.bundle) == []
    # stable: the same message gives the same ids
    assert apply(write(tmp_path, ASSIGNER)).bundle == result.bundle


def test_resource_rule_gives_nothing_without_data(tmp_path: Path) -> None:
    msg = MSG.replace("~77^^^FAC-A&1.2.3&ISO^PI~78^^^FAC-A&1.2.3&ISO^PI", "")
    result = apply(write(tmp_path, ASSIGNER), msg)
    assert [e["resource"]["resourceType"] for e in result.bundle["entry"]] == ["Patient"]


@pytest.mark.parametrize("rule, problem", [
    ("gender: {resource: {type: Organization, id: {hash: [PID-3.1]}}, fields: {name: PID-5.1}}\n",
     "needs a Reference element"),
    ("managingOrganization: {resource: {type: Organisation, id: {hash: [PID-3.1]}}, fields: {name: PID-5.1}}\n",
     "unknown FHIR resource type"),
    ("managingOrganization: {resource: {type: Organization}, fields: {name: PID-5.1}}\n",
     "'resource' is {type"),
    ("managingOrganization: {resource: {type: Organization, id: {hash: [PID-3.1]}}}\n",
     "needs 'use' or 'fields'"),
    ("managingOrganization: {resource: {type: Organization, id: {hash: [PID-3.1]}}, path: PID-5.1}\n",
     "not 'path'"),
    ("managingOrganization: {resource: {type: Organization, id: {hash: [PID-3.1]}}, fields: {nam: PID-5.1}}\n",
     "Organization has no element 'nam'"),
])
def test_resource_rule_errors_are_located(tmp_path: Path, rule: str, problem: str) -> None:
    f = write(tmp_path, rule)
    with pytest.raises(ConfigError) as ei:
        load_mapping(f)
    (err,) = ei.value.errors
    assert err.line == 9 and problem in err.problem, err.problem


def test_primitive_extensions_on_a_single_primitive(tmp_path: Path) -> None:
    f = write(tmp_path, """\
        name:
          - fields:
              family: PID-5.1.1
              _family:
                fields:
                  extension:
                    - {fields: {url: {const: "{OWN}"}, valueString: PID-5.1.2}}
                    - {fields: {url: {const: "{PARTNER}"}, valueString: PID-5.1.9}}
        """.replace("{OWN}", OWN).replace("{PARTNER}", OWN.replace("own-prefix", "partner-name")))
    result = apply(f)
    name = result.bundle["entry"][0]["resource"]["name"][0]
    assert name["_family"] == {"extension": [{"url": OWN, "valueString": "VAN"}]}
    assert validate_bundle(result.bundle) == []
    # only single primitives: `_given` (a list aligned with `given`) is not an element
    g = write(tmp_path, "name: [{fields: {_given: {fields: {id: PID-5.2}}}}]\n")
    with pytest.raises(ConfigError, match="no element '_given'"):
        load_mapping(g)


def test_invalid_drop_keeps_required_rules_strict(tmp_path: Path) -> None:
    head = HEAD.replace("resources:", "invalid: drop\nresources:")
    result = apply(write(tmp_path, "birthDate: PID-7\ngender: PID-8\n", head=head))
    patient = result.bundle["entry"][0]["resource"]
    assert "birthDate" not in patient and patient["gender"] == "F"
    assert "invalid value dropped: rule 'patient.birthDate' (PID-7): not a valid HL7 date/time" in result.unmapped
    with pytest.raises(MappingError) as ei:
        apply(write(tmp_path, "birthDate: {path: PID-7, required: true}\n", head=head))
    assert ei.value.rule == "patient.birthDate" and "valid HL7 date" in ei.value.text
    assert "19800230" not in str(ei.value)


def test_resource_rule_cache_only_for_pure_bodies(tmp_path: Path) -> None:
    """A body reading only the node is built once per node text; one reading the message is not."""
    rule = """\
        managingOrganization:
          for_each: "PID-3[2].4"
          resource: {type: Organization, id: {hash: ["1"]}}
          fields: {name: "1", alias: [{path: MSH-3}]}
        """
    m = load_mapping(write(tmp_path, rule))

    def org(msg: str) -> dict:
        entries = m.apply(parse(msg), MappingContext()).bundle["entry"]
        return [e["resource"] for e in entries if e["resource"]["resourceType"] == "Organization"][0]
    assert org(MSG)["alias"] == ["APP"]
    assert org(MSG.replace("|APP|", "|OTHER|"))["alias"] == ["OTHER"]
    pure = load_mapping(write(tmp_path, rule.replace(', alias: [{path: MSH-3}]', '')))
    first = pure.apply(parse(MSG), MappingContext()).bundle["entry"][1]["resource"]
    first["name"] = "changed by a later stage"
    again = pure.apply(parse(MSG), MappingContext()).bundle["entry"][1]["resource"]
    assert again["name"] == "FAC-A"   # the cached resource is never handed out


def test_an_authority_given_only_by_its_oid_is_the_system(tmp_path: Path) -> None:
    """IG HD[uri]: CX-4 ``&<OID>&ISO`` without a namespace -> ``urn:oid:<OID>``, unless the type
    code (CX-5 via ``by_type``) or ``identifiers.aliases`` name a configured kind."""
    f = write(tmp_path, 'identifier: {for_each: "PID-3[*]", fields: {value: "1", system: {fn: identifier_system}}}\n')
    msg = MSG.replace("BK1^^^CIN^NI~77^^^FAC-A&1.2.3&ISO^PI~78^^^FAC-A&1.2.3&ISO^PI",
                      "BK1^^^&2.16.504.1&ISO^NI~77^^^&1.2.3&ISO~78^^^&1.2.3&ISO^XX")
    ids = apply(f, msg).bundle["entry"][0]["resource"]["identifier"]
    assert [i["system"] for i in ids] == ["https://dmp.sante.gov.ma/fhir/sid/cin", "urn:oid:1.2.3", "urn:oid:1.2.3"]
    ctx = MappingContext(identifiers=IdentifierConfig(aliases={"urn:oid:1.2.3": "cnss"}))
    ids = load_mapping(f).apply(parse(msg), ctx).bundle["entry"][0]["resource"]["identifier"]
    assert ids[1]["system"] == "https://dmp.sante.gov.ma/fhir/sid/cnss"
