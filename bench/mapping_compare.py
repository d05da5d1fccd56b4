"""Mapping speed, old code against new, in one process (the dev box is shared: runs minutes apart
are not comparable, interleaved runs are).

1. Keep a copy of the current engine: ``python bench/mapping_compare.py --save-old /tmp/oldmap``
   (copies ``mediator/mapping`` to ``/tmp/oldmap/oldmapping`` with its imports renamed).
2. Change the code, then: ``python bench/mapping_compare.py --old /tmp/oldmap [seconds]``: for each case
   (the ADT fixtures, the Moroccan ORU, the French CCD, loading every mapping) the best of several
   interleaved rounds, old and new, in µs per message. Prints figures, asserts nothing.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mediator.hl7v2 import parse  # noqa: E402

ADT = sorted((ROOT / "tests" / "fixtures" / "hl7v2").glob("ma_adt_a0[148]*.hl7"))
ORU = ROOT / "tests" / "fixtures" / "hl7v2" / "ma_oru_r01.hl7"
CCD = ROOT / "mappings" / "tests" / "ma_ccd.xml"


def save_old(dest: Path) -> None:
    target = dest / "oldmapping"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(ROOT / "mediator" / "mapping", target, ignore=shutil.ignore_patterns("__pycache__"))
    for f in target.glob("*.py"):
        f.write_text(re.sub(r"\bmediator\.mapping\b", "oldmapping", f.read_text()))
    print(f"old engine saved in {target}")


def best_of(fn: Callable[[], Any], seconds: float) -> float:
    """µs per call: the best mean over short batches within ``seconds``."""
    best = float("inf")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(5):
            fn()
        best = min(best, (time.perf_counter() - t0) / 5 * 1e6)
    return best


def cases(pkg: Any) -> dict[str, Callable[[], Any]]:
    """The calls to time with one engine (``pkg`` is ``mediator.mapping`` or the old copy)."""
    from mediator.cda.safe_xml import parse_xml

    xpath = __import__(f"{pkg.__name__}.xpath", fromlist=["XmlMessage"])
    ctx = pkg.MappingContext()
    adt = pkg.load_mapping(ROOT / "mappings" / "adt_to_fhir.yaml")
    oru = pkg.load_mapping(ROOT / "mappings" / "oru_to_fhir.yaml")
    cda = pkg.load_mapping(ROOT / "mappings" / "cda_to_fhir.yaml")
    msgs = [parse(f.read_bytes()) for f in ADT]
    oru_msg = parse(ORU.read_bytes())
    raw = CCD.read_bytes()
    ccd = xpath.XmlMessage(parse_xml(raw), raw)

    def adt_all() -> None:
        for m in msgs:
            adt.apply(m, ctx)
    return {"ADT (mean of 4)": adt_all, "ORU 15 results": lambda: oru.apply(oru_msg, ctx),
            "CCD": lambda: cda.apply(ccd, ctx)}


def main() -> None:
    if "--save-old" in sys.argv:
        save_old(Path(sys.argv[sys.argv.index("--save-old") + 1]))
        return
    old_dir = Path(sys.argv[sys.argv.index("--old") + 1])
    rest = [a for a in sys.argv[1:] if a not in ("--old", str(old_dir))]
    seconds = float(rest[0]) if rest else 2.0
    sys.path.insert(0, str(old_dir))
    import oldmapping  # type: ignore[import-not-found]

    import mediator.mapping as new

    engines = {"old": cases(oldmapping), "new": cases(new)}
    print(f"{'case':18} {'old µs':>9} {'new µs':>9} {'speedup':>8}")
    for name in engines["old"]:
        res = {"old": float("inf"), "new": float("inf")}
        for _ in range(10):  # interleaved rounds: both see the same machine load
            for which in ("old", "new"):
                res[which] = min(res[which], best_of(engines[which][name], seconds / 10))
        div = 4 if name.startswith("ADT") else 1
        print(f"{name:18} {res['old'] / div:9.1f} {res['new'] / div:9.1f} {res['old'] / res['new']:7.2f}x")
    load = {"old": float("inf"), "new": float("inf")}
    for _ in range(2):
        for which, pkg in (("old", oldmapping), ("new", new)):
            pkg.compiler._YAML_CACHE.clear()
            t0 = time.perf_counter()
            pkg.load_mappings(ROOT / "mappings")
            load[which] = min(load[which], time.perf_counter() - t0)
    print(f"{'load_mappings (s)':18} {load['old']:9.2f} {load['new']:9.2f} {load['old'] / load['new']:7.2f}x")


if __name__ == "__main__":
    main()
