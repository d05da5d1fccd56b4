"""CDA R2 header summary and its FHIR R4 form: a Patient plus a DocumentReference carrying the document.

:func:`cda_summary` reads the header of a parsed ``ClinicalDocument`` (see
:func:`mediator.cda.safe_xml.parse_xml`) with XPath expressions compiled once at import.
:func:`document_reference_bundle` turns it into a FHIR transaction Bundle (plain dict) that PUTs a
Patient and a DocumentReference with ids derived from the source identifiers, so a rerun updates
instead of duplicating. The original bytes travel base64-encoded in the attachment.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from mediator.cda.safe_xml import XmlInputError

__all__ = [
    "CDA_NS",
    "CdaName",
    "CdaSummary",
    "cda_summary",
    "default_identifier_system",
    "document_reference_bundle",
    "hl7_ts_to_fhir",
    "stable_id",
]

CDA_NS = "urn:hl7-org:v3"
_NS = {"h": CDA_NS}
LOINC_OID = "2.16.840.1.113883.6.1"
CDA_CONTENT_TYPE = "application/hl7-cda+xml"


def _xp(expr: str) -> etree.XPath:
    return etree.XPath(expr, namespaces=_NS, smart_strings=False)


_DOC_ID = _xp("h:id[1]")
_CODE = _xp("h:code[1]")
_TITLE = _xp("string(h:title[1])")
_EFFECTIVE = _xp("string(h:effectiveTime[1]/@value)")
_LANGUAGE = _xp("string(h:languageCode[1]/@code)")
_CONFIDENTIALITY = _xp("string(h:confidentialityCode[1]/@code)")
_SET_ID = _xp("h:setId[1]")
_VERSION = _xp("string(h:versionNumber[1]/@value)")
_PATIENT_ROLE = _xp("h:recordTarget[1]/h:patientRole[1]")
_ROLE_IDS = _xp("h:id")
_PATIENT_NAMES = _xp("h:patient[1]/h:name")
_BIRTH = _xp("string(h:patient[1]/h:birthTime[1]/@value)")
_GENDER = _xp("string(h:patient[1]/h:administrativeGenderCode[1]/@code)")
_AUTHOR_IDS = _xp("h:author/h:assignedAuthor/h:id")
_CUSTODIAN_ORG = _xp("h:custodian[1]/h:assignedCustodian[1]/h:representedCustodianOrganization[1]")
_ORG_ID = _xp("h:id[1]")
_ORG_NAME = _xp("normalize-space(string(h:name[1]))")

_GENDERS = {"M": "male", "F": "female", "UN": "other", "U": "unknown", "UNK": "unknown"}
_NAME_USE = {"L": "official", "P": "nickname", "ASGN": "usual", "C": "official", "A": "anonymous"}
_TS_RE = re.compile(
    r"^(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?(?P<f>\.\d+)?"
    r"(?P<tz>[+-]\d{4}|Z)?$"
)
_BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


@dataclass(slots=True, frozen=True)
class CdaName:
    """One patient name as written in the CDA (any script: Latin, Arabic, ...)."""

    family: tuple[str, ...] = ()
    given: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()
    suffix: tuple[str, ...] = ()
    use: str | None = None
    text: str | None = None


@dataclass(slots=True)
class CdaSummary:
    """Header facts of a CDA document needed to file it in the shared record."""

    document_id: tuple[str, str | None] | None = None
    code: str | None = None
    code_system: str | None = None
    code_display: str | None = None
    title: str | None = None
    effective_time: str | None = None
    language: str | None = None
    confidentiality: str | None = None
    set_id: tuple[str, str | None] | None = None
    version_number: str | None = None
    patient_ids: list[tuple[str, str | None]] = field(default_factory=list)
    patient_names: list[CdaName] = field(default_factory=list)
    birth_time: str | None = None
    gender: str | None = None
    author_ids: list[tuple[str, str | None]] = field(default_factory=list)
    custodian_id: tuple[str, str | None] | None = None
    custodian_name: str | None = None


def hl7_ts_to_fhir(value: str, *, date_only: bool = False) -> str | None:
    """Convert an HL7 v3 TS (``20240102103000+0100``) to a FHIR date/dateTime, keeping the offset.

    A time without an offset cannot be a FHIR dateTime, so it is truncated to the date. Returns
    ``None`` for values that are not a TS.
    """
    m = _TS_RE.match(value.strip())
    if not m:
        return None
    y, mo, d = m["y"], m["mo"], m["d"]
    date = y + (f"-{mo}" if mo else "") + (f"-{d}" if mo and d else "")
    if date_only or not (d and m["h"]) or not m["tz"]:
        return date
    time = f"{m['h']}:{m['mi'] or '00'}:{m['s'] or '00'}" + (m["f"] or "" if m["s"] else "")
    tz = m["tz"]
    offset = "Z" if tz == "Z" else f"{tz[:3]}:{tz[3:]}"
    return f"{date}T{time}{offset}"


def _ii(el: etree._Element | None) -> tuple[str, str | None] | None:
    if el is None:
        return None
    root = (el.get("root") or "").strip()
    if not root or el.get("nullFlavor"):
        return None
    ext = el.get("extension")
    return root, ext.strip() if ext and ext.strip() else None


def _first(nodes: list[Any]) -> Any:
    return nodes[0] if nodes else None


def _name(el: etree._Element) -> CdaName | None:
    def parts(tag: str) -> tuple[str, ...]:
        return tuple(
            t
            for t in (" ".join("".join(p.itertext()).split()) for p in el.findall(f"{{{CDA_NS}}}{tag}"))
            if t
        )

    family, given, prefix, suffix = parts("family"), parts("given"), parts("prefix"), parts("suffix")
    use = _NAME_USE.get((el.get("use") or "").split(" ")[0])
    text = None
    if not (family or given):
        text = " ".join("".join(el.itertext()).split()) or None
        if text is None:
            return None
    return CdaName(family, given, prefix, suffix, use, text)


def cda_summary(root: etree._Element) -> CdaSummary:
    """Extract the header summary of a ``ClinicalDocument``; raise :class:`XmlInputError` otherwise."""
    if isinstance(root.tag, str) and etree.QName(root).localname == "ClinicalDocument" and root.tag[0] != "{":
        raise XmlInputError(
            f"not a CDA document: ClinicalDocument is not in the {CDA_NS} namespace", root.sourceline
        )
    if root.tag != f"{{{CDA_NS}}}ClinicalDocument":
        name = etree.QName(root).localname if isinstance(root.tag, str) else "?"
        raise XmlInputError(
            f"not a CDA document: root element is {name!r}, expected ClinicalDocument", root.sourceline
        )
    summary = CdaSummary()
    summary.document_id = _ii(_first(_DOC_ID(root)))
    code = _first(_CODE(root))
    if code is not None and code.get("code"):
        summary.code = code.get("code")
        summary.code_system = code.get("codeSystem")
        summary.code_display = code.get("displayName")
    summary.title = " ".join(_TITLE(root).split()) or None
    effective = _EFFECTIVE(root)
    summary.effective_time = hl7_ts_to_fhir(effective) if effective else None
    language = _LANGUAGE(root).strip()
    summary.language = language if _BCP47.match(language) else None
    summary.confidentiality = _CONFIDENTIALITY(root).strip() or None
    summary.set_id = _ii(_first(_SET_ID(root)))
    summary.version_number = _VERSION(root).strip() or None
    role = _first(_PATIENT_ROLE(root))
    if role is not None:
        summary.patient_ids = [ii for ii in map(_ii, _ROLE_IDS(role)) if ii]
        summary.patient_names = [n for n in map(_name, _PATIENT_NAMES(role)) if n]
        birth = _BIRTH(role)
        summary.birth_time = hl7_ts_to_fhir(birth, date_only=True) if birth else None
        summary.gender = _GENDERS.get(_GENDER(role).strip().upper()) if _GENDER(role) else None
    seen: set[tuple[str, str | None]] = set()
    for ii in map(_ii, _AUTHOR_IDS(root)):
        if ii and ii not in seen:
            seen.add(ii)
            summary.author_ids.append(ii)
    org = _first(_CUSTODIAN_ORG(root))
    if org is not None:
        summary.custodian_id = _ii(_first(_ORG_ID(org)))
        summary.custodian_name = _ORG_NAME(org) or None
    return summary


def default_identifier_system(root: str) -> str:
    """FHIR identifier system for an II root: ``urn:oid:<oid>`` or ``urn:uuid:<uuid>``."""
    if re.fullmatch(r"[0-2](\.(0|[1-9]\d*))+", root):
        return f"urn:oid:{root}"
    if re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", root):
        return f"urn:uuid:{root.lower()}"
    return root


def _identifier(ii: tuple[str, str | None], system_for: Callable[[str], str]) -> dict[str, str]:
    root, ext = ii
    if ext is not None:
        return {"system": system_for(root), "value": ext}
    # Root only: the root itself is the globally unique identifier.
    return {"system": "urn:ietf:rfc:3986", "value": default_identifier_system(root)}


def stable_id(*parts: str) -> str:
    """A FHIR id derived deterministically from source identifiers (sha1 hex, 40 chars)."""
    return hashlib.sha1("|".join(parts).encode()).hexdigest()


def _human_name(name: CdaName) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name.use:
        out["use"] = name.use
    if name.text:
        out["text"] = name.text
    if name.family:
        out["family"] = " ".join(name.family)
    for key in ("given", "prefix", "suffix"):
        values = getattr(name, key)
        if values:
            out[key] = list(values)
    return out


def _coding_system(oid: str | None, system_for: Callable[[str], str]) -> str | None:
    if not oid:
        return None
    return "http://loinc.org" if oid == LOINC_OID else system_for(oid)


def document_reference_bundle(
    raw: bytes,
    summary: CdaSummary,
    *,
    identifier_system_for_root: Callable[[str], str],
    source_id: str,
) -> dict[str, Any]:
    """FHIR R4 transaction Bundle (plain dict): PUT Patient + PUT DocumentReference for a CDA document.

    The Patient id derives from its first identifier, the DocumentReference id from the document
    id (else from the content), so resubmitting the same document updates the same resources.
    ``source_id`` (the sending system) is recorded as ``meta.source``.
    """
    patient_identifiers = [_identifier(ii, identifier_system_for_root) for ii in summary.patient_ids]
    master = _identifier(summary.document_id, identifier_system_for_root) if summary.document_id else None
    doc_key = (
        f"{master['system']}|{master['value']}" if master else "sha256|" + hashlib.sha256(raw).hexdigest()
    )
    doc_id = stable_id("DocumentReference", doc_key)
    if patient_identifiers:
        first = patient_identifiers[0]
        patient_id = stable_id("Patient", first["system"], first["value"])
    else:  # no usable identifier: the patient is only known through this document
        patient_id = stable_id("Patient", "document", doc_key)
    meta = {"source": source_id} if source_id else None

    patient: dict[str, Any] = {"resourceType": "Patient", "id": patient_id}
    if meta:
        patient["meta"] = dict(meta)
    if patient_identifiers:
        patient["identifier"] = patient_identifiers
    names = [_human_name(n) for n in summary.patient_names]
    if names:
        patient["name"] = names
    if summary.gender:
        patient["gender"] = summary.gender
    if summary.birth_time:
        patient["birthDate"] = summary.birth_time

    doc: dict[str, Any] = {"resourceType": "DocumentReference", "id": doc_id}
    if meta:
        doc["meta"] = dict(meta)
    if summary.language:
        doc["language"] = summary.language
    if master:
        doc["masterIdentifier"] = master
    identifiers = []
    if summary.set_id:
        identifiers.append({"use": "secondary", **_identifier(summary.set_id, identifier_system_for_root)})
    if identifiers:
        doc["identifier"] = identifiers
    doc["status"] = "current"
    doc["docStatus"] = "final"
    if summary.code:
        coding = {"code": summary.code}
        system = _coding_system(summary.code_system, identifier_system_for_root)
        if system:
            coding = {"system": system, **coding}
        if summary.code_display:
            coding["display"] = summary.code_display
        doc["type"] = {"coding": [coding]}
        if summary.code_display:
            doc["type"]["text"] = summary.code_display
    doc["subject"] = {"reference": f"Patient/{patient_id}"}
    # DocumentReference.date is an instant: only a full date-time with offset qualifies.
    if summary.effective_time and "T" in summary.effective_time:
        doc["date"] = summary.effective_time
    authors = [{"identifier": _identifier(ii, identifier_system_for_root)} for ii in summary.author_ids]
    if authors:
        doc["author"] = authors
    if summary.custodian_id or summary.custodian_name:
        custodian: dict[str, Any] = {}
        if summary.custodian_id:
            custodian["identifier"] = _identifier(summary.custodian_id, identifier_system_for_root)
        if summary.custodian_name:
            custodian["display"] = summary.custodian_name
        doc["custodian"] = custodian
    if summary.title:
        doc["description"] = summary.title
    if summary.confidentiality:
        doc["securityLabel"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": summary.confidentiality,
                    }
                ]
            }
        ]
    attachment: dict[str, Any] = {
        "contentType": CDA_CONTENT_TYPE,
        "data": base64.b64encode(raw).decode("ascii"),
        "size": len(raw),
        "hash": base64.b64encode(hashlib.sha1(raw).digest()).decode("ascii"),
    }
    if summary.language:
        attachment["language"] = summary.language
    if summary.title:
        attachment["title"] = summary.title
    if summary.effective_time:
        attachment["creation"] = summary.effective_time
    doc["content"] = [{"attachment": attachment}]
    if summary.effective_time:
        doc["context"] = {"period": {"start": summary.effective_time}}

    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{_uuid_from(patient_id)}",
                "resource": patient,
                "request": {"method": "PUT", "url": f"Patient/{patient_id}"},
            },
            {
                "fullUrl": f"urn:uuid:{_uuid_from(doc_id)}",
                "resource": doc,
                "request": {"method": "PUT", "url": f"DocumentReference/{doc_id}"},
            },
        ],
    }


def _uuid_from(hex_id: str) -> str:
    h = hex_id[:32]
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:32]}"
