"""External mode: resolve patients against a remote client registry (OpenCR, another mediator) over
IHE PIXm and ``$match`` instead of the built-in one.

:class:`RemoteClientRegistry` asks PIXm first (the source's IPP: ``sourceIdentifier`` =
``ipp-system|value``, ``targetSystem`` = the enterprise system), then ``$match`` with the Patient;
answers are cached (TTL, bounded LRU) and a circuit breaker stops calling a registry that keeps
failing (``failure_threshold`` consecutive failures open it for ``reset_after_s``; then one trial
call decides). :class:`RemoteResolver` is the pipeline's :class:`IdentityResolver` on top of it,
with the same review policy as the built-in resolver.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog

from mediator.pipeline.steps import StepFailed, Work
from mediator.registry.resolver import ENTERPRISE_SYSTEM, REVIEW_TAG_SYSTEM, ResolverPolicy, SystemMap

__all__ = ["CircuitOpen", "RemoteClientRegistry", "RemoteResolver", "RemoteResult"]

log = structlog.get_logger(__name__)
MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"


class CircuitOpen(Exception):
    """The remote registry failed repeatedly; calls are suspended for a while."""


@dataclass
class RemoteResult:
    enterprise_id: str | None
    link: str  # known (PIXm) | auto (certain $match) | candidate (probable) | new (no match)
    score: float | None = None
    candidates: list[str] = field(default_factory=list)
    cached: bool = False


class _TTLCache:
    def __init__(self, size: int, ttl: float) -> None:
        self.size, self.ttl = size, ttl
        self._d: OrderedDict[str, tuple[float, RemoteResult]] = OrderedDict()

    def get(self, key: str) -> RemoteResult | None:
        hit = self._d.get(key)
        if hit is None or hit[0] < time.monotonic():
            self._d.pop(key, None)
            return None
        self._d.move_to_end(key)
        return hit[1]

    def put(self, key: str, value: RemoteResult) -> None:
        self._d[key] = (time.monotonic() + self.ttl, value)
        self._d.move_to_end(key)
        while len(self._d) > self.size:
            self._d.popitem(last=False)


class RemoteClientRegistry:
    """A remote PIXm/$match client registry with a cache and a circuit breaker."""

    def __init__(self, base_url: str, *, enterprise_system: str = ENTERPRISE_SYSTEM, timeout_s: float = 5.0,
                 cache_ttl_s: float = 300.0, cache_size: int = 10000, failure_threshold: int = 5,
                 reset_after_s: float = 30.0, headers: dict[str, str] | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.enterprise_system = enterprise_system
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.cache = _TTLCache(cache_size, cache_ttl_s)
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self.headers = {"Accept": "application/fhir+json", **(headers or {})}
        self.failures = 0
        self.open_until = 0.0
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self.headers)
        return self._session

    async def _call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        now = time.monotonic()
        if self.failures >= self.failure_threshold and now < self.open_until:
            raise CircuitOpen("client registry unavailable (circuit open)")
        try:
            async with self._sess().request(method, self.base + path, **kw) as resp:
                body = await resp.json(content_type=None) if resp.status != 204 else None
                if resp.status >= 500:
                    raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.failures += 1
            if self.failures >= self.failure_threshold:
                self.open_until = time.monotonic() + self.reset_after_s
                log.warning("registry.remote.circuit_open", failures=self.failures, error=type(exc).__name__)
            raise
        self.failures = 0
        return resp.status, body

    async def pix(self, system: str, value: str) -> str | None:
        """The enterprise id cross-referenced to ``system|value`` (``None`` when unknown)."""
        status, body = await self._call("GET", "/Patient/$ihe-pix", params={
            "sourceIdentifier": f"{system}|{value}", "targetSystem": self.enterprise_system})
        if status != 200 or not isinstance(body, dict):
            return None
        for p in body.get("parameter") or []:
            ident = p.get("valueIdentifier") or {}
            if p.get("name") == "targetIdentifier" and ident.get("system") == self.enterprise_system:
                return str(ident.get("value"))
        for p in body.get("parameter") or []:
            ref = (p.get("valueReference") or {}).get("reference", "")
            if p.get("name") == "targetId" and ref:
                return ref.rsplit("/", 1)[-1]
        return None

    async def match(self, patient: dict[str, Any], count: int = 5) -> list[tuple[str, str, float]]:
        """``$match``: (enterprise id, match-grade, score) best first."""
        params = {"resourceType": "Parameters", "parameter": [
            {"name": "resource", "resource": patient}, {"name": "count", "valueInteger": count}]}
        status, body = await self._call("POST", "/Patient/$match", json=params)
        if status != 200 or not isinstance(body, dict):
            return []
        out = []
        for e in body.get("entry") or []:
            res, search = e.get("resource") or {}, e.get("search") or {}
            grade = next((x.get("valueCode") for x in search.get("extension") or [] if x.get("url") == MATCH_GRADE),
                         "possible")
            eid = next((i.get("value") for i in res.get("identifier") or []
                        if i.get("system") == self.enterprise_system), res.get("id"))
            if eid:
                out.append((str(eid), str(grade), float(search.get("score") or 0.0)))
        return out

    async def resolve(self, patient: dict[str, Any], source_identifier: tuple[str, str] | None) -> RemoteResult:
        key = f"{source_identifier[0]}|{source_identifier[1]}" if source_identifier else ""
        if key:
            hit = self.cache.get(key)
            if hit is not None:
                return RemoteResult(hit.enterprise_id, hit.link, hit.score, hit.candidates, cached=True)
            eid = await self.pix(*source_identifier)  # type: ignore[misc]
            if eid:
                res = RemoteResult(eid, "known")
                self.cache.put(key, res)
                return res
        hits = await self.match(patient)
        certain = [h for h in hits if h[1] == "certain"]
        if len(certain) == 1:
            res = RemoteResult(certain[0][0], "auto", certain[0][2])
        elif certain or any(h[1] == "probable" for h in hits):
            cands = [h[0] for h in hits if h[1] in ("certain", "probable")]
            res = RemoteResult(None, "candidate", hits[0][2], cands)
        else:
            res = RemoteResult(None, "new")
        if key and res.link == "auto":
            self.cache.put(key, res)
        return res


@dataclass
class RemoteResolver:
    """:class:`IdentityResolver` against a remote registry (external mode)."""

    remote: RemoteClientRegistry
    systems: SystemMap
    default_policy: ResolverPolicy = field(default_factory=ResolverPolicy)
    policies: dict[str, ResolverPolicy] = field(default_factory=dict)
    unavailable: str = "fail"  # fail | pass (send without an enterprise id, flagged)

    async def resolve(self, work: Work) -> None:
        bundle = work.bundle
        if not bundle:
            return
        resources = [e["resource"] for e in bundle.get("entry") or []
                     if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
        patient = next((r for r in resources if r.get("resourceType") == "Patient" and r.get("active") is not False),
                       None)
        if patient is None:
            return
        policy = self.policies.get(work.channel.name, self.default_policy)
        facility = str(getattr(work.message, "sending_facility", "") or "")
        src = None
        for ident in patient.get("identifier") or []:
            found = self.systems.kind_of(str(ident.get("system") or "")) if isinstance(ident, dict) else None
            if found and found[0] == "ipp" and ident.get("value") and (not facility or found[1] == facility or not src):
                src = (str(ident["system"]), str(ident["value"]))
        try:
            res = await self.remote.resolve(patient, src)
        except (CircuitOpen, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            if self.unavailable == "pass":
                work.identity = {"patient": {"link": "unavailable", "error": type(exc).__name__}}  # type: ignore[attr-defined]
                return
            raise StepFailed("resolve", f"client registry unavailable: {type(exc).__name__}") from None
        out = {"enterprise_id": res.enterprise_id, "link": res.link, "score": res.score,
               "candidates": [{"enterprise_id": c} for c in res.candidates], "cached": res.cached}
        work.identity = {"patient": out}  # type: ignore[attr-defined]
        if res.enterprise_id:
            idents = [i for i in patient.get("identifier") or []
                      if not (isinstance(i, dict) and i.get("system") == self.remote.enterprise_system)]
            idents.append({"use": "official", "system": self.remote.enterprise_system, "value": res.enterprise_id,
                           "type": {"text": "enterprise identifier"}})
            patient["identifier"] = idents
        if res.link == "candidate":
            tags = [t for t in (patient.get("meta") or {}).get("tag", []) if t.get("system") != REVIEW_TAG_SYSTEM]
            tags.append({"system": REVIEW_TAG_SYSTEM, "code": "review", "display": "patient match awaiting review"})
            patient.setdefault("meta", {})["tag"] = tags
            if policy.review == "hold":
                raise StepFailed("resolve", "held: patient match awaiting review (candidate "
                                 + ", ".join(res.candidates) + ")")
