"""Client registry: weights estimated without labels, address/postcode evidence, blocking ranges, storage format."""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
from dataclasses import replace
from pathlib import Path

import pytest

from mediator.registry.cli import add_registry_cli
from mediator.registry.estimate import candidate_pairs, estimate_weights
from mediator.registry.identifiers import IdentifierRules
from mediator.registry.matching import MatchConfig, compare
from mediator.registry.model import Features, PersonRecord, features_of
from mediator.registry.names import name_forms, name_similarity
from mediator.registry.registry import ClientRegistry, blocking_keys, new_enterprise_id

RULES = IdentifierRules()
FAMILIES = ["smith", "nguyen", "oconnell", "brown", "wilson", "taylor", "martin", "lee", "walker", "harris",
            "clarke", "young", "king", "wright", "scott", "green", "baker", "adams", "nelson", "carter"]
GIVEN = ["james", "olivia", "jack", "emily", "thomas", "chloe", "william", "sophie", "lachlan", "ruby",
         "samuel", "grace", "joshua", "mia", "ethan", "isabella", "liam", "zoe", "noah", "ella"]
STREETS = ["stanley street", "pinkerton circuit", "dines place", "eyre street", "nott street"]


def _typo(s: str, rng: random.Random) -> str:
    i = rng.randrange(len(s) - 1)
    return s[:i] + s[i + 1] + s[i] + s[i + 2:]


def _people(n: int, seed: int = 3) -> tuple[list[PersonRecord], set[tuple[int, int]]]:
    """Originals and one noisy duplicate each: a FEBRL-like file pair (labels for checking only)."""
    rng = random.Random(seed)
    recs: list[PersonRecord] = []
    true: set[tuple[int, int]] = set()
    for i in range(n):
        dob = f"19{rng.randrange(20, 99)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        ssn = str(rng.randrange(10**6, 10**7))
        addr = f"{rng.randrange(1, 200)} {rng.choice(STREETS)}"
        pc = str(rng.randrange(2000, 7000))
        fam, giv = rng.choice(FAMILIES), rng.choice(GIVEN)
        recs.append(PersonRecord("A", f"a{i}", {"cnss": ssn}, family=fam, given=giv, birth_date=dob,
                                 address=addr, postcode=pc))
        d = PersonRecord("B", f"b{i}", {"cnss": _typo(ssn, rng) if rng.random() < 0.1 else ssn},
                         family=_typo(fam, rng) if rng.random() < 0.2 else fam, given=giv, birth_date=dob,
                         address=_typo(addr, rng) if rng.random() < 0.3 else addr,
                         postcode=pc if rng.random() < 0.9 else str(rng.randrange(2000, 7000)))
        recs.append(d)
        true.add((2 * i, 2 * i + 1))
    return recs, true


def test_estimated_weights_follow_the_data() -> None:
    recs, true = _people(300)
    feats = [features_of(r, RULES) for r in recs]
    assert true <= candidate_pairs(feats)  # blocking brings every duplicate together here
    w = estimate_weights(feats, random_pairs=20_000)
    lv = w["levels"]
    assert lv["cnss"]["agree"] > 10 and lv["cnss"]["one_edit"] > 3
    assert lv["address"]["agree"] > 5 and lv["address"]["similar"] > 0 > lv["address"]["disagree"]
    assert lv["postcode"]["agree"] > 5 > 0 > lv["postcode"]["disagree"]
    assert lv["birth_date"]["agree"] > 10
    assert "agree" not in lv["family"] and 0.9 < w["mu"]["family"]["m"] <= 0.999  # names keep frequency weights
    assert 0 < w["p_match"] <= 1 and w["candidate_pairs"] >= len(true)
    # the weights go where the configuration says, and a duplicate with a new postcode still links
    cfg = MatchConfig().with_weights(json.loads(json.dumps(w)))
    a, b = feats[0], replace(feats[1], postcode="9999")
    s = compare(b, a, cfg)
    assert s.evidence["postcode"] == ("disagree", lv["postcode"]["disagree"])
    assert s.weight >= cfg.auto


