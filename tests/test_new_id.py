"""Transaction ids: ULIDs, unique across threads and across a fork, sortable by creation time."""

from __future__ import annotations

import os
import threading
import time

from mediator.store.base import new_id


def test_ids_are_unique_across_threads() -> None:
    found: list[list[str]] = [[] for _ in range(4)]

    def draw(out: list[str]) -> None:
        out.extend(new_id() for _ in range(3000))

    threads = [threading.Thread(target=draw, args=(out,)) for out in found]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for out in found for i in out]
    assert len(set(ids)) == len(ids) == 12000
    assert all(len(i) == 26 for i in ids)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_id()  # the pool is filled before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids, then leave without running pytest's teardown
        os.close(read)
        os.write(write, ",".join(new_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = f.read().split(",")
    os.waitpid(pid, 0)
    parent = [new_id() for _ in range(50)]
    assert not {i[10:] for i in child} & {i[10:] for i in parent}  # the random parts differ


def test_ids_sort_by_creation_time() -> None:
    first = new_id()
    time.sleep(0.002)
    assert new_id() > first
