"""Bundle validation cost: compiled fast checker vs fhir.resources ``model_validate``.

Plain script, run from the repository root: ``python bench/validate.py [iterations]``. Prints µs per Bundle
(the ADT fixture Bundles from the ADT mapping) for both validators and the ratio.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mediator.fhir.validate import validate_bundle  # noqa: E402
from mediator.hl7v2 import parse  # noqa: E402
from mediator.mapping import MappingContext, load_mappings  # noqa: E402


def per_bundle_us(fn: Callable[[dict[str, Any]], list[str]], bundles: list[dict[str, Any]], iterations: int) -> float:
    """Best of five runs of ``iterations`` passes over ``bundles``, in µs per bundle."""
    for b in bundles:  # warm up (compiles the schema, imports models)
        assert fn(b) == [], fn(b)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(iterations):
            for b in bundles:
                fn(b)
        best = min(best, (time.perf_counter() - start) / (iterations * len(bundles)))
    return best * 1e6


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    adt = load_mappings(ROOT / "mappings")["adt_to_fhir.yaml"]
    fixtures = sorted((ROOT / "tests" / "fixtures" / "hl7v2").glob("*.hl7"))
    bundles = [adt.apply(parse(f.read_bytes()), MappingContext()).bundle for f in fixtures]
    a01 = [bundles[[f.name for f in fixtures].index("ma_adt_a01.hl7")]]
    for label, sample in (("ma_adt_a01", a01), (f"all {len(bundles)} fixtures", bundles)):
        fast = per_bundle_us(validate_bundle, sample, iterations)
        ref = per_bundle_us(lambda b: validate_bundle(b, strict=True), sample, max(1, iterations // 10))
        print(f"{label:>16}: fast {fast:7.1f} µs/bundle   fhir.resources {ref:7.1f} µs/bundle"
              f"   ratio x{ref / fast:.1f}")


if __name__ == "__main__":
    main()
