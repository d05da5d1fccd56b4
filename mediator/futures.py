"""Handing the results of a batch back to the callers that wait for them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["settle"]


def settle(futures: Iterable[asyncio.Future[Any]], results: Iterable[Any]) -> None:
    """Give each future its result, or raise in it the exception that stands for its result; a future
    already done (its caller gave up) is left alone."""
    for fut, result in zip(futures, results, strict=True):
        if fut.done():
            continue
        if isinstance(result, BaseException):
            fut.set_exception(result)
        else:
            fut.set_result(result)
