"""Built-in functions callable from mapping rules with ``fn:``.

Each function declares what it reads: ``node`` (one HL7 node: the rule's ``path`` or the current
``for_each`` item), ``nodes`` (every node a ``[*]`` path selects) or ``value`` (the text at the
path). Arguments (``args:``) are checked at load.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from mediator.hl7v2 import REPETITION, unescape
from mediator.mapping.model import Scope


@dataclass(frozen=True)
class Function:
    name: str
    input: str  # "node" | "nodes" | "value" | "none"
    args: dict[str, type]  # allowed argument -> expected python type
    impl: Callable[[Scope, Any, dict[str, Any]], Any]
    doc: str


@lru_cache(maxsize=256)
def _indexes(rel: str) -> tuple[int, int] | None:
    c, _, s = rel.partition(".")
    if c.isdigit() and (not s or s.isdigit()):
        return int(c), int(s or 0)
    return None


def _text(node: Any, rel: str, msg: Any = None) -> str:
    """Component ``c`` or ``c.s`` of a field repetition (the fast path), else ``node.get(rel)``."""
    if node is None:
        return ""
    idx = _indexes(rel)
    if idx is not None and msg is not None and node.level == REPETITION:
        d = msg.delimiters
        comps = node.raw.split(d.component)
        c, sub = idx
        v = comps[c - 1] if c <= len(comps) else ""
        if sub:
            parts = v.split(d.subcomponent)
            v = parts[sub - 1] if sub <= len(parts) else ""
        if d.escape in v:
            v = unescape(v, d, msg.encoding)
        return v.strip()
    v = node.get(rel)
    return v.strip() if v else ""


@lru_cache(maxsize=4096)
def _fill(template: str, facility: str, authority: str) -> str:
    return template.replace("{facility}", quote(facility, safe="-._~")).replace(
        "{authority}", quote(authority, safe="-._~"))


def identifier_kind(scope: Scope, node: Any, args: dict[str, Any]) -> str | None:
    """The identifier kind of a CX-like node: authority, else type code, else the default kind."""
    if node is None:
        return None
    if args.get("kind"):
        return args["kind"]
    cfg = scope.ctx.identifiers
    authority = _text(node, args.get("authority", "4.1"), scope.msg)
    if authority:
        kind = cfg.by_authority.get(authority) or cfg.by_authority.get(authority.upper())
        if kind:
            return kind
    else:   # an authority given by its OID only: config identifiers.aliases (urn:oid:...) may name it
        comp = args.get("authority", "4.1").partition(".")[0]
        uid = _text(node, f"{comp}.2", scope.msg)
        kind = cfg.aliases.get(f"urn:oid:{uid}") if uid else None
        if kind:
            return kind
    type_code = _text(node, args.get("type", "5"), scope.msg)
    if type_code:
        kind = cfg.by_type.get(type_code) or cfg.by_type.get(type_code.upper())
        if kind:
            return kind
    return args.get("default_kind") or cfg.default_kind


def authority_is_system(scope: Scope, value: Any, args: dict[str, Any]) -> str | None:
    """``"true"`` when an assigning authority code (CX-4.1) is configured as an identifier system
    (``identifiers.by_authority``: CIN, CNSS, INPE ...): it names a system, not an organization."""
    cfg = scope.ctx.identifiers
    v = str(value)
    return "true" if v in cfg.by_authority or v.upper() in cfg.by_authority else None


def _unnamed_oid(scope: Scope, node: Any, args: dict[str, Any]) -> str | None:
    """``urn:oid:<universal id>`` for an assigning authority given only as an ISO OID (CX-4
    ``&2.16.840...&ISO``: IG HD[uri]), unless config ``identifiers.aliases`` or the type code
    (CX-5 via ``by_type``) name a configured kind; None otherwise."""
    comp = args.get("authority", "4.1").partition(".")[0]
    if node is None or _text(node, f"{comp}.1", scope.msg) or _text(node, f"{comp}.3", scope.msg) != "ISO":
        return None
    uid = _text(node, f"{comp}.2", scope.msg)
    if not uid:
        return None
    cfg = scope.ctx.identifiers
    system = f"urn:oid:{uid}"
    type_code = _text(node, args.get("type", "5"), scope.msg)
    if system in cfg.aliases or (type_code and (type_code in cfg.by_type or type_code.upper() in cfg.by_type)):
        return None
    return system


def identifier_system(scope: Scope, node: Any, args: dict[str, Any]) -> str | None:
    """The system URI of a CX-like node through ``ctx.identifiers`` (``{facility}``/``{authority}``)."""
    oid = None if args.get("kind") else _unnamed_oid(scope, node, args)
    if oid is not None:
        return oid
    kind = identifier_kind(scope, node, args)
    if kind is None:
        return None
    template = scope.ctx.identifiers.systems.get(kind)
    if not template:
        return None
    if "{" not in template:
        return template
    cfg = scope.ctx.identifiers
    authority = _text(node, args.get("authority", "4.1"), scope.msg)
    facility = authority if authority and authority.upper() not in cfg.by_authority else ""
    if not facility:
        facility = (scope.msg.get("MSH-4.1") or "").strip()
    authority = authority or facility
    if ("{facility}" in template and not facility) or ("{authority}" in template and not authority):
        return None
    return _fill(template, facility, authority)


def strongest_identifier(scope: Scope, nodes: Any, args: dict[str, Any]) -> str | None:
    """``system|value`` of the first identifier whose kind comes first in ``args.kinds``."""
    kinds = args.get("kinds") or list(scope.ctx.identifiers.systems)
    value_path = args.get("value", "1")
    found: dict[str, str] = {}
    for node in nodes or ():
        value = _text(node, value_path, scope.msg)
        if not value:
            continue
        kind = identifier_kind(scope, node, args)
        if kind in kinds and kind not in found:
            system = identifier_system(scope, node, args)
            if system:
                found[kind] = f"{system}|{value}"
    for kind in kinds:
        if kind in found:
            return found[kind]
    return None


def _is_arabic(ch: str) -> bool:
    o = ord(ch)
    return 0x0600 <= o <= 0x06FF or 0x0750 <= o <= 0x077F or 0x08A0 <= o <= 0x08FF or 0xFB50 <= o <= 0xFEFF


def script_of(scope: Scope, value: Any, args: dict[str, Any]) -> str | None:
    """ISO 15924 script of a text: ``Arab`` or ``Latn`` (the majority of letters), else None."""
    if not value:
        return None
    arabic = latin = 0
    for ch in value:
        if _is_arabic(ch):
            arabic += 1
        elif ch.isalpha():
            latin += 1
    if arabic > latin:
        return "Arab"
    return "Latn" if latin else None


_NUM = r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)"
_RANGE = re.compile(rf"^\s*({_NUM})\s*(?:-|–|à|to)\s*({_NUM})\s*$")
_BOUND = re.compile(rf"^\s*(<=|>=|<|>|≤|≥)\s*({_NUM})\s*$")


def _range(text: str | None) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    m = _RANGE.match(text)
    if m:
        return m.group(1).replace(",", "."), m.group(2).replace(",", ".")
    m = _BOUND.match(text)
    if m:
        v = m.group(2).replace(",", ".")
        return (None, v) if m.group(1) in ("<", "<=", "≤") else (v, None)
    return None, None


def range_low(scope: Scope, value: Any, args: dict[str, Any]) -> str | None:
    """The low bound of a reference range text (``3.5-5.0``, ``0,70 - 1,10``, ``>10``), else None."""
    return _range(value)[0]


def range_high(scope: Scope, value: Any, args: dict[str, Any]) -> str | None:
    """The high bound of a reference range text (``3.5-5.0``, ``<5``), else None."""
    return _range(value)[1]


def to_base64(scope: Scope, value: Any, args: dict[str, Any]) -> str | None:
    """The base64 of a text's UTF-8 bytes (a FHIR ``Attachment.data`` for a text document)."""
    return base64.b64encode(str(value).encode("utf-8")).decode("ascii") if value else None


