"""Shared fixtures: a real node (HTTP + MLLP on ephemeral ports, SQLite in a temp dir)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mediator.app import Node
from mediator.testing import node_config, running_node

FIXTURES = Path(__file__).parent / "fixtures"


class Harness:
    """A running node and an HTTP session to talk to it."""

    def __init__(self, node: Node, session: aiohttp.ClientSession) -> None:
        self.node = node
        self.http = session
        self.base = f"http://127.0.0.1:{node.http_port}"
        self.mllp_port = node.mllp_port

    async def get_json(self, path: str, status: int = 200) -> Any:
        async with self.http.get(self.base + path) as resp:
            assert resp.status == status, await resp.text()
            return await resp.json(content_type=None)

    async def wait_status(self, tx_id: str, statuses: tuple[str, ...] = ("Successful", "Completed with errors",
                                                                         "Failed"), timeout: float = 20) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            tx = await self.get_json(f"/api/transactions/{tx_id}")
            if tx["status"] in statuses:
                return tx
            if loop.time() > deadline:
                raise AssertionError(f"transaction {tx_id} stuck in {tx['status']}")
            await asyncio.sleep(0.02)

    async def wait_idle(self, timeout: float = 30) -> dict[str, int]:
        """Wait until no transaction is queued or in processing; returns the counts per status."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            statuses = (await self.get_json("/api/stats"))["statuses"]
            if not statuses.get("Queued") and not statuses.get("Processing"):
                return statuses
            if loop.time() > deadline:
                raise AssertionError(f"still busy: {statuses}")
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def make_harness(data_dir: Path, **overrides: object) -> AsyncIterator[Harness]:
    """A node on the shipped config.yaml (ephemeral ports, ``data_dir``), with ``section__key`` overrides."""
    cfg = node_config(data_dir, **overrides)
    async with running_node(cfg) as node, aiohttp.ClientSession() as session:
        yield Harness(node, session)  # type: ignore[arg-type]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with make_harness(tmp_path / "data") as h:
        yield h


MAPPING_HEAD = """\
mapping: t
source: hl7v2
message_types: [ADT^A01]
resources:
  patient:
    resourceType: Patient
    id: {hash: [PID-3.1]}
    fields:
"""


def write_mapping(tmp_path: Path, body: str, head: str = MAPPING_HEAD, name: str = "m.yaml", tail: str = "") -> Path:
    """A mapping file for language tests: ``head`` (a Patient by default), then ``body`` as the
    Patient's fields (indented for you), then ``tail`` (more resources)."""
    f = tmp_path / name
    f.write_text(head + textwrap.indent(textwrap.dedent(body), "      ") + tail, encoding="utf-8")
    return f


def run_map_cli(*argv: str) -> int:
    """``mediator map ARGV...`` in this process; returns its exit code (output on capsys)."""
    from mediator.mapping.cli import add_map_cli

    p = argparse.ArgumentParser(prog="mediator")
    add_map_cli(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["map", *argv])
    return int(args.func(args) or 0)


def fixture_text(name: str) -> str:
    return (FIXTURES / "hl7v2" / name).read_bytes().decode("utf-8").replace("\r\n", "\r").replace("\n", "\r")
