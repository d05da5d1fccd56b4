"""OpenCR's synthetic Uganda set (../shared/corpora/opencr-uganda/, MIT): 5,000 records, 1,000 true pairs.

    python bench/registry_opencr.py [--corpus DIR]

Links every record into a fresh registry twice: with the national id column (``uganda_nin``, as
an INS-like identifier) and without it. Prints precision / recall of the automatic links and of
automatic + review links over the true pairs. The ART number is not used (it would identify the
record within a clinic, which makes the task trivial).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from registry_pairs import predicted_pairs  # noqa: E402

from mediator.registry.model import PersonRecord  # noqa: E402
from mediator.registry.registry import ClientRegistry  # noqa: E402

DEFAULT = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "opencr-uganda"


def run(rows: list[dict[str, str]], true: set[frozenset[str]], use_nin: bool) -> str:
    with tempfile.TemporaryDirectory() as d:
        reg = ClientRegistry(Path(d) / "registry.db")
        golden: dict[str, str] = {}
        started = time.perf_counter()
        with reg.batch():
            for r in rows:
                nin = r["uganda_nin"].strip()
                rec = PersonRecord(source="", local_id=r["rec_id"].strip(),
                                   identifiers={"ins": nin} if use_nin and nin else {},
                                   family=r["surname"], given=r["given_name"], birth_date=r["date_of_birth"].strip(),
                                   sex=r["sex"].strip(), phone=r["phone_number"])
                golden[rec.local_id] = reg.link(rec).enterprise_id
        elapsed = time.perf_counter() - started
        auto, review = predicted_pairs(reg, golden)
        reg.close()
    out = []
    for label, pred in (("auto", auto), ("auto+review", auto | review)):
        tp = len(pred & true)
        p, rc = tp / max(len(pred), 1), tp / max(len(true), 1)
        out.append(f"  {label:12} precision {p:.4f} recall {rc:.4f} F1 {2 * p * rc / max(p + rc, 1e-9):.4f} "
                   f"({len(pred)} pairs)")
    return f"{'with' if use_nin else 'without'} national id ({len(rows) / elapsed:.0f} links/s)\n" + "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=DEFAULT)
    args = ap.parse_args()
    with open(args.corpus / "uganda_data_v21_20201501.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(args.corpus / "uganda_data_v21_20201501_true_links.csv", encoding="utf-8") as fh:
        true = {frozenset((r["rec_id_1"].strip(), r["rec_id_2"].strip())) for r in csv.DictReader(fh)}
    print(f"OpenCR Uganda: {len(rows)} records, {len(true)} true pairs")
    print(run(rows, true, use_nin=True))
    print(run(rows, true, use_nin=False))


if __name__ == "__main__":
    main()
