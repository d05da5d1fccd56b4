"""Built-in functions for XML (CDA) mappings, added to ``FUNCTIONS`` when the XPath source loads.

Each reads one element (the rule's ``path``, or the ``for_each`` node): an ``II`` identifier, a
section's narrative block, a ``reference`` into the narrative, or the document itself.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

from lxml import etree

from mediator.mapping.functions import FUNCTIONS, Function
from mediator.mapping.model import Scope
from mediator.mapping.xpath import CDA_NS

XHTML_NS = "http://www.w3.org/1999/xhtml"
_SYSTEMS: dict[int, tuple[Any, Callable[[str], str]]] = {}

# CDA narrative block element -> XHTML element (what FHIR Narrative allows)
_NARRATIVE = {
    "paragraph": "p", "content": "span", "list": "ul", "item": "li", "table": "table", "thead": "thead",
    "tbody": "tbody", "tfoot": "tfoot", "tr": "tr", "th": "th", "td": "td", "caption": "caption",
    "col": "col", "colgroup": "colgroup", "br": "br", "sub": "sub", "sup": "sup", "footnote": "span",
    "footnoteRef": "span", "linkHtml": "a", "text": "div",
}
_KEEP_ATTRS = {"colspan", "rowspan", "align", "valign", "span", "width"}


def _system_for(scope: Scope) -> Callable[[str], str]:
    """``cda_root_system`` of the context's identifier configuration, built once per configuration."""
    cfg = scope.ctx.identifiers
    found = _SYSTEMS.get(id(cfg))
    if found is None or found[0] is not cfg:
        from mediator.fhir.normalize import cda_root_system

        if len(_SYSTEMS) > 64:
            _SYSTEMS.clear()
        found = _SYSTEMS[id(cfg)] = (cfg, cda_root_system(cfg))
    return found[1]


def _is_element(node: Any) -> bool:
    return isinstance(node, etree._Element) and not node.get("nullFlavor")


def ii_system(scope: Scope, node: Any, args: dict[str, Any]) -> str | None:
    """An ``II``'s FHIR system: the configured one for its root (``identifiers.aliases``), else
    ``urn:oid:<root>``; a root alone is its own value, in ``urn:ietf:rfc:3986``."""
    if not _is_element(node) or not (root := (node.get("root") or "").strip()):
        return None
    if not (node.get("extension") or "").strip():
        return "urn:ietf:rfc:3986"
    return _system_for(scope)(root)


def ii_value(scope: Scope, node: Any, args: dict[str, Any]) -> str | None:
    """An ``II``'s value: its extension, else ``urn:oid:<root>`` (or ``urn:uuid:``) for a root alone."""
    if not _is_element(node) or not (root := (node.get("root") or "").strip()):
        return None
    ext = (node.get("extension") or "").strip()
    if ext:
        return ext
    from mediator.cda.document import default_identifier_system

    value = default_identifier_system(root)
    return value if value.startswith("urn:") else None


def _copy(src: Any, parent: Any) -> None:
    """Append the XHTML form of the narrative element ``src`` under ``parent``."""
    local = etree.QName(src).localname if isinstance(src.tag, str) else None
    if local is None or local == "renderMultiMedia":
        if src.tail:
            _append_text(parent, src.tail)
        return
    tag = _NARRATIVE.get(local, "span")
    if local == "list" and src.get("listType") == "ordered":
        tag = "ol"
    el = etree.SubElement(parent, f"{{{XHTML_NS}}}{tag}")
    for k, v in src.attrib.items():
        if k == "ID":
            el.set("id", v)
        elif k == "styleCode":
            el.set("class", v)
        elif k == "href" and tag == "a" and not v.lower().startswith("javascript"):
            el.set("href", v)
        elif k in _KEEP_ATTRS:
            el.set(k, v)
    el.text = src.text
    for child in src:
        _copy(child, el)
    el.tail = src.tail


def _append_text(parent: Any, text: str) -> None:
    if len(parent):
        parent[-1].tail = (parent[-1].tail or "") + text
    else:
        parent.text = (parent.text or "") + text


