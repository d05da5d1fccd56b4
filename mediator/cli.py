"""``mediator`` command line: serve, check, and the operator's transaction commands."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from mediator.config import AppConfig, ConfigError, load_config


def _load(args: argparse.Namespace) -> AppConfig:
    cfg = load_config(args.config)
    if getattr(args, "http_port", None) is not None:
        cfg.http.port = args.http_port
    if getattr(args, "mllp_port", None) is not None:
        cfg.mllp.port = args.mllp_port
    if getattr(args, "data_dir", None):
        cfg.data_dir = args.data_dir
    return cfg


def cmd_serve(args: argparse.Namespace) -> int:
    from mediator import logs
    from mediator.app import run_forever
    from mediator.sandbox.shr_process import SandboxStartError
    from mediator.store.crypto import StoreKeyError

    cfg = _load(args)
    logs.configure(cfg.logging.level, cfg.logging.format)
    try:
        asyncio.run(run_forever(cfg))
    except (ConfigError, StoreKeyError, SandboxStartError) as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """A worker process, started by `mediator serve` when worker.processes > 0 (not for direct use)."""
    from pathlib import Path

    from mediator.child_process import die_with_parent

    die_with_parent()  # first: a node killed while this worker starts must not leave it behind
    import signal

    # A reload asked before this worker is ready waits (blocked, not ignored: the files may change after
    # the worker read them); run_worker serves it once its handler is in place.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})

    from mediator import logs
    from mediator.pipeline.worker import read_state, run_worker

    cfg = read_state(Path(args.state))
    logs.configure(cfg.logging.level, cfg.logging.format)
    asyncio.run(run_worker(cfg, args.partition, args.partitions, args.parent))
    return 0


def _fallback_config(path: str) -> AppConfig:
    """When config.yaml has errors, still find the channels, mappings and destinations it names."""
    from pathlib import Path

    from pydantic import ValidationError

    from mediator.config import DestinationConfig
    from mediator.yamlfile import YamlFileError, load_yaml

    cfg = AppConfig()
    cfg.base_dir = str(Path(path).resolve().parent)
    try:
        raw, _ = load_yaml(path)
    except YamlFileError:
        return cfg
    if not isinstance(raw, dict):
        return cfg
    for key in ("channels_dir", "mappings_dir"):
        if isinstance(raw.get(key), str):
            setattr(cfg, key, raw[key])
    for name, dest in (raw.get("destinations") or {}).items() if isinstance(raw.get("destinations"), dict) else ():
        with contextlib.suppress(ValidationError):
            cfg.destinations[str(name)] = DestinationConfig.model_validate(dest)
    return cfg


def cmd_check(args: argparse.Namespace) -> int:
    """Validate config.yaml, every channel and every mapping; print each problem as file:line: problem."""
    from mediator.app import load_definitions

    errors = []
    try:
        cfg = _load(args)
    except ConfigError as exc:
        errors.extend(exc.errors)
        cfg = _fallback_config(args.config)
    channels, mappings = [], {}
    try:
        channels, mappings = load_definitions(cfg)
    except ConfigError as exc:
        errors.extend(exc.errors)
    if cfg.store.encryption_key_file:
        from mediator.store.crypto import StoreKeyError, load_key

        try:
            load_key(cfg.resolve(cfg.store.encryption_key_file))
        except StoreKeyError as exc:
            errors.append(str(exc))
    if errors:
        for err in errors:
            print(f"error: {err}", file=sys.stderr)
        print(f"{len(errors)} problem(s) found", file=sys.stderr)
        return 1
    print(f"ok: {args.config}, {len(channels)} channel(s), {len(mappings)} mapping(s)")
    return 0


# -- operator commands: they talk to a running node over its HTTP API -------------------------------
def _request(args: argparse.Namespace, method: str, path: str) -> Any:
    url = args.url.rstrip("/") + path
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if args.user:
        token = base64.b64encode(f"{args.user}:{args.password or ''}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        raise SystemExit(f"error: HTTP {exc.code} from {url}: {detail}") from None
    except urllib.error.URLError as exc:
        raise SystemExit(f"error: cannot reach {url}: {exc.reason}") from None


def cmd_tx_list(args: argparse.Namespace) -> int:
    query = {k: v for k in ("status", "channel", "since", "until", "control_id", "patient", "message_type",
                            "limit", "before") if (v := getattr(args, k, None)) is not None}
    data = _request(args, "GET", "/api/transactions?" + urllib.parse.urlencode(query))
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    print(f"{'id':26}  {'received':24}  {'status':21}  {'channel':14}  {'type':14}  control id / error")
    for t in data["transactions"]:
        tail = t["control_id"] + (f"  {t['error'][:60]}" if t["error"] else "")
        print(f"{t['id']:26}  {t['received_at']:24}  {t['status']:21}  {t['channel'][:14]:14}  "
              f"{t['message_type'][:14]:14}  {tail}")
    if data.get("next"):
        print(f"more: --before {data['transactions'][-1]['id']}")
    return 0


def cmd_tx_show(args: argparse.Namespace) -> int:
    print(json.dumps(_request(args, "GET", f"/api/transactions/{args.id}"), indent=2, ensure_ascii=False))
    return 0


def cmd_tx_rerun(args: argparse.Namespace) -> int:
    """One transaction by id, or every one a filter selects (``--status Failed [--channel ...]``)."""
    if args.id:
        data = _request(args, "POST", f"/api/transactions/{args.id}/rerun")
        print(f"rerun of {data['rerun_of']} queued as {data['id']}")
        return 0
    if not args.status:
        raise SystemExit("error: give a transaction id, or --status (Failed, 'Completed with errors', Rejected)")
    query = {k: v for k in ("status", "channel", "since", "until", "message_type", "limit")
             if (v := getattr(args, k, None)) is not None}
    if args.dry_run:
        query["dry_run"] = "true"
    data = _request(args, "POST", "/api/transactions/rerun?" + urllib.parse.urlencode(query))
    if args.dry_run:
        print(f"{data['count']} transaction(s) would be rerun" + (" (and more: call again)" if data["more"] else ""))
        return 0
    for r in data["rerun"]:
        print(f"rerun of {r['rerun_of']} queued as {r['id']}")
    print(f"{data['count']} rerun" + (" (more match: run the command again)" if data["more"] else ""))
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    """Send HL7 v2 files over MLLP (one message per file, LF or CR line ends) and print each answer."""
    from pathlib import Path

    from mediator.clients.mllp import MllpClient, ack_code

    host, _, port = args.mllp.rpartition(":")

    async def run() -> int:
        client = await MllpClient.connect(host or "127.0.0.1", int(port))
        worst = 0
        try:
            for name in args.files:
                text = Path(name).read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")
                answer = await client.send(text, timeout=args.timeout)
                code = ack_code(answer)
                worst = max(worst, 0 if code in ("AA", "CA") else 1)
                print(f"{name}: {code}")
                if args.verbose or code not in ("AA", "CA"):
                    print(answer.replace("\r", "\n"))
        finally:
            await client.close()
        return worst

    return asyncio.run(run())


def cmd_keygen(args: argparse.Namespace) -> int:
    """Write a new 256-bit store key (hex), readable by its owner only."""
    import os

    from mediator.store.crypto import new_key

    fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new_key() + "\n")
    print(f"key written to {args.file}; set store.encryption_key_file to it and keep a copy apart from the data")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mediator", description="Health interoperability layer (HL7 v2, CDA, FHIR)")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the mediator")
    serve.add_argument("--config", default="config.yaml")
    serve.add_argument("--http-port", type=int)
    serve.add_argument("--mllp-port", type=int)
    serve.add_argument("--data-dir")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="(internal) a worker process started by serve")
    worker.add_argument("--state", required=True)
    worker.add_argument("--partition", type=int, required=True)
    worker.add_argument("--partitions", type=int, required=True)
    worker.add_argument("--parent", type=int, required=True, help="the node's pid; the worker ends with it")
    worker.set_defaults(func=cmd_worker)

    check = sub.add_parser("check", help="validate config.yaml, channels and mappings (file:line: problem)")
    check.add_argument("--config", default="config.yaml")
    check.set_defaults(func=cmd_check)

    from mediator.mapping.cli import add_map_cli
    from mediator.registry.cli import add_registry_cli

    add_map_cli(sub)
    add_registry_cli(sub)

    keygen = sub.add_parser("keygen", help="make a key for encrypting the store at rest")
    keygen.add_argument("file")
    keygen.set_defaults(func=cmd_keygen)

    send = sub.add_parser("send", help="send HL7 v2 message files over MLLP and print the ACKs")
    send.add_argument("files", nargs="+")
    send.add_argument("--mllp", default="127.0.0.1:2575", help="host:port of the MLLP listener")
    send.add_argument("--timeout", type=float, default=30.0)
    send.add_argument("-v", "--verbose", action="store_true", help="print every ACK, not only NAKs")
    send.set_defaults(func=cmd_send)

    tx = sub.add_parser("tx", help="transaction log: list, show, rerun").add_subparsers(dest="tx", required=True)
    for name, func in (("list", cmd_tx_list), ("show", cmd_tx_show), ("rerun", cmd_tx_rerun)):
        sp = tx.add_parser(name)
        sp.add_argument("--url", default="http://127.0.0.1:8080", help="the node's HTTP base URL")
        sp.add_argument("--user")
        sp.add_argument("--password")
        sp.set_defaults(func=func)
        if name == "list":
            for f in ("status", "channel", "since", "until", "control-id", "patient", "message-type", "before"):
                sp.add_argument(f"--{f}", dest=f.replace("-", "_"))
            sp.add_argument("--limit", type=int)
            sp.add_argument("--json", action="store_true")
        elif name == "rerun":
            sp.add_argument("id", nargs="?", help="one transaction; without it, every one the filters select")
            for f in ("status", "channel", "since", "until", "message-type"):
                sp.add_argument(f"--{f}", dest=f.replace("-", "_"))
            sp.add_argument("--limit", type=int, help="at most this many per call (default 100, max 500)")
            sp.add_argument("--dry-run", action="store_true", help="only count what would be rerun")
        else:
            sp.add_argument("id")
    return p


def main(argv: list[str] | None = None) -> int:
    from mediator.heap import tune_collector

    tune_collector()
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
