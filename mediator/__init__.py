"""mediator: health interoperability layer (HL7 v2, CDA, FHIR) for the DMP and CNSS."""

__version__ = "0.1.0"
