"""The JSON Schema of mapping files: current, valid, accepts every shipped file, catches typos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from mediator.mapping.jsonschema import mapping_schema

ROOT = Path(__file__).resolve().parent.parent
MAPPING_FILES = sorted((ROOT / "mappings").rglob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = mapping_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_shipped_copy_is_what_the_compiler_accepts_today() -> None:
    out = subprocess.run([sys.executable, "-m", "mediator", "map", "schema"], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert json.loads(out) == mapping_schema()
    assert json.loads((ROOT / "mappings" / "mapping.schema.json").read_text()) == mapping_schema(), (
        "regenerate: mediator map schema > mappings/mapping.schema.json")


@pytest.mark.parametrize("path", MAPPING_FILES, ids=lambda p: str(p.relative_to(ROOT / "mappings")))
def test_every_shipped_mapping_fragment_and_code_map_is_valid(validator: jsonschema.Draft202012Validator,
                                                               path: Path) -> None:
    errors = list(validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8"))))
    assert not errors, jsonschema.exceptions.best_match(errors).message


@pytest.mark.parametrize("text", [
    "mapping: m\nresources:\n  p:\n    resourceType: Patient\n    fields:\n      name: {pth: PID-5}\n",
    "mapping: m\nresources:\n  p:\n    resourceType: Patient\n    fields:\n      gender: {path: PID-8, as: sex}\n",
    "mapping: m\nresources:\n  p:\n    resourceType: Patient\n    request: {method: GET}\n",
    "mapping: m\nsource: hl7v3\nresources: {}\n",
    "mapping: m\nresources:\n  p:\n    resourceType: Patient\n    when: {exist: PID}\n",
    "codemap: sex\nentries: {M: male}\nstrict: maybe\n",
], ids=["rule-key", "conversion", "method", "source", "condition-key", "codemap-flag"])
def test_a_typo_is_flagged_in_the_editor(validator: jsonschema.Draft202012Validator, text: str) -> None:
    assert list(validator.iter_errors(yaml.safe_load(text)))
