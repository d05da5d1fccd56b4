"""Snapshot of every mapping output, to prove that a speed change keeps the output byte-identical.

Maps every HL7 v2 and CDA file of the shared corpora (Microsoft FHIR-Converter, ReportStream cases,
HL7 C-CDA examples, the v2-to-FHIR IG), the test fixtures and ``mappings/tests`` with **every**
mapping of its source kind (an HL7 v2 message with each HL7 v2 mapping, not only the one the
channels choose: more rules meet more messages), and writes one line per (file, mapping): a SHA-256
of the Bundle (orjson, sorted keys), the unmapped list, the patient key and any error text.

Run: ``python bench/mapping_snapshot.py OUT.txt`` then ``diff`` two snapshots. Nothing the mappings
produce depends on the clock (checked: two runs a minute apart are identical), so no field is masked.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mediator.config import AppConfig, load_config  # noqa: E402
from mediator.hl7v2 import parse  # noqa: E402
from mediator.mapping import Mapping, MappingContext, MappingError, load_mappings  # noqa: E402
from mediator.testing import CORPORA  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _files() -> list[Path]:
    out: list[Path] = []
    for base in (CORPORA, ROOT / "tests" / "fixtures", ROOT / "mappings" / "tests"):
        if base.is_dir():
            out += sorted(p for p in base.rglob("*") if p.suffix.lower() in (".hl7", ".xml") and p.is_file())
    return out


def _digest(result: Any) -> str:
    body = orjson.dumps(result.bundle, option=orjson.OPT_SORT_KEYS)
    return (f"{hashlib.sha256(body).hexdigest()} unmapped={orjson.dumps(result.unmapped).decode()} "
            f"key={result.patient_key!r}")


def _one(mapping: Mapping, msg: Any, ctx: MappingContext) -> str:
    try:
        return _digest(mapping.apply(msg, ctx))
    except MappingError as exc:
        return f"MappingError {exc}"
    except Exception as exc:  # a crash is part of the behaviour being compared
        return f"CRASH {type(exc).__name__}: {exc}"


def _hl7_lines(path: Path, raw: bytes, hl7: list[tuple[str, Mapping]], ctx: MappingContext) -> list[str]:
    try:
        msg = parse(raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r"))
    except Exception as exc:
        return [f"{path}\t-\tPARSE {type(exc).__name__}"]
    return [f"{path}\t{name}\t{_one(m, msg, ctx)}" for name, m in hl7]


def _cda_lines(path: Path, raw: bytes, cda: list[tuple[str, Mapping]], ctx: MappingContext) -> list[str]:
    from mediator.cda.safe_xml import parse_xml
    from mediator.mapping.xpath import XmlMessage

    try:
        msg = XmlMessage(parse_xml(raw), raw)
    except Exception as exc:
        return [f"{path}\t-\tPARSE {type(exc).__name__}"]
    return [f"{path}\t{name}\t{_one(m, msg, ctx)}" for name, m in cda]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", type=Path, default=Path("/tmp/mapping_snapshot.txt"),
                    help="where to write the snapshot (default: %(default)s)")
    out_file = ap.parse_args().out
    cfg_file = ROOT / "config.yaml"
    cfg = load_config(cfg_file) if cfg_file.is_file() else AppConfig(base_dir=str(ROOT))
    t0 = time.perf_counter()
    mappings = load_mappings(ROOT / "mappings")
    t_load = time.perf_counter() - t0
    ctx = MappingContext(identifiers=cfg.identifiers)
    hl7 = [(n, m) for n, m in sorted(mappings.items()) if m.source == "hl7v2"]
    cda = [(n, m) for n, m in sorted(mappings.items()) if m.source == "cda"]
    lines: list[str] = []
    t0 = time.perf_counter()
    for f in _files():
        raw = f.read_bytes()
        rel = f.relative_to(CORPORA) if f.is_relative_to(CORPORA) else f.relative_to(ROOT)
        is_xml = f.suffix.lower() == ".xml"
        lines += (_cda_lines if is_xml else _hl7_lines)(rel, raw, cda if is_xml else hl7, ctx)
    out_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} outputs -> {out_file} (load {t_load:.2f} s, map {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