def position(scope: Scope, _: Any, args: dict[str, Any]) -> str | None:
    """The 1-based position of the current ``for_each`` node (or group) among its siblings."""
    return str(scope.pos) if scope.pos else None


def join(scope: Scope, nodes: Any, args: dict[str, Any]) -> str | None:
    """The unescaped texts of every selected node (``OBX-5[*]``, ``NTE[*]-3``) joined by ``args.sep``."""
    texts = [t for n in nodes or () if (t := n.text.strip()) and t != '""']
    return args.get("sep", "\n").join(texts) if texts else None


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("identifier_system", "node",
                 {"authority": str, "type": str, "kind": str, "default_kind": str}, identifier_system,
                 "CX/XCN node -> identifier system URI"),
        Function("identifier_kind", "node",
                 {"authority": str, "type": str, "kind": str, "default_kind": str}, identifier_kind,
                 "CX/XCN node -> identifier kind (cin, ipp, ...)"),
        Function("strongest_identifier", "nodes",
                 {"kinds": list, "authority": str, "type": str, "default_kind": str, "value": str},
                 strongest_identifier, "CX repetitions -> 'system|value' of the preferred kind"),
        Function("script_of", "value", {}, script_of, "text -> 'Arab' | 'Latn'"),
        Function("authority_is_system", "value", {}, authority_is_system,
                 "assigning authority code -> 'true' when config.yaml names it an identifier system"),
        Function("range_low", "value", {}, range_low, "'3.5-5.0' -> '3.5' (reference range low bound)"),
        Function("range_high", "value", {}, range_high, "'3.5-5.0' -> '5.0' (reference range high bound)"),
        Function("base64", "value", {}, to_base64, "text -> base64 of its UTF-8 bytes"),
        Function("position", "none", {}, position, "1-based position of the current for_each node"),
        Function("join", "nodes", {"sep": str}, join, "every selected value joined by 'sep' (a newline)"),
    )
}
