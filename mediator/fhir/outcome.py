"""FHIR ``OperationOutcome`` construction and HTTP responses carrying one.

An *issue* is a plain tuple ``(severity, code, diagnostics, expression)`` where ``severity`` is one
of ``fatal | error | warning | information``, ``code`` an IssueType code (``invalid``,
``not-supported``, ``not-found``, ``conflict``, ``processing``, ...), ``diagnostics`` free text and
``expression`` a FHIRPath-like location (``Bundle.entry[3].request.url``) or ``None``.

:class:`OutcomeError` is the exception every FHIR-facing module raises for a client error; it knows
its HTTP status and turns itself into a response with :meth:`OutcomeError.response`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiohttp import web

__all__ = [
    "FHIR_JSON",
    "Issue",
    "OutcomeError",
    "fhir_json_response",
    "operation_outcome",
    "outcome_response",
]

FHIR_JSON = "application/fhir+json"

Issue = tuple[str, str, str, str | None]


def operation_outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    """Build an OperationOutcome resource (a plain dict) from issue tuples.

    An empty issue list yields a single ``information``/``informational`` issue, since FHIR
    requires at least one.
    """
    out: list[dict[str, Any]] = []
    for severity, code, diagnostics, expression in issues:
        issue: dict[str, Any] = {"severity": severity, "code": code}
        if diagnostics:
            issue["diagnostics"] = diagnostics
        if expression:
            issue["expression"] = [expression]
        out.append(issue)
    if not out:
        out.append({"severity": "information", "code": "informational", "diagnostics": "All OK"})
    return {"resourceType": "OperationOutcome", "issue": out}


def fhir_json_response(
    body: Mapping[str, Any] | bytes,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A ``application/fhir+json; charset=utf-8`` response; ``body`` is a dict or pre-encoded JSON."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(body=raw, status=status, content_type=FHIR_JSON, charset="utf-8", headers=headers)


def outcome_response(
    status: int,
    issues: Iterable[Issue] | None = None,
    *,
    severity: str = "error",
    code: str = "processing",
    diagnostics: str = "",
    expression: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An HTTP response whose body is an OperationOutcome.

    Either pass ``issues`` or describe a single issue with the keyword arguments.
    """
    if issues is None:
        issues = [(severity, code, diagnostics, expression)]
    return fhir_json_response(operation_outcome(issues), status=status, headers=headers)


class OutcomeError(Exception):
    """A client-visible FHIR error: an HTTP status and one or more issues."""

    def __init__(
        self,
        status: int,
        code: str,
        diagnostics: str,
        expression: str | None = None,
        *,
        issues: list[Issue] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.expression = expression
        self.issues: list[Issue] = issues or [("error", code, diagnostics, expression)]

    def outcome(self) -> dict[str, Any]:
        """The OperationOutcome describing this error."""
        return operation_outcome(self.issues)

    def response(self) -> web.Response:
        """This error as an ``application/fhir+json`` HTTP response."""
        return outcome_response(self.status, self.issues)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, {self.diagnostics!r})"
