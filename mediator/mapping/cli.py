"""``mediator map``: the integrator's tools for mapping files.

``mediator map run [--mapping FILE] MESSAGE``
    Map one HL7 v2 message file (or CDA document) and print the FHIR Bundle (JSON) on stdout; on
    stderr, the segments (sections) no rule read and the validation problems. Without ``--mapping``,
    the mapping is the one the channels would choose for that message (message type, sending
    application and facility; for CDA, the document type: code and templateId).

``mediator map test [NAME ...] [--update]``
    Run the mapping fixtures kept next to the mappings: ``<mappings_dir>/tests/<name>.hl7`` and its
    expected Bundle ``<name>.expected.json``. Prints ``PASS``/``FAIL`` per fixture with the paths
    that differ; exit status 1 when any fails. ``--update`` (re)writes the expected files.

The lead wires both into ``mediator.cli.build_parser`` with ``add_map_cli(sub)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mediator.config import AppConfig, ConfigError, load_channels, load_config
from mediator.fhir.validate import validate_bundle
from mediator.hl7v2 import HL7Error, Message, parse
from mediator.mapping.mapping import Mapping, load_mapping, load_mappings
from mediator.mapping.model import MappingContext, MappingError
from mediator.mapping.xpath import XmlMessage

__all__ = ["add_map_cli", "cmd_map_run", "cmd_map_test", "choose_mapping", "compare_bundles"]


def add_map_cli(subparsers: Any) -> None:
    """Add ``map run`` and ``map test`` to the ``mediator`` command's sub-parsers."""
    p = subparsers.add_parser("map", help="mapping tools: run a mapping on a message, run the mapping fixtures")
    sub = p.add_subparsers(dest="map_command", required=True)

    run = sub.add_parser("run", help="map one HL7 v2 message file and print the FHIR Bundle")
    run.add_argument("message", help="HL7 v2 message file (CR, LF or CRLF segment ends) or CDA document (.xml)")
    run.add_argument("--mapping", help="mapping file (default: the one the channels choose for the message)")
    run.add_argument("--config", default="config.yaml")
    run.add_argument("--compact", action="store_true", help="one-line JSON")
    run.set_defaults(func=cmd_map_run)

    test = sub.add_parser("test", help="run the mapping fixtures (<mappings_dir>/tests/*.hl7 + .expected.json)")
    test.add_argument("names", nargs="*", help="only these fixtures (file names without .hl7)")
    test.add_argument("--config", default="config.yaml")
    test.add_argument("--dir", help="fixture directory (default: <mappings_dir>/tests)")
    test.add_argument("--update", action="store_true", help="write the current output as the expected files")
    test.set_defaults(func=cmd_map_test)

    schema = sub.add_parser("schema", help="print the JSON Schema of mapping files (for editors)")
    schema.set_defaults(func=cmd_map_schema)


# ------------------------------------------------------------------------------------------ helpers
def _config(path: str) -> AppConfig:
    """``config.yaml``, or the defaults (relative to the working directory) when there is none."""
    if Path(path).is_file():
        return load_config(path)
    cfg = AppConfig()
    cfg.base_dir = str(Path.cwd())
    return cfg


def _read_message(path: Path) -> Any:
    """An HL7 v2 message, or an XML (CDA) document when the file starts with '<'."""
    raw = path.read_bytes()
    if raw.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
        from mediator.cda.safe_xml import parse_xml

        return XmlMessage(parse_xml(raw), raw)
    data = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    return parse(data)


def _choose_xml_mapping(cfg: AppConfig, msg: XmlMessage,
                        mappings: dict[str, Mapping]) -> tuple[Mapping | None, str]:
    """A CDA document: the mapping of the channel ``POST /cda`` would choose for its type (the same
    :meth:`ChannelRouter.for_cda`: a channel naming its code or templateId, else a catch-all); when
    CDA channels exist but none takes this type, none (the document would be refused). Without any
    CDA channel (or loadable channels), the first mapping reading CDA documents."""
    from mediator.accept.channels import ChannelRouter

    try:
        router: ChannelRouter | None = ChannelRouter(load_channels(cfg))
    except ConfigError:
        router = None
    if router is not None and any(c.source.protocol == "cda" for c in router.channels):
        sel = router.for_cda(msg.root, "http")
        if sel.channel is None and any(c.source.protocol == "cda" and "mllp" in c.source.transports
                                       for c in router.channels):
            sel = router.for_cda(msg.root, "mllp")
        if sel.channel is None:
            return None, sel.problem
        if sel.channel.mapping in mappings:
            return mappings[sel.channel.mapping], f"channel {sel.channel.name!r}"
        if sel.channel.mapping:
            return None, f"channel {sel.channel.name!r}: mapping {sel.channel.mapping!r} not found"
    for name in sorted(mappings):
        if mappings[name].source == "cda":
            return mappings[name], f"{name} reads CDA documents (no channel)"
    return None, "no mapping reads CDA documents"


