"""XPath sources for XML (CDA R2) mappings: every path compiled once, at load, with ``lxml.etree.XPath``.

A mapping with ``source: cda`` reads its paths as XPath 1.0 expressions. Outside ``for_each`` they
are evaluated on the document's root element (``ClinicalDocument``), inside on the current node;
an expression starting with ``/`` reads from the document root anywhere. Element names are in the
CDA namespace ``urn:hl7-org:v3`` both with the ``h:`` prefix (``h:recordTarget/h:patientRole``) and
without one (``recordTarget/patientRole``): unprefixed element name tests are given the default
namespace when the expression is compiled (attributes, functions, axes and variables are left
alone). ``sdtc:`` and ``xsi:`` are known too; a mapping may declare more under ``namespaces:``.

What a rule sees: the first node an expression selects (an element gives its text, whitespace
collapsed; an attribute its value), or the string, number or boolean an expression computes; an
empty result is ``None``. ``for_each`` iterates the selected elements.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from mediator.mapping.model import Scope

CDA_NS = "urn:hl7-org:v3"
NAMESPACES = {"h": CDA_NS, "sdtc": "urn:hl7-org:sdtc", "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
XML_NODE = 100  # Where.node_level inside an XPath for_each (never an HL7 v2 level)
_DEFAULT = "d_"  # the prefix unprefixed element names get

_TOKEN = re.compile(r"""
    (?P<str>"[^"]*"|'[^']*')
  | (?P<num>\d+(?:\.\d*)?|\.\d+)
  | (?P<op>//|::|\.\.|!=|<=|>=|[/\[\]()@,|=<>+*$-])
  | (?P<dot>\.)
  | (?P<name>[A-Za-z_][\w.-]*(?::(?:[A-Za-z_][\w.-]*|\*))?)
  | (?P<ws>\s+)
""", re.X)
_OPERATORS = frozenset({"and", "or", "mod", "div"})
_NCNAME = re.compile(r"^[A-Za-z_][\w.-]*$")
# one step of a simple path: [prefix:]name, then attribute-existence predicates ([@code])
_STEP = re.compile(r"^(?:(?P<prefix>[A-Za-z_][\w.-]*):)?(?P<local>[A-Za-z_][\w.-]*)"
                   r"(?P<preds>(?:\[@[A-Za-z_][\w.-]*\])*)$")


@dataclass
class XmlMessage:
    """A parsed XML document as mappings see it: its root element and the bytes it was read from."""

    root: Any  # lxml element
    raw: bytes = b""
    segments: tuple[()] = ()  # no HL7 v2 segments: nothing for the segment coverage to report
    _sections: list[Any] | None = field(default=None, repr=False)

    @property
    def type_key(self) -> str:
        """``CDA 34133-9``: the document type (its LOINC code), for messages and logs."""
        code = self.root.find(f"{{{CDA_NS}}}code")
        return f"CDA {code.get('code') if code is not None and code.get('code') else '?'}"

    @classmethod
    def of(cls, msg: Any) -> XmlMessage:
        """``msg`` itself, or an :class:`XmlMessage` around an lxml element (re-serialised bytes)."""
        if isinstance(msg, XmlMessage):
            return msg
        if isinstance(msg, etree._Element):
            return cls(msg, etree.tostring(msg.getroottree(), encoding="UTF-8", xml_declaration=True))
        raise TypeError(f"an XPath mapping applies to an XML document, not a {type(msg).__name__}")


def with_default_namespace(expr: str, prefix: str = _DEFAULT) -> str:
    """``expr`` with ``prefix:`` added to its unprefixed element name tests.

    ``recordTarget/patientRole/id[@root='1.2']`` -> ``d_:recordTarget/d_:patientRole/d_:id[@root='1.2']``;
    attribute names, function names, axis names, node type tests, variables and the operators
    ``and or mod div`` are kept. Raises ValueError on a character XPath does not know.
    """
    out: list[str] = []
    tokens = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"unexpected {expr[pos]!r} at position {pos + 1}")
        tokens.append((m.lastgroup, m.group()))
        pos = m.end()
    operand = False  # the previous significant token ends an operand (then a name is an operator)
    prev = axis = ""
    for i, (kind, text) in enumerate(tokens):
        if kind == "ws":
            out.append(text)
            continue
        nxt = next((t for k, t in tokens[i + 1:] if k != "ws"), "")
        if kind == "name":
            if operand and text in _OPERATORS:
                out.append(text)
                operand = False
            elif ":" in text or nxt in ("(", "::") or prev in ("@", "$") or (prev == "::" and axis == "attribute"):
                out.append(text)
                operand = nxt not in ("(", "::")
            else:
                out.append(f"{prefix}:{text}")
                operand = True
        elif kind == "op":
            out.append(text)
            # '*' after an operator is a name test (an operand), else a multiplication
            operand = True if text == "*" and not operand else text in (")", "]", "..")
        else:  # str, num, dot
            out.append(text)
            operand = True
        axis, prev = prev, text
    return "".join(out)


class XPathSource:
    """Compiles the XPath expressions of one mapping file (namespaces from the file or the defaults)."""

    def __init__(self, namespaces: dict[str, str] | None = None) -> None:
        ns = dict(NAMESPACES)
        ns.update(namespaces or {})
        self.default = ns.pop("", CDA_NS)
        ns[_DEFAULT] = self.default
        self.namespaces = ns
        self._cache: dict[str, etree.XPath] = {}

    def compile(self, text: str) -> etree.XPath:
        """The compiled expression; ValueError (with lxml's reason) when it is not valid XPath 1.0."""
        found = self._cache.get(text)
        if found is None:
            for m in _TOKEN.finditer(text):
                name = m.group("name")
                if name and ":" in name and name.split(":", 1)[0] not in self.namespaces:
                    raise ValueError(f"unknown namespace prefix {name.split(':', 1)[0]!r} in {text!r} "
                                     "(declare it under 'namespaces:')")
            try:
                found = etree.XPath(with_default_namespace(text), namespaces=self.namespaces, smart_strings=False)
            except (etree.XPathSyntaxError, ValueError) as exc:
                raise ValueError(f"not a valid XPath expression {text!r}: {exc}") from None
            self._cache[text] = found
        return found

    def simple(self, text: str) -> tuple[str, str | None, bool] | None:
        """A child path (``code``, ``id/@root``, ``@value``, ``a/b``, ``translation[@code]``,
        ``id[@root][1]``) as an ElementPath for ``find``, the attribute it ends on and whether it ends
        with ``[1]``: the same nodes as the XPath, found without the XPath engine (whose every call
        sets up a context: several µs for a child lookup). Only attribute-existence predicates
        (``[@x]``, the same test in both languages) and a final ``[1]`` are taken."""
        parts = text.split("/")
        attr = parts.pop()[1:] if parts[-1].startswith("@") else None
        if attr is not None and not _NCNAME.match(attr):
            return None
        first = False
        if attr is None and parts and parts[-1].endswith("[1]"):
            first = True
            parts[-1] = parts[-1][:-3]
        tags = []
        for p in parts:
            m = _STEP.match(p)
            if m is None:
                return None
            prefix, local, preds = m.group("prefix") or "", m.group("local"), m.group("preds")
            uri = self.namespaces.get(prefix) if prefix else self.default
            if uri is None:
                return None
            tags.append(f"{{{uri}}}{local}{preds}")
        if not tags and attr is None:
            return None
        return "/".join(tags) or ".", attr, first

    # ------------------------------------------------------------------ rule builders
    def reader(self, text: str) -> Callable[[Scope], Any]:
        xp = self.compile(text)
        simple = self.simple(text)
        if simple is not None:  # a final [1] changes nothing for a reader: it sees the first node
            return _simple_reader(simple[0], simple[1])

        def read_xpath(scope: Scope) -> str | None:
            node = scope.node
            return leaf(xp(node if node is not None else scope.msg.root))
        return read_xpath

    def selector(self, text: str) -> Callable[[Scope], list[Any]]:
        xp = self.compile(text)
        simple = self.simple(text)
        if simple is not None and simple[1] is None and not simple[2]:
            path = simple[0]

            def select_children(scope: Scope) -> list[Any]:
                node = scope.node
                return (node if node is not None else scope.msg.root).findall(path)
            return select_children
        if simple is not None and simple[1] is None and "/" not in text:
            # one step ending with [1] (id[@root][1]): the first match among the children
            path = simple[0]

            def select_first_child(scope: Scope) -> list[Any]:
                node = scope.node
                el = (node if node is not None else scope.msg.root).find(path)
                return [] if el is None else [el]
            return select_first_child

        absolute = is_absolute(text)

        def select_xpath(scope: Scope) -> list[Any]:
            node = scope.node
            if node is None or absolute:
                # the same selection of the whole document (a section's entries, every performer) is
                # made by several resources and from every node: evaluated once per apply
                memo = scope.vars.get("@xpath")
                if memo is None:
                    memo = scope.vars["@xpath"] = {}
                found = memo.get(xp)
                if found is None:
                    found = memo[xp] = _elements(xp(scope.msg.root))
                return list(found)
            return _elements(xp(node))
        return select_xpath

    def exists(self, text: str) -> Callable[[Scope], bool]:
        xp = self.compile(text)
        simple = self.simple(text)
        if simple is not None and not simple[2]:
            return _simple_exists(simple[0], simple[1])

        def exists_xpath(scope: Scope) -> bool:
            node = scope.node
            return present(xp(node if node is not None else scope.msg.root))
        return exists_xpath

    def scopes(self, text: str) -> Callable[[Scope], list[Scope]]:
        """``for_each``: one scope per selected element; its group chain is the element's place in the
        tree, so that ``ref:`` finds the resources made from inside it (see :func:`nearest_xml`)."""
        sel = self.selector(text)

        def each_element(scope: Scope) -> list[Scope]:
            msg, ctx, vars_, ids = scope.msg, scope.ctx, scope.vars, scope.ids
            return [Scope(msg, ctx, n, vars_, ids, chain_of(n), pos) for pos, n in enumerate(sel(scope), 1)]
        return each_element


def _elements(found: Any) -> list[Any]:
    return [n for n in found if isinstance(n, etree._Element)] if isinstance(found, list) else []


def is_absolute(expr: str) -> bool:
    """Whether every branch of the expression's top-level union starts at the document root (``/``,
    ``//``): its result is then the same from any node."""
    depth, quote, start = 0, "", 0
    branches = []
    for i, ch in enumerate(expr):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "|" and depth == 0:
            branches.append(expr[start:i])
            start = i + 1
    branches.append(expr[start:])
    return all(b.strip().startswith("/") for b in branches)


def _simple_exists(path: str, attr: str | None) -> Callable[[Scope], bool]:
    """``exists`` on a simple path, as :func:`present` answers for its XPath: any element, or a
    non-blank value of the attribute."""
    if attr is None:
        def has_child(scope: Scope) -> bool:
            node = scope.node
            return (node if node is not None else scope.msg.root).find(path) is not None
        return has_child

    def has_attr(scope: Scope) -> bool:
        node = scope.node
        base = node if node is not None else scope.msg.root
        for el in ([base] if path == "." else base.iterfind(path)):
            v = el.get(attr)
            if v is not None and v.strip():
                return True
        return False
    return has_attr


def _simple_reader(path: str, attr: str | None) -> Callable[[Scope], str | None]:
    """``simple`` paths read with ``find``: the first element's text, or the first value of the
    attribute among the elements (as XPath's ``a/@x`` gives it)."""
    if attr is None:
        def read_child(scope: Scope) -> str | None:
            node = scope.node
            el = (node if node is not None else scope.msg.root).find(path)
            if el is None:
                return None
            return " ".join("".join(el.itertext()).split()) or None
        return read_child
    if path == ".":
        def read_attr(scope: Scope) -> str | None:
            node = scope.node
            v = (node if node is not None else scope.msg.root).get(attr)
            return (v.strip() or None) if v is not None else None
        return read_attr

    def read_child_attr(scope: Scope) -> str | None:
        node = scope.node
        for el in (node if node is not None else scope.msg.root).iterfind(path):
            v = el.get(attr)
            if v is not None:
                return v.strip() or None
        return None
    return read_child_attr


def leaf(found: Any) -> str | None:
    """What a rule sees of an XPath result (see the module docstring)."""
    if isinstance(found, list):
        if not found:
            return None
        found = found[0]
        if isinstance(found, etree._Element):
            found = " ".join("".join(found.itertext()).split())
    if isinstance(found, bool):
        return "true" if found else None
    if isinstance(found, float):
        if found != found:  # NaN: number() of nothing
            return None
        return str(int(found)) if found.is_integer() else repr(found)
    if isinstance(found, str):
        found = found.strip()
        return found or None
    return None


def present(found: Any) -> bool:
    """``exists``: an element (even an empty one), a non-blank attribute or string, true, a number."""
    if isinstance(found, list):
        return any(isinstance(n, etree._Element) or (isinstance(n, str) and n.strip()) for n in found)
    return leaf(found) is not None


def chain_of(node: Any) -> tuple[int, ...]:
    """The element's place in its tree: the child index of it and of each ancestor, from the root."""
    out: list[int] = []
    parent = node.getparent()
    while parent is not None:
        out.append(parent.index(node))
        node, parent = parent, parent.getparent()
    out.append(0)
    out.reverse()
    return tuple(out)


def nearest_xml(entries: list[tuple[tuple[int, ...], str]] | None, chain: tuple[int, ...]) -> list[str]:
    """``ref:`` in an XML mapping: the targets made from the current element or from inside it (a
    section's entries, an organizer's observations, a medication's product); else those made from
    an enclosing element or from the whole document (the patient, the document's encounter)."""
    if not entries:
        return []
    n = len(chain)
    inside = [rid for key, rid in entries if key[:n] == chain]
    if inside:
        return list(dict.fromkeys(inside))
    return list(dict.fromkeys(rid for key, rid in entries if chain[:len(key)] == key))


_SECTIONS = etree.XPath("//h:section[h:entry]", namespaces=NAMESPACES)
_SECTION_TAG = f"{{{CDA_NS}}}section"
_PEOPLE_TAGS = tuple(f"{{{CDA_NS}}}{t}" for t in ("author", "performer", "informant"))


def section_label(section: Any) -> str:
    """``section 11450-4 [2.16.840.1.113883.10.20.22.2.5.1]``: its LOINC code and templateIds."""
    code = section.find(f"{{{CDA_NS}}}code")
    code_text = (code.get("code") if code is not None else None) or "?"
    templates = [t.get("root") for t in section.findall(f"{{{CDA_NS}}}templateId") if t.get("root")]
    return f"section {code_text}" + (f" [{', '.join(dict.fromkeys(templates))}]" if templates else "")


def unmapped_sections(msg: XmlMessage, nodes: list[Any], ignore: frozenset[str]) -> list[str]:
    """The sections with entries from which no resource was made (no silent drops), by LOINC code
    and templateId; ``ignore`` lists codes or templateIds deliberately not mapped."""
    covered: set[Any] = set()
    for n in nodes:
        if n.tag == _SECTION_TAG:
            covered.add(n)
        elif n.tag in _PEOPLE_TAGS or any(True for _ in n.iterancestors(_PEOPLE_TAGS)):
            continue  # who wrote or performed an entry (a Practitioner) does not map the entry itself
        covered.update(n.iterancestors(_SECTION_TAG))
    out = []
    for sec in _SECTIONS(msg.root):
        if sec in covered:
            continue
        code = sec.find(f"{{{CDA_NS}}}code")
        keys = {t.get("root") for t in sec.findall(f"{{{CDA_NS}}}templateId")}
        if code is not None:
            keys.add(code.get("code"))
        if keys & ignore:
            continue
        out.append(section_label(sec))
    return out


__all__ = ["NAMESPACES", "XML_NODE", "XPathSource", "XmlMessage", "chain_of", "leaf", "nearest_xml",
           "section_label", "unmapped_sections", "with_default_namespace"]
