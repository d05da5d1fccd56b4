"""``mediator registry ...`` commands: link a CSV, load providers, review."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from mediator.registry.cli import add_registry_cli, link_csv
from mediator.registry.registry import ClientRegistry

FIXTURES = Path(__file__).parent / "fixtures" / "registry"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mediator")
    add_registry_cli(p.add_subparsers(dest="command", required=True))
    return p


def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'data'}\nchannels_dir: {tmp_path}\nmappings_dir: {tmp_path}\n")
    return cfg


def test_link_csv(tmp_path: Path) -> None:
    reg = ClientRegistry(tmp_path / "r.db")
    out = io.StringIO()
    with open(FIXTURES / "persons.csv", encoding="utf-8") as src:
        counts = link_csv(reg, src, out, batch=3)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["record_id"] for r in rows] == [f"r{i}" for i in range(1, 11)]
    by = {r["record_id"]: r for r in rows}
    assert by["r1"]["link"] == "new" and by["r1"]["score"] == ""
    assert by["r2"]["enterprise_id"] == by["r3"]["enterprise_id"] == by["r1"]["enterprise_id"]
    assert by["r2"]["link"] == by["r3"]["link"] == "auto"
    assert by["r4"]["enterprise_id"] != by["r1"]["enterprise_id"]  # homonym, other birth date
    assert by["r6"]["enterprise_id"] == by["r5"]["enterprise_id"]  # Wazzani Bushra / Ouazzani Bouchra
    assert by["r8"]["link"] == "candidate"                           # day and month swapped
    assert by["r9"]["link"] == "new" and counts["flagged"] >= 1      # malformed CIN, impossible date
    assert by["r10"]["link"] == "new"
    assert counts["rows"] == 10
    reg.close()


def test_cli_link_fresh_and_into(tmp_path: Path, capsys: object) -> None:
    cfg = config(tmp_path)
    out = tmp_path / "out.csv"
    args = parser().parse_args(["registry", "link", str(FIXTURES / "persons.csv"), str(out), "--config", str(cfg)])
    assert args.func(args) == 0
    assert len(list(csv.DictReader(out.open(encoding="utf-8")))) == 10
    assert not (tmp_path / "data" / "registry.db").exists()  # a fresh, temporary registry
    args = parser().parse_args(["registry", "link", str(FIXTURES / "persons.csv"), str(out), "--into",
                                "--config", str(cfg)])
    assert args.func(args) == 0
    assert (tmp_path / "data" / "registry.db").exists()
    args = parser().parse_args(["registry", "review", "--config", str(cfg)])
    assert args.func(args) == 0
    args = parser().parse_args(["registry", "stats", "--config", str(cfg)])
    assert args.func(args) == 0


def test_cli_load_providers(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    args = parser().parse_args(["registry", "load", str(FIXTURES / "providers.csv"), "--config", str(cfg)])
    assert args.func(args) == 0
    bundle = tmp_path / "b.json"
    bundle.write_text('{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": '
                      '{"resourceType": "Practitioner", "identifier": [{"system": '
                      '"https://dmp.sante.gov.ma/fhir/sid/inpe", "value": "333456789"}], "active": true}}, '
                      '{"resource": {"resourceType": "Patient"}}]}')
    args = parser().parse_args(["registry", "load", str(bundle), "--config", str(cfg)])
    assert args.func(args) == 0
    from mediator.registry.providers import ProviderRegistry
    pr = ProviderRegistry(tmp_path / "data" / "registry.db")
    assert pr.status("123456789").status == "active"
    assert pr.status("223456789").status == "inactive"
    assert pr.status("333456789").status == "active"
    assert pr.count() == 7
    pr.close()
