"""HTTP interfaces of the registries: IHE PDQm, PIXm, $match, mCSD, and the review queue JSON API.

=======================================================  ==================================================
``GET  /fhir/Patient?family=&given=&birthdate=&gender=&identifier=``  PDQm (ITI-78), searchset of golden Patients
``GET  /fhir/Patient/{id}``                              one golden Patient (enterprise id)
``GET  /fhir/Patient/$ihe-pix?sourceIdentifier=system|value[&targetSystem=]``  PIXm (ITI-83), Parameters
``POST /fhir/Patient/$match``                            ITI-119: Parameters with a Patient → scored searchset
``GET  /fhir/{Practitioner|PractitionerRole|Organization|Location|HealthcareService}?identifier=&name=``  mCSD
``GET  /api/registry/review``                            open candidates with scores and evidence
``POST /api/registry/review/{id}``                       ``{"decision": "link" | "reject"}``
``POST /api/registry/link | unlink | merge | unmerge``   manual operations (JSON bodies)
``GET  /api/registry/golden/{id}``, ``/api/registry/audit``, ``/api/registry/stats``
=======================================================  ==================================================

Every registry call runs in a worker thread (the registries are synchronous SQLite).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from mediator.fhir.outcome import fhir_json_response, outcome_response
from mediator.registry.providers import RESOURCE_TYPES, ProviderRegistry
from mediator.registry.registry import ClientRegistry, RegistryError
from mediator.registry.resolver import ENTERPRISE_SYSTEM, LANG_EXT, SystemMap, patient_record

__all__ = ["add_registry_routes", "golden_patient"]

MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"


def golden_patient(g: dict[str, Any], systems: SystemMap, enterprise_system: str = ENTERPRISE_SYSTEM) -> dict[str, Any]:
    """A golden record (``ClientRegistry.golden``) as a FHIR R4 Patient."""
    data = g.get("data") or {}
    gid = g["enterprise_id"]
    idents = [{"use": "official", "system": enterprise_system, "value": gid}]
    for kind, value in (data.get("identifiers") or {}).items():
        system = systems.system_of(kind)
        if system:
            idents.append({"system": system, "value": value})
    for s in g.get("sources") or []:
        if s.get("source") and s.get("status", "active") == "active" and not str(s["local_id"]).startswith("Patient/"):
            system = systems.system_of("ipp", s["source"])
            if system:
                idents.append({"system": system, "value": s["local_id"]})
    p: dict[str, Any] = {"resourceType": "Patient", "id": gid, "identifier": idents, "active": g["status"] == "active"}
    names = []
    if data.get("family") or data.get("given"):
        n: dict[str, Any] = {"use": "official", "extension": [{"url": LANG_EXT, "valueCode": "fr"}]}
        if data.get("family"):
            n["family"] = data["family"]
        if data.get("given"):
            n["given"] = data["given"].split()
        names.append(n)
    if data.get("family_ar") or data.get("given_ar"):
        n = {"use": "official", "extension": [{"url": LANG_EXT, "valueCode": "ar"}]}
        if data.get("family_ar"):
            n["family"] = data["family_ar"]
        if data.get("given_ar"):
            n["given"] = data["given_ar"].split()
        names.append(n)
    if names:
        p["name"] = names
    sex = {"M": "male", "F": "female"}.get(str(data.get("sex") or "").upper())
    if sex:
        p["gender"] = sex
    if data.get("birth_date"):
        p["birthDate"] = data["birth_date"]
    if data.get("phone"):
        p["telecom"] = [{"system": "phone", "value": data["phone"]}]
    address = {k: v for k, v in (("line", [data["address"]] if data.get("address") else None),
                                 ("city", data.get("city")), ("postalCode", data.get("postcode"))) if v}
    if address:
        p["address"] = [address]
    if g.get("merged_into"):
        p["link"] = [{"other": {"reference": f"Patient/{g['merged_into']}"}, "type": "replaced-by"}]
    return p


def _searchset(entries: list[dict[str, Any]], base: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
            "entry": [{"fullUrl": f"{base}/{e['resource']['resourceType']}/{e['resource'].get('id', '')}", **e}
                      for e in entries]}


def _count(request: web.Request, default: int = 20, cap: int = 200) -> int:
    try:
        return max(1, min(cap, int(request.query.get("_count", default))))
    except ValueError:
        return default


def add_registry_routes(app: web.Application, registry: ClientRegistry, providers: ProviderRegistry | None,
                        *, systems: SystemMap | None = None, enterprise_system: str = ENTERPRISE_SYSTEM) -> None:
    """Register the PDQm, PIXm, $match, mCSD and review routes on ``app``."""
    from mediator.config import IdentifierConfig

    smap = systems or SystemMap(IdentifierConfig().systems)

    def base(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}/fhir"

    def actor(request: web.Request) -> str:
        from mediator.inbound.auth import CLIENT
        return str(request.get(CLIENT) or "api")

    async def golden_resource(gid: str) -> dict[str, Any] | None:
        g = await asyncio.to_thread(registry.golden, gid)
        return golden_patient(g, smap, enterprise_system) if g else None

    def kind_of(system: str) -> tuple[str, str] | None:
        if system == enterprise_system:
            return "enterprise", ""
        return smap.kind_of(system)

    # -- PDQm ------------------------------------------------------------------------------------
    async def pdqm(request: web.Request) -> web.Response:
        q = request.query
        limit = _count(request)
        kwargs: dict[str, Any] = {"limit": limit}
        ids: list[str] = []
        if q.get("_id"):
            ids = [q["_id"]]
        elif q.get("identifier"):
            system, sep, value = q["identifier"].rpartition("|")
            if not sep or not value:
                return outcome_response(400, code="invalid", diagnostics="identifier must be system|value")
            found = kind_of(system)
            if found is None:
                return fhir_json_response(_searchset([], base(request)))
            kind, part = found
            if kind == "enterprise":
                ids = [value]
            elif kind == "ipp":
                kwargs["ipp"] = (part, value)
            else:
                kwargs["identifier"] = (kind, value)
        for param, arg in (("family", "family"), ("given", "given"), ("birthdate", "birth_date"), ("gender", "sex")):
            v = q.get(param) or q.get(f"{param}:exact") or q.get(f"{param}:contains")
            if v:
                kwargs[arg] = v.removeprefix("eq") if param == "birthdate" else v
        if not ids and len(kwargs) == 1:
            return outcome_response(400, code="required", diagnostics="give at least one of family, given, "
                                    "birthdate, gender, identifier, _id")
        if ids:
            entries = []
            for gid in ids:
                res = await golden_resource(gid)
                if res:
                    entries.append({"resource": res, "search": {"mode": "match"}})
            return fhir_json_response(_searchset(entries, base(request)))
        hits = await asyncio.to_thread(lambda: registry.search(**kwargs))
        entries = []
        for h in hits:
            res = await golden_resource(h["enterprise_id"])
            if res:
                entries.append({"resource": res, "search": {"mode": "match"}})
        return fhir_json_response(_searchset(entries, base(request)))

    async def read_patient(request: web.Request) -> web.Response:
        res = await golden_resource(request.match_info["id"])
        if res is None:
            return outcome_response(404, code="not-found", diagnostics="no such Patient")
        return fhir_json_response(res)

    # -- PIXm ------------------------------------------------------------------------------------
    async def pixm(request: web.Request) -> web.Response:
        src = request.query.get("sourceIdentifier", "")
        system, sep, value = src.rpartition("|")
        if not sep or not system or not value:
            return outcome_response(400, code="invalid", diagnostics="sourceIdentifier must be system|value",
                                    expression="sourceIdentifier")
        found = kind_of(system)
        if found is None:
            return outcome_response(400, code="code-invalid",
                                    diagnostics="sourceIdentifier Assigning Authority not found")
        targets = request.query.getall("targetSystem", [])
        targets = [t for x in targets for t in x.split(",") if t]
        for t in targets:
            if t != enterprise_system and smap.kind_of(t) is None:
                return outcome_response(403, code="code-invalid", diagnostics="targetSystem not found")
        kind, part = found
        xref = await asyncio.to_thread(registry.pix, kind, value, part or None)
        if xref is None or not xref.get("enterprise_id"):
            return outcome_response(404, code="not-found", diagnostics="sourceIdentifier Patient Identifier not found")
        gid = xref["enterprise_id"]
        pairs = [(enterprise_system, gid)]
        pairs += [(smap.system_of(k), v) for k, vals in xref["ids"].items() for v in vals]
        pairs += [(smap.system_of("ipp", s), lid) for s, lid in xref["ipp"] if not lid.startswith("Patient/")]
        params = []
        for sys_, val in pairs:
            if (sys_, val) == (system, value) or not sys_:
                continue
            if targets and sys_ not in targets:
                continue
            params.append({"name": "targetIdentifier", "valueIdentifier": {"system": sys_, "value": val}})
        params.append({"name": "targetId", "valueReference": {"reference": f"Patient/{gid}"}})
        return fhir_json_response({"resourceType": "Parameters", "parameter": params})

    # -- $match ------------------------------------------------------------------------------------
    async def match(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return outcome_response(400, code="invalid", diagnostics="the body is not JSON")
        patient, only_certain, count = None, False, 10
        if isinstance(body, dict) and body.get("resourceType") == "Parameters":
            for p in body.get("parameter") or []:
                if not isinstance(p, dict):
                    continue
                if p.get("name") == "resource":
                    patient = p.get("resource")
                elif p.get("name") == "onlyCertainMatches":
                    only_certain = bool(p.get("valueBoolean"))
                elif p.get("name") == "count":
                    count = max(1, min(100, int(p.get("valueInteger") or 10)))
        elif isinstance(body, dict) and body.get("resourceType") == "Patient":
            patient = body
        if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
            return outcome_response(400, code="required", diagnostics="Parameters.resource must be a Patient",
                                    expression="Parameters.parameter.where(name='resource')")
        rec = patient_record(patient, smap, "")
        rec.source, rec.local_id = "", ""
        hits = await asyncio.to_thread(registry.match, rec, count)
        if only_certain:
            hits = [h for h in hits if h.grade == "certain"]
        entries = []
        for h in hits:
            res = await golden_resource(h.enterprise_id)
            if res is None:
                continue
            entries.append({"resource": res, "search": {
                "mode": "match", "score": registry.probability(h.score),
                "extension": [{"url": MATCH_GRADE, "valueCode": h.grade}]}})
        return fhir_json_response(_searchset(entries, base(request)))

    # -- mCSD --------------------------------------------------------------------------------------
    def mcsd(rtype: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            if providers is None:
                return fhir_json_response(_searchset([], base(request)))
            q = request.query
            active = {"true": True, "false": False}.get(q.get("active", ""))
            found = await asyncio.to_thread(providers.search, rtype, identifier=q.get("identifier"),
                                            name=q.get("name") or q.get("name:contains"), active=active,
                                            limit=_count(request))
            return fhir_json_response(_searchset([{"resource": r, "search": {"mode": "match"}} for r in found],
                                                 base(request)))
        return handler

    # -- review API --------------------------------------------------------------------------------
    async def body_json(request: web.Request) -> dict[str, Any]:
        try:
            data = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            raise web.HTTPBadRequest(text='{"error": "the body is not JSON"}',
                                     content_type="application/json") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text='{"error": "a JSON object is expected"}', content_type="application/json")
        return data

    async def call(fn: Any, *args: Any) -> web.Response:
        try:
            return web.json_response(await asyncio.to_thread(fn, *args))
        except RegistryError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        except KeyError as exc:
            return web.json_response({"error": f"missing field {exc}"}, status=400)

    async def review_list(request: web.Request) -> web.Response:
        q = request.query
        try:
            limit, after = int(q.get("limit", 100)), int(q.get("after", 0))
        except ValueError:
            return web.json_response({"error": "limit and after are integers"}, status=400)
        items = await asyncio.to_thread(registry.review_queue, q.get("status", "open"), min(limit, 1000), after)
        return web.json_response({"items": items, "next": items[-1]["id"] if len(items) == limit else None})

    async def review_decide(request: web.Request) -> web.Response:
        data = await body_json(request)
        try:
            cid = int(request.match_info["id"])
        except ValueError:
            return web.json_response({"error": "candidate id is an integer"}, status=400)
        return await call(registry.decide, cid, str(data.get("decision", "")), actor(request))

    async def link(request: web.Request) -> web.Response:
        d = await body_json(request)
        return await call(lambda: registry.link_record(d["source"], d["local_id"], d["enterprise_id"],
                                                       actor(request)))

    async def unlink(request: web.Request) -> web.Response:
        d = await body_json(request)
        return await call(lambda: registry.unlink(d["source"], d["local_id"], actor(request)))

    async def merge(request: web.Request) -> web.Response:
        d = await body_json(request)
        return await call(lambda: registry.merge(d["from"], d["into"], actor(request)))

    async def unmerge(request: web.Request) -> web.Response:
        d = await body_json(request)
        return await call(lambda: registry.unmerge(d["enterprise_id"], actor(request)))

    async def golden(request: web.Request) -> web.Response:
        g = await asyncio.to_thread(registry.golden, request.match_info["id"])
        return web.json_response(g) if g else web.json_response({"error": "not found"}, status=404)

    async def audit(request: web.Request) -> web.Response:
        try:
            limit = min(int(request.query.get("limit", 100)), 1000)
        except ValueError:
            limit = 100
        return web.json_response({"items": await asyncio.to_thread(
            registry.audit_log, request.query.get("enterprise_id"), limit)})

    async def stats(request: web.Request) -> web.Response:
        s = await asyncio.to_thread(registry.stats)
        if providers is not None:
            s["providers"] = await asyncio.to_thread(providers.count)
        return web.json_response(s)

    r = app.router
    r.add_get("/fhir/Patient/$ihe-pix", pixm)
    r.add_post("/fhir/Patient/$match", match)
    r.add_get("/fhir/Patient", pdqm)
    r.add_get("/fhir/Patient/{id}", read_patient)
    for rtype in RESOURCE_TYPES:
        r.add_get(f"/fhir/{rtype}", mcsd(rtype))
    r.add_get("/api/registry/review", review_list)
    r.add_post("/api/registry/review/{id}", review_decide)
    r.add_post("/api/registry/link", link)
    r.add_post("/api/registry/unlink", unlink)
    r.add_post("/api/registry/merge", merge)
    r.add_post("/api/registry/unmerge", unmerge)
    r.add_get("/api/registry/golden/{id}", golden)
    r.add_get("/api/registry/audit", audit)
    r.add_get("/api/registry/stats", stats)
