"""Load mapping files and apply them to messages.

:func:`load_mapping` reads one YAML file (plus the fragment and code map files it names), checks
it and compiles it into a :class:`Mapping`; :meth:`Mapping.apply` turns a parsed HL7 v2 message
into a FHIR R4 transaction Bundle.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from mediator.config import ConfigError
from mediator.mapping.compiler import (
    ALL,
    Compiler,
    Cond,
    Fragment,
    Rule,
    Src,
    Unit,
    Where,
    bad_merge_names,
    load_yaml_cached,
    merge_items,
)
from mediator.mapping.model import MappingContext, MappingResult, RuleInfo, Scope
from mediator.mapping.schema import resource_model
from mediator.mapping.xpath import XmlMessage, XPathSource, unmapped_sections
from mediator.yamlfile import Locations, YamlFileError, load_yaml

TOP_KEYS = frozenset({"mapping", "description", "source", "message_types", "uses", "let", "patient_key",
                      "ignore_segments", "bundle", "resources", "fragments", "namespaces", "ignore_sections",
                    "invalid"})
SOURCES = ("hl7v2", "cda")  # cda: paths are XPath (see mediator/mapping/xpath.py)
RESOURCE_KEYS = frozenset({"resourceType", "description", "when", "for_each", "use", "id", "request",
                           "fields", "merge"})
FRAGMENT_KEYS = frozenset({"datatype", "description", "fields", "when"})
BUNDLE_TYPES = ("transaction", "batch", "collection")
METHODS = ("PUT", "POST")


@dataclass
class _Resource:
    name: str
    resource_type: str
    info: RuleInfo
    when: Cond | None
    select: Any  # Callable[[Scope], list[node]] | None
    id: Rule
    fields: Rule
    method: str
    url: Rule | None
    gate: Any = None  # Callable[[msg], bool]: True when the for_each surely selects nothing
    merge: tuple[str, ...] = ()  # repeating elements a later occurrence of the same Type/id adds to
    merge_fields: Rule | None = None  # those elements only (the rest of a duplicate is not built)


@dataclass
class Mapping:
    """A compiled mapping file."""

    name: str
    file: str
    source: str
    message_types: list[str]
    description: str = ""
    bundle_type: str = "transaction"
    _lets: list[tuple[str, Rule]] = field(default_factory=list, repr=False)
    _resources: list[_Resource] = field(default_factory=list, repr=False)
    _patient_key: Rule | None = field(default=None, repr=False)
    _coverage: dict[str, frozenset[int]] = field(default_factory=dict, repr=False)
    _ignore_sections: frozenset[str] = field(default_factory=frozenset, repr=False)

    def accepts(self, type_key: str) -> bool:
        """Whether this mapping is meant for a message type (``ADT^A01``; ``ADT^*`` patterns allowed)."""
        if not self.message_types:
            return True
        family = type_key.split("^", 1)[0]
        return type_key in self.message_types or f"{family}^*" in self.message_types

    def apply(self, msg: Any, ctx: MappingContext) -> MappingResult:
        """Map one parsed message (a CDA: its lxml root or an :class:`XmlMessage`); raise
        :class:`MappingError` when a rule cannot apply."""
        xml = self.source == "cda"
        if xml:
            msg = XmlMessage.of(msg)
            nodes: list[Any] = []  # the elements resources were made from: their sections are mapped
        scope = Scope(msg, ctx)
        for name, rule in self._lets:
            scope.vars[name] = rule(scope)
        todo: list[tuple[_Resource, Scope, str]] = []
        for res in self._resources:
            if res.select is None:
                if res.when is not None and not res.when(scope):
                    continue
                items = [scope]
            else:
                if res.gate is not None and res.gate(msg):
                    continue
                items = [s for s in res.select(scope) if res.when is None or res.when(s)]
                if xml:
                    nodes.extend(s.node for s in items)
            ids = []
            for s in items:
                rid = res.id(s)
                if rid is None:
                    raise res.info.fail("the resource id is empty (its source fields are missing)")
                ids.append((s.group, rid))
                todo.append((res, s, rid))
            if ids:
                scope.ids[res.name] = ids
        entries: list[dict[str, Any]] = []
        seen: dict[str, dict[str, Any]] = {}
        merged: set[tuple[str, str, Any]] = set()  # (Type/id, resource name, node text) already read
        for res, s, rid in todo:
            key = f"{res.resource_type}/{rid}"
            if key in seen:  # the same doctor as attending and admitting: one entry
                if res.merge_fields is not None:  # ... that keeps every name it is given (merge: [name])
                    done = (key, res.name, getattr(s.node, "raw", None))
                    if done[2] is None or done not in merged:  # the same XCN again: nothing new
                        merged.add(done)
                        merge_items(seen[key], res.merge_fields(s), res.merge)
                continue
            resource: dict[str, Any] = {"resourceType": res.resource_type, "id": rid}
            seen[key] = resource
            if res.merge_fields is not None:
                merged.add((key, res.name, getattr(s.node, "raw", None)))
            body = res.fields(s)
            if body:
                resource.update(body)
            entry: dict[str, Any] = {"fullUrl": _urn(key),
                                     "resource": resource}
            if self.bundle_type != "collection":
                if res.url is not None:
                    s.vars["@id"], s.vars["@resourceType"] = rid, res.resource_type
                    url = res.url(s)
                else:
                    url = key if res.method == "PUT" else res.resource_type
                entry["request"] = {"method": res.method, "url": url}
            entries.append(entry)
        made = scope.vars.get("@resources")
        if made:
            self._add_inline(entries, seen, made, scope.vars.get("@merge"))
        bundle = {"resourceType": "Bundle", "type": self.bundle_type, "entry": entries}
        key = self._patient_key(scope) if self._patient_key is not None else None
        unmapped = unmapped_sections(msg, nodes, self._ignore_sections) if xml else self.unmapped(msg)
        dropped = scope.vars.get("@dropped")
        if dropped:
            return MappingResult(bundle, unmapped + dropped, key, list(dropped))
        return MappingResult(bundle, unmapped, key)

    def _add_inline(self, entries: list[dict[str, Any]], seen: dict[str, dict[str, Any]],
                    made: dict[str, dict[str, Any]], made_merge: dict[str, tuple[str, ...]] | None) -> None:
        """The resources made by ``resource:`` rules (assigning authorities, facilities), once each;
        a resource of the mapping with the same type and id wins (and takes the items of the elements
        the rule's ``merge`` names)."""
        merges = made_merge or {}
        for key, resource in made.items():
            if key in seen:
                if key in merges:  # the practitioner of the mapping also known under this name
                    merge_items(seen[key], resource, merges[key])
                continue
            seen[key] = resource
            entry: dict[str, Any] = {"fullUrl": _urn(key), "resource": resource}
            if self.bundle_type != "collection":
                entry["request"] = {"method": "PUT", "url": key}
            entries.append(entry)

    def unmapped(self, msg: Any) -> list[str]:
        """Segments of ``msg`` that no rule of this mapping reads."""
        cov = self._coverage
        counts: dict[str, int] = {}
        out: list[tuple[str, int]] = []
        for seg in msg.segments:
            name = seg.name
            n = counts[name] = counts.get(name, 0) + 1
            occ = cov.get(name)
            if occ is None or (ALL not in occ and n not in occ):
                out.append((name, n))
        return [name if counts[name] == 1 else f"{name}[{n}]" for name, n in out]


@lru_cache(maxsize=16384)   # the same facility, device, practitioner or patient comes back message after message
def _urn(key: str) -> str:
    """``urn:uuid:`` + the name-based (v5) UUID of ``Type/id``: stable across reruns."""
    h = bytearray(hashlib.sha1(_NS + key.encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"urn:uuid:{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


_NS = uuid.NAMESPACE_URL.bytes

# ------------------------------------------------------------------------------------------ loading
def _load_fragments(unit: Unit, file: Path, data: Any, locs: Locations, key: tuple[Any, ...]) -> None:
    if not isinstance(data, dict):
        unit.errors.append(locs.error(key, "'fragments' must map fragment names to definitions"))
        return
    for name, body in data.items():
        src = Src(locs, (*key, name))
        if not isinstance(body, dict):
            unit.errors.append(src.error(f"fragment {name!r} must be a mapping with datatype and fields"))
            continue
        bad = [k for k in body if k not in FRAGMENT_KEYS]
        if bad:
            unit.errors.append((src / bad[0]).error(
                f"fragment {name!r}: unknown key {bad[0]!r} (expected one of {sorted(FRAGMENT_KEYS)})"))
            continue
        dt = body.get("datatype")
        from mediator.mapping.schema import datatype_model

        if not isinstance(dt, str) or datatype_model(dt) is None:
            unit.errors.append((src / "datatype").error(f"fragment {name!r}: unknown FHIR datatype {dt!r}"))
            continue
        if not isinstance(body.get("fields"), dict):
            unit.errors.append(src.error(f"fragment {name!r}: 'fields' must map element names to rules"))
            continue
        if name in unit.fragments:
            unit.errors.append(src.error(f"fragment {name!r} is defined twice"))
            continue
        unit.fragments[name] = Fragment(name, dt, body["fields"], src, body.get("when"))


def load_mapping(path: Path, *, codes_dir: Path | None = None) -> Mapping:
    """Load and compile one mapping file; raise :class:`ConfigError` listing every located problem."""
    path = Path(path)
    try:
        data, locs = load_yaml(path)
    except YamlFileError as exc:
        raise ConfigError([exc]) from None
    unit = Unit(str(path), path.parent, Path(codes_dir) if codes_dir else None)
    err = unit.errors.append
    if not isinstance(data, dict):
        raise ConfigError([locs.error((), "a mapping file must be a YAML mapping")])
    root = Src(locs, ())
    for k in data:
        if k not in TOP_KEYS and not (isinstance(k, str) and k.startswith("x-")):  # x-*: YAML anchors
            err((root / k).error(f"unknown top-level key {k!r} (expected one of {sorted(TOP_KEYS)})"))
    name = data.get("mapping")
    if not isinstance(name, str) or not name:
        err(root.error("'mapping: <name>' is required"))
        name = path.stem
    source = data.get("source", "hl7v2")
    if source not in SOURCES:
        err((root / "source").error(f"source {source!r} is not supported ({', '.join(SOURCES)})"))
        source = "hl7v2"
    if source == "cda":
        ns = data.get("namespaces") or {}
        if not isinstance(ns, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ns.items()):
            err((root / "namespaces").error("'namespaces' maps prefixes to namespace URIs ('' is the default)"))
            ns = {}
        unit.xml = XPathSource(ns)
    invalid = data.get("invalid", "fail")
    if invalid not in ("fail", "drop"):
        err((root / "invalid").error("'invalid' is fail (a value a conversion refuses fails the message) or drop"))
    else:
        unit.invalid = invalid
    types = data.get("message_types", [])
    if not isinstance(types, list) or not all(isinstance(t, str) and "^" in t for t in types):
        err((root / "message_types").error("message_types is a list like [ADT^A01, ADT^A04]"))
        types = []
    bundle = data.get("bundle") or {}
    btype = bundle.get("type", "transaction") if isinstance(bundle, dict) else None
    if not isinstance(bundle, dict) or set(bundle) - {"type"} or btype not in BUNDLE_TYPES:
        err((root / "bundle").error(f"bundle is {{type: {'|'.join(BUNDLE_TYPES)}}}"))
        btype = "transaction"

    # fragments: from the files in 'uses', then the file's own
    uses = data.get("uses", [])
    if not isinstance(uses, list):
        err((root / "uses").error("'uses' is a list of fragment files"))
        uses = []
    shared: dict[str, tuple[Any, Src]] = {}
    for i, rel in enumerate(uses):
        f = path.parent / str(rel)
        if not f.is_file():
            err((root / "uses" / i).error(f"fragment file {rel!r} not found"))
            continue
        try:
            fdata, flocs = load_yaml_cached(f)
        except YamlFileError as exc:
            err(exc)
            continue
        if (not isinstance(fdata, dict) or not ({"fragments", "resources"} & set(fdata))
                or set(fdata) - {"fragments", "resources", "description"}):
            err(flocs.error((), "a fragment file holds 'fragments:' and/or 'resources:' (and an optional "
                                "'description')"))
            continue
        if "fragments" in fdata:
            _load_fragments(unit, f, fdata["fragments"], flocs, ("fragments",))
        if "resources" in fdata:  # shared resources: added after the mapping's own (which win by name)
            if not isinstance(fdata["resources"], dict):
                err(flocs.error(("resources",), "'resources' must map resource names to definitions"))
            else:
                for rname, body in fdata["resources"].items():
                    if rname not in shared:
                        shared[rname] = (body, Src(flocs, ("resources", rname)))
    if "fragments" in data:
        _load_fragments(unit, path, data["fragments"], locs, ("fragments",))

    resources = data.get("resources")
    if not isinstance(resources, dict) or not resources:
        err((root / "resources").error("'resources' must map resource names to definitions"))
        resources = {}
    todo = [(rname, body, root / "resources" / rname) for rname, body in resources.items()]
    todo += [(rname, body, src) for rname, (body, src) in shared.items() if rname not in resources]
    for rname, body, _ in todo:
        if isinstance(body, dict) and isinstance(body.get("resourceType"), str):
            unit.resources[rname] = body["resourceType"]

    comp = Compiler(unit)
    m = Mapping(name=name, file=str(path), source=source, message_types=list(types),
                description=str(data.get("description", "")), bundle_type=btype)

    lets = data.get("let", {})
    if not isinstance(lets, dict):
        err((root / "let").error("'let' maps variable names to rules"))
        lets = {}
    for vname, spec in lets.items():
        c = comp.guard(lambda spec=spec, vname=vname: comp.value(spec, root / "let" / vname, None,
                                                                 Where(f"${vname}")))
        unit.lets.add(vname)
        m._lets.append((vname, c.run))

    if "patient_key" in data:
        m._patient_key = comp.guard(lambda: comp.value(data["patient_key"], root / "patient_key", None,
                                                       Where("patient_key"))).run

    for rname, body, src in todo:
        _compile_resource(comp, m, rname, body, src)

    ignore = data.get("ignore_segments", [])
    if not isinstance(ignore, list):
        err((root / "ignore_segments").error("'ignore_segments' is a list of segment names"))
        ignore = []
    cov = {k: frozenset(v) for k, v in unit.coverage.items()}
    for seg in ["MSH", *map(str, ignore)]:
        cov[seg] = frozenset({ALL})
    m._coverage = cov
    sections = data.get("ignore_sections", [])
    if not isinstance(sections, list):
        err((root / "ignore_sections").error("'ignore_sections' is a list of section LOINC codes or templateIds"))
        sections = []
    m._ignore_sections = frozenset(map(str, sections))
    if unit.errors:
        raise ConfigError(unit.errors)
    return m


def _compile_resource(comp: Compiler, m: Mapping, rname: str, body: Any, src: Src) -> None:
    unit = comp.u
    if not isinstance(body, dict):
        unit.errors.append(src.error(f"resource {rname!r} must be a mapping"))
        return
    for k in body:
        if k not in RESOURCE_KEYS:
            unit.errors.append((src / k).error(
                f"resource {rname!r}: unknown key {k!r} (expected one of {sorted(RESOURCE_KEYS)}; "
                "element names go under 'fields')"))
            return
    rtype = body.get("resourceType")
    model = resource_model(rtype) if isinstance(rtype, str) else None
    if model is None:
        unit.errors.append((src / "resourceType").error(f"resource {rname!r}: unknown FHIR resource type {rtype!r}"))
        return
    where = Where(rname, None, rtype)
    select = None
    if "for_each" in body:
        try:
            select, where = comp.scopes(body["for_each"], src / "for_each", where)
        except YamlFileError as exc:
            unit.errors.append(exc)
            return
    when = None
    if "when" in body:
        try:
            when = comp.cond(body["when"], src / "when", where)
        except YamlFileError as exc:
            unit.errors.append(exc)
    if "id" not in body:
        unit.errors.append(src.error(f"resource {rname!r}: 'id' is required (a stable id from source ids, "
                                     "e.g. {hash: [MSH-4.1, PID-3.1]})"))
        return
    id_rule = comp.guard(lambda: comp.value(body["id"], src / "id", None, where.sub("id"))).run
    from mediator.mapping.schema import Element

    el = Element(rname, False, rtype, True, model)
    spec = {k: body[k] for k in ("use", "fields") if k in body}
    if not spec:
        spec = {"fields": {}}
    fields = comp.guard(lambda: comp.obj(spec, src, el, where)).run
    method, url = "PUT", None
    req = body.get("request")
    if req is not None:
        if not isinstance(req, dict) or set(req) - {"method", "url"}:
            unit.errors.append((src / "request").error(f"resource {rname!r}: request is {{method, url}}"))
        else:
            method = str(req.get("method", "PUT")).upper()
            if method not in METHODS:
                unit.errors.append((src / "request" / "method").error(
                    f"resource {rname!r}: method {method!r} (expected {', '.join(METHODS)})"))
            if "url" in req:
                try:
                    url = comp.template(req["url"], src / "request" / "url", where, ids=True).run
                except YamlFileError as exc:
                    unit.errors.append(exc)
    merge: tuple[str, ...] = ()
    if "merge" in body:
        names = body["merge"]
        bad = bad_merge_names(names, model)
        if bad is None or not names:
            unit.errors.append((src / "merge").error(f"resource {rname!r}: merge is a list of repeating element names"))
        else:
            unit.errors.extend((src / "merge").error(
                f"resource {rname!r}: merge: {n!r} is not a repeating element of {rtype}") for n in bad)
            merge = tuple(names)
    merge_fields = (comp.guard(lambda: comp.obj(spec, src, el, where, only=frozenset(merge))).run
                    if merge and not unit.errors else None)
    info = RuleInfo(src.file, src.line, rname, None)
    probe = getattr(select, "_probe", None)
    gate = probe[2] if probe is not None and probe[0] == "a" else None
    m._resources.append(_Resource(rname, rtype, info, when, select, id_rule, fields, method, url, gate, merge,
                                  merge_fields))


def load_mappings(directory: Path) -> dict[str, Mapping]:
    """Every ``*.yaml`` mapping in ``directory`` (not its fragments/codes sub-directories).

    Keys are file names relative to ``directory``; :class:`ConfigError` lists the errors of all files.
    """
    directory = Path(directory)
    out: dict[str, Mapping] = {}
    errors: list[YamlFileError] = []
    codes = directory / "codes"
    for f in sorted(directory.glob("*.y*ml")):
        try:
            out[f.name] = load_mapping(f, codes_dir=codes if codes.is_dir() else None)
        except ConfigError as exc:
            errors.extend(exc.errors)
    if errors:
        raise ConfigError(errors)
    return out
