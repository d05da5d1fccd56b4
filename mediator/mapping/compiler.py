"""Compile a mapping file into closures, once, at load.

Every rule of the YAML tree becomes a function ``Scope -> value | None``; nothing walks the YAML
per message. Errors found here are :class:`YamlFileError` naming the file, the line and the rule;
the compiler keeps going after an error so that one load reports every problem of a file.

See ``docs/mappings.md`` for the language.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import orjson

from mediator.hl7v2 import COMPONENT, REPETITION, SEGMENT, Segment, unescape
from mediator.hl7v2.message import Node
from mediator.hl7v2.path import compile_path, compile_relative
from mediator.mapping import convert
from mediator.mapping.codes import CodeMap, compile_codemap
from mediator.mapping.functions import FUNCTIONS
from mediator.mapping.groups import GroupSpec, group_view, split_groups
from mediator.mapping.model import MappingError, RuleInfo, Scope
from mediator.mapping.paths import ALL, parse_path
from mediator.mapping.schema import Element, datatype_model, elements, resource_model
from mediator.mapping.xml_functions import FUNCTIONS as _XML_FUNCTIONS  # noqa: F401  (adds the XML functions)
from mediator.mapping.xpath import XML_NODE, XPathSource, nearest_xml
from mediator.yamlfile import Locations, YamlFileError, load_yaml

Rule = Callable[[Scope], Any]

_YAML_CACHE: dict[tuple[str, int, int], tuple[Any, Locations]] = {}


def load_yaml_cached(path: FsPath) -> tuple[Any, Locations]:
    """``load_yaml`` for the files several mappings share (fragments, code maps): parsed once per
    version of the file (path, mtime, size), so that loading every mapping does not re-parse them.
    The parsed data is only read, never changed, by the compiler."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    found = _YAML_CACHE.get(key)
    if found is None:
        if len(_YAML_CACHE) > 512:
            _YAML_CACHE.clear()
        found = _YAML_CACHE[key] = load_yaml(path)
    return found
Cond = Callable[[Scope], bool]

SOURCE_KEYS = ("path", "const", "template", "concat", "fn", "first", "hash", "var", "ref")
RULE_KEYS = frozenset({*SOURCE_KEYS, "sep", "args", "for_each", "fields", "use", "when", "map", "as",
                       "type", "default", "required", "description", "invalid", "resource"})
INVALID = ("fail", "drop")  # a value a conversion refuses: fail the message, or drop it (reported)
COND_KEYS = frozenset({"exists", "missing", "all", "any", "not", "path", "value", "equals", "in",
                       "not_in", "matches"})
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_SPACES = re.compile(r"\s{2,}")
GROUP_KEYS = frozenset({"group", "members", "leading"})
_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_SEGMENT_REL = re.compile(r"^[1-9]\d*(?:\.[1-9]\d*){0,2}$")
_SIMPLE_REL = re.compile(r"^[1-9]\d*(?:\.[1-9]\d*)?$")


@dataclass(frozen=True)
class Src:
    """Where a YAML value is: its file's line index and its key path."""

    locs: Locations
    key: tuple[str | int, ...]

    def __truediv__(self, k: str | int) -> Src:
        return Src(self.locs, (*self.key, k))

    @property
    def file(self) -> str:
        return self.locs.file

    @property
    def line(self) -> int | None:
        return self.locs.line_of(self.key)

    def error(self, problem: str) -> YamlFileError:
        return self.locs.error(self.key, problem)


@dataclass
class Fragment:
    """A reusable datatype mapping (``use: xpn``)."""

    name: str
    datatype: str
    fields: dict[str, Any]
    src: Src  # of the fragment's body
    when: Any = None


@dataclass
class Unit:
    """What the compiler knows about the mapping file being compiled."""

    file: str
    base_dir: FsPath
    codes_dir: FsPath | None
    fragments: dict[str, Fragment] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)  # name -> resourceType
    lets: set[str] = field(default_factory=set)
    coverage: dict[str, set[int]] = field(default_factory=dict)
    errors: list[YamlFileError] = field(default_factory=list)
    codemaps: dict[str, CodeMap] = field(default_factory=dict)
    xml: XPathSource | None = None  # source: cda -> paths are XPath expressions
    invalid: str = "fail"  # the file's default for 'invalid:' (fail | drop)


@dataclass(frozen=True)
class Where:
    """Compile-time position: the rule's name, the current node level and the resource type."""

    rule: str
    node_level: int | None = None
    resource_type: str = ""
    groups: frozenset[str] = frozenset()  # segment names read inside the enclosing segment groups

    def sub(self, name: str) -> Where:
        return Where(f"{self.rule}.{name}", self.node_level, self.resource_type, self.groups)

    def at_level(self, level: int | None, groups: frozenset[str] | None = None) -> Where:
        return Where(self.rule, level, self.resource_type, self.groups if groups is None else groups)


@dataclass
class Compiled:
    """A compiled rule; ``data`` is False when its value never depends on the message."""

    run: Rule
    data: bool
    many: bool = False  # returns a list (for_each / list element)
    wrap: bool = False  # a single value for a repeating element: the caller makes it a list
    # what the value depends on, for a quick "nothing here" test (None: unknown): ("c", i) the
    # current repetition's component i, ("s", i) a second or later subcomponent of component i
    # (present only when i holds a subcomponent separator), ("a", path, absent) an absolute path
    probe: frozenset[tuple[Any, ...]] | None = None


def _union(parts: list[Compiled]) -> frozenset[tuple[Any, ...]] | None:
    """The probes of a rule made of ``parts`` (None when one part's is unknown)."""
    out: set[tuple[Any, ...]] = set()
    for p in parts:
        if p.data:
            if p.probe is None:
                return None
            out |= p.probe
    return frozenset(out)


def _probe_fn(probes: frozenset[tuple[Any, ...]]) -> Callable[[Scope], bool]:
    """A test that some value the probes name may be present (False: all surely absent)."""
    cis = tuple(sorted({p[1] for p in probes if p[0] == "c"}))
    sis = tuple(sorted({p[1] for p in probes if p[0] == "s"} - set(cis)))
    if sis:
        rest = _probe_fn(frozenset(p for p in probes if p[0] != "s")) if len(sis) < len(probes) else None

        def maybe_sub(scope: Scope) -> bool:
            return _any_subcomponent(scope, sis) or (rest is not None and rest(scope))
        return maybe_sub
    absents = tuple({p[1]: p[2] for p in probes if p[0] == "a"}.values())
    refs = tuple(sorted({p[1] for p in probes if p[0] == "r"}))
    if refs:
        inner = _probe_fn(frozenset(p for p in probes if p[0] != "r")) if len(refs) < len(probes) else None

        def maybe_ref(scope: Scope) -> bool:
            ids = scope.ids
            for r in refs:
                if ids.get(r):
                    return True
            return inner(scope) if inner is not None else False
        return maybe_ref
    if len(absents) == 1 and not cis:
        only = absents[0]

        def maybe_abs(scope: Scope) -> bool:
            return not only(scope.msg)
        return maybe_abs
    if not absents:
        def maybe_comps(scope: Scope) -> bool:
            return _any_component(scope, cis)
        return maybe_comps

    def maybe(scope: Scope) -> bool:
        if cis and _any_component(scope, cis):
            return True
        msg = scope.msg
        for a in absents:  # noqa: SIM110 (a loop: no generator per call)
            if not a(msg):
                return True
        return False
    return maybe


def _components(scope: Scope) -> list[str] | None:
    """The current node's components, split once per scope (None without a node)."""
    comps = scope.comps
    if comps is None:
        node = scope.node
        if node is None:
            return None
        comps = scope.comps = node.raw.split(scope.msg.delimiters.component)
    return comps


def _any_component(scope: Scope, cis: tuple[int, ...]) -> bool:
    """Whether one of the components ``cis`` (0-based) of the current node may hold a value (True
    without a node)."""
    comps = _components(scope)
    if comps is None:
        return True
    n = len(comps)
    # a plain loop, not any(): this runs for every datatype object of every message
    for ci in cis:  # noqa: SIM110
        if ci < n and comps[ci]:
            return True
    return False


