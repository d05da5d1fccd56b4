"""Keep the cyclic garbage collector's full passes short in long-running processes.

A node or worker holds hundreds of thousands of objects that live as long as the process: imported
modules, FHIR model tables, compiled mappings, registry caches. Python's full (generation 2)
collection walks every one of them; measured here, that stopped a process for 150-400 ms every few
seconds under load, showing as ACK latency (and as a worker holding the store's write lock).
:func:`freeze_long_lived` moves what exists after start-up (or after a reload) out of the
collector's sight, so full passes only walk what messages allocate since.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_GENERATION", "freeze_long_lived", "tune_collector"]

#: objects allocated between two young collections. A registry resolution or a mapped message
#: allocates thousands of short-lived objects; with CPython's default (700) the collector ran every
#: few resolutions and took a fifth of the registry's time.
YOUNG_GENERATION = 10_000


def tune_collector() -> None:
    """Fewer young collections for a process that allocates in bursts (every mediator command)."""
    threshold = gc.get_threshold()
    if threshold[0] < YOUNG_GENERATION:
        gc.set_threshold(YOUNG_GENERATION, *threshold[1:])


def freeze_long_lived() -> None:
    """Collect once, then exempt every surviving object from future collections (``gc.freeze``).

    What an earlier call froze is thawed first, so that what a reload replaced (the previous compiled
    mappings, held in reference cycles) is collected instead of kept for the life of the process.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
