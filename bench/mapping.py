"""Mapping speed: µs per message for parse + apply, and for validate_bundle, on the ADT fixtures and
the Moroccan lab report (ORU^R01, two orders, 15 results, a PDF) and a French-language CCD (CDA R2).

Run: ``python bench/mapping.py [seconds-per-case]``. Prints figures, asserts nothing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mediator.fhir.validate import validate_bundle  # noqa: E402
from mediator.hl7v2 import parse  # noqa: E402
from mediator.mapping import MappingContext, load_mapping  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "hl7v2").glob("ma_adt_a0[148]*.hl7"))
ORU = ROOT / "tests" / "fixtures" / "hl7v2" / "ma_oru_r01.hl7"
CCD = ROOT / "mappings" / "tests" / "ma_ccd.xml"


def per_call(fn, seconds: float) -> float:
    """Mean µs per call of ``fn`` over about ``seconds``."""
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(50):
            fn()
        n += 50
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / n * 1e6


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    t0 = time.perf_counter()
    mapping = load_mapping(ROOT / "mappings" / "adt_to_fhir.yaml")
    print(f"load+compile adt_to_fhir.yaml: {(time.perf_counter() - t0) * 1e3:.1f} ms")
    ctx = MappingContext()
    print(f"{'fixture':28} {'parse':>8} {'apply':>8} {'p+a':>8} {'validate':>9}  (µs/msg)")
    totals = [0.0, 0.0, 0.0]
    for f in FIXTURES:
        data = f.read_bytes()
        msg = parse(data)
        bundle = mapping.apply(msg, ctx).bundle
        t_parse = per_call(lambda data=data: parse(data), seconds)
        t_apply = per_call(lambda msg=msg: mapping.apply(msg, ctx), seconds)
        t_both = per_call(lambda data=data: mapping.apply(parse(data), ctx), seconds)
        t_val = per_call(lambda bundle=bundle: validate_bundle(bundle), seconds)
        totals = [totals[0] + t_both, totals[1] + t_val, totals[2] + t_apply]
        print(f"{f.name:28} {t_parse:8.1f} {t_apply:8.1f} {t_both:8.1f} {t_val:9.1f}")
    n = len(FIXTURES)
    both, val = totals[0] / n, totals[1] / n
    print(f"ADT mean parse+apply {both:.1f} µs, validate {val:.1f} µs -> "
          f"{1e6 / (both + val):.0f} msg/s for parse+map+validate on one core")
    t0 = time.perf_counter()
    oru = load_mapping(ROOT / "mappings" / "oru_to_fhir.yaml")
    print(f"load+compile oru_to_fhir.yaml: {(time.perf_counter() - t0) * 1e3:.1f} ms")
    data = ORU.read_bytes()
    msg = parse(data)
    bundle = oru.apply(msg, ctx).bundle
    t_parse = per_call(lambda: parse(data), seconds)
    t_apply = per_call(lambda: oru.apply(msg, ctx), seconds)
    t_both = per_call(lambda: oru.apply(parse(data), ctx), seconds)
    t_val = per_call(lambda: validate_bundle(bundle), seconds)
    n_obs = sum(e["resource"]["resourceType"] == "Observation" for e in bundle["entry"])
    print(f"{ORU.name:28} {t_parse:8.1f} {t_apply:8.1f} {t_both:8.1f} {t_val:9.1f}  "
          f"({n_obs} results, {len(bundle['entry'])} resources)")
    print(f"ORU parse+apply+validate {t_both + t_val:.0f} µs -> {1e6 / (t_both + t_val):.0f} msg/s on one core")
    cda_case(seconds)


def cda_case(seconds: float) -> None:
    """A CCD (the French-language Moroccan fixture, 8 sections) to a validated Bundle: µs per document."""
    from mediator.cda.safe_xml import parse_xml
    from mediator.mapping.xpath import XmlMessage

    t0 = time.perf_counter()
    cda = load_mapping(ROOT / "mappings" / "cda_to_fhir.yaml")
    print(f"load+compile cda_to_fhir.yaml: {(time.perf_counter() - t0) * 1e3:.1f} ms")
    ctx = MappingContext()
    raw = CCD.read_bytes()
    msg = XmlMessage(parse_xml(raw), raw)
    bundle = cda.apply(msg, ctx).bundle
    assert not validate_bundle(bundle)
    t_parse = per_call(lambda: parse_xml(raw), seconds)
    t_apply = per_call(lambda: cda.apply(msg, ctx), seconds)
    t_both = per_call(lambda: cda.apply(XmlMessage(parse_xml(raw), raw), ctx), seconds)
    t_val = per_call(lambda: validate_bundle(bundle), seconds)
    print(f"{CCD.name:28} {t_parse:8.1f} {t_apply:8.1f} {t_both:8.1f} {t_val:9.1f}  ({len(bundle['entry'])} resources)")
    print(f"CCD parse+apply+validate {t_both + t_val:.0f} µs -> {1e6 / (t_both + t_val):.0f} documents/s on one core")


if __name__ == "__main__":
    main()