def _any_subcomponent(scope: Scope, cis: tuple[int, ...]) -> bool:
    """Whether one of the components ``cis`` (0-based) of the current node holds subcomponents
    (an FN surname with its own prefix, an HD with a universal id): their 2nd, 3rd ... parts."""
    comps = _components(scope)
    if comps is None:
        return True
    n = len(comps)
    sep = scope.msg.delimiters.subcomponent
    for ci in cis:  # noqa: SIM110
        if ci < n and sep in comps[ci]:
            return True
    return False


def _none(scope: Scope) -> None:
    return None


def _empty(v: Any) -> bool:
    return v is None or v == "" or v == [] or v == {}


class Compiler:
    """Compile the rules of one mapping file (and the fragments it uses)."""

    def __init__(self, unit: Unit) -> None:
        self.u = unit
        # rule parts compiled so far that read more than the current node (an absolute path, a
        # variable, a function, a reference, a time zone): a part compiled without any is a pure
        # function of the node's text, and `resource:` rules cache what such parts build
        self.impure = 0
        # `resource:` rules compiled so far: a resource built inside another one (a Location's
        # partOf) is replayed with it when the enclosing one comes from the cache
        self.nested = 0
        # pure `resource:` rules already compiled, by their text and position: see inline_resource
        self._resources: dict[tuple[Any, ...], tuple[Compiled, int, int]] = {}

    # ---------------------------------------------------------------- helpers
    def guard(self, fn: Callable[[], Compiled]) -> Compiled:
        """Run one rule's compilation; record its error and keep going."""
        try:
            return fn()
        except YamlFileError as exc:
            self.u.errors.append(exc)
            return Compiled(_none, True)

    def info(self, src: Src, where: Where, source_path: str | None = None) -> RuleInfo:
        return RuleInfo(src.file, src.line, where.rule, source_path)

    def xml(self, build: Callable[[str], Any], text: Any, src: Src, where: Where) -> Any:
        """An XPath rule part (``source: cda``): ``build`` compiles ``text`` once; a bad expression is
        refused with the file, the line and the rule."""
        if not isinstance(text, str) or not text.strip():
            raise src.error(f"rule '{where.rule}': an XPath must be a non-empty string")
        self.impure += 1
        try:
            return build(text.strip())
        except ValueError as exc:
            raise src.error(f"rule '{where.rule}': {exc}") from None

    def path(self, text: Any, src: Src, where: Where) -> Any:
        if not isinstance(text, str) or not text:
            raise src.error(f"rule '{where.rule}': a path must be a non-empty string")
        try:
            p = parse_path(text.strip(), where.node_level)
        except ValueError as exc:
            raise src.error(f"rule '{where.rule}': {exc}") from None
        if not p.relative:
            self.impure += 1
        if not p.relative and p.segment:
            occ = self.u.coverage.setdefault(p.segment, set())
            occ.add(ALL if p.segment in where.groups or "*" in where.groups else p.occurrence)
        return p

    def reader(self, text: Any, src: Src, where: Where) -> tuple[Rule, str]:
        """A rule reading the text at a path (or a ``$variable``)."""
        if isinstance(text, str) and text.startswith("$"):
            return self.var(text[1:], src, where), text
        if self.u.xml is not None:
            return self.xml(self.u.xml.reader, text, src, where), text
        p = self.path(text, src, where)
        ptext = p.text
        if p.relative and where.node_level == REPETITION and _SIMPLE_REL.match(ptext):
            fast = _fast_reader(ptext)
            c, _, sub = ptext.partition(".")
            fast._probe = ("s" if sub and sub != "1" else "c", int(c) - 1)  # type: ignore[attr-defined]
            return fast, ptext
        if p.relative and where.node_level == SEGMENT and _SEGMENT_REL.match(ptext):
            return _fast_segment_reader(ptext), ptext
        if p.relative and where.node_level == COMPONENT and ptext.isdigit():
            return _fast_subcomponent_reader(int(ptext) - 1), ptext
        if p.relative:
            def read_rel(scope: Scope) -> str | None:
                node = scope.node
                v = node.get(ptext) if node is not None else None
                if v:
                    v = v.strip()
                    return v if v and v != '""' else None
                return None
            return read_rel, ptext

        absent = _absence_check(p)
        fast_abs = _fast_abs_reader(p.text)
        if fast_abs is not None:
            fast_abs._probe = ("a", ptext, absent)  # type: ignore[attr-defined]
            return fast_abs, ptext

        def read_abs(scope: Scope) -> str | None:
            if absent(scope.msg):
                return None
            v = scope.msg.get(ptext)
            if v:
                v = v.strip()
                return v if v and v != '""' else None
            return None
        read_abs._probe = ("a", ptext, absent)  # type: ignore[attr-defined]
        return read_abs, ptext

    def selector(self, text: Any, src: Src, where: Where) -> tuple[Callable[[Scope], list[Any]], int]:
        """A function selecting the (non-empty) nodes at a path, and their level."""
        if self.u.xml is not None:
            return self.xml(self.u.xml.selector, text, src, where), XML_NODE
        p = self.path(text, src, where)
        ptext = p.text
        if p.relative:
            fast = _fast_relative_selector(ptext, where.node_level)
            if fast is not None:
                return fast, p.level

            def sel_rel(scope: Scope) -> list[Any]:
                node = scope.node
                return [n for n in node.select(ptext) if not n.is_empty] if node is not None else []
            return sel_rel, p.level

        absent = _absence_check(p)
        hp = compile_path(ptext)
        if (hp.seg_index is None and hp.field is not None and hp.rep in (None, 1) and hp.comp is None
                and not hp.multi and "[" not in ptext and not (hp.segment in _HEADERS and hp.field <= 2)):
            seg, fi, lvl = hp.segment, hp.field, hp.level

            def sel_field(scope: Scope) -> list[Any]:   # SEG-f: the first repetition of a field
                msg = scope.msg
                segs = (msg._index or msg._build_index()).get(seg)
                if not segs:
                    return []
                v = segs[0].fields_raw(fi)
                if not v:
                    return []
                rs = msg.delimiters.repetition
                if rs in v:
                    v = v.split(rs, 1)[0]
                node = Node(v, lvl, msg)
                return [] if node.is_empty else [node]
            sel_field._probe = ("a", ptext, absent)  # type: ignore[attr-defined]
            return sel_field, p.level

        def sel_abs(scope: Scope) -> list[Any]:
            if absent(scope.msg):
                return []
            return [n for n in scope.msg.select(ptext) if not n.is_empty]
        sel_abs._probe = ("a", ptext, absent)  # type: ignore[attr-defined]
        return sel_abs, p.level

    def scopes(self, spec: Any, src: Src, where: Where) -> tuple[Callable[[Scope], list[Scope]], Where]:
        """A ``for_each`` selector: a path, a segment group ``{group: OBR, ...}`` or a list of them
        (each one applied inside the previous). Returns the child scopes' maker and their ``Where``."""
        if isinstance(spec, list):
            if not spec:
                raise src.error(f"rule '{where.rule}': for_each takes a path, a group or a non-empty list")
            steps = []
            w = where
            for i, item in enumerate(spec):
                fn, w = self.scopes(item, src / i, w)
                steps.append(fn)

            def run_chain(scope: Scope) -> list[Scope]:
                cur = [scope]
                for fn in steps:
                    cur = [c for s in cur for c in fn(s)]
                return cur
            if hasattr(steps[0], "_probe"):
                run_chain._probe = steps[0]._probe  # type: ignore[attr-defined]
            return run_chain, w
        if isinstance(spec, dict) and "first_of" in spec:
            return self.first_of(spec, src, where)
        if isinstance(spec, dict) and "all_of" in spec:
            return self.all_of(spec, src, where)
        if isinstance(spec, dict):
            return self.group(spec, src, where)
        if self.u.xml is not None:
            return self.xml(self.u.xml.scopes, spec, src, where), where.at_level(XML_NODE)
        sel, level = self.selector(spec, src, where)
        if level == SEGMENT:
            def run_segments(scope: Scope) -> list[Scope]:
                msg, ctx, vars_, ids, chain = scope.msg, scope.ctx, scope.vars, scope.ids, scope.group
                return [Scope(msg, ctx, n, vars_, ids, (*chain, id(n)), pos) for pos, n in enumerate(sel(scope), 1)]
            if hasattr(sel, "_probe"):
                run_segments._probe = sel._probe  # type: ignore[attr-defined]
            return run_segments, where.at_level(level)

        def run_nodes(scope: Scope) -> list[Scope]:
            return [scope.at(n, pos) for pos, n in enumerate(sel(scope), 1)]
        if hasattr(sel, "_probe"):
            run_nodes._probe = sel._probe  # type: ignore[attr-defined]
        return run_nodes, where.at_level(level)

    def first_of(self, spec: dict[str, Any], src: Src, where: Where) -> tuple[Callable[[Scope], list[Scope]], Where]:
        """``{first_of: [OBR-16[1], ORC-12[1]]}``: the nodes of the first selector that finds any."""
        alts = spec["first_of"]
        if len(spec) != 1 or not isinstance(alts, list) or not alts:
            raise src.error(f"rule '{where.rule}': 'first_of' takes a non-empty list of selectors")
        made = [self.scopes(a, src / "first_of" / i, where) for i, a in enumerate(alts)]
        levels = {w.node_level for _, w in made}
        if len(levels) != 1:
            raise src.error(f"rule '{where.rule}': the selectors of 'first_of' must select nodes of one level")
        fns = [fn for fn, _ in made]

        def run_first_of(scope: Scope) -> list[Scope]:
            for fn in fns:
                found = fn(scope)
                if found:
                    return found
            return []
        return run_first_of, made[-1][1]

    def all_of(self, spec: dict[str, Any], src: Src, where: Where) -> tuple[Callable[[Scope], list[Scope]], Where]:
        """``{all_of: [[*order, *obx], [*specimen, *obx]]}``: the nodes of every selector, in turn (the OBX
        groups of the orders, then those of the specimens); each keeps its own group chain."""
        alts = spec["all_of"]
        if len(spec) != 1 or not isinstance(alts, list) or not alts:
            raise src.error(f"rule '{where.rule}': 'all_of' takes a non-empty list of selectors")
        made = [self.scopes(a, src / "all_of" / i, where) for i, a in enumerate(alts)]
        if len({w.node_level for _, w in made}) != 1:
            raise src.error(f"rule '{where.rule}': the selectors of 'all_of' must select nodes of one level")
        fns = [fn for fn, _ in made]

        def run_all_of(scope: Scope) -> list[Scope]:
            return [c for fn in fns for c in fn(scope)]
        return run_all_of, made[-1][1]

    def group(self, spec: dict[str, Any], src: Src, where: Where) -> tuple[Callable[[Scope], list[Scope]], Where]:
        """``{group: OBR, members: [NTE, OBX, SPM], leading: [ORC]}``: one scope per segment group."""
        for k in spec:
            if k not in GROUP_KEYS:
                raise (src / k).error(f"rule '{where.rule}': unknown group key {k!r} "
                                      f"(expected one of {sorted(GROUP_KEYS)})")
        if self.u.xml is not None:
            raise src.error(f"rule '{where.rule}': segment groups are for HL7 v2; select elements with an XPath")
        if "group" not in spec:
            raise src.error(f"rule '{where.rule}': a segment group needs 'group: <segment(s) that start it>'")

        def names(key: str) -> frozenset[str]:
            v = spec.get(key, [])
            items = [v] if isinstance(v, str) else v
            if not isinstance(items, list) or not all(isinstance(x, str) and _SEGMENT_NAME.match(x) for x in items):
                raise (src / key).error(f"rule '{where.rule}': '{key}' is a segment name or a list of them")
            return frozenset(items)
        starts = names("group")
        if not starts:
            raise (src / "group").error(f"rule '{where.rule}': 'group' names at least one segment")
        gs = GroupSpec(starts, names("members") if "members" in spec else None, names("leading"))
        all_names = gs.names
        for name in starts:
            self.u.coverage.setdefault(name, set()).add(ALL)

        def run_group(scope: Scope) -> list[Scope]:
            msg = scope.msg
            # the groups of a message (or of an enclosing group's view) are split once per apply
            cache = scope.vars.get("@groups")
            if cache is None:
                cache = scope.vars["@groups"] = {}
            key = (id(msg), gs)
            found = cache.get(key)
            if found is None:
                found = cache[key] = [(start, group_view(msg, segs, all_names))
                                      for start, segs in split_groups(msg, gs)]
            return [scope.enter(view, start, id(start), pos) for pos, (start, view) in enumerate(found, 1)]
        start_names = tuple(starts)

        def no_group(msg: Any) -> bool:
            idx = msg._index or msg._build_index()
            return not any(n in idx for n in start_names)
        run_group._probe = ("a", ("group", start_names), no_group)  # type: ignore[attr-defined]
        # inside a group without a members list any segment may be the group's: "*" marks that
        inside = all_names if gs.members is not None else all_names | {"*"}
        return run_group, where.at_level(SEGMENT, where.groups | inside)

    def var(self, name: str, src: Src, where: Where) -> Rule:
        self.impure += 1
        if name not in self.u.lets:
            raise src.error(f"rule '{where.rule}': unknown variable ${name} (define it under 'let:' above)")

        def read_var(scope: Scope) -> Any:
            return scope.vars.get(name)
        return read_var

    def codemap(self, spec: Any, src: Src, where: Where) -> CodeMap:
        if isinstance(spec, dict):
            try:
                return compile_codemap(spec, src.locs, src.key, name=where.rule)
            except YamlFileError as exc:
                raise exc from None
        if not isinstance(spec, str) or not spec:
            raise src.error(f"rule '{where.rule}': 'map' must be a code map file or an inline map")
        candidates = [self.u.base_dir / spec]
        if self.u.codes_dir is not None:
            candidates += [self.u.codes_dir / spec, self.u.codes_dir / FsPath(spec).name]
        for f in candidates:
            if f.is_file():
                key = str(f.resolve())
                if key not in self.u.codemaps:
                    data, locs = load_yaml_cached(f)
                    self.u.codemaps[key] = compile_codemap(data, locs, (), name=f.stem)
                return self.u.codemaps[key]
        raise src.error(f"rule '{where.rule}': code map file {spec!r} not found")

    # ---------------------------------------------------------------- conditions
    def cond(self, spec: Any, src: Src, where: Where) -> Cond:
        """Compile a ``when:`` condition."""
        if isinstance(spec, str):
            spec = {"exists": spec}
        if isinstance(spec, list):
            spec = {"all": spec}
        if not isinstance(spec, dict) or not spec:
            raise src.error(f"rule '{where.rule}': a condition must be a mapping (exists, equals, in, ...)")
        for k in spec:
            if k not in COND_KEYS:
                raise (src / k).error(f"rule '{where.rule}': unknown condition key {k!r} "
                                      f"(expected one of {sorted(COND_KEYS)})")
        if "exists" in spec or "missing" in spec:
            key = "exists" if "exists" in spec else "missing"
            if len(spec) != 1:
                raise src.error(f"rule '{where.rule}': '{key}' stands alone in a condition")
            sel = self.exists(spec[key], src / key, where)
            if key == "exists":
                return sel
            return lambda s: not sel(s)
        if "all" in spec or "any" in spec:
            key = "all" if "all" in spec else "any"
            items = spec[key]
            if len(spec) != 1 or not isinstance(items, list) or not items:
                raise src.error(f"rule '{where.rule}': '{key}' takes a non-empty list of conditions")
            subs = [self.cond(c, src / key / i, where) for i, c in enumerate(items)]
            if key == "all":
                return lambda s: all(c(s) for c in subs)
            return lambda s: any(c(s) for c in subs)
        if "not" in spec:
            if len(spec) != 1:
                raise src.error(f"rule '{where.rule}': 'not' stands alone in a condition")
            sub = self.cond(spec["not"], src / "not", where)
            return lambda s: not sub(s)
        if ("path" in spec) == ("value" in spec):
            raise src.error(f"rule '{where.rule}': a comparison needs exactly one of 'path' or 'value'")
        if "path" in spec:
            get, _ = self.reader(spec["path"], src / "path", where)
        else:
            get = self.value(spec["value"], src / "value", None, where).run
        tests = [k for k in ("equals", "in", "not_in", "matches") if k in spec]
        if len(tests) != 1:
            raise src.error(f"rule '{where.rule}': a comparison needs one of equals, in, not_in, matches")
        op = tests[0]
        arg = spec[op]
        if op == "equals":
            want = str(arg)
            return lambda s: get(s) == want
        if op in ("in", "not_in"):
            if not isinstance(arg, list):
                raise (src / op).error(f"rule '{where.rule}': '{op}' takes a list")
            wanted = frozenset(str(a) for a in arg)
            if op == "in":
                return lambda s: get(s) in wanted
            return lambda s: get(s) not in wanted
        try:
            rx = re.compile(str(arg))
        except re.error as exc:
            raise (src / op).error(f"rule '{where.rule}': bad regular expression: {exc}") from None
        return lambda s: (v := get(s)) is not None and rx.search(str(v)) is not None

    def exists(self, text: Any, src: Src, where: Where) -> Cond:
        if isinstance(text, str) and text.startswith("$"):
            get = self.var(text[1:], src, where)
            return lambda s: not _empty(get(s))
        if self.u.xml is not None:
            return self.xml(self.u.xml.exists, text, src, where)
        sel, _ = self.selector(text, src, where)
        p = self.path(text, src, where)
        if not p.multi and isinstance(text, str):
            # one node at most: reading its value is quicker than selecting it (same answer but for
            # the HL7 null '""', which counts as missing like everywhere else)
            get, _ = self.reader(text, src, where)
            if getattr(get, "_probe", None) is not None:
                return lambda s: get(s) is not None
        return lambda s: bool(sel(s))

    # ---------------------------------------------------------------- value rules
    def value(self, spec: Any, src: Src, el: Element | None, where: Where) -> Compiled:
        """Compile a rule producing the value of element ``el`` (None: a plain value, e.g. an id)."""
        if isinstance(spec, list):
            if el is None or not el.is_list:
                raise src.error(f"rule '{where.rule}': a list of rules needs a repeating element")
            item_el = Element(el.name, False, el.type, el.complex, el.model)
            # a for_each item adds every value it finds; any other item adds one
            parts = [self.guard(lambda i=i, r=r: self.value(
                r, src / i, el if isinstance(r, dict) and "for_each" in r else item_el, where))
                for i, r in enumerate(spec)]
            runs = [(p.run, p.many) for p in parts]

            def run_list(scope: Scope) -> list[Any] | None:
                out: list[Any] = []
                for run, many in runs:
                    v = run(scope)
                    if v is None:
                        continue
                    if many:
                        out.extend(v)
                    else:
                        out.append(v)
                if len(out) > 1 and any(isinstance(v, dict) and "reference" in v for v in out):
                    out = _unique_refs(out)
                return out or None
            probe = _union(parts) if all(p.data for p in parts) else None
            if probe and len(parts) > 1:   # one test for the whole list when nothing it reads is there
                maybe = _probe_fn(probe)
                inner_list = run_list

                def run_list_guarded(scope: Scope) -> list[Any] | None:
                    return inner_list(scope) if maybe(scope) else None
                return Compiled(run_list_guarded, True, True, probe=probe)
            return Compiled(run_list, any(p.data for p in parts), True, probe=probe)
        if isinstance(spec, (str, int, float, bool)) and not isinstance(spec, str):
            raise src.error(f"rule '{where.rule}': write constants as {{const: {spec!r}}}")
        if isinstance(spec, str):
            spec = {"path": spec}
        if not isinstance(spec, dict):
            raise src.error(f"rule '{where.rule}': a rule must be a path string or a mapping")
        for k in spec:
            if k not in RULE_KEYS:
                raise (src / k).error(f"rule '{where.rule}': unknown rule key {k!r} "
                                      f"(expected one of {sorted(RULE_KEYS)}; element names go under 'fields')")
        if "for_each" in spec:
            return self.for_each(spec, src, el, where)
        one = self.single(spec, src, el, where)
        if el is not None and el.is_list and not one.many:
            one.wrap = True  # fields() puts the single value in a list
        return one

    def for_each(self, spec: dict[str, Any], src: Src, el: Element | None, where: Where) -> Compiled:
        sel, inner_where = self.scopes(spec["for_each"], src / "for_each", where)
        body = {k: v for k, v in spec.items() if k not in ("for_each", "when")}
        if not body:
            raise src.error(f"rule '{where.rule}': for_each needs a body (path, fields, use, ...)")
        when = self.cond(spec["when"], src / "when", inner_where) if "when" in spec else None
        item_el = Element(el.name, False, el.type, el.complex, el.model) if el is not None else None
        item = self.single(body, src, item_el, inner_where)
        run_item = item.run
        single = el is not None and not el.is_list
        sp = getattr(sel, "_probe", None)
        absent = sp[2] if sp is not None and sp[0] == "a" else None

        def run_each(scope: Scope) -> Any:
            if absent is not None and absent(scope.msg):
                return None
            out = []
            for s in sel(scope):
                if when is not None and not when(s):
                    continue
                v = run_item(s)
                if v is not None:
                    if single:
                        return v
                    out.append(v)
            return out or None
        return Compiled(run_each, True, not single, probe=frozenset({sp}) if sp else None)

    def single(self, spec: dict[str, Any], src: Src, el: Element | None, where: Where) -> Compiled:
        """One value (not a for_each): source -> map -> conversion -> default -> required."""
        if "resource" in spec:
            return self.inline_resource(spec, src, el, where)
        sources = [k for k in SOURCE_KEYS if k in spec]
        if "fn" in spec:
            sources = ["fn"]  # the function's input (path, template, ...) is checked by function()
        has_object = "fields" in spec or "use" in spec
        if len(sources) > 1 and sources != ["ref"]:
            raise src.error(f"rule '{where.rule}': only one source per rule, found {', '.join(sources)}")
        if has_object and sources and sources != ["ref"]:
            raise src.error(f"rule '{where.rule}': 'fields'/'use' build an object; drop '{sources[0]}'")
        if not sources and not has_object:
            raise src.error(f"rule '{where.rule}': nothing to map (give path, const, template, fields, ...)")
        if el is not None and el.complex and not has_object and sources and sources[0] not in (
                "ref", "const", "first", "var"):
            raise src.error(f"rule '{where.rule}': element {el.name!r} is a {el.type}; "
                            f"build it with 'fields' or 'use', not '{sources[0]}'")
        if el is not None and not el.complex and has_object:
            raise src.error(f"rule '{where.rule}': element {el.name!r} is a {el.type}, not an object")
        when = self.cond(spec["when"], src / "when", where) if "when" in spec else None
        source_path = spec.get("path") if isinstance(spec.get("path"), str) else None
        info = self.info(src, where, source_path)

        if has_object or sources == ["ref"]:
            base = self.obj(spec, src, el, where)
        else:
            base = self.source(sources[0], spec, src, el, where)
        run = base.run

        # map -> conversion
        steps: list[Callable[[Any, Scope], Any]] = []
        if "map" in spec:
            cm = self.codemap(spec["map"], src / "map", where)

            def do_map(v: Any, scope: Scope, cm: CodeMap = cm) -> Any:
                out, known = cm.lookup(str(v))
                if not known and cm.strict:
                    raise info.fail(f"code not in code map '{cm.name}' (strict)")
                return out
            steps.append(do_map)
        conv_name = spec.get("as", spec.get("type"))
        if "as" in spec and "type" in spec:
            raise src.error(f"rule '{where.rule}': give 'as' or 'type', not both")
        if conv_name is None and el is not None and not el.complex:
            conv_name = convert.BY_FHIR_TYPE.get(el.type)
        elif conv_name is not None and conv_name not in convert.CONVERTERS:
            raise (src / "as").error(f"rule '{where.rule}': unknown conversion {conv_name!r} "
                                     f"(expected one of {sorted(convert.CONVERTERS)})")
        if conv_name and sources and sources[0] not in ("const", "ref", "hash", "first"):
            conv = convert.CONVERTERS[conv_name]
            if conv_name in ("datetime", "instant"):
                self.impure += 1  # the context's default offset

            def do_conv(v: Any, scope: Scope, conv: convert.Converter = conv) -> Any:
                return conv(v, scope, info, source_path) if isinstance(v, str) else v
            invalid = spec.get("invalid", self.u.invalid)
            if invalid not in INVALID:
                raise (src / "invalid").error(f"rule '{where.rule}': 'invalid' is one of {', '.join(INVALID)}")
            # a required value stays strict: dropping it would only turn the error into 'missing'
            if invalid == "drop" and spec.get("required") is not True:
                do_conv = _dropping(do_conv)
                self.impure += 1  # a dropped value is reported with each message
            steps.append(do_conv)
        default = spec.get("default")
        if isinstance(default, (dict, list)) and (el is None or not el.complex):
            raise (src / "default").error(f"rule '{where.rule}': 'default' must be a plain value here")
        required = spec.get("required", False)
        if not isinstance(required, bool):
            raise (src / "required").error(f"rule '{where.rule}': 'required' is true or false")

        probe = base.probe if default is None else None
        if not steps and when is None and default is None and not required:
            return Compiled(run, base.data, base.many, probe=probe)

        def run_full(scope: Scope) -> Any:
            if when is not None and not when(scope):
                return None
            v = run(scope)
            if v is not None:
                for step in steps:
                    v = step(v, scope)
                    if v is None:
                        break
            if v is None:
                v = default
                if v is None and required:
                    raise info.fail("required value is missing")
            return v
        # a condition makes even a constant depend on the message
        return Compiled(run_full, base.data or when is not None, base.many, probe=probe)

    def inline_resource(self, spec: dict[str, Any], src: Src, el: Element | None, where: Where) -> Compiled:
        """``resource: {type: Organization, id: rule[, display: rule]}`` with ``use``/``fields``: a
        resource built from the current value (a CX's assigning authority, an XON's facility), added
        to the Bundle once per ``Type/id``; the rule gives the Reference to it (with ``display``),
        nothing when the resource is empty."""
        rs, s = spec["resource"], src / "resource"
        if el is None or el.type != "Reference":
            raise s.error(f"rule '{where.rule}': 'resource' needs a Reference element")
        if not isinstance(rs, dict) or not {"type", "id"} <= set(rs) <= {"type", "id", "display", "merge"}:
            raise s.error(f"rule '{where.rule}': 'resource' is {{type: <FHIR resource type>, id: <rule>"
                          "[, display: <rule>][, merge: [element, ...]]}")
        rtype = rs["type"]
        model = resource_model(rtype) if isinstance(rtype, str) else None
        if model is None:
            raise (s / "type").error(f"rule '{where.rule}': unknown FHIR resource type {rtype!r}")
        merge = rs.get("merge", [])
        if bad_merge_names(merge, model) != []:
            raise (s / "merge").error(f"rule '{where.rule}': 'merge' is a list of repeating elements of {rtype}")
        merge_names = tuple(merge)
        extra = [k for k in spec if k not in ("resource", "use", "fields", "when", "description")]
        if extra:
            raise (src / extra[0]).error(f"rule '{where.rule}': with 'resource', give 'use'/'fields' "
                                         f"(and 'when'), not {extra[0]!r}")
        if "use" not in spec and "fields" not in spec:
            raise s.error(f"rule '{where.rule}': 'resource' needs 'use' or 'fields' to build it")
        # A chain of levels (a Location partOf the next valued level, each level listing every level
        # above it, by YAML alias or fragment) names the same rules again and again: compiled once per
        # position, a rule that reads only its node (pure: nothing absolute, so nothing to record in
        # the coverage either) is reused, with what compiling it added to the counters. Keyed by its
        # text (the YAML loader copies what an alias names). Run-time messages name its first rule.
        memo_key = (orjson.dumps(spec, option=orjson.OPT_SORT_KEYS, default=str), el.name, where.node_level,
                    where.groups, where.resource_type)
        memo = self._resources.get(memo_key)
        if memo is not None:
            self.impure += memo[1]
            self.nested += memo[2]
            return memo[0]
        rwhere = Where(where.rule, where.node_level, rtype, where.groups)
        before, nested_before = self.impure, self.nested
        body = self.obj(spec, src, Element(el.name, False, rtype, True, model), rwhere)
        rid = self.value(rs["id"], s / "id", None, rwhere).run
        display = self.value(rs["display"], s / "display", None, where).run if "display" in rs else None
        pure = self.impure == before
        nests = self.nested != nested_before   # it makes resources of its own (replayed from the cache)
        self.nested += 1
        if merge_names:  # what encloses it registers a merge with each message: not cacheable
            self.impure += 1
        when = self.cond(spec["when"], src / "when", where) if "when" in spec else None
        run_body = body.run

        def make(scope: Scope) -> tuple[str, dict[str, Any], dict[str, str]] | None:
            fields = run_body(scope)
            if not fields:
                return None
            i = rid(scope)
            if i is None:
                return None
            key = f"{rtype}/{i}"
            ref = {"reference": key}
            if display is not None and (d := display(scope)) is not None:
                ref["display"] = d
            return key, {"resourceType": rtype, "id": i, **fields}, ref
        # a pure body (relative paths, constants, code maps) is the same for the same node text:
        # the facility of every identifier, message after message, is built once
        cache: dict[tuple[Any, ...], Any] = {}

        def run_resource(scope: Scope) -> dict[str, str] | None:
            if when is not None and not when(scope):
                return None
            if pure:
                node, msg = scope.node, scope.msg
                d = msg.delimiters
                ck = (node.raw if node is not None else None, d.component, d.subcomponent, d.escape, msg.encoding)
                found = cache.get(ck, cache)
                if found is cache:
                    if len(cache) > 1024:
                        cache.clear()
                    if nests:   # keep what the body made (a Location's partOf) with the resource
                        outer = scope.vars.get("@resources")
                        inner = scope.vars["@resources"] = {}
                        try:
                            built = make(scope)
                        finally:
                            scope.vars["@resources"] = outer if outer is not None else {}
                        found = cache[ck] = (built, tuple(inner.items())) if built is not None else None
                    else:
                        found = cache[ck] = make(scope)
            else:
                found = make(scope)
            if found is None:
                return None
            made = scope.vars.get("@resources")
            if made is None:
                made = scope.vars["@resources"] = {}
            if pure and nests:
                found, inner_made = found
                for k, r in inner_made:
                    if k not in made:
                        made[k] = _copy_json(r)
            key, resource, ref = found
            if key not in made:
                made[key] = _copy_json(resource) if pure else resource   # the cached one is never handed out
                if merge_names:  # a resource of the mapping with this id takes its names (Mapping.apply)
                    scope.vars.setdefault("@merge", {})[key] = merge_names
            elif merge_names:
                merge_items(made[key], resource, merge_names)
            return dict(ref)
        compiled = Compiled(run_resource, True, probe=body.probe)
        if self.impure - before == (1 if merge_names else 0):  # pure, 'when' and 'display' included
            self._resources[memo_key] = (compiled, self.impure - before, self.nested - nested_before)
        return compiled

    def source(self, key: str, spec: dict[str, Any], src: Src, el: Element | None, where: Where) -> Compiled:
        arg = spec[key]
        s = src / key
        if key == "path":
            get, _ = self.reader(arg, s, where)
            gp = getattr(get, "_probe", None)
            return Compiled(get, True, probe=frozenset({gp}) if gp else None)
        if key == "const":
            if arg is None or arg == "" or arg == [] or arg == {}:
                raise s.error(f"rule '{where.rule}': an empty constant maps nothing")
            return Compiled(lambda scope: arg, False)
        if key == "var":
            if not isinstance(arg, str):
                raise s.error(f"rule '{where.rule}': 'var' takes a variable name")
            return Compiled(self.var(arg.lstrip("$"), s, where), True)
        if key == "template":
            return self.template(arg, s, where)
        if key == "concat":
            if not isinstance(arg, list) or not arg:
                raise s.error(f"rule '{where.rule}': 'concat' takes a list of rules")
            cparts = [self.value(p, s / i, None, where) for i, p in enumerate(arg)]
            parts = [c.run for c in cparts]
            sep = spec.get("sep", " ")
            if not isinstance(sep, str):
                raise (src / "sep").error(f"rule '{where.rule}': 'sep' must be a string")

            def run_concat(scope: Scope) -> str | None:
                vals = [str(v) for p in parts if (v := p(scope)) is not None]
                return sep.join(vals) if vals else None
            return Compiled(run_concat, True, probe=_union(cparts))
        if key == "first":
            if not isinstance(arg, list) or not arg:
                raise s.error(f"rule '{where.rule}': 'first' takes a list of rules")
            item_el = Element(el.name, False, el.type, el.complex, el.model) if el is not None else None
            alts = [self.value(p, s / i, item_el, where) for i, p in enumerate(arg)]
            runs = [a.run for a in alts]

            def run_first(scope: Scope) -> Any:
                for r in runs:
                    v = r(scope)
                    if v is not None:
                        return v
                return None
            probe = _union(alts) if all(a.data for a in alts) else None
            return Compiled(run_first, any(a.data for a in alts), probe=probe)
        if key == "hash":
            if not isinstance(arg, list) or not arg:
                raise s.error(f"rule '{where.rule}': 'hash' takes a list of rules")
            parts = [self.value(p, s / i, None, where).run for i, p in enumerate(arg)]
            prefix = where.resource_type

            def run_hash(scope: Scope) -> str | None:
                vals = [prefix]
                for p in parts:
                    v = p(scope)
                    if v is None:
                        return None
                    vals.append(str(v))
                return hashlib.blake2b("\x1f".join(vals).encode(), digest_size=16).hexdigest()
            return Compiled(run_hash, True)
        if key == "fn":
            return self.function(spec, src, where)
        raise s.error(f"rule '{where.rule}': unsupported source {key!r}")  # pragma: no cover

    def template(self, arg: Any, src: Src, where: Where, ids: bool = False) -> Compiled:
        if not isinstance(arg, str) or not arg:
            raise src.error(f"rule '{where.rule}': 'template' takes a string with {{PATH}} placeholders")
        pieces: list[str | Rule] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(arg):
            pieces.append(arg[pos:m.start()])
            name = m.group(1).strip()
            if ids and name in ("id", "resourceType"):
                pieces.append(lambda scope, n=name: scope.vars.get(f"@{n}"))
            else:
                get, _ = self.reader(name, src, where)
                pieces.append(get)
            pos = m.end()
        pieces.append(arg[pos:])
        if not any(callable(p) for p in pieces):
            raise src.error(f"rule '{where.rule}': a template without placeholders is a 'const'")

        def run_template(scope: Scope) -> str | None:
            out = []
            seen = False
            for p in pieces:
                if isinstance(p, str):
                    out.append(p)
                else:
                    v = p(scope)
                    if v is not None:
                        seen = True
                        out.append(str(v))
            if not seen:
                return None
            return _SPACES.sub(" ", "".join(out)).strip() or None
        probes = [getattr(p, "_probe", None) for p in pieces if callable(p)]
        return Compiled(run_template, True, probe=None if None in probes else frozenset(probes))

    def function(self, spec: dict[str, Any], src: Src, where: Where) -> Compiled:
        self.impure += 1
        name = spec["fn"]
        f = FUNCTIONS.get(name) if isinstance(name, str) else None
        if f is None:
            raise (src / "fn").error(f"rule '{where.rule}': unknown function {name!r} "
                                     f"(expected one of {sorted(FUNCTIONS)})")
        args = spec.get("args") or {}
        if not isinstance(args, dict):
            raise (src / "args").error(f"rule '{where.rule}': 'args' must be a mapping")
        for k, v in args.items():
            if k not in f.args:
                raise (src / "args" / k).error(f"rule '{where.rule}': function {name!r} takes no argument "
                                               f"{k!r} (expected one of {sorted(f.args) or 'none'})")
            if not isinstance(v, f.args[k]):
                raise (src / "args" / k).error(f"rule '{where.rule}': argument {k!r} must be a "
                                               f"{f.args[k].__name__}")
        impl = f.impl
        if f.input == "none":
            extra = [k for k in SOURCE_KEYS if k in spec and k != "fn"]
            if extra:
                raise src.error(f"rule '{where.rule}': function {name!r} reads nothing; drop '{extra[0]}'")
            if where.node_level is None:
                raise src.error(f"rule '{where.rule}': function {name!r} is only meaningful inside for_each")

            def run_none_fn(scope: Scope) -> Any:
                return impl(scope, None, args)
            return Compiled(run_none_fn, True)
        if f.input == "value":
            rest = {k: v for k, v in spec.items() if k in SOURCE_KEYS and k != "fn"}
            if len(rest) != 1:
                raise src.error(f"rule '{where.rule}': function {name!r} reads one value "
                                "(give path, template, concat or var)")
            (k, _), = rest.items()
            inner = self.source(k, rest, src, None, where).run

            def run_value_fn(scope: Scope) -> Any:
                return impl(scope, inner(scope), args)
            return Compiled(run_value_fn, True)
        extra = [k for k in SOURCE_KEYS if k in spec and k not in ("fn", "path")]
        if extra:
            raise src.error(f"rule '{where.rule}': function {name!r} reads HL7 nodes; drop '{extra[0]}'")
        if "path" in spec:
            sel, _ = self.selector(spec["path"], src / "path", where)
        elif where.node_level is None:
            raise src.error(f"rule '{where.rule}': function {name!r} needs a 'path' outside for_each")
        else:
            def sel(scope: Scope) -> list[Any]:
                return [scope.node]
        if f.input == "node":
            def run_node_fn(scope: Scope) -> Any:
                nodes = sel(scope)
                return impl(scope, nodes[0], args) if nodes else None
            return Compiled(run_node_fn, True)

        def run_nodes_fn(scope: Scope) -> Any:
            return impl(scope, sel(scope), args)
        return Compiled(run_nodes_fn, True)

    # ---------------------------------------------------------------- objects
    def obj(self, spec: dict[str, Any], src: Src, el: Element | None, where: Where,
            only: frozenset[str] | None = None) -> Compiled:
        """An object built from ``fields`` (after a fragment's, with ``use``), or a ``ref``; with
        ``only``, just those elements (what a resource's ``merge`` reads again)."""
        if el is None or not el.complex:
            raise src.error(f"rule '{where.rule}': an object ('fields', 'use', 'ref') needs a FHIR element "
                            "of a complex type")
        entries: dict[str, tuple[Any, Src]] = {}
        fragment_when: Cond | None = None
        if "use" in spec:
            frag = self.u.fragments.get(spec["use"]) if isinstance(spec["use"], str) else None
            if frag is None:
                raise (src / "use").error(f"rule '{where.rule}': unknown fragment {spec['use']!r} "
                                          f"(known: {sorted(self.u.fragments) or 'none'}; add its file to 'uses')")
            if frag.datatype != el.type:
                raise (src / "use").error(f"rule '{where.rule}': fragment {frag.name!r} builds a "
                                          f"{frag.datatype}, element {el.name!r} is a {el.type}")
            for k, v in frag.fields.items():
                entries[k] = (v, frag.src / "fields" / k)
            if frag.when is not None:
                fragment_when = self.cond(frag.when, frag.src / "when", where)
        local = spec.get("fields", {})
        if not isinstance(local, dict):
            raise (src / "fields").error(f"rule '{where.rule}': 'fields' must map element names to rules")
        for k, v in local.items():
            entries[k] = (v, src / "fields" / k)
        if only is not None:
            entries = {k: v for k, v in entries.items() if k in only}
        ref_run: Rule | None = None
        many = False
        if "ref" in spec:
            if el.type != "Reference":
                raise (src / "ref").error(f"rule '{where.rule}': 'ref' needs a Reference element, "
                                          f"{el.name!r} is a {el.type}")
            target = spec["ref"]
            self.impure += 1
            # `ref: [a, b]`: the nearest resources of each target in turn (a Patient's general
            # practitioners: its facilities, then its doctors)
            targets = target if isinstance(target, list) and target else [target]
            for t in targets:
                if not isinstance(t, str) or t not in self.u.resources:
                    raise (src / "ref").error(f"rule '{where.rule}': unknown resource {t!r} "
                                              f"(known: {sorted(self.u.resources)})")
            pairs = tuple((t, self.u.resources[t]) for t in targets)
            if self.u.xml is not None:
                def ref_one(scope: Scope, target: str, rtype: str) -> list[str]:
                    return [f"{rtype}/{rid}" for rid in nearest_xml(scope.ids.get(target), scope.group)]
            else:
                ref_one = _nearest_refs
            if len(pairs) == 1:
                (t0, r0), = pairs

                def ref_run(scope: Scope) -> list[str]:
                    return ref_one(scope, t0, r0)
            else:
                def ref_run(scope: Scope) -> list[str]:
                    return [r for t, rt in pairs for r in ref_one(scope, t, rt)]
        run, data, probe = self.fields(entries, el.model, where)
        if ref_run is not None:
            probe = frozenset(("r", t) for t, _ in pairs)  # nothing without a target resource
            run_fields = run
            every = el.is_list  # a repeating element gets every matching resource

            def run_ref(scope: Scope) -> Any:
                refs = ref_run(scope)
                if not refs:
                    return None
                extra = run_fields(scope) if entries else None
                out = [{"reference": r, **(extra or {})} for r in (refs if every else refs[:1])]
                return out if every else out[0]
            run, data, many = run_ref, True, every
        if fragment_when is not None:
            inner = run

            def run_when(scope: Scope) -> Any:
                return inner(scope) if fragment_when(scope) else None
            run = run_when
        return Compiled(run, data, many, probe=probe)

    def fields(self, entries: dict[str, tuple[Any, Src]], model: Any,
               where: Where) -> tuple[Rule, bool, frozenset[tuple[Any, ...]] | None]:
        """Compile element -> rule pairs against a FHIR model; unknown elements are refused."""
        known = elements(model)
        compiled: list[tuple[str, Rule, bool]] = []
        parts: list[Compiled] = []
        for name, (spec, src) in entries.items():
            el = known.get(name) if isinstance(name, str) else None
            if el is None:
                self.u.errors.append(src.error(
                    f"rule '{where.rule}': {model.__name__} has no element {name!r}"
                    + _suggest(name, known)))
                continue
            c = self.guard(lambda spec=spec, src=src, el=el, name=name: self.value(spec, src, el, where.sub(name)))
            compiled.append((name, c.run, c.data, c.wrap))
            parts.append(c)
        any_data = any(d for _, _, d, _ in compiled)
        items = tuple(compiled)
        probe = _union(parts) if any_data else None

        if not any_data:
            # nothing depends on the message: computed once (constants are shared, like `const:` values)
            cache: list[Any] = []

            def run_const(scope: Scope) -> dict[str, Any] | None:
                if not cache:
                    out: dict[str, Any] = {}
                    for name, run, _, wrap in items:
                        v = run(scope)
                        if v is not None:
                            out[name] = [v] if wrap else v
                    cache.append(out or None)
                return cache[0]
            return run_const, False, None
        const_items = tuple((name, run, wrap) for name, run, d, wrap in items if not d)
        data_items = tuple((name, run, wrap) for name, run, d, wrap in items if d)
        # the constants are evaluated once the object is known to have data, then put in their place
        consts_last = all(not d for *_, d, _ in items[len(data_items):]) if const_items else True

        const_cache: list[tuple[str, Any]] = []  # the constants' values: they never depend on the message
        const_dict: dict[str, Any] = {}
        slots = tuple((name, d) for name, _, d, _ in items)

        def consts(scope: Scope) -> list[tuple[str, Any]]:
            if not const_cache:
                for name, run, wrap in const_items:
                    v = run(scope)
                    if v is not None:
                        const_cache.append((name, [v] if wrap else v))
                const_dict.update(const_cache)
                const_cache.append(("", None))  # computed
            return const_cache

        def run_fields(scope: Scope) -> dict[str, Any] | None:
            out: dict[str, Any] | None = None
            for name, run, wrap in data_items:
                v = run(scope)
                if v is not None:
                    if out is None:
                        out = {}
                    out[name] = [v] if wrap else v
            if out is None or not const_items:
                return out
            cv = const_cache or consts(scope)
            if consts_last:
                for name, v in cv:
                    if name:
                        out[name] = v
                return out
            res: dict[str, Any] = {}
            for name, d in slots:
                v = out.get(name) if d else const_dict.get(name)
                if v is not None:
                    res[name] = v
            return res
        if probe and len(items) > 1:   # skip the whole object when nothing it reads is there
            maybe = _probe_fn(probe)
            inner = run_fields

            def run_guarded(scope: Scope) -> dict[str, Any] | None:
                return inner(scope) if maybe(scope) else None
            return run_guarded, any_data, probe
        return run_fields, any_data, probe