def choose_mapping(cfg: AppConfig, msg: Message, mappings: dict[str, Mapping]) -> tuple[Mapping | None, str]:
    """The mapping the channels would choose for ``msg`` (any transport), and a why-not text otherwise.

    When no channel takes the message, the first mapping (by file name) whose ``message_types``
    accept its type is used, so that a mapping can be tried before its channel exists.
    """
    from mediator.accept.channels import ChannelRouter

    if isinstance(msg, XmlMessage):
        return _choose_xml_mapping(cfg, msg, mappings)
    why = ""
    try:
        router = ChannelRouter(load_channels(cfg))
    except ConfigError as exc:
        router, why = None, f"channels not loaded: {exc}"
    if router is not None:
        for transport in ("mllp", "http"):
            sel = router.for_hl7v2(msg, transport)
            if sel.channel is not None and sel.channel.mapping:
                found = mappings.get(sel.channel.mapping)
                if found is not None:
                    return found, f"channel {sel.channel.name!r}"
            elif sel.error is not None:
                why = f"no channel takes it ({sel.error.code}: {sel.error.text})"
    for name in sorted(mappings):
        if mappings[name].message_types and mappings[name].accepts(msg.type_key):
            return mappings[name], f"{name} accepts {msg.type_key} ({why or 'no channel'})"
    return None, why or f"no mapping accepts {msg.type_key}"


def _mappings(cfg: AppConfig) -> dict[str, Mapping]:
    return load_mappings(cfg.resolve(cfg.mappings_dir))


class NoMapping(Exception):
    """No channel and no mapping takes the message."""


def _map(cfg: AppConfig, msg: Message, mapping_file: str | None,
         mappings: dict[str, Mapping] | None = None) -> tuple[Mapping, Any, str]:
    """Apply the chosen mapping (and say why it was chosen); :class:`NoMapping` when there is none."""
    why = "--mapping"
    if mapping_file:
        codes = cfg.resolve(cfg.mappings_dir) / "codes"
        mapping = load_mapping(Path(mapping_file), codes_dir=codes if codes.is_dir() else None)
    else:
        mapping, why = choose_mapping(cfg, msg, mappings if mappings is not None else _mappings(cfg))
        if mapping is None:
            raise NoMapping(why)
    return mapping, mapping.apply(msg, MappingContext(identifiers=cfg.identifiers)), why


# ------------------------------------------------------------------------------------------ map run
def cmd_map_run(args: argparse.Namespace) -> int:
    """``mediator map run``: print the Bundle on stdout, what was not mapped and problems on stderr."""
    try:
        cfg = _config(args.config)
        msg = _read_message(Path(args.message))
        mapping, result, why = _map(cfg, msg, args.mapping)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (HL7Error, OSError, ValueError) as exc:  # XmlInputError is a ValueError
        print(f"error: cannot read the message: {exc}", file=sys.stderr)
        return 2
    except NoMapping as exc:
        print(f"error: {exc}; give --mapping FILE", file=sys.stderr)
        return 2
    except MappingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.bundle, ensure_ascii=False, indent=None if args.compact else 2))
    print(f"mapping: {mapping.file} ({msg.type_key}; {why})", file=sys.stderr)
    what = "sections" if isinstance(msg, XmlMessage) else "segments"
    print(f"unmapped {what}: {', '.join(result.unmapped) if result.unmapped else 'none'}", file=sys.stderr)
    problems = validate_bundle(result.bundle)
    for p in problems:
        print(f"invalid: {p}", file=sys.stderr)
    return 1 if problems else 0


