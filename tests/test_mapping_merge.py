"""``merge:``: a resource produced again with the same ``Type/id`` (the same practitioner as attending
and admitting, under another name) keeps one entry and adds the repeating elements the later
occurrence holds (``Practitioner.name``), for mapping resources and for ``resource:`` rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MAPPING_HEAD, write_mapping

from mediator.config import ConfigError
from mediator.fhir.validate import validate_bundle
from mediator.hl7v2 import parse
from mediator.mapping import MappingContext, load_mapping

MSG = "\r".join([
    "MSH|^~\\&|APP|FAC-A|DMP|DMP|20241105093000+0100||ADT^A01|C1|P|2.5",
    "PID|1||BK1^^^CIN^NI||DOE^Jane||19800101|F",
    "PV1|1|I|||||123^ALAOUI^Said~456^BENNANI^Omar|123^ALAOUI^S.||||||||||123^ALAOUI^Said",
]) + "\r"

HEAD = MAPPING_HEAD + """\
      generalPractitioner:
        - for_each: "PV1-17[*]"
          resource: {type: Practitioner, id: {hash: ["1"]}, merge: [name]}
          fields:
            name: [{fields: {family: "2", given: ["3"]}}]
  attending:
    resourceType: Practitioner
    MERGE
    for_each: "PV1-7[*]"
    id: {hash: ["1"]}
    fields:
      identifier: [{fields: {value: "1"}}]
      name: [{fields: {family: "2", given: ["3"]}}]
  referring:
    resourceType: Practitioner
    MERGE
    for_each: "PV1-8[*]"
    id: {hash: ["1"]}
    fields:
      identifier: [{fields: {value: "1"}}]
      name: [{fields: {family: "2", given: ["3"]}}]
"""


def practitioners(head: str, tmp_path: Path) -> dict[str, dict]:
    f = write_mapping(tmp_path, "", head=head)
    bundle = load_mapping(f).apply(parse(MSG), MappingContext()).bundle
    assert validate_bundle(bundle) == []
    out = {}
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == "Practitioner":
            out[r["identifier"][0]["value"] if "identifier" in r else r["id"]] = r
    return out


def test_merge_keeps_one_entry_with_every_distinct_name(tmp_path: Path) -> None:
    people = practitioners(HEAD.replace("MERGE", "merge: [name]"), tmp_path)
    assert set(people) == {"123", "456"}
    # attending 'ALAOUI Said', referring 'ALAOUI S.' (same id): both names, once each; the
    # admitting doctor (a resource: rule with merge) is 'ALAOUI Said' again: not repeated
    assert people["123"]["name"] == [{"family": "ALAOUI", "given": ["Said"]}, {"family": "ALAOUI", "given": ["S."]}]
    assert people["123"]["identifier"] == [{"value": "123"}]   # elements not named in merge: the first's
    assert people["456"]["name"] == [{"family": "BENNANI", "given": ["Omar"]}]


def test_without_merge_the_first_occurrence_wins(tmp_path: Path) -> None:
    people = practitioners(HEAD.replace("MERGE", ""), tmp_path)
    assert people["123"]["name"] == [{"family": "ALAOUI", "given": ["Said"]}]


def test_inline_merge_adds_names_to_a_mapping_resource(tmp_path: Path) -> None:
    head = HEAD.replace("MERGE", "").replace("PV1-17[*]", "PV1-8[*]")   # 'ALAOUI S.' made in the rule
    people = practitioners(head, tmp_path)
    assert people["123"]["name"] == [{"family": "ALAOUI", "given": ["Said"]}, {"family": "ALAOUI", "given": ["S."]}]


@pytest.mark.parametrize("merge, problem", [
    ("merge: [gender]", "not a repeating element of Practitioner"),
    ("merge: [nom]", "not a repeating element of Practitioner"),
    ("merge: name", "merge is a list of repeating element names"),
])
def test_merge_names_repeating_elements(tmp_path: Path, merge: str, problem: str) -> None:
    f = write_mapping(tmp_path, "", head=HEAD.replace("MERGE", merge, 1).replace("MERGE", ""))
    with pytest.raises(ConfigError) as exc:
        load_mapping(f)
    assert problem in str(exc.value)


def test_inline_merge_is_checked(tmp_path: Path) -> None:
    f = write_mapping(tmp_path, "", head=HEAD.replace("MERGE", "").replace("merge: [name]}", "merge: [gender]}"))
    with pytest.raises(ConfigError) as exc:
        load_mapping(f)
    assert "'merge' is a list of repeating elements of Practitioner" in str(exc.value)


NESTED = MAPPING_HEAD + """\
      managingOrganization:
        for_each: "PID-3[1].4"
        resource: {type: Organization, id: {hash: ["1"]}}
        fields:
          name: "1"
          partOf:
            resource: {type: Organization, id: {hash: ["2"]}}
            fields: {name: "2"}
"""


def test_resource_made_inside_a_cached_resource_comes_back_with_it(tmp_path: Path) -> None:
    """A ``resource:`` rule reading only its node is built once per node text; the resources its
    body makes (a Location's partOf) are kept with it and added again to every later Bundle."""
    f = write_mapping(tmp_path, "", head=NESTED)
    mapping = load_mapping(f)
    msg = parse(MSG.replace("BK1^^^CIN^NI", "BK1^^^FAC-A&PARENT^MR"))
    for _ in range(3):   # built, then taken from the cache
        bundle = mapping.apply(msg, MappingContext()).bundle
        names = sorted(e["resource"].get("name", "") for e in bundle["entry"]
                       if e["resource"]["resourceType"] == "Organization")
        assert names == ["FAC-A", "PARENT"]
        assert validate_bundle(bundle) == []
