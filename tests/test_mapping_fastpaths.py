"""The mapping engine's fast paths give the same answers as the generic code they bypass."""

from __future__ import annotations

import random

from mediator.mapping.compiler import _prefix_index, nearest
from mediator.mapping.model import MappingContext, Scope
from mediator.mapping.xpath import XPathSource, is_absolute


def test_nearest_refs_index_matches_nearest() -> None:
    rnd = random.Random(7)
    for _ in range(300):
        entries = [(tuple(rnd.randint(1, 3) for _ in range(rnd.randint(0, 3))), f"id{rnd.randint(1, 6)}")
                   for _ in range(rnd.randint(1, 8))]
        chain = tuple(rnd.randint(1, 3) for _ in range(rnd.randint(0, 4)))
        index = _prefix_index(entries, "T")
        got = next(index[chain[:k]] for k in range(len(chain), -1, -1) if chain[:k] in index)
        assert got == [f"T/{rid}" for rid in nearest(entries, chain)]


def test_is_absolute() -> None:
    assert is_absolute("//section[code/@code='1']/entry | //observation")
    assert is_absolute("//s[@c='a|b'] | /r")
    assert not is_absolute("//x | y")
    assert not is_absolute("id[@root]")


def test_simple_paths() -> None:
    xs = XPathSource()
    assert xs.simple("translation[@code]") == ("{urn:hl7-org:v3}translation[@code]", None, False)
    assert xs.simple("id[@root][1]") == ("{urn:hl7-org:v3}id[@root]", None, True)
    assert xs.simple("id[@root='1']") is None  # value tests stay with the XPath engine
    assert xs.simple("text()") is None


def test_simple_selectors_match_xpath() -> None:
    from lxml import etree

    from mediator.mapping.xpath import XmlMessage

    doc = etree.fromstring(b'<ClinicalDocument xmlns="urn:hl7-org:v3"><id extension="x"/><id root="1"/>'
                           b'<id root="2"/><code code=" "/><code code="a"/></ClinicalDocument>')
    xs = XPathSource()
    scope = Scope(XmlMessage(doc), MappingContext())
    for text in ("id[@root]", "id[@root][1]", "code[@code]"):
        want = [n for n in xs.compile(text)(doc)]
        assert xs.selector(text)(scope) == want, text
    for text in ("code/@code", "id[@root]", "id/@extension", "id/@nothing"):
        from mediator.mapping.xpath import present
        assert xs.exists(text)(scope) == present(xs.compile(text)(doc)), text