def bad_merge_names(names: Any, model: Any) -> list[str] | None:
    """For a ``merge:`` value: None when it is not a list of names, else the names that are not
    repeating elements of ``model`` (``[]``: every one is)."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    known = elements(model)
    return [n for n in names if (e := known.get(n)) is None or not e.is_list]


def merge_items(resource: dict[str, Any], body: dict[str, Any] | None, names: tuple[str, ...]) -> None:
    """Add to ``resource`` the items of the repeating elements ``names`` of ``body`` (a later
    occurrence of the same ``Type/id``) that it does not hold yet, in order (copies: ``body`` may be
    a cached resource)."""
    if not body:
        return
    for name in names:
        items = body.get(name)
        if not items:
            continue
        have = resource.get(name)
        if have is None:
            resource[name] = have = []
        for item in items:
            if item not in have:
                have.append(_copy_json(item))


def _copy_json(v: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, plain values): cheaper than ``copy.deepcopy``."""
    if isinstance(v, dict):
        return {k: _copy_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy_json(x) for x in v]
    return v


def _dropping(conv: Callable[[Any, Scope], Any]) -> Callable[[Any, Scope], Any]:
    """``invalid: drop``: a value the conversion refuses gives nothing, and the message's result
    lists it (``Scope.vars['@dropped']``, added to the unmapped items: no silent drop)."""
    def drop_invalid(v: Any, scope: Scope) -> Any:
        try:
            return conv(v, scope)
        except MappingError as exc:
            scope.vars.setdefault("@dropped", []).append(
                f"invalid value dropped: rule '{exc.rule}' ({exc.source_path}): {exc.text}")
            return None
    return drop_invalid


