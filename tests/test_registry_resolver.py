"""The pipeline's resolve step on mapped HL7 v2 fixtures, against real SQLite registries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mediator.config import AppConfig, ChannelConfig, ChannelSource
from mediator.hl7v2 import parse
from mediator.mapping import MappingContext, load_mapping
from mediator.pipeline.steps import StepFailed, Work
from mediator.registry.config import RegistryConfig, open_registries
from mediator.registry.model import PersonRecord
from mediator.registry.resolver import ENTERPRISE_SYSTEM, ResolverPolicy, patient_record
from mediator.store.base import QueuedMessage

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "hl7v2"
SID = "https://dmp.sante.gov.ma/fhir/sid"


@pytest.fixture(scope="module")
def adt() -> Any:
    return load_mapping(ROOT / "mappings" / "adt_to_fhir.yaml")


@pytest.fixture
def regs(tmp_path: Path) -> Any:
    cfg = AppConfig(data_dir=str(tmp_path))
    r = open_registries(cfg)
    yield r
    r.close()


def work_for(adt: Any, name: str) -> Work:
    msg = parse((FIXTURES / name).read_bytes())
    item = QueuedMessage(id="tx-1", channel="adt-sih", protocol="hl7v2", content_type="application/hl7-v2",
                         body=b"", ordering_key="", received_at=0.0, attempts=0)
    ch = ChannelConfig(name="adt-sih", source=ChannelSource(protocol="hl7v2"), mapping="adt_to_fhir.yaml")
    w = Work(item=item, channel=ch, message=msg)
    w.bundle = adt.apply(msg, MappingContext()).bundle
    return w


def patient_of(w: Work) -> dict[str, Any]:
    return next(e["resource"] for e in w.bundle["entry"] if e["resource"]["resourceType"] == "Patient")


def test_patient_record_from_mapped_patient(adt: Any, regs: Any) -> None:
    w = work_for(adt, "ma_adt_a01.hl7")
    rec = patient_record(patient_of(w), regs.systems, "CHU-IBN-SINA")
    assert (rec.source, rec.local_id) == ("CHU-IBN-SINA", "123456")
    assert rec.identifiers == {"cin": "BK245871", "cnss": "987654321"}
    assert (rec.family, rec.given, rec.family_ar, rec.given_ar) == ("EL AMRANI", "Mohamed", "العمراني", "محمد")
    assert (rec.birth_date, rec.sex) == ("1978-04-12", "M")


async def test_resolve_adds_enterprise_identifier_and_flags_unknown_inpe(adt: Any, regs: Any) -> None:
    w = work_for(adt, "ma_adt_a01.hl7")
    await regs.resolver.resolve(w)
    ident = w.identity["patient"]
    assert ident["link"] == "new" and ident["source"] == "CHU-IBN-SINA" and ident["local_id"] == "123456"
    eids = [i["value"] for i in patient_of(w)["identifier"] if i["system"] == ENTERPRISE_SYSTEM]
    assert eids == [ident["enterprise_id"]]
    assert w.identity["providers"] == [{"resource": "Practitioner", "entry": 1, "inpe": "123456789",
                                        "status": "unknown"}] or w.identity["providers"][0]["status"] == "unknown"
    # the same message again (a rerun): same enterprise id, identifier not duplicated
    w2 = work_for(adt, "ma_adt_a01.hl7")
    await regs.resolver.resolve(w2)
    assert w2.identity["patient"]["enterprise_id"] == ident["enterprise_id"]
    assert w2.identity["patient"]["updated"] is True
    # another facility sends the same person in Arabic only: linked automatically
    other = PersonRecord(source="CLINIQUE-AGDAL", local_id="A-77", family_ar="العمراني", given_ar="محمد",
                         birth_date="1978-04-12", sex="M")
    assert regs.client.link(other).enterprise_id == ident["enterprise_id"]


async def test_known_active_inpe_is_not_flagged_and_reject_policy(adt: Any, regs: Any) -> None:
    regs.providers.load_csv([{"resource_type": "Practitioner", "inpe": "123456789", "family": "ALAOUI",
                              "given": "Said"}])
    w = work_for(adt, "ma_adt_a01.hl7")
    await regs.resolver.resolve(w)
    assert w.identity["providers"] == []
    regs.providers.load_csv([{"resource_type": "Practitioner", "inpe": "123456789", "active": "false"}])
    regs.resolver.default_policy = ResolverPolicy(providers="reject")
    with pytest.raises(StepFailed, match="INPE 123456789 is inactive"):
        await regs.resolver.resolve(work_for(adt, "ma_adt_a01.hl7"))


async def test_review_policy_flag_and_hold(adt: Any, regs: Any) -> None:
    # the same person known elsewhere with day and month swapped: a candidate, not an automatic link
    known = regs.client.link(PersonRecord(source="HOPITAL-X", local_id="9", family="Elamrani", given="Mohammed",
                                          birth_date="1978-12-04", sex="M"))
    w = work_for(adt, "ma_adt_a01.hl7")
    await regs.resolver.resolve(w)
    p = w.identity["patient"]
    assert p["link"] == "candidate" and p["candidates"][0]["enterprise_id"] == known.enterprise_id
    assert any(t["code"] == "review" for t in patient_of(w)["meta"]["tag"])
    regs.resolver.policies["adt-sih"] = ResolverPolicy(review="hold")
    with pytest.raises(StepFailed, match="held: patient match awaiting review") as exc:
        await regs.resolver.resolve(work_for(adt, "ma_adt_a01.hl7"))
    assert "Mohamed" not in str(exc.value) and "AMRANI" not in str(exc.value)  # no patient data in reasons


async def test_enterprise_patient_id_rewrites_references(adt: Any, regs: Any) -> None:
    regs.resolver.default_policy = ResolverPolicy(patient_id="enterprise")
    w = work_for(adt, "ma_adt_a01.hl7")
    old = patient_of(w)["id"]
    await regs.resolver.resolve(w)
    eid = w.identity["patient"]["enterprise_id"]
    entry = next(e for e in w.bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert entry["resource"]["id"] == eid and entry["request"]["url"] == f"Patient/{eid}"
    assert f"Patient/{old}" not in str(w.bundle)


async def test_a40_merges_prior_into_survivor(adt: Any, regs: Any) -> None:
    prior = regs.client.link(PersonRecord(source="CHU-IBN-SINA", local_id="991204", family="TAZI", given="Amina",
                                          birth_date="1990-04-12", sex="F"))
    w = work_for(adt, "ma_adt_a40.hl7")
    await regs.resolver.resolve(w)
    p = w.identity["patient"]
    assert p["local_id"] == "778812" and p["merge"]["merged"] == prior.enterprise_id
    assert regs.client.source_record("CHU-IBN-SINA", "991204")["enterprise_id"] == p["enterprise_id"]
    assert regs.client.current(prior.enterprise_id) == p["enterprise_id"] or prior.enterprise_id == p["enterprise_id"]


async def test_no_bundle_or_no_patient(adt: Any, regs: Any) -> None:
    w = work_for(adt, "ma_adt_a01.hl7")
    w.bundle = None
    await regs.resolver.resolve(w)
    w.bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Basic"}}]}
    await regs.resolver.resolve(w)
    assert "patient" not in w.identity


def test_registry_config_defaults() -> None:
    rc = RegistryConfig()
    assert (rc.review_policy, rc.provider_policy, rc.auto_threshold > rc.review_threshold) == ("flag", "flag", True)


async def test_garbage_patient_never_crashes(regs: Any) -> None:
    item = QueuedMessage(id="tx-2", channel="fhir-in", protocol="fhir", content_type="", body=b"",
                         ordering_key="", received_at=0.0, attempts=0)
    ch = ChannelConfig(name="fhir-in", source=ChannelSource(protocol="fhir"))
    patient = {"resourceType": "Patient", "id": "p1",
               "identifier": [{"system": f"{SID}/cin", "value": "B K@1"}, {"value": "no-system"}, "junk",
                              {"system": f"{SID}/ipp/CLIN\u200f", "value": "\x00\x07"}],
               "name": ["x", {"family": "\u202bالعمراني\u0000", "given": "Mohamed"}, {"given": [None, 5]}],
               "birthDate": "1980-02-30", "gender": "unknown", "telecom": {"system": "phone"}, "address": "Rabat"}
    w = Work(item=item, channel=ch, message={"resourceType": "Patient"})
    w.bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": patient}, "junk", {}]}
    await regs.resolver.resolve(w)
    out = w.identity["patient"]
    assert out["link"] == "new" and "cin:malformed" in out["flags"] and "birth_date:invalid" in out["flags"]
    assert out["source"] == "CLIN\u200f" or out["source"] == "fhir-in"


@pytest.mark.parametrize("inline", [False, True], ids=["thread", "inline"])
async def test_group_commit_links_concurrent_records(regs: Any, inline: bool) -> None:
    import asyncio

    from mediator.registry.resolver import LinkBatcher

    batcher = LinkBatcher(regs.client, max_batch=8, inline=inline)
    people = [("Bennani", "Youssef", "1990-02-02"), ("Tazi", "Amina", "1985-07-14"), ("Chraibi", "Omar", "1970-01-30"),
              ("Kettani", "Salma", "2001-11-05"), ("Berrada", "Hicham", "1966-03-21")]
    recs = [PersonRecord(source=f"S{k}", local_id=f"{i}-{k}", family=f, given=g, birth_date=d,
                         identifiers={"cin": f"AB{100000 + i}"})
            for k in range(4) for i, (f, g, d) in enumerate(people)]
    results = await asyncio.gather(*(batcher.link(r) for r in recs))
    by_person: dict[str, set[str]] = {}
    for rec, res in zip(recs, results, strict=True):
        by_person.setdefault(rec.local_id.split("-")[0], set()).add(res.enterprise_id)
    assert all(len(v) == 1 for v in by_person.values()) and len(set.union(*by_person.values())) == 5
    assert regs.client.stats()["records"] == 20
