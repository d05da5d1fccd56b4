"""What a process the node starts (a worker, the sandbox shared record) does first: follow the node.

Kept free of heavy imports so that a child can call it before loading anything else.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal

__all__ = ["die_with_parent"]


def die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the node (our parent) dies, even by kill -9."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