def _unique_refs(values: list[Any]) -> list[Any]:
    """A list without the repeated References (the same doctor as author and primary provider)."""
    seen: set[str] = set()
    out = []
    for v in values:
        if isinstance(v, dict) and isinstance(v.get("reference"), str):
            key = repr(sorted(v.items()))
            if key in seen:
                continue
            seen.add(key)
        out.append(v)
    return out


def nearest(entries: list[tuple[tuple[int, ...], str]] | None, chain: tuple[int, ...]) -> list[str]:
    """The ids, among ``(group chain, id)`` pairs, that share the longest group prefix with ``chain``.

    From an Observation of the second order, ``ref: specimen`` finds that order's specimen; from the
    order's DiagnosticReport, ``ref: observation`` finds every Observation of that order; from a
    resource outside any group, every one.
    """
    if not entries:
        return []
    if len(entries) == 1:
        return [entries[0][1]]
    best, out = -1, []
    seen = set()
    for key, rid in entries:
        n = 0
        for a, b in zip(key, chain, strict=False):
            if a != b:
                break
            n += 1
        if n > best:
            best, out, seen = n, [rid], {rid}
        elif n == best and rid not in seen:
            out.append(rid)
            seen.add(rid)
    return out


def _nearest_refs(scope: Scope, target: str, rtype: str) -> list[str]:
    """``Type/id`` of the :func:`nearest` targets, through an index of the targets' group prefixes
    built once per message and target (every Observation refers to the patient, its order, its
    specimen: a scan of every target per reference otherwise). Same result as :func:`nearest`."""
    entries = scope.ids.get(target)
    if not entries:
        return []
    cache = scope.vars.get("@near")
    if cache is None:
        cache = scope.vars["@near"] = {}
    found = cache.get(target)
    if found is None or found[0] is not entries or found[1] != len(entries):
        found = cache[target] = (entries, len(entries), _prefix_index(entries, rtype))
    index = found[2]
    chain = scope.group
    for k in range(len(chain), -1, -1):
        refs = index.get(chain[:k])
        if refs is not None:
            return refs
    return []  # pragma: no cover (the empty prefix is always there)


