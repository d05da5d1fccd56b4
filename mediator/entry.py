"""Process entry point of the ``mediator`` command and of ``python -m mediator``.

A long-running command (``serve``, ``worker``) blocks SIGHUP before anything heavy is imported.
SIGHUP asks for a reload, but its default action ends the process, and a node needs a second or
more (imports, mapping compilation) before its handler is in place: a reload asked meanwhile must
wait for the handler, not kill the node. The command unblocks SIGHUP once its handler is installed
(``mediator.app.run_forever``, ``mediator.pipeline.worker.run_worker``), and a SIGHUP held pending
then reloads. Only the interpreter's own start-up (a few tens of milliseconds) stays exposed.
"""

from __future__ import annotations

import signal
import sys

__all__ = ["main"]

HOLD_SIGHUP = frozenset({"serve", "worker"})


def main(argv: list[str] | None = None) -> int:
    """Run the ``mediator`` command line (see :mod:`mediator.cli`)."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in HOLD_SIGHUP:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    from mediator.cli import main as cli_main

    return cli_main(argv)
