"""Helpers for tests and benchmarks (like ``aiohttp.test_utils``): sample messages and a node in-process.

Sample messages are synthetic (invented names and numbers), Moroccan-shaped: CIN, IPP per facility,
CNSS number, names in Latin and Arabic script, INPE of the attending doctor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

from mediator.config import AppConfig, load_config

REPO = Path(__file__).resolve().parent.parent


def _corpora() -> Path:
    """The shared test corpora: ``$MEDIATOR_CORPORA``, or ``shared/corpora`` beside the checkout."""
    env = os.environ.get("MEDIATOR_CORPORA")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "corpora", Path("/work/shared/corpora")]
    return next((c for c in candidates if c.is_dir()), candidates[0])


CORPORA = _corpora()

FAMILIES = [("EL AMRANI", "العمراني"), ("BENJELLOUN", "بنجلون"), ("OUAZZANI", "الوزاني"), ("TAZI", "التازي"),
            ("ALAOUI", "العلوي"), ("BENNANI", "بناني"), ("CHRAIBI", "الشرايبي"), ("FASSI FIHRI", "الفاسي الفهري")]
GIVENS = [("Mohamed", "محمد"), ("Fatima Zahra", "فاطمة الزهراء"), ("Youssef", "يوسف"), ("Khadija", "خديجة"),
          ("Omar", "عمر"), ("Bouchra", "بشرى"), ("Hamza", "حمزة"), ("Salma", "سلمى")]


def adt_message(i: int, event: str = "A01", *, facility: str = "CHU-IBN-SINA", control_id: str | None = None,
                patient: int | None = None, extra_pid_name: str = "") -> str:
    """A synthetic ADT^<event> message (v2.5, UTF-8) for patient number ``patient`` (default ``i``)."""
    p = i if patient is None else patient
    fam, fam_ar = FAMILIES[p % len(FAMILIES)]
    giv, giv_ar = GIVENS[(p // len(FAMILIES)) % len(GIVENS)]
    cin = f"BK{100000 + p % 900000}"
    family = extra_pid_name or fam
    year, month, day = 1950 + p % 60, 1 + p % 12, 1 + p % 28
    cid = control_id or f"{facility}-{event}-{i:08d}"
    segs = [
        f"MSH|^~\\&|DXCARE|{facility}|MEDIATOR|DMP|20241105093512+0100||ADT^{event}^ADT_A01|{cid}|P|2.5"
        "|||||MAR|UNICODE UTF-8|FR",
        f"EVN|{event}|20241105093000+0100",
        f"PID|1||{cin}^^^CIN^NI~{700000 + p}^^^{facility}^PI~{900000000 + p}^^^CNSS^SS||"
        f"{family}^{giv}^^^^^L~{fam_ar}^{giv_ar}^^^^^L||{year}{month:02d}{day:02d}|{'MF'[p % 2]}|||"
        f"12 Rue Ibn Battouta^^Rabat^^10000^MA^H||+2126612{p % 100000:05d}^PRN^PH",
        f"PV1|1|I|CARDIO^204^B^{facility}||||{100000000 + p % 1000}^ALAOUI^Said^^^Dr^^^INPE|||CAR|||||||||"
        f"V{i:08d}^^^{facility}^VN|||||||||||||||||||||||||20241105093000+0100",
    ]
    return "\r".join(segs) + "\r"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for servers started as subprocesses)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def node_config(data_dir: Path, **overrides: object) -> AppConfig:
    """The shipped config.yaml with ephemeral ports and ``data_dir``; ephemeral ports."""
    cfg = load_config(REPO / "config.yaml")
    cfg.data_dir = str(data_dir)
    cfg.http.host = cfg.mllp.host = "127.0.0.1"
    cfg.http.port = 0
    cfg.mllp.port = 0
    cfg.logging.level = "warning"
    for dotted, value in overrides.items():
        target: object = cfg
        parts = dotted.split("__")
        for part in parts[:-1]:
            target = target[part] if isinstance(target, dict) else getattr(target, part)
        setattr(target, parts[-1], value)
    return cfg


@contextlib.asynccontextmanager
async def running_node(cfg: AppConfig) -> AsyncIterator[object]:
    from mediator.app import Node

    node = Node(cfg)
    await node.start()
    try:
        yield node
    finally:
        await node.stop(drain_timeout=2.0)
