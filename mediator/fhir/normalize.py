"""Identifier systems of FHIR (and CDA) input, normalised to the ones configured once.

Senders write the same identifier with different systems: ``CIN``, ``urn:oid:...`` of their own,
an old URI. ``identifiers.aliases`` in config.yaml (and the kinds and authority codes themselves)
say which kind each one is; every ``identifier`` in a FHIR resource is rewritten to the configured
system of its kind, so that the shared record and the registries see one system per kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mediator.cda.document import default_identifier_system
from mediator.config import IdentifierConfig


def system_table(cfg: IdentifierConfig) -> dict[str, str]:
    """Alias (as written by senders) -> configured system, for kinds whose system has no placeholder."""
    fixed = {kind: uri for kind, uri in cfg.systems.items() if "{" not in uri}
    table: dict[str, str] = {}
    for kind, uri in fixed.items():
        table[kind] = table[kind.upper()] = uri
    for code, kind in cfg.by_authority.items():
        if kind in fixed:
            table[code] = fixed[kind]
    for alias, kind in cfg.aliases.items():
        if kind in fixed:
            table[alias] = fixed[kind]
    return table


def identifier_normalizer(cfg: IdentifierConfig) -> Callable[[Any], int]:
    """A function that rewrites identifier systems in place and returns how many it changed."""
    table = system_table(cfg)

    def normalize(value: Any) -> int:
        changed = 0
        stack = [value]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                ident = node.get("identifier")
                for i in ident if isinstance(ident, list) else [ident]:
                    if isinstance(i, dict) and isinstance(i.get("system"), str):
                        target = table.get(i["system"])
                        if target and target != i["system"]:
                            i["system"] = target
                            changed += 1
                stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
            elif isinstance(node, list):
                stack.extend(v for v in node if isinstance(v, (dict, list)))
        return changed

    return normalize


def cda_root_system(cfg: IdentifierConfig) -> Callable[[str], str]:
    """CDA ``II/@root`` -> FHIR system: the configured one for a known root, else ``urn:oid:<root>``."""
    table = system_table(cfg)

    def system_for(root: str) -> str:
        system = default_identifier_system(root)
        return table.get(system) or table.get(root) or system

    return system_for
