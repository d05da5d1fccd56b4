"""Mapping fidelity on public corpora: prints tables, asserts nothing.

Run: ``python bench/fidelity.py [--details]``

1. Microsoft FHIR-Converter HL7 v2 corpus (``ms-fhir-converter/pairs.tsv``: input -> their expected
   Bundle), one row per message type:
   - parsed: the message parses and the mapping applies without an exception;
   - valid: ``validate_bundle`` finds nothing (FHIR R4 elements, every reference resolved);
   - value recall: of the primitive values of their expected output that also occur in the input
     message as a value (a field, repetition, component or subcomponent: values they invented, ids,
     URIs are left out), the share our Bundle also carries (dates compared on their digits up to the
     minute, numbers as numbers, strings exactly; one-character values are not counted);
   - type recall: of the resource types in their output, the share also in ours.
   The mapping is the one the channels choose for the message type; a type no channel takes uses
   the mapping of its family (``ADT^*`` -> adt_to_fhir.yaml) or the catch-all in ``FAMILY``.
2. ReportStream HL7 v2-to-FHIR IG cases (``reportstream-v2-to-fhir/``), one row per case folder:
   the share of the expected elements (leaf path without indexes, and value) that our Bundle
   reproduces for the same resource type, ignoring ids, references, ``meta``, ReportStream's own
   extensions (``reportstream.cdc.gov``) and its own identity (the Organization "CDC PRIME - Atlanta"
   it names as the 'assembler' agent of its transformation Provenance), and — as we send a
   transaction Bundle to the shared record, not a FHIR message — MessageHeader and Provenance
   with the resources only they refer to (MessageHeader.sender / destination.receiver: MSH-4/6/17/22,
   and ReportStream's default sender country when MSH-17 is empty), shown separately.
3. CDA: the Microsoft corpus' 22 C-CDA documents (same columns as 1, one row per document type) and
   the HL7 C-CDA examples (safe: parsed and mapped, or refused with a located error, never a crash;
   valid: full documents giving a valid Bundle), both with the ``source: cda`` mapping.
"""

from __future__ import annotations

import csv
import json
import re
import sys
import traceback
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mediator.config import AppConfig, load_config  # noqa: E402
from mediator.fhir.validate import validate_bundle  # noqa: E402
from mediator.hl7v2 import parse  # noqa: E402
from mediator.mapping import Mapping, MappingContext, load_mappings  # noqa: E402
from mediator.mapping.cli import choose_mapping  # noqa: E402
from mediator.testing import CORPORA  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# catch-all per family for the message families without a mapping of their own
FAMILY = {"ADT": "adt_to_fhir.yaml", "BAR": "adt_to_fhir.yaml", "DFT": "adt_to_fhir.yaml",
          "REF": "adt_to_fhir.yaml", "OUL": "oul_to_fhir.yaml", "OMG": "orders_to_fhir.yaml",
          "ORU": "oru_to_fhir.yaml", "ORM": "orders_to_fhir.yaml", "OML": "orders_to_fhir.yaml",
          "RDE": "pharmacy_to_fhir.yaml", "RDS": "pharmacy_to_fhir.yaml", "VXU": "vxu_to_fhir.yaml",
          "MDM": "mdm_to_fhir.yaml", "SIU": "siu_to_fhir.yaml"}
SKIP_KEYS = {"id", "reference", "fullUrl", "request", "meta", "url", "div", "lastUpdated"}
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::\d{2}(?:\.\d+)?)?)?)?)?"
                   r"(?:Z|[+-]\d{2}:\d{2})?$")
_UNESC = {"\\F\\": "|", "\\S\\": "^", "\\T\\": "&", "\\R\\": "~", "\\E\\": "\\", "\\.br\\": "\n"}