def test_labelled_estimate_counts_the_true_pairs() -> None:
    recs, true = _people(150)
    feats = [features_of(r, RULES) for r in recs]
    w = estimate_weights(feats, random_pairs=5_000, labels=true)
    assert w["m"]["cnss"]["agree"] > 0.8 and w["m"]["birth_date"]["agree"] > 0.95


def test_address_and_postcode_evidence() -> None:
    cfg = MatchConfig()
    base = PersonRecord("A", "1", family="Alaoui", given="Amina", birth_date="1990-02-03", sex="F",
                        address="12, Rue Ibn Sina", postcode="10000")
    same = features_of(base, RULES)
    typo = features_of(replace(base, local_id="2", address="12 rue ibn sinna", postcode="10001"), RULES)
    other = features_of(replace(base, local_id="3", address="7 Avenue Hassan II", postcode="20250"), RULES)
    assert same.address == "rue ibn sina" or same.address.startswith("12")
    ev = compare(typo, same, cfg).evidence
    assert ev["address"][0] == "similar" and ev["postcode"][0] == "one_edit"
    ev = compare(other, same, cfg).evidence
    assert ev["address"][0] == "disagree" and ev["postcode"][0] == "disagree"
    assert "address" not in compare(features_of(replace(base, address=""), RULES), same, cfg).evidence


def test_features_read_the_older_storage_format() -> None:
    f = features_of(PersonRecord("A", "1", family="Bennani", given="Omar", birth_date="1980-01-02"), RULES)
    old = f.to_json()
    assert len(old) == 9  # no address: the list is as before
    assert Features.from_json(old) == f
    g = features_of(PersonRecord("A", "1", family="Bennani", address="3 Derb Sidi Bouloukat", postcode="40000"),
                    RULES)
    assert Features.from_json(json.loads(json.dumps(g.to_json()))) == g


def test_typed_letters_bound_the_name_key() -> None:
    # Moroccan key rules (glued L- article, c before y) must not turn one typo into a different name
    assert name_similarity(name_forms("Lachlan"), name_forms("Laclhan")) >= 0.94
    assert name_similarity(name_forms("Bouchra"), name_forms("Bouhcra")) >= 0.94
    assert name_similarity(name_forms("Amine"), name_forms("Imane")) < 0.85


def test_blocking_without_birth_date_and_family_search(tmp_path: Path) -> None:
    reg = ClientRegistry(tmp_path / "r.db")
    try:
        reg.link(PersonRecord("A", "1", family="El Amrani", given="Youssef", birth_date="1975-03-04", sex="M"))
        keys = blocking_keys(features_of(PersonRecord("B", "1", family="Amrani", given="Youssef"), RULES))
        assert not any(k.startswith(("f:", "fg:")) for k in keys)  # fewer index writes per link
        res = reg.link(PersonRecord("B", "1", family="Elamrani", given="Yousef", sex="M"))
        assert res.link == "candidate"  # found through the fm: range despite the missing birth date
        assert sorted(r["data"]["family"] for r in reg.search(family="Amrani")) == ["El Amrani", "Elamrani"]
    finally:
        reg.close()


def test_enterprise_ids_sort_by_creation() -> None:
    a, b = new_enterprise_id(), new_enterprise_id()
    assert re.fullmatch("[0-9a-f]{16}", a) and a != b and a[:6] == b[:6]


def test_registry_estimate_command(tmp_path: Path) -> None:
    recs, _ = _people(80)
    src = tmp_path / "in.csv"
    with open(src, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "source", "local_id", "cnss", "family", "given", "birth_date", "address", "postcode"])
        for r in recs:
            w.writerow([r.local_id, r.source, r.local_id, r.identifiers["cnss"], r.family, r.given, r.birth_date,
                        r.address, r.postcode])
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'data'}\nchannels_dir: {tmp_path}\nmappings_dir: {tmp_path}\n")
    p = argparse.ArgumentParser(prog="mediator")
    add_registry_cli(p.add_subparsers(dest="command", required=True))
    out = tmp_path / "weights.json"
    args = p.parse_args(["registry", "estimate", str(src), str(out), "--random-pairs", "3000", "--config", str(cfg)])
    assert args.func(args) == 0
    w = json.loads(out.read_text())
    assert w["levels"]["cnss"]["agree"] > 0 and w["random_pairs"] > 2000