def _prefix_index(entries: list[tuple[tuple[int, ...], str]], rtype: str) -> dict[tuple[int, ...], list[str]]:
    """Every prefix of the entries' group chains -> the ``Type/id`` of the entries under it, in order,
    without repeats: the longest prefix of a chain found here is the longest shared one."""
    index: dict[tuple[int, ...], dict[str, None]] = {}
    for key, rid in entries:
        for k in range(len(key) + 1):
            index.setdefault(key[:k], {})[rid] = None
    return {prefix: [f"{rtype}/{rid}" for rid in rids] for prefix, rids in index.items()}


def _fast_abs_reader(text: str) -> Rule | None:
    """Read ``SEG-f``, ``SEG-f.c`` or ``SEG-f.c.s`` (first segment, first repetition) straight from the
    segment's fields; None when the path needs the generic walk (indexes, MSH-1/2)."""
    hp = compile_path(text)
    if (hp.seg_index is not None or hp.field is None or hp.rep not in (None, 1) or hp.multi
            or (hp.segment in _HEADERS and hp.field <= 2) or "[" in text):
        return None
    seg, fi, ci, si = hp.segment, hp.field, hp.comp or 0, hp.sub or 0

    def read_abs_fast(scope: Scope) -> str | None:
        msg = scope.msg
        segs = (msg._index or msg._build_index()).get(seg)
        if not segs:
            return None
        v = segs[0].fields_raw(fi)
        if not v:
            return None
        return _leaf_value(_first_rep_part(v, msg.delimiters, ci, si), msg)
    return read_abs_fast


