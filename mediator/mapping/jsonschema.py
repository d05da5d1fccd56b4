"""The JSON Schema of mapping and code map files, for editors (completion, inline errors).

Built from the compiler's own key sets, function table and conversions, so the schema cannot drift
from what the compiler accepts; ``mediator map schema`` prints it and ``mappings/mapping.schema.json``
holds a copy (a test keeps the copy current). The schema checks the shape of a file; the compiler
still has the last word (FHIR element names, paths, fragment and code map references), and says
file, line and rule when it refuses one.

In VS Code (YAML extension), put ``# yaml-language-server: $schema=mapping.schema.json`` on the first
line of a mapping file, or map ``mappings/*.yaml`` to the schema in the settings.
"""

from __future__ import annotations

from typing import Any

from mediator.mapping import codes, compiler, convert, mapping
from mediator.mapping.functions import FUNCTIONS

__all__ = ["mapping_schema"]

SCHEMA_ID = "urn:mediator:schema:mapping-file"


def _described(schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {**schema, "description": text}


def mapping_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a file in ``mappings/`` (mapping, fragments or code map)."""
    rule_ref, cond_ref, sel_ref = {"$ref": "#/$defs/rule"}, {"$ref": "#/$defs/condition"}, {"$ref": "#/$defs/selector"}
    rules = {"type": "array", "items": rule_ref, "minItems": 1}
    rule_props: dict[str, Any] = {
        "path": _described({"type": "string"}, "HL7 v2 terser path (PID-5[*].1, OBX-5, a Z-segment) or XPath (CDA)"),
        "const": _described({}, "a constant value"),
        "template": _described({"type": "string"}, "text with {PATH} or {$var} placeholders"),
        "concat": _described(rules, "values joined with 'sep' (default a space); empty ones skipped"),
        "fn": _described({"enum": sorted(FUNCTIONS)}, "a built-in function; its input is 'path' or 'args'"),
        "first": _described(rules, "the first of these rules that gives a value"),
        "hash": _described(rules, "a stable id derived from these values (rerun = update)"),
        "var": _described({"type": "string"}, "a variable defined under 'let'"),
        "ref": _described({"oneOf": [{"type": "string"},
                                     {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
                          "a reference to another resource of this mapping (a list: the nearest of each, in turn)"),
        "sep": {"type": "string"},
        "args": _described({"type": "object"}, "the function's arguments"),
        "for_each": _described(sel_ref, "one output item per selected node, segment or group"),
        "fields": {"$ref": "#/$defs/fields"},
        "use": _described({"type": "string"}, "a fragment (fragments/*.yaml)"),
        "when": cond_ref,
        "map": _described({"oneOf": [{"type": "string"}, {"$ref": "#/$defs/codemap"}]},
                          "a code map file (mappings/codes/) or an inline code map"),
        "as": _described({"enum": sorted(convert.CONVERTERS)}, "value conversion (default: by FHIR type)"),
        "type": _described({"enum": sorted(convert.CONVERTERS)}, "same as 'as'"),
        "default": _described({}, "the value when the source gives none"),
        "required": _described({"type": "boolean"}, "fail the message when there is no value"),
        "description": {"type": "string"},
        "invalid": _described({"enum": list(compiler.INVALID)}, "a value the conversion refuses: fail or drop"),
        "resource": _described({"type": "object", "additionalProperties": False, "required": ["type", "id"],
                                "properties": {"type": {"type": "string", "pattern": "^[A-Z][A-Za-z]+$"},
                                               "id": rule_ref, "display": rule_ref,
                                               "merge": {"type": "array", "items": {"type": "string"}}}},
                               "make a resource from this value (with 'use'/'fields'), add it to the Bundle "
                               "once per id (merge: the repeating elements a later one with the same id adds), "
                               "and give the Reference to it"),
    }
    cond_props: dict[str, Any] = {
        "exists": {"type": "string"}, "missing": {"type": "string"},
        "all": {"type": "array", "items": cond_ref, "minItems": 1},
        "any": {"type": "array", "items": cond_ref, "minItems": 1},
        "not": cond_ref, "path": {"type": "string"}, "value": rule_ref,
        "equals": {"type": ["string", "number", "boolean"]},
        "in": {"type": "array"}, "not_in": {"type": "array"},
        "matches": _described({"type": "string"}, "a regular expression"),
    }
    segment_names = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    group_props: dict[str, Any] = {
        "group": _described(segment_names, "the segment(s) that start each group (OBR, ORC, RXA, ...)"),
        "members": _described(segment_names, "segments that belong to the group"),
        "leading": _described(segment_names, "segments before the starting one that belong to the group"),
    }
    resource_props: dict[str, Any] = {
        "resourceType": _described({"type": "string", "pattern": "^[A-Z][A-Za-z]+$"}, "a FHIR R4 resource type"),
        "description": {"type": "string"}, "when": cond_ref, "for_each": sel_ref,
        "use": {"type": "string"}, "id": rule_ref,
        "request": {"type": "object", "additionalProperties": False,
                    "properties": {"method": {"enum": list(mapping.METHODS)}, "url": {"type": "string"}}},
        "fields": {"$ref": "#/$defs/fields"},
        "merge": _described({"type": "array", "items": {"type": "string"}, "minItems": 1},
                            "repeating elements a later occurrence of the same Type/id adds to the entry"),
    }
    fragment_props: dict[str, Any] = {
        "datatype": _described({"type": "string"}, "the FHIR datatype or resource the fragment builds"),
        "description": {"type": "string"}, "fields": {"$ref": "#/$defs/fields"}, "when": cond_ref,
    }
    top_props: dict[str, Any] = {
        "mapping": {"type": "string"}, "description": {"type": "string"},
        "source": {"enum": list(mapping.SOURCES)},
        "message_types": _described({"type": "array", "items": {"type": "string", "pattern": r"^[A-Z0-9]{3}\^"}},
                                    "ADT^A01, ORU^R01, ADT^* ..."),
        "uses": _described({"type": "array", "items": {"type": "string"}}, "fragment files"),
        "let": _described({"type": "object", "additionalProperties": rule_ref}, "variables ($name)"),
        "patient_key": rule_ref,
        "ignore_segments": {"type": "array", "items": {"type": "string"}},
        "ignore_sections": {"type": "array", "items": {"type": "string"}},
        "namespaces": _described({"type": "object", "additionalProperties": {"type": "string"}},
                                 "XPath prefixes (CDA: h -> urn:hl7-org:v3 is built in)"),
        "bundle": {"type": "object", "additionalProperties": False,
                   "properties": {"type": {"enum": list(mapping.BUNDLE_TYPES)}}},
        "resources": {"type": "object", "additionalProperties": {"$ref": "#/$defs/resource"}},
        "fragments": {"type": "object", "additionalProperties": {"$ref": "#/$defs/fragment"}},
        "invalid": {"enum": list(compiler.INVALID)},
    }
    codemap_props: dict[str, Any] = {
        "codemap": {"type": "string"}, "description": {"type": "string"},
        "entries": _described({"type": "object"}, "source code -> target code (or {code, display, system})"),
        "default": {}, "strict": {"type": "boolean"}, "keep_unmapped": {"type": "boolean"},
        "case_sensitive": {"type": "boolean"}, "system_in": {"type": "string"}, "system_out": {"type": "string"},
    }
    for name, props, keys in (("rule", rule_props, compiler.RULE_KEYS), ("condition", cond_props, compiler.COND_KEYS),
                              ("group", group_props, compiler.GROUP_KEYS),
                              ("resource", resource_props, mapping.RESOURCE_KEYS),
                              ("fragment", fragment_props, mapping.FRAGMENT_KEYS),
                              ("file", top_props, mapping.TOP_KEYS), ("codemap", codemap_props, codes.KEYS)):
        if set(props) != set(keys):  # a key added to the compiler must be described here
            raise AssertionError(f"{name}: schema keys differ from the compiler's: {sorted(set(props) ^ set(keys))}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "mediator mapping file",
        "description": "A mapping (HL7 v2 or CDA to FHIR R4), a fragments file or a code map (docs/mappings.md).",
        "oneOf": [
            {"type": "object", "additionalProperties": False, "properties": top_props, "not": {"required": ["entries"]},
             "patternProperties": {"^x-": _described({}, "a holder for YAML anchors, ignored")}},
            {"$ref": "#/$defs/codemap"},
        ],
        "$defs": {
            "rule": {"oneOf": [
                _described({"type": "string"}, "a path (shorthand for {path: ...})"),
                {"type": "array", "items": rule_ref, "description": "several items of a repeating element"},
                {"type": "object", "additionalProperties": False, "properties": rule_props},
            ]},
            "fields": _described({"type": "object", "additionalProperties": rule_ref},
                                 "FHIR element name -> rule (checked against the FHIR R4 model at load)"),
            "condition": {"oneOf": [
                _described({"type": "string"}, "shorthand for {exists: ...}"),
                _described({"type": "array", "items": cond_ref}, "shorthand for {all: [...]}"),
                {"type": "object", "additionalProperties": False, "minProperties": 1, "properties": cond_props},
            ]},
            "selector": {"oneOf": [
                _described({"type": "string"}, "a path: each repetition, segment or node"),
                _described({"type": "array", "items": sel_ref, "minItems": 1}, "each selector inside the previous"),
                {"type": "object", "additionalProperties": False, "required": ["first_of"],
                 "properties": {"first_of": {"type": "array", "items": sel_ref, "minItems": 1}}},
                {"type": "object", "additionalProperties": False, "required": ["all_of"],
                 "properties": {"all_of": {"type": "array", "items": sel_ref, "minItems": 1}}},
                {"type": "object", "additionalProperties": False, "required": ["group"], "properties": group_props},
            ]},
            "resource": {"type": "object", "additionalProperties": False, "properties": resource_props},
            "fragment": {"type": "object", "additionalProperties": False, "properties": fragment_props},
            "codemap": {"type": "object", "additionalProperties": False, "required": ["entries"],
                        "properties": codemap_props},
        },
    }