# ------------------------------------------------------------------------------------------ map test
def _canonical(value: Any) -> Any:
    """Lists of objects become order-insensitive (sorted); lists of plain values keep their order."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        if items and all(isinstance(v, dict) for v in items):
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, ensure_ascii=False))
        return items
    return value


def _diff(expected: Any, actual: Any, path: str, out: list[str]) -> None:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for k in sorted(set(expected) | set(actual)):
            if k not in actual:
                out.append(f"{path}.{k}: missing")
            elif k not in expected:
                out.append(f"{path}.{k}: unexpected")
            else:
                _diff(expected[k], actual[k], f"{path}.{k}", out)
    elif isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            out.append(f"{path}: {len(expected)} item(s) expected, {len(actual)} found")
        for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
            _diff(e, a, f"{path}[{i}]", out)
    elif expected != actual:
        out.append(f"{path}: differs")


def compare_bundles(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Paths where two Bundles differ: entries matched by fullUrl, lists of objects in any order."""
    out: list[str] = []
    exp_entries = {e.get("fullUrl") or json.dumps(e, sort_keys=True): e for e in expected.get("entry", [])}
    act_entries = {e.get("fullUrl") or json.dumps(e, sort_keys=True): e for e in actual.get("entry", [])}
    for k in ("resourceType", "type"):
        if expected.get(k) != actual.get(k):
            out.append(f"Bundle.{k}: differs")
    for url, e in exp_entries.items():
        a = act_entries.get(url)
        rtype = (e.get("resource") or {}).get("resourceType", "?")
        if a is None:
            out.append(f"entry {rtype} {url}: missing")
            continue
        _diff(_canonical(e.get("resource")), _canonical(a.get("resource")), rtype, out)
        _diff({k: v for k, v in e.items() if k not in ("resource", "fullUrl")},
              {k: v for k, v in a.items() if k not in ("resource", "fullUrl")}, f"{rtype}(entry)", out)
    for url, a in act_entries.items():
        if url not in exp_entries:
            out.append(f"entry {(a.get('resource') or {}).get('resourceType', '?')} {url}: unexpected")
    return out


def cmd_map_schema(args: argparse.Namespace) -> int:
    """``mediator map schema``: the JSON Schema of mapping, fragment and code map files on stdout."""
    from mediator.mapping.jsonschema import mapping_schema

    print(json.dumps(mapping_schema(), indent=2, ensure_ascii=False))
    return 0


def cmd_map_test(args: argparse.Namespace) -> int:
    """``mediator map test``: PASS/FAIL per fixture; 1 when any fails (or none is found)."""
    try:
        cfg = _config(args.config)
        mappings = _mappings(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    folder = Path(args.dir) if args.dir else cfg.resolve(cfg.mappings_dir) / "tests"
    fixtures = sorted([*folder.glob("*.hl7"), *folder.glob("*.xml")])
    if args.names:
        fixtures = [f for f in fixtures if f.stem in set(args.names)]
    if not fixtures:
        print(f"no fixture found in {folder}", file=sys.stderr)
        return 1
    failed = 0
    for f in fixtures:
        expected_file = f.with_name(f.stem + ".expected.json")
        try:
            msg = _read_message(f)
            mapping, result, _ = _map(cfg, msg, None, mappings)
        except (HL7Error, MappingError, OSError, ValueError) as exc:
            failed += 1
            print(f"FAIL {f.name}: {exc}")
            continue
        except NoMapping as exc:
            failed += 1
            print(f"FAIL {f.name}: {exc}")
            continue
        problems = validate_bundle(result.bundle)
        if args.update:
            expected_file.write_text(json.dumps(result.bundle, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        if not expected_file.is_file():
            failed += 1
            print(f"FAIL {f.name}: {expected_file.name} is missing (write it with --update)")
            continue
        expected = json.loads(expected_file.read_text(encoding="utf-8"))
        diffs = [f"invalid: {p}" for p in problems] + compare_bundles(expected, result.bundle)
        name = Path(mapping.file).name
        if diffs:
            failed += 1
            print(f"FAIL {f.name} ({name}): {len(diffs)} difference(s)")
            for d in diffs[:20]:
                print(f"    {d}")
            if len(diffs) > 20:
                print(f"    ... {len(diffs) - 20} more")
        else:
            unmapped = f"; unmapped: {', '.join(result.unmapped)}" if result.unmapped else ""
            print(f"PASS {f.name} ({name}, {len(result.bundle['entry'])} resources{unmapped})")
    print(f"{len(fixtures) - failed} passed, {failed} failed")
    return 1 if failed else 0