def _first_rep_part(v: str, d: Any, ci: int, si: int) -> str:
    """Component ``ci`` (subcomponent ``si``; 0: the whole) of the first repetition of raw field ``v``."""
    if d.repetition in v:
        v = v.split(d.repetition, 1)[0]
    if ci:
        comps = v.split(d.component)
        v = comps[ci - 1] if ci <= len(comps) else ""
        if si:
            subs = v.split(d.subcomponent)
            v = subs[si - 1] if si <= len(subs) else ""
    return v


def _absence_check(p: Any) -> Callable[[Any], bool]:
    """A quick test that an absolute path selects nothing in a message (or group view): its segment
    is absent or, for the first segment, its field is empty. False means "maybe present"."""
    hp = compile_path(p.text)
    seg, fi = hp.segment, hp.field
    first = hp.seg_index in (None, 1) and fi is not None and seg not in _HEADERS

    def absent(msg: Any) -> bool:
        segs = (msg._index or msg._build_index()).get(seg)
        if not segs:
            return True
        return first and not segs[0].fields_raw(fi)
    return absent


_HEADERS = frozenset({"MSH", "BHS", "FHS"})


def _fast_segment_reader(ptext: str) -> Rule:
    """Read ``f``, ``f.c`` or ``f.c.s`` (first repetition) on a segment node without the generic path walk.

    Same result as ``node.get(ptext)``: the first repetition's value, unescaped and trimmed. The value
    is remembered in the scope (``Scope.memo``): segment fragments read the same fields many times.
    """
    parts = [int(x) for x in ptext.split(".")]
    fi = parts[0]
    ci = parts[1] if len(parts) > 1 else 0
    si = parts[2] if len(parts) > 2 else 0

    def read_seg(scope: Scope) -> str | None:
        memo = scope.memo
        if memo is None:
            memo = scope.memo = {}
        elif ptext in memo:
            return memo[ptext]
        v = memo[ptext] = _read_segment(scope, ptext, fi, ci, si)
        return v
    return read_seg