@pytest.mark.parametrize("vetoes", [True, False])
def test_open_registries_reads_weights_and_vetoes(tmp_path: Path, vetoes: bool) -> None:
    from mediator.config import AppConfig
    from mediator.registry.config import open_registries
    from mediator.registry.settings import RegistryConfig

    wfile = tmp_path / "w.json"
    wfile.write_text(json.dumps({"mu": {"family": {"m": 0.9, "u": 0.01}}, "levels": {"postcode": {"agree": 7.5}}}))
    cfg = AppConfig(data_dir=str(tmp_path))
    cfg.registry = RegistryConfig(weights=str(wfile), vetoes=vetoes)  # type: ignore[attr-defined]
    regs = open_registries(cfg)
    try:
        m = regs.client.cfg
        assert m.levels["postcode"]["agree"] == 7.5 and m.mu["family"].m == 0.9 and m.vetoes is vetoes
    finally:
        regs.close()


def test_reindex_upgrades_a_registry_indexed_with_older_keys(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    reg = ClientRegistry(path)
    first = reg.link(PersonRecord("A", "1", family="Tazi", given="Karim", birth_date="1980-05-06", sex="M"))
    # make it look like a registry indexed before version 2: old-style ds: keys only, no version
    db = reg.store.db
    db.execute("DELETE FROM block WHERE key LIKE 'ds:%'")
    db.execute("INSERT INTO block (key, sid) VALUES ('ds:1980-05-06:M:T', ?)", (first.record_id,))
    db.execute("DELETE FROM meta WHERE k = 'block_keys'")
    reg.close()
    probe = PersonRecord("B", "9", family="Tahzi", given="Kamir", birth_date="1980-05-06", sex="M")  # ds: only
    reg = ClientRegistry(path)
    try:
        assert reg._legacy_keys
        assert [h.enterprise_id for h in reg.match(probe, min_score=-100)] == [first.enterprise_id]
        assert reg.reindex() == 1 and not reg._legacy_keys
        assert reg.store.meta("block_keys") == "2"
        assert [h.enterprise_id for h in reg.match(probe, min_score=-100)] == [first.enterprise_id]
        assert reg.store.block_members("ds:1980-05-06:M:fT", 10) == [first.record_id]
    finally:
        reg.close()
    assert not ClientRegistry(tmp_path / "fresh.db")._legacy_keys


def test_patient_address_becomes_evidence() -> None:
    from mediator.registry.resolver import SystemMap, patient_record

    rec = patient_record({"resourceType": "Patient", "name": [{"family": "Alaoui", "given": ["Amina"]}],
                          "address": [{"line": ["12 Rue Ibn Sina", "Appt 3"], "city": "Rabat", "postalCode": "10000"}]},
                         SystemMap({}), source="CHU")
    assert (rec.address, rec.postcode, rec.city) == ("12 Rue Ibn Sina Appt 3", "10000", "Rabat")


def test_household_fields_weigh_as_one() -> None:
    # phone, address, postcode and city agreeing are one household, not four pieces of evidence
    cfg = MatchConfig()
    home = {"family": "Alaoui", "given": "Mohamed", "sex": "M", "phone": "0661234567", "city": "Fes",
            "address": "12 Derb Lamtiyine", "postcode": "30000"}
    father = features_of(PersonRecord("A", "1", birth_date="1960-03-04", **home), RULES)
    son = features_of(PersonRecord("B", "2", birth_date="1990-03-04", **home), RULES)
    ev = compare(son, father, cfg).evidence
    household = sum(ev[k][1] for k in ("phone", "address", "postcode", "city")) + ev["household"][1]
    assert ev["household"][0] == "capped" and household == pytest.approx(cfg.household_cap)
    uncapped = compare(son, father, replace(cfg, household_cap=None))
    assert "household" not in uncapped.evidence and uncapped.weight > compare(son, father, cfg).weight