def _norm(v: Any) -> str | None:
    """A comparable form of a primitive value (None: too trivial to count)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        f = float(v)
        return str(int(f)) if f.is_integer() else repr(f)
    s = str(v).strip()
    m = _DATE.match(s)
    if m and len(s) >= 4:
        return "".join(g for g in m.groups() if g)
    if re.fullmatch(r"[+-]?\d+\.\d+", s):
        return repr(float(s)).rstrip("0").rstrip(".") if float(s) != int(float(s)) else str(int(float(s)))
    return s if len(s) >= 2 else None


def _values(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        if "reportstream.cdc.gov" in str(node.get("url", "")):
            return
        for k, v in node.items():
            if k not in SKIP_KEYS:
                _values(v, out)
    elif isinstance(node, list):
        for v in node:
            _values(v, out)
    else:
        n = _norm(node)
        if n is not None:
            out.add(n)


_DIGITS = re.compile(r"^(\d{8})(\d{4})?")


def _input_values(msg: Any) -> set[str]:
    """Every value of the message as its leaves (fields, repetitions, components, subcomponents), in
    the form :func:`_norm` gives them; an HL7 date/time also as its date and its minute."""
    d = msg.delimiters
    out: set[str] = set()

    def add(v: str) -> None:
        v = _input_text(v).strip()
        if not v:
            return
        n = _norm(v)
        if n is not None:
            out.add(n)
        m = _DIGITS.match(v)
        if m:
            out.add(m.group(1))
            if m.group(2):
                out.add(m.group(1) + m.group(2))
    for seg in msg.segments:
        for fi, field in enumerate(seg.raw.split(d.field)):
            if fi == 0:
                continue
            for rep in field.split(d.repetition):
                add(rep)
                for comp in rep.split(d.component):
                    add(comp)
                    for sub in comp.split(d.subcomponent):
                        add(sub)
    return out


def _input_text(raw: str) -> str:
    for k, v in _UNESC.items():
        raw = raw.replace(k, v)
    return raw


def _mapping_for(cfg: AppConfig, msg: Any, mappings: dict[str, Mapping]) -> Mapping | None:
    found, _ = choose_mapping(cfg, msg, mappings)
    if found is None:
        found = mappings.get(FAMILY.get(msg.message_code, ""))
    return found


def _types(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["resourceType"] for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)}


def _ms_pairs(kind: str) -> Iterator[tuple[dict[str, str], bytes, Any]]:
    """The Microsoft corpus pairs of one kind (hl7v2, ccda): the row, the input bytes, the expected JSON."""
    base = CORPORA / "ms-fhir-converter"
    with open(base / "pairs.tsv", encoding="utf-8") as fh:
        pairs = [r for r in csv.DictReader(fh, delimiter="\t") if r["kind"] == kind]
    for pair in pairs:
        yield (pair, (base / pair["input"]).read_bytes(),
               json.loads((base / pair["expected"]).read_text(encoding="utf-8-sig")))


def ms_corpus(cfg: AppConfig, mappings: dict[str, Mapping], details: bool) -> None:
    rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    ctx = MappingContext(identifiers=cfg.identifiers)
    for pair, raw, expected in _ms_pairs("hl7v2"):
        r = rows[pair["root_template"]]
        r["n"] += 1
        try:
            msg = parse(raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r"))
            mapping = _mapping_for(cfg, msg, mappings)
            if mapping is None:
                r["no_mapping"] += 1
                bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction", "entry": []}
            else:
                r["mapping:" + Path(mapping.file).stem] = 1
                bundle = mapping.apply(msg, ctx).bundle
            r["parsed"] += 1
        except Exception as exc:  # counted, shown with --details
            if details:
                print(f"  crash {pair['input']}: {type(exc).__name__}: {exc}")
                traceback.print_exc(limit=3)
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
        else:
            problems = validate_bundle(bundle) if mapping is not None else ["no mapping"]
            if not problems:
                r["valid"] += 1
            elif details:
                print(f"  invalid {pair['input']}: {problems[:3]}")
        want: set[str] = set()
        _values(expected, want)
        try:
            want &= _input_values(parse(raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r")))
        except Exception:
            want = set()
        ours: set[str] = set()
        _values(bundle, ours)
        r["values"] += len(want)
        r["value_hits"] += len(want & ours)
        exp_types = _types(expected) - {"MessageHeader", "Provenance"}
        r["types"] += len(exp_types)
        r["type_hits"] += len(exp_types & _types(bundle))
        if details and want - ours:
            print(f"  {pair['input']}: missing values {sorted(want - ours)[:12]}")
    _print_ms(rows)


def _pct(a: float, b: float) -> str:
    return f"{100 * a / b:5.1f}%" if b else "   - "


def _print_ms(rows: dict[str, dict[str, float]]) -> None:
    print("\nMicrosoft FHIR-Converter HL7 v2 corpus (pairs.tsv)")
    print(f"{'message type':14} {'n':>3} {'parsed':>7} {'valid':>7} {'values':>7} {'types':>7}  mapping")
    tot: dict[str, float] = defaultdict(float)
    for key in sorted(rows):
        r = rows[key]
        for k in ("n", "parsed", "valid", "values", "value_hits", "types", "type_hits", "no_mapping"):
            tot[k] += r[k]
        maps = ",".join(k.split(":", 1)[1] for k in r if k.startswith("mapping:")) or "none"
        print(f"{key:14} {int(r['n']):3} {_pct(r['parsed'], r['n']):>7} {_pct(r['valid'], r['n']):>7} "
              f"{_pct(r['value_hits'], r['values']):>7} {_pct(r['type_hits'], r['types']):>7}  {maps}")
    print(f"{'TOTAL':14} {int(tot['n']):3} {_pct(tot['parsed'], tot['n']):>7} {_pct(tot['valid'], tot['n']):>7} "
          f"{_pct(tot['value_hits'], tot['values']):>7} {_pct(tot['type_hits'], tot['types']):>7}  "
          f"({int(tot['value_hits'])}/{int(tot['values'])} values, {int(tot['type_hits'])}/{int(tot['types'])} types, "
          f"{int(tot['no_mapping'])} without mapping)")


# ---------------------------------------------------------------------------------------- ReportStream
def _leaves(node: Any, path: str, out: set[tuple[str, str]]) -> None:
    if isinstance(node, dict):
        if "reportstream.cdc.gov" in str(node.get("url", "")):
            return
        for k, v in node.items():
            if k in SKIP_KEYS:
                continue
            _leaves(v, f"{path}.{k}" if path else k, out)
    elif isinstance(node, list):
        for v in node:
            _leaves(v, path, out)
    else:
        n = _norm(node) if not isinstance(node, bool) else str(node)
        if n is not None:
            out.add((path, n))


def _assembler_refs(bundle: dict[str, Any]) -> set[str]:
    """References to ReportStream's own identity: the 'assembler' agent of its transformation
    Provenance (an Organization "CDC PRIME - Atlanta" with ReportStream's OID: not message data)."""
    out: set[str] = set()
    for e in bundle.get("entry", []):
        res = e.get("resource") or {}
        if res.get("resourceType") != "Provenance":
            continue
        for agent in res.get("agent", []):
            codes = {c.get("code") for c in agent.get("type", {}).get("coding", [])}
            if "assembler" in codes and agent.get("who", {}).get("reference"):
                out.add(agent["who"]["reference"])
    return out


def _refs(node: Any, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str):
            out.add(ref)
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)
    return out


