"""Benchmark: our HL7 v2 parser vs hl7apy and python-hl7 on the corpus messages.

Each run parses a message and reads 10 typical fields (MSH-9, MSH-10, PID-3[*].1, PID-5.1, PID-7,
PID-8, PV1-2, PV1-19, EVN-2, PID-11.3). hl7apy is slow, so it runs on a sample of the messages (the
ratios compare the same sample). Plain script, prints a table::

    python bench/parser.py
"""

from __future__ import annotations

import glob
import statistics
import sys
import time
import warnings
from pathlib import Path

import hl7
from hl7apy.parser import parse_message

from mediator.testing import CORPORA

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mediator.hl7v2 import build_ack, parse  # noqa: E402

OUR_ROUNDS = 20
HL7APY_SAMPLE = 40  # messages
HL7APY_DEFAULT_SAMPLE = 15
OURS_PATHS = ("MSH-9", "MSH-10", "PID-3[*].1", "PID-5.1", "PID-7", "PID-8", "PV1-2", "PV1-19", "EVN-2",
              "PID-11.3")


def load() -> list[bytes]:
    files = sorted(glob.glob(f"{CORPORA}/ms-fhir-converter/hl7v2/*.hl7")) + sorted(
        glob.glob(f"{CORPORA}/reportstream-v2-to-fhir/**/*.hl7", recursive=True))
    out = []
    for path in files:
        with open(path, "rb") as fh:
            out.append(fh.read())
    return out


def ours(data: bytes) -> None:
    msg = parse(data)
    get = msg.get
    for path in OURS_PATHS:
        if "*" in path:
            msg.get_all(path)
        else:
            get(path)


def _try(fn):  # noqa: ANN001, ANN202
    try:
        return fn()
    except Exception:  # noqa: BLE001 - missing segment/field
        return None


def hl7apy_reads(msg) -> None:  # noqa: ANN001
    msh = msg.msh
    _try(lambda: msh.msh_9.to_er7())
    _try(lambda: msh.msh_10.value)
    pid = _try(lambda: msg.pid)
    if pid is not None:
        _try(lambda: [rep.cx_1.value for rep in pid.pid_3])
        _try(lambda: pid.pid_5.xpn_1.to_er7())
        _try(lambda: pid.pid_7.value)
        _try(lambda: pid.pid_8.value)
        _try(lambda: pid.pid_11.xad_3.value)
    pv1 = _try(lambda: msg.pv1)
    if pv1 is not None:
        _try(lambda: pv1.pv1_2.value)
        _try(lambda: pv1.pv1_19.to_er7())
    evn = _try(lambda: msg.evn)
    if evn is not None:
        _try(lambda: evn.evn_2.value)


def hl7apy_run(text: str, find_groups: bool) -> None:
    hl7apy_reads(parse_message(text, find_groups=find_groups))


def python_hl7_run(text: str) -> None:
    msg = hl7.parse(text)
    for key in ("MSH.F9", "MSH.F10", "PID.F3.R1.C1", "PID.F5.R1.C1", "PID.F7", "PID.F8", "PV1.F2", "PV1.F19",
                "EVN.F2", "PID.F11.R1.C3"):
        _try(lambda k=key: msg[k])


def mean_us(fn, items, rounds: int) -> float:  # noqa: ANN001
    start = time.perf_counter()
    for _ in range(rounds):
        for item in items:
            fn(item)
    return (time.perf_counter() - start) / (rounds * len(items)) * 1e6


def main() -> None:
    warnings.simplefilter("ignore")
    raw = load()
    texts = [parse(d).encode() for d in raw]
    # hl7apy rejects some messages (e.g. the v2.7 truncation character in 2.5.1 messages)
    apy_ok = [i for i, t in enumerate(texts) if _try(lambda t=t: parse_message(t, find_groups=False)) is not None]
    step = max(1, len(apy_ok) // HL7APY_SAMPLE)
    sample = apy_ok[::step][:HL7APY_SAMPLE]
    sample_default = sample[::max(1, len(sample) // HL7APY_DEFAULT_SAMPLE)][:HL7APY_DEFAULT_SAMPLE]
    segs = statistics.mean(len(parse(d).segments) for d in raw)

    rows = []
    t_ours_all = mean_us(ours, raw, OUR_ROUNDS)
    rows.append(("ours parse+10 reads (all msgs)", len(raw), t_ours_all))
    t_parse_only = mean_us(parse, raw, OUR_ROUNDS)
    rows.append(("ours parse only (all msgs)", len(raw), t_parse_only))
    msgs = [parse(d) for d in raw]
    rows.append(("ours build_ack AA (all msgs)", len(raw), mean_us(lambda m: build_ack(m, "AA"), msgs, OUR_ROUNDS)))
    t_ours = mean_us(ours, [raw[i] for i in sample], OUR_ROUNDS)
    rows.append(("ours parse+10 reads (hl7apy sample)", len(sample), t_ours))
    t_ours_def = mean_us(ours, [raw[i] for i in sample_default], OUR_ROUNDS)
    t_apy = mean_us(lambda t: hl7apy_run(t, False), [texts[i] for i in sample], 1)
    rows.append(("hl7apy find_groups=False +reads", len(sample), t_apy))
    t_apy_def = mean_us(lambda t: hl7apy_run(t, True), [texts[i] for i in sample_default], 1)
    rows.append(("hl7apy default (groups) +reads", len(sample_default), t_apy_def))
    t_py = mean_us(python_hl7_run, texts, 3)
    rows.append(("python-hl7 hl7.parse +reads (all)", len(texts), t_py))

    print(f"corpus: {len(raw)} messages, mean {segs:.1f} segments, {statistics.mean(map(len, raw)):.0f} bytes; "
          f"hl7apy parses {len(apy_ok)} of them")
    print(f"{'run':<40} {'msgs':>5} {'mean µs/msg':>12}")
    for name, n, us in rows:
        print(f"{name:<40} {n:>5} {us:>12.1f}")
    print()
    print(f"ours is {t_apy / t_ours:,.0f}x faster than hl7apy (find_groups=False), same sample")
    print(f"ours is {t_apy_def / t_ours_def:,.0f}x faster than hl7apy (default, with groups), same sample")
    print(f"ours is {t_py / t_ours_all:,.1f}x faster than python-hl7 (all messages)")


if __name__ == "__main__":
    main()
