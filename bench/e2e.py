"""End to end: ADT^A01 over MLLP → accepted → mapped → validated → delivered to the shared record.

Side by side in one run:
- the naive pipeline: hl7apy parse + fhir.resources build (Patient, Encounter, Practitioner) +
  Bundle validation, in-process, one message at a time (no I/O at all);
- the mediator: `mediator serve` (shipped config: SQLite, group commit), 8 MLLP connections; time
  from the first send until the last transaction is Successful; the shared record reached over real
  HTTP is, row by row: the sandbox shared record in its own process (``--processes``: 1 and 2
  workers), a minimal sink standing for a shared record on other machines as in production
  (``bench/fhir_sink.py``, ``--sink-processes``), and the sandbox inside the node (all in one).
  The CPU split (node / workers / shared record) shows what each part costs per message: on a
  2-core machine the sandbox shared record takes its share of the same two cores.
Targets (issue #2): >= 20x the naive pipeline and >= 800 msg/s.

    python bench/e2e.py [--count 4000] [--processes 1 2] [--sink-processes 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness import (
    cpu_by_process,
    cpu_note,
    cpu_seconds,
    free_port,
    get_json,
    mediator_server,
    process,
    run_load,
    server_pid,
    table,
)

from mediator.testing import adt_message


def naive_rate(n: int) -> float:
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.encounter import Encounter
    from fhir.resources.R4B.patient import Patient
    from fhir.resources.R4B.practitioner import Practitioner
    from hl7apy.parser import parse_message

    msgs = [adt_message(i) for i in range(n)]
    start = time.perf_counter()
    for text in msgs:
        m = parse_message(text, find_groups=True)
        pid, pv1 = m.pid, m.pv1
        ids = [{"system": f"urn:authority:{r.cx_4.value}", "value": r.cx_1.value} for r in pid.pid_3]
        names = [{"family": r.xpn_1.value, "given": [r.xpn_2.value]} for r in pid.pid_5]
        dob = pid.pid_7.value
        patient = Patient(id=f"p{ids[0]['value']}", identifier=ids, name=names,
                          gender={"M": "male", "F": "female"}.get(pid.pid_8.value, "unknown"),
                          birthDate=f"{dob[:4]}-{dob[4:6]}-{dob[6:8]}")
        doc = pv1.pv1_7
        pract = Practitioner(id=f"d{doc.xcn_1.value}", identifier=[{"system": "urn:inpe", "value": doc.xcn_1.value}],
                             name=[{"family": doc.xcn_2.value, "given": [doc.xcn_3.value]}])
        enc = Encounter(id=f"e{pv1.pv1_19.cx_1.value}", status="in-progress",
                        **{"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}},
                        subject={"reference": f"Patient/{patient.id}"},
                        participant=[{"individual": {"reference": f"Practitioner/{pract.id}"}}])
        bundle = Bundle(type="transaction", entry=[
            {"resource": r, "request": {"method": "PUT", "url": f"{r.get_resource_type()}/{r.id}"}}
            for r in (patient, pract, enc)])
        Bundle.model_validate(bundle.model_dump())
    return n / (time.perf_counter() - start)


Run = tuple[float, float, dict[str, int], float, str]


SHARED_RECORDS = {
    "process": "sandbox shared record in its own process (shipped)",
    "sink": "remote shared record stood in by bench/fhir_sink.py",
    "node": "sandbox shared record inside the node",
}


def mediator_rate(count: int, connections: int, shared_record: str, processes: int = 1) -> Run:
    """Throughput from first send to last delivery with ``processes`` worker processes. The shared
    record (see SHARED_RECORDS): the sandbox in its own process (the node's child, as shipped), the
    sandbox inside the node, or the minimal sink standing for a shared record on other machines (as
    the DMP is in production)."""
    worker = {"processes": processes}
    if shared_record != "sink":
        return _measure(count, connections, None, worker=worker,
                        sandbox={"shr": True, "cnss": True, "shr_process": shared_record == "process"})
    port = free_port()
    with process([sys.executable, "bench/fhir_sink.py", str(port)], port) as sink:
        return _measure(count, connections, sink.pid, sandbox={"shr": False, "cnss": True}, worker=worker,
                        destinations={"shr": {"url": f"http://127.0.0.1:{port}/"}})


def _measure(count: int, connections: int, sink_pid: int | None, **sections: dict) -> Run:
    """(delivered msg/s, ACKed msg/s, final statuses, mediator CPU ms per message: node + workers,
    the split of the machine's CPU per message: node / workers / shared record or sink)."""
    with mediator_server(**sections) as (http_port, mllp_port, _data):
        base = f"http://127.0.0.1:{http_port}"
        pid = server_pid(http_port)
        run_load(mllp_port, connections=connections, count=400, start_index=50_000_000)  # warm up
        wait_done(base, 400)
        cpu0 = cpu_by_process(pid)
        sink0 = cpu_seconds(sink_pid) if sink_pid else 0.0
        start = time.perf_counter()
        load = run_load(mllp_port, connections=connections, count=count)
        statuses = wait_done(base, 400 + count)
        elapsed = time.perf_counter() - start
        cpu1 = cpu_by_process(pid)
        used = {p: (cpu1[p] - cpu0.get(p, 0.0)) * 1000 / count for p in cpu1}
        shr = sum(v for p, v in used.items() if p != pid and _is_sandbox(p))
        if sink_pid:
            shr += (cpu_seconds(sink_pid) - sink0) * 1000 / count
        workers = sum(v for p, v in used.items() if p != pid and not _is_sandbox(p))
        split = f"node {used.get(pid, 0.0):.2f} + workers {workers:.2f}"
        if shr:
            split += f" + shared record (or sink) {shr:.2f}"
        return count / elapsed, load["msg_per_s"], statuses, used.get(pid, 0.0) + workers, split


def _is_sandbox(pid: int) -> bool:
    """Whether ``pid`` is the node's sandbox shared record process (not a worker)."""
    try:
        return b"mediator.sandbox.shr" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def wait_done(base: str, total: int, timeout: float = 600) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = get_json(base + "/api/stats")["statuses"]
        if sum(v for k, v in statuses.items() if k not in ("Queued", "Processing")) >= total:
            return statuses
        time.sleep(0.05)
    raise RuntimeError("transactions not finished in time")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=4000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--processes", type=int, nargs="*", default=[1, 2],
                    help="worker process counts to compare (the sandbox shared record in its own process)")
    ap.add_argument("--sink-processes", type=int, nargs="*", default=[2],
                    help="worker process counts to run against the remote-shared-record sink")
    a = ap.parse_args()
    naive_rate(5)  # warm up imports
    cpu0 = time.process_time()
    naive = naive_rate(100)
    naive_cpu_ms = (time.process_time() - cpu0) * 1000 / 100
    plan = [*(("process", n) for n in a.processes), *(("sink", n) for n in a.sink_processes), ("node", 1)]
    runs = [(f"mediator, {n} worker(s), {SHARED_RECORDS[where]}", *mediator_rate(a.count, a.connections, where, n))
            for where, n in plan]
    print(f"end to end ADT^A01 -> shared record, {a.count} messages, {a.connections} MLLP connections ({cpu_note()})")
    rows = [("pipeline", "msg/s", "x naive", "CPU ms/msg", "x naive CPU", "CPU ms/msg split", "note"),
            ("naive (hl7apy + fhir.resources)", f"{naive:.1f}", "1.0", f"{naive_cpu_ms:.2f}", "1.0", "",
             "in-process, no I/O, no durability")]
    for name, rate, accept_rate, statuses, cpu_ms, split in runs:
        rows.append((name, f"{rate:.0f}", f"{rate / naive:.1f}", f"{cpu_ms:.2f}", f"{naive_cpu_ms / cpu_ms:.1f}",
                     split, f"ACKs at {accept_rate:.0f}/s; {statuses}"))
    print(table(rows))
    print("CPU ms/msg of the mediator = its node + worker processes (the shared record and the load client "
          "excluded when they run apart);\ntargets: >= 20x naive and >= 800 msg/s end to end")

if __name__ == "__main__":
    main()