def _header_only(bundle: dict[str, Any], skip: set[str]) -> set[str]:
    """Resources that only the left-out header resources refer to (MessageHeader.sender and
    destination.receiver, the Provenance's agents): they are the header's content (MSH-4/6/17/22),
    left out with it. Transitive: what only such a resource refers to is header content too."""
    res = {f"{r.get('resourceType')}/{r.get('id')}": r
           for r in (e.get("resource") or {} for e in bundle.get("entry", []))}
    header = {k for k, r in res.items() if r.get("resourceType") in skip}
    while True:
        data_refs: set[str] = set()
        for k, r in res.items():
            if k not in header:
                _refs(r, data_refs)
        header_refs: set[str] = set()
        for k in header:  # not what the header is about (Provenance.target, MessageHeader.focus)
            _refs({n: v for n, v in res[k].items() if n not in ("target", "focus")}, header_refs)
        more = {k for k in header_refs - data_refs if k in res} - header
        if not more:
            return header
        header |= more


def _elements(bundle: dict[str, Any], skip: set[str]) -> set[tuple[str, str, str]]:
    out: set[tuple[str, str, str]] = set()
    own = (_assembler_refs(bundle) | _header_only(bundle, skip)) if skip else set()
    for e in bundle.get("entry", []):
        res = e.get("resource") or {}
        rtype = res.get("resourceType", "")
        if rtype in skip or f"{rtype}/{res.get('id')}" in own:
            continue
        leaves: set[tuple[str, str]] = set()
        _leaves(res, "", leaves)
        out |= {(rtype, p, v) for p, v in leaves if p != "resourceType"}
    return out