def _read_segment(scope: Scope, ptext: str, fi: int, ci: int, si: int) -> str | None:
    node = scope.node
    if node is None:
        return None
    fields_raw = getattr(node, "fields_raw", None)
    if fields_raw is None or (fi <= 2 and node.name in _HEADERS):  # not a segment, MSH-1/2: the generic way
        v = node.get(ptext)
    else:
        v = fields_raw(fi)
        if not v:
            return None
        d = scope.msg.delimiters
        v = _first_rep_part(v, d, ci, si)
        if v and d.escape in v:
            v = unescape(v, d, scope.msg.encoding)
    if not v:
        return None
    v = v.strip()
    return v if v and v != '""' else None


def _fast_relative_selector(ptext: str, level: int | None) -> Callable[[Scope], list[Any]] | None:
    """``for_each`` on a relative path the datatype fragments use most: ``f``, ``f[*]``, ``f[n]`` on a
    segment, ``c`` on a field repetition. Same nodes as ``node.select(ptext)`` without the generic walk
    (which compiles the path and builds every node through several calls); None for other paths."""
    if level == REPETITION and ptext.isdigit():
        ci = int(ptext) - 1

        def sel_comp(scope: Scope) -> list[Any]:
            node = scope.node
            if node is None:
                return []
            if node._level != REPETITION:  # a literal (MSH-1/2): the generic way
                return [n for n in node.select(ptext) if not n.is_empty]
            comps = scope.comps
            if comps is None:
                comps = scope.comps = node._raw.split(scope.msg.delimiters.component)
            v = comps[ci] if ci < len(comps) else ""
            return [Node(v, COMPONENT, node._msg)] if v else []
        sel_comp._probe = ("c", ci)  # type: ignore[attr-defined]
        return sel_comp
    if level != SEGMENT:
        return None
    try:
        rp = compile_relative(ptext, SEGMENT)
    except ValueError:
        return None
    if rp.comp is not None or rp.sub is not None or rp.field is None:
        return None
    fi, rep = rp.field, rp.rep

    def sel_field(scope: Scope) -> list[Any]:
        node = scope.node
        if node is None:
            return []
        if fi <= 2 and getattr(node, "name", None) in _HEADERS or not isinstance(node, Segment):
            return [n for n in node.select(ptext) if not n.is_empty]
        raw = node.fields_raw(fi)
        if not raw:
            return []
        nmsg = node._msg
        rs = nmsg.delimiters.repetition
        if rep == 0:
            return [Node(r, REPETITION, nmsg) for r in raw.split(rs) if r]
        if rep is None or rep == 1:
            i = raw.find(rs)
            v = raw if i < 0 else raw[:i]
        else:
            parts = raw.split(rs)
            v = parts[rep - 1] if rep <= len(parts) else ""
        return [Node(v, REPETITION, nmsg)] if v else []
    return sel_field


