"""Built-in functions callable from mapping rules with ``fn:``.

Each function declares what it reads: ``node`` (one HL7 node: the rule's ``path`` or the current
``for_each`` item), ``nodes`` (every node a ``[*]`` path selects) or ``value`` (the text at the
path). Arguments (``args:``) are checked at load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from mediator.mapping.model import Scope


@dataclass(frozen=True)
class Function:
    name: str
    input: str  # "node" | "nodes" | "value"
    args: dict[str, type]  # allowed argument -> expected python type
    impl: Callable[[Scope, Any, dict[str, Any]], Any]
    doc: str


def _text(node: Any, rel: str) -> str:
    v = node.get(rel) if node is not None else None
    return v.strip() if v else ""


def identifier_kind(scope: Scope, node: Any, args: dict[str, Any]) -> str | None:
    """The identifier kind of a CX-like node: authority, else type code, else the default kind."""
    if node is None:
        return None
    if args.get("kind"):
        return args["kind"]
    cfg = scope.ctx.identifiers
    authority = _text(node, args.get("authority", "4.1"))
    if authority:
        kind = cfg.by_authority.get(authority) or cfg.by_authority.get(authority.upper())
        if kind:
            return kind
    type_code = _text(node, args.get("type", "5"))
    if type_code:
        kind = cfg.by_type.get(type_code) or cfg.by_type.get(type_code.upper())
        if kind:
            return kind
    return args.get("default_kind") or cfg.default_kind


def identifier_system(scope: Scope, node: Any, args: dict[str, Any]) -> str | None:
    """The system URI of a CX-like node through ``ctx.identifiers`` (``{facility}``/``{authority}``)."""
    kind = identifier_kind(scope, node, args)
    if kind is None:
        return None
    template = scope.ctx.identifiers.systems.get(kind)
    if not template:
        return None
    if "{" not in template:
        return template
    cfg = scope.ctx.identifiers
    authority = _text(node, args.get("authority", "4.1"))
    facility = authority if authority and authority.upper() not in cfg.by_authority else ""
    if not facility:
        facility = (scope.msg.get("MSH-4.1") or "").strip()
    authority = authority or facility
    if ("{facility}" in template and not facility) or ("{authority}" in template and not authority):
        return None
    return template.replace("{facility}", quote(facility, safe="-._~")).replace(
        "{authority}", quote(authority, safe="-._~"))


def strongest_identifier(scope: Scope, nodes: Any, args: dict[str, Any]) -> str | None:
    """``system|value`` of the first identifier whose kind comes first in ``args.kinds``."""
    kinds = args.get("kinds") or list(scope.ctx.identifiers.systems)
    value_path = args.get("value", "1")
    found: dict[str, str] = {}
    for node in nodes or ():
        value = _text(node, value_path)
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
    )
}
