"""``mediator map run`` / ``mediator map test`` (mediator.mapping.cli), called as functions."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_map_cli

from mediator.mapping.cli import compare_bundles

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "hl7v2"


run_cli = run_map_cli


def test_map_run_chooses_the_channel_mapping(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert run_cli("run", str(FIXTURES / "ma_adt_a01.hl7")) == 0
    out, err = capsys.readouterr()
    bundle = json.loads(out)
    assert bundle["type"] == "transaction" and bundle["entry"][0]["resource"]["resourceType"] == "Patient"
    assert "adt_to_fhir.yaml" in err and "unmapped segments: ZPD" in err
    assert "EL AMRANI" not in err   # no patient values on stderr


def test_map_run_with_an_explicit_mapping_and_lf_file(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    msg = tmp_path / "m.hl7"
    msg.write_bytes((FIXTURES / "ma_oru_r01.hl7").read_bytes().replace(b"\r", b"\n"))
    assert run_cli("run", "--compact", "--mapping", str(ROOT / "mappings" / "oru_to_fhir.yaml"), str(msg)) == 0
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == 1
    assert sum(e["resource"]["resourceType"] == "Observation" for e in json.loads(out)["entry"]) == 15


def test_map_run_without_a_mapping_for_the_type(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    msg = tmp_path / "m.hl7"
    msg.write_text("MSH|^~\\&|A|B|C|D|20240101||ZZZ^Z99|1|P|2.5\rPID|1||X^^^CIN^NI\r")
    assert run_cli("run", str(msg)) == 2
    assert "give --mapping" in capsys.readouterr().err


def test_map_run_reports_a_dropped_invalid_value(tmp_path: Path, capsys, monkeypatch) -> None:
    """An impossible date in an optional field (PID-7) is dropped, not fatal (``invalid: drop`` in
    the HL7 v2 mappings), and named with its rule and path among the unmapped items."""
    monkeypatch.chdir(ROOT)
    msg = tmp_path / "m.hl7"
    msg.write_bytes((FIXTURES / "ma_adt_a01.hl7").read_bytes().replace(b"|19780412|", b"|19780230|"))
    assert run_cli("run", str(msg)) == 0
    captured = capsys.readouterr()
    assert "invalid value dropped: rule 'patient.birthDate' (PID-7)" in captured.err
    assert "19780230" not in captured.err and "birthDate" not in captured.out


def test_map_test_passes_on_the_shipped_fixtures(capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert run_cli("test") == 0
    out = capsys.readouterr().out
    assert "PASS ma_oru_r01.hl7 (oru_to_fhir.yaml" in out and " 0 failed" in out


def test_map_test_fails_and_names_the_differences(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    shutil.copy(ROOT / "mappings" / "tests" / "ma_adt_a01.hl7", tmp_path)
    expected = json.loads((ROOT / "mappings" / "tests" / "ma_adt_a01.expected.json").read_text(encoding="utf-8"))
    expected["entry"][0]["resource"]["gender"] = "female"
    expected["entry"].reverse()   # the order of entries does not matter
    (tmp_path / "ma_adt_a01.expected.json").write_text(json.dumps(expected), encoding="utf-8")
    shutil.copy(FIXTURES / "ma_vxu_v04.hl7", tmp_path)   # no expected file
    assert run_cli("test", "--dir", str(tmp_path)) == 1
    out = capsys.readouterr().out
    assert "FAIL ma_adt_a01.hl7 (adt_to_fhir.yaml): 1 difference(s)" in out and "Patient.gender: differs" in out
    assert "FAIL ma_vxu_v04.hl7: ma_vxu_v04.expected.json is missing" in out
    assert run_cli("test", "--dir", str(tmp_path), "--update", "ma_vxu_v04") == 0


def test_compare_bundles_is_order_insensitive_for_lists_of_objects() -> None:
    a = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "u1", "resource": {"resourceType": "Patient", "identifier": [{"value": "1"}, {"value": "2"}],
                                       "name": [{"given": ["A", "B"]}]}}]}
    b = json.loads(json.dumps(a))
    b["entry"][0]["resource"]["identifier"].reverse()
    assert compare_bundles(a, b) == []
    b["entry"][0]["resource"]["name"][0]["given"].reverse()
    assert compare_bundles(a, b) == ["Patient.name[0].given[0]: differs", "Patient.name[0].given[1]: differs"]


def _map_wired() -> bool:
    from mediator.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return "map" in sub.choices


@pytest.mark.skipif(not _map_wired(), reason="`mediator map` is not wired into mediator/cli.py yet")
def test_python_m_mediator_map_run() -> None:
    proc = subprocess.run([sys.executable, "-m", "mediator", "map", "run", str(FIXTURES / "ma_vxu_v04.hl7")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert any(e["resource"]["resourceType"] == "Immunization" for e in json.loads(proc.stdout)["entry"])
