"""Safe XML parsing and CDA → Patient + DocumentReference transaction Bundles."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from lxml import etree

from mediator.cda.document import (
    cda_summary,
    default_identifier_system,
    document_reference_bundle,
    hl7_ts_to_fhir,
)
from mediator.cda.safe_xml import UnsafeXmlError, XmlInputError, parse_xml, safe_parser
from mediator.testing import CORPORA

MS_CCDA = sorted((CORPORA / "ms-fhir-converter" / "ccda").glob("*.ccda"))
HL7_EXAMPLES = sorted((CORPORA / "hl7-c-cda-examples").rglob("*.xml"))
needs_corpora = pytest.mark.skipif(not MS_CCDA, reason="corpora not available")


def to_bundle(raw: bytes) -> dict:
    summary = cda_summary(parse_xml(raw))
    return document_reference_bundle(
        raw, summary, identifier_system_for_root=default_identifier_system, source_id="urn:mediator:test"
    )


ARABIC_CDA = """<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <id root="2.16.504.1.99.1" extension="DOC-42"/>
  <code code="11488-4" codeSystem="2.16.840.1.113883.6.1" displayName="Consult note"/>
  <title>Compte rendu de consultation</title>
  <effectiveTime value="20250102103000+0100"/>
  <languageCode code="fr-MA"/>
  <recordTarget><patientRole>
    <id root="2.16.504.1.1" extension="BK245871"/>
    <id nullFlavor="UNK"/>
    <patient>
      <name use="L"><given>Fatima Zahra</given><family>El Amrani</family></name>
      <name><given>فاطمة الزهراء</given><family>العمراني</family></name>
      <administrativeGenderCode code="F"/>
      <birthTime value="19850312"/>
    </patient>
  </patientRole></recordTarget>
  <author><assignedAuthor><id root="2.16.504.1.2" extension="123456"/></assignedAuthor></author>
  <custodian><assignedCustodian><representedCustodianOrganization>
    <id root="2.16.504.1.3" extension="H01"/><name>CHU Ibn Sina</name>
  </representedCustodianOrganization></assignedCustodian></custodian>
</ClinicalDocument>
""".encode()


def test_summary_and_bundle_keep_arabic_names_and_offsets() -> None:
    bundle = to_bundle(ARABIC_CDA)
    Bundle.model_validate(bundle)
    patient, doc = (e["resource"] for e in bundle["entry"])
    assert patient["identifier"] == [{"system": "urn:oid:2.16.504.1.1", "value": "BK245871"}]
    assert patient["name"][1] == {"family": "العمراني", "given": ["فاطمة الزهراء"]}
    assert patient["name"][0]["use"] == "official" and patient["birthDate"] == "1985-03-12"
    assert patient["gender"] == "female"
    assert doc["date"] == "2025-01-02T10:30:00+01:00" and doc["language"] == "fr-MA"
    assert doc["masterIdentifier"] == {"system": "urn:oid:2.16.504.1.99.1", "value": "DOC-42"}
    assert doc["type"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "11488-4",
        "display": "Consult note",
    }
    assert doc["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert doc["custodian"]["display"] == "CHU Ibn Sina"
    attachment = doc["content"][0]["attachment"]
    assert attachment["contentType"] == "application/hl7-cda+xml"
    assert base64.b64decode(attachment["data"]) == ARABIC_CDA
    # stable ids: a rerun PUTs the same resources
    again = to_bundle(ARABIC_CDA)
    assert [e["request"]["url"] for e in again["entry"]] == [e["request"]["url"] for e in bundle["entry"]]


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2024", "2024"),
        ("202401", "2024-01"),
        ("20240102", "2024-01-02"),
        ("202401021030-0500", "2024-01-02T10:30:00-05:00"),
        ("20240102103015.25+0100", "2024-01-02T10:30:15.25+01:00"),
        ("20240102103015", "2024-01-02"),  # no offset: a FHIR dateTime needs one, keep the date
        ("garbage", None),
    ],
)
def test_hl7_ts_to_fhir(ts: str, expected: str | None) -> None:
    assert hl7_ts_to_fhir(ts) == expected


@needs_corpora
@pytest.mark.parametrize("path", MS_CCDA, ids=lambda p: p.name)
def test_ms_converter_documents_give_valid_bundles(path: Path) -> None:
    bundle = to_bundle(path.read_bytes())
    Bundle.model_validate(bundle)
    assert bundle["entry"][1]["resource"]["resourceType"] == "DocumentReference"


@needs_corpora
def test_hl7_examples_sample_parse_safely() -> None:
    sample = random.Random(7).sample(HL7_EXAMPLES, min(60, len(HL7_EXAMPLES)))
    sample += [p for p in HL7_EXAMPLES if p.parent.parent.name == "Documents"]
    documents = rejected = 0
    for path in sample:
        raw = path.read_bytes()
        try:
            bundle = to_bundle(raw)
        except XmlInputError as exc:  # fragments: malformed (undeclared prefixes) or not a ClinicalDocument
            assert "malformed XML" in exc.message or "not a CDA document" in exc.message
            rejected += 1
            continue
        Bundle.model_validate(bundle)
        documents += 1
    assert documents >= 10 and rejected > 0


def test_fragment_is_not_a_cda_document() -> None:
    with pytest.raises(XmlInputError, match="not a CDA document"):
        cda_summary(parse_xml(b'<section xmlns="urn:hl7-org:v3"><title>x</title></section>'))
    with pytest.raises(XmlInputError, match="namespace"):
        cda_summary(parse_xml(b"<ClinicalDocument><id root='1.2'/></ClinicalDocument>"))


def test_entity_bomb_is_refused() -> None:
    bomb = b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
    bomb += b"".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">\n'.encode()
        for i in range(1, 10)
    )
    bomb += b"]>\n<lolz>&lol9;</lolz>"
    with pytest.raises(UnsafeXmlError):
        parse_xml(bomb)


def test_xxe_never_reads_the_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER-31337")
    xxe = f'<?xml version="1.0"?>\n<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file://{secret}">]>\n<foo>&xxe;</foo>'
    with pytest.raises(UnsafeXmlError) as info:
        parse_xml(xxe.encode())
    assert "TOP-SECRET" not in str(info.value) and info.value.line == 2
    with pytest.raises(UnsafeXmlError):  # UTF-16 does not slip past the declaration check
        parse_xml(xxe.encode("utf-16"))
    # defence in depth: the parser configuration alone leaves the entity unexpanded
    root = etree.fromstring(xxe.encode(), parser=safe_parser())
    assert b"TOP-SECRET" not in etree.tostring(root)


def test_malformed_xml_names_the_line() -> None:
    with pytest.raises(XmlInputError) as info:
        parse_xml(b"<ClinicalDocument xmlns='urn:hl7-org:v3'>\n<title>x</title>\n<id>\n</ClinicalDocument>")
    assert info.value.line == 4 and "line 4" in str(info.value)
    with pytest.raises(XmlInputError):
        parse_xml(b"")
    with pytest.raises(XmlInputError, match="exceeds"):
        parse_xml(b"<a/>" + b" " * 100, max_bytes=50)