def _fast_reader(ptext: str) -> Rule:
    """Read ``c`` or ``c.s`` on a field repetition, splitting its components once per node.

    Same result as ``node.get(ptext)`` (first value, unescaped), without re-splitting the
    repetition for each of the dozen components a datatype fragment reads.
    """
    c, _, sub = ptext.partition(".")
    ci, si = int(c) - 1, int(sub) if sub else 0

    def read_fast(scope: Scope) -> str | None:
        node = scope.node
        if node is None:
            return None
        comps = scope.comps
        msg = scope.msg
        d = msg.delimiters
        if comps is None:
            comps = scope.comps = node.raw.split(d.component)
        if ci >= len(comps):
            return None
        v = comps[ci]
        if si:
            parts = v.split(d.subcomponent)
            v = parts[si - 1] if si <= len(parts) else ""
        return _leaf_value(v, msg)
    return read_fast


def _fast_subcomponent_reader(si: int) -> Rule:
    """Read subcomponent ``si`` (0-based) of a component node (an HD in CX-4, a CWE in SPS-1):
    the same as ``node.get(str(si + 1))``, without the generic path walk."""
    def read_sub(scope: Scope) -> str | None:
        node = scope.node
        if node is None:
            return None
        msg = scope.msg
        parts = node.raw.split(msg.delimiters.subcomponent)
        return _leaf_value(parts[si], msg) if si < len(parts) else None
    return read_sub


def _leaf_value(v: str, msg: Any) -> str | None:
    """A raw leaf as rules see it: unescaped, trimmed, ``None`` when empty or the HL7 null ``""``."""
    if not v:
        return None
    d = msg.delimiters
    if d.escape in v:
        v = unescape(v, d, msg.encoding)
    v = v.strip()
    return v if v and v != '""' else None


def _suggest(name: Any, known: dict[str, Element]) -> str:
    import difflib

    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def model_for(type_name: str) -> Any | None:
    return datatype_model(type_name)


__all__ = ["ALL", "Compiler", "Compiled", "Fragment", "Src", "Unit", "Where", "model_for"]
