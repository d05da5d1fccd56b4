"""A ``resource:`` rule named again at the same position (a YAML anchor, a fragment: each level of a
Location chain lists every level above it) is compiled once and reused: compiling stays linear in the
chain's length instead of doubling with each level, and what it maps is unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MAPPING_HEAD, write_mapping

from mediator.fhir.validate import validate_bundle
from mediator.hl7v2 import parse
from mediator.mapping import MappingContext, load_mapping
from mediator.mapping.compiler import Compiler

MSG = "\r".join([
    "MSH|^~\\&|APP|FAC-A|DMP|DMP|20241105093000+0100||ADT^A01|C1|P|2.5",
    "PID|1||BK1^^^CIN^NI||DOE^Jane||19800101|F",
    "PV1|1|I|A^B^C^D^E^F^G^H",
]) + "\r"


def chain_mapping(tmp_path: Path, levels: int) -> Path:
    """Location levels 1..n (PV1-3 components), each partOf the first valued level above it."""
    anchors = []
    for k in range(levels, 0, -1):
        above = ", ".join(f"*up{j}" for j in range(k + 1, levels + 1))
        part_of = f", partOf: {{first: [{above}]}}" if above else ""
        anchors.append(f'x-up{k}: &up{k} {{when: {{exists: "{k}"}}, resource: {{type: Location, '
                       f'id: {{hash: ["{k}"]}}}}, fields: {{name: "{k}"{part_of}}}}}\n')
    head = MAPPING_HEAD.replace("resources:\n", "".join(anchors) + "resources:\n")
    return write_mapping(tmp_path, "gender: {const: unknown}\n", head=head, tail=(
        "  encounter:\n    resourceType: Encounter\n    id: {const: e1}\n    fields:\n"
        "      status: {const: finished}\n      class: {fields: {code: {const: IMP}}}\n"
        "      location: [{for_each: PV1-3, fields: {location: *up1}}]\n"))


@pytest.mark.parametrize("levels", [4, 8])
def test_a_chain_of_levels_compiles_each_rule_once_per_position(tmp_path: Path, levels: int,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    compile_obj = Compiler.obj

    def counting(self: Compiler, spec, src, el, where, only=None):  # noqa: ANN001, ANN202
        nonlocal calls
        if el is not None and el.type == "Location":
            calls += 1
        return compile_obj(self, spec, src, el, where, only)

    monkeypatch.setattr(Compiler, "obj", counting)
    load_mapping(chain_mapping(tmp_path, levels))
    # each level's body at the encounter's position and, reused, everywhere else: linear, not 2^levels
    assert calls <= 3 * levels, calls


def test_the_reused_rules_map_every_level(tmp_path: Path) -> None:
    mapping = load_mapping(chain_mapping(tmp_path, 8))
    bundle = mapping.apply(parse(MSG.encode()), MappingContext()).bundle
    assert validate_bundle(bundle) == []
    locations = {e["resource"]["name"]: e["resource"] for e in bundle["entry"]
                 if e["resource"]["resourceType"] == "Location"}
    assert sorted(locations) == list("ABCDEFGH")
    ids = {name: loc["id"] for name, loc in locations.items()}
    for lower, upper in zip("ABCDEFG", "BCDEFGH", strict=True):  # each level partOf the next one
        assert locations[lower]["partOf"] == {"reference": f"Location/{ids[upper]}"}
    assert "partOf" not in locations["H"]
