"""Declarative mappings (YAML) from HL7 v2 messages to FHIR R4 Bundles, compiled once at load.

See ``docs/mappings.md`` for the language.
"""

from mediator.mapping.mapping import Mapping, load_mapping, load_mappings
from mediator.mapping.model import MappingContext, MappingError, MappingResult

__all__ = ["Mapping", "MappingContext", "MappingError", "MappingResult", "load_mapping", "load_mappings"]