def reportstream(cfg: AppConfig, mappings: dict[str, Mapping], details: bool) -> None:
    base = CORPORA / "reportstream-v2-to-fhir"
    ctx = MappingContext(identifiers=cfg.identifiers)
    rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for hl7 in sorted(base.rglob("*.hl7")):
        fhir = hl7.with_suffix(".fhir")
        if not fhir.is_file():
            continue
        folder = hl7.relative_to(base).parts[0]
        r = rows[folder]
        r["n"] += 1
        expected = json.loads(fhir.read_text(encoding="utf-8-sig"))
        try:
            msg = parse(hl7.read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r"))
            mapping = _mapping_for(cfg, msg, mappings)
            bundle = mapping.apply(msg, ctx).bundle if mapping else {"entry": []}
            r["parsed"] += 1
            if mapping and not validate_bundle(bundle):
                r["valid"] += 1
        except Exception as exc:
            if details:
                print(f"  crash {hl7.relative_to(base)}: {type(exc).__name__}: {exc}")
            bundle = {"entry": []}
        want = _elements(expected, {"MessageHeader", "Provenance"})
        have = _elements(bundle, set())
        r["elements"] += len(want)
        r["hits"] += len(want & have)
        hdr = _elements(expected, set()) - want
        r["hdr_elements"] += len(hdr)
        if details and want - have:
            print(f"  {hl7.relative_to(base)}: missing {sorted(want - have)[:8]}")
    print("\nReportStream HL7 v2-to-FHIR IG cases (elements: leaf path + value, ids/references/RS extensions ignored)")
    print(f"{'case folder':12} {'n':>3} {'parsed':>7} {'valid':>7} {'elements':>9} {'reproduced':>10}")
    tot: dict[str, float] = defaultdict(float)
    for key in sorted(rows):
        r = rows[key]
        for k in ("n", "parsed", "valid", "elements", "hits", "hdr_elements"):
            tot[k] += r[k]
        print(f"{key:12} {int(r['n']):3} {_pct(r['parsed'], r['n']):>7} {_pct(r['valid'], r['n']):>7} "
              f"{int(r['elements']):9} {_pct(r['hits'], r['elements']):>10}")
    print(f"{'TOTAL':12} {int(tot['n']):3} {_pct(tot['parsed'], tot['n']):>7} {_pct(tot['valid'], tot['n']):>7} "
          f"{int(tot['elements']):9} {_pct(tot['hits'], tot['elements']):>10}")
    print(f"(left out: {int(tot['hdr_elements'])} MessageHeader/Provenance/RS-identity elements; counted, "
          f"the share would be "
          f"{_pct(tot['hits'], tot['elements'] + tot['hdr_elements']).strip()})")


# ---------------------------------------------------------------------------------------- CDA
def _xml_input_values(root: Any) -> set[str]:
    """Every attribute value and text of a CDA document in :func:`_norm` form; a TS also as its date
    and its minute (as for HL7 v2 date/times)."""
    out: set[str] = set()
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        texts = list(el.attrib.values())
        if el.text and el.text.strip():
            texts.append(" ".join(el.text.split()))
        for v in texts:
            n = _norm(v.strip())
            if n is not None:
                out.add(n)
            m = _DIGITS.match(v.strip())
            if m:
                out.add(m.group(1))
                if m.group(2):
                    out.add(m.group(1) + m.group(2))
    return out


_CDA_UNMAPPED: dict[str, int] = defaultdict(int)  # full documents' sections with entries left unmapped


def _cda_one(mapping: Mapping | None, raw: bytes, ctx: MappingContext) -> tuple[Any, dict[str, Any] | None, str]:
    """(root, bundle, outcome): outcome is 'ok', 'refused' (a located XmlInputError / MappingError:
    parsed safely) or 'crash'. The sections the mapping reports as not mapped are counted."""
    from mediator.cda.safe_xml import XmlInputError, parse_xml
    from mediator.mapping import MappingError
    from mediator.mapping.xpath import XmlMessage

    root = None
    try:
        root = parse_xml(raw)
        if mapping is None:
            return root, None, "refused"
        result = mapping.apply(XmlMessage(root, raw), ctx)
        for item in result.unmapped:
            if item.startswith("section "):
                _CDA_UNMAPPED[item] += 1
        return root, result.bundle, "ok"
    except (XmlInputError, MappingError):
        return root, None, "refused"
    except Exception:
        return root, None, "crash"


def _cda_mapping(mappings: dict[str, Mapping]) -> Mapping | None:
    return next((m for _, m in sorted(mappings.items()) if m.source == "cda"), None)


def ms_cda_corpus(cfg: AppConfig, mappings: dict[str, Mapping], details: bool) -> None:
    """The 22 C-CDA documents of the Microsoft corpus: one row per document type (their template)."""
    mapping, ctx = _cda_mapping(mappings), MappingContext(identifiers=cfg.identifiers)
    rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for pair, raw, expected in _ms_pairs("ccda"):
        r = rows[pair["root_template"]]
        r["n"] += 1
        root, bundle, outcome = _cda_one(mapping, raw, ctx)
        r["parsed"] += outcome != "crash"
        if bundle is None:
            bundle = {"entry": []}
            if details:
                print(f"  {outcome} {pair['input']}")
        else:
            problems = validate_bundle(bundle)
            r["valid"] += not problems
            if details and problems:
                print(f"  invalid {pair['input']}: {problems[:3]}")
        want: set[str] = set()
        _values(expected, want)
        want &= _xml_input_values(root) if root is not None else set()
        ours: set[str] = set()
        _values(bundle, ours)
        r["values"] += len(want)
        r["value_hits"] += len(want & ours)
        exp_types = _types(expected)
        r["types"] += len(exp_types)
        r["type_hits"] += len(exp_types & _types(bundle))
        if details and want - ours:
            print(f"  {pair['input']}: missing values {sorted(want - ours)[:12]}; "
                  f"types {sorted(exp_types - _types(bundle))}")
    print("\nMicrosoft FHIR-Converter C-CDA corpus (pairs.tsv, kind ccda), mapping "
          f"{Path(mapping.file).name if mapping else 'none'}")
    print(f"{'document type':18} {'n':>3} {'parsed':>7} {'valid':>7} {'values':>7} {'types':>7}")
    tot: dict[str, float] = defaultdict(float)
    for key in sorted(rows):
        r = rows[key]
        for k in ("n", "parsed", "valid", "values", "value_hits", "types", "type_hits"):
            tot[k] += r[k]
        print(f"{key:18} {int(r['n']):3} {_pct(r['parsed'], r['n']):>7} {_pct(r['valid'], r['n']):>7} "
              f"{_pct(r['value_hits'], r['values']):>7} {_pct(r['type_hits'], r['types']):>7}")
    print(f"{'TOTAL':18} {int(tot['n']):3} {_pct(tot['parsed'], tot['n']):>7} {_pct(tot['valid'], tot['n']):>7} "
          f"{_pct(tot['value_hits'], tot['values']):>7} {_pct(tot['type_hits'], tot['types']):>7}  "
          f"({int(tot['value_hits'])}/{int(tot['values'])} values, {int(tot['type_hits'])}/{int(tot['types'])} types)")


def hl7_cda_examples(cfg: AppConfig, mappings: dict[str, Mapping], details: bool) -> None:
    """HL7 C-CDA examples: full documents must map to valid Bundles; section examples (fragments, no
    ClinicalDocument) and malformed ones must be refused with a located error, never crash."""
    base = CORPORA / "hl7-c-cda-examples"
    mapping, ctx = _cda_mapping(mappings), MappingContext(identifiers=cfg.identifiers)
    rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for f in sorted(base.rglob("*.xml")):
        r = rows[f.relative_to(base).parts[0]]
        r["n"] += 1
        root, bundle, outcome = _cda_one(mapping, f.read_bytes(), ctx)
        r["safe"] += outcome != "crash"
        if root is not None and root.tag == "{urn:hl7-org:v3}ClinicalDocument":
            r["full"] += 1
            problems = validate_bundle(bundle) if bundle is not None else [outcome]
            r["valid"] += not problems
            if details and problems:
                print(f"  {f.relative_to(base)}: {problems[:3]}")
        elif details and outcome == "crash":
            print(f"  crash {f.relative_to(base)}")
    print("\nHL7 C-CDA examples (full documents: valid Bundle; section examples: refused with a located error)")
    print(f"{'folder':34} {'n':>4} {'safe':>7} {'full':>5} {'valid':>7}")
    tot: dict[str, float] = defaultdict(float)
    for key in sorted(rows):
        r = rows[key]
        for k in ("n", "safe", "full", "valid"):
            tot[k] += r[k]
        print(f"{key[:34]:34} {int(r['n']):4} {_pct(r['safe'], r['n']):>7} {int(r['full']):5} "
              f"{_pct(r['valid'], r['full']):>7}")
    print(f"{'TOTAL':34} {int(tot['n']):4} {_pct(tot['safe'], tot['n']):>7} {int(tot['full']):5} "
          f"{_pct(tot['valid'], tot['full']):>7}")
    print("C-CDA sections with entries reported as not mapped (both corpora): "
          + (", ".join(f"{k} x{n}" for k, n in sorted(_CDA_UNMAPPED.items())) or "none"))


def main() -> None:
    details = "--details" in sys.argv
    cfg_file = ROOT / "config.yaml"
    cfg = load_config(cfg_file) if cfg_file.is_file() else AppConfig(base_dir=str(ROOT))
    mappings_dir = Path(cfg.resolve(cfg.mappings_dir))
    mappings = load_mappings(mappings_dir)
    ms_corpus(cfg, mappings, details)
    reportstream(cfg, mappings, details)
    ms_cda_corpus(cfg, mappings, details)
    hl7_cda_examples(cfg, mappings, details)


if __name__ == "__main__":
    main()