def narrative(scope: Scope, node: Any, args: dict[str, Any]) -> str | None:
    """A CDA narrative block (``section/text``) as the XHTML ``div`` of a FHIR Narrative: paragraph
    -> p, list/item -> ul|ol/li, table parts kept, content -> span, ``ID`` -> id, ``styleCode`` ->
    class; the text (in any language: French, Arabic) is kept as written."""
    if not _is_element(node):
        return None
    if not "".join(node.itertext()).strip():
        return None
    div = etree.Element(f"{{{XHTML_NS}}}div", nsmap={None: XHTML_NS})
    div.text = node.text
    for child in node:
        _copy(child, div)
    return etree.tostring(div, encoding="unicode")


def narrative_ref(scope: Scope, node: Any, args: dict[str, Any]) -> str | None:
    """The narrative text a ``reference`` points at (``<reference value="#prob1"/>``: the text of the
    element whose ``ID`` is ``prob1``); the node may be the reference or an element holding one."""
    if not isinstance(node, etree._Element):
        return None
    value = node.get("value")
    if value is None:
        ref = node.find(f"{{{CDA_NS}}}reference")
        value = ref.get("value") if ref is not None else None
    if not value or not value.startswith("#"):
        return None
    target = _ids(scope).get(value[1:])
    if target is None:
        return None
    return " ".join("".join(target.itertext()).split()) or None


def _ids(scope: Scope) -> dict[str, Any]:
    """Every element with an ``ID`` attribute, indexed once per document."""
    found = scope.vars.get("@xml_ids")
    if found is None:
        root = scope.msg.root
        found = scope.vars["@xml_ids"] = {e.get("ID"): e for e in root.iter() if isinstance(e.tag, str)
                                          and e.get("ID")}
    return found


def _bytes_of(scope: Scope, node: Any) -> bytes | None:
    """The document as received for its root element, else the element serialised."""
    if not isinstance(node, etree._Element):
        return None
    if node is scope.msg.root or node.getparent() is None:
        return scope.msg.raw or etree.tostring(node, encoding="UTF-8")
    return etree.tostring(node, encoding="UTF-8", with_tail=False)


def xml_base64(scope: Scope, node: Any, args: dict[str, Any]) -> str | None:
    """The base64 of the document (at its root element: the bytes received) or of an element."""
    data = _bytes_of(scope, node)
    return base64.b64encode(data).decode("ascii") if data else None


def xml_size(scope: Scope, node: Any, args: dict[str, Any]) -> str | None:
    """The size in bytes of what ``xml_base64`` encodes."""
    data = _bytes_of(scope, node)
    return str(len(data)) if data else None


def xml_sha1(scope: Scope, node: Any, args: dict[str, Any]) -> str | None:
    """The base64 SHA-1 of what ``xml_base64`` encodes (``Attachment.hash``)."""
    data = _bytes_of(scope, node)
    return base64.b64encode(hashlib.sha1(data).digest()).decode("ascii") if data else None


def xml_path(scope: Scope, node: Any, args: dict[str, Any]) -> str | None:
    """The element's place in the document (``/*/*[9]/*[1]/*[3]``): with the document id, a stable
    id for an entry that has no id of its own."""
    if not isinstance(node, etree._Element):
        return None
    return node.getroottree().getpath(node)


FUNCTIONS.update({
    f.name: f
    for f in (
        Function("ii_system", "node", {}, ii_system, "CDA II -> identifier system (configured, else urn:oid:)"),
        Function("ii_value", "node", {}, ii_value, "CDA II -> identifier value (extension, else urn:oid:<root>)"),
        Function("narrative", "node", {}, narrative, "CDA narrative block -> XHTML div (FHIR Narrative)"),
        Function("narrative_ref", "node", {}, narrative_ref, "reference value='#id' -> the narrative text"),
        Function("xml_base64", "node", {}, xml_base64, "element (root: the document received) -> base64"),
        Function("xml_size", "node", {}, xml_size, "size in bytes of what xml_base64 encodes"),
        Function("xml_sha1", "node", {}, xml_sha1, "base64 SHA-1 of what xml_base64 encodes"),
        Function("xml_path", "node", {}, xml_path, "element -> its path in the document (a fallback id)"),
    )
})
