"""Client registry: identifiers, matching, linking, review decisions, merges, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediator.registry.identifiers import IdentifierRules, compare_values
from mediator.registry.matching import MatchConfig, compare, estimate_mu, estimate_mu_em
from mediator.registry.model import PersonRecord, features_of, parse_birth_date
from mediator.registry.registry import ClientRegistry, RegistryError, Survivorship


@pytest.fixture
def reg(tmp_path: Path) -> ClientRegistry:
    r = ClientRegistry(tmp_path / "registry.db")
    yield r
    r.close()


def P(source: str, local: str, family: str = "", given: str = "", dob: str = "", sex: str = "", *,
      cin: str = "", family_ar: str = "", given_ar: str = "", phone: str = "", city: str = "",
      **ids: str) -> PersonRecord:
    idents = {k: v for k, v in {"cin": cin, **ids}.items() if v}
    return PersonRecord(source=source, local_id=local, identifiers=idents, family=family, given=given,
                        family_ar=family_ar, given_ar=given_ar, birth_date=dob, sex=sex, phone=phone, city=city)


# -- identifiers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,raw,value,valid", [
    ("cin", "BK245871", "BK245871", True), ("cin", "bk 245-871", "BK245871", True), ("cin", "A12345", "A12345", True),
    ("cin", "BKX245871", "BKX245871", False), ("cin", "245871", "245871", False), ("cin", "BK", "BK", False),
    ("idcs", "1234567890", "1234567890", True), ("idcs", "123456789", "123456789", False),
    ("cnss", "987654321", "987654321", True), ("cnss", "98765A321", "98765A321", False),
    ("inpe", "123456789", "123456789", True), ("inpe", "INPE-12", "INPE12", False),
    ("idcs", "١٢٣٤٥٦٧٨٩٠", "1234567890", True), ("cin", "\u200fBK245871", "BK245871", True),
])
def test_identifier_formats(kind: str, raw: str, value: str, valid: bool) -> None:
    ident = IdentifierRules().normalize(kind, raw)
    assert (ident.value, ident.valid, ident.raw) == (value, valid, raw)


def test_ins_format_is_configurable() -> None:
    rules = IdentifierRules({"ins": r"[0-9]{12}"})
    assert rules.is_valid("ins", "123456789012") and not rules.is_valid("ins", "AB1234567890")


def test_one_edit_is_near() -> None:
    assert compare_values("BK245871", "BK245871") == "exact"
    assert compare_values("BK245871", "BK245817") == "near"   # adjacent swap
    assert compare_values("BK245871", "BK24587") == "near"    # deletion
    assert compare_values("BK245871", "BK999871") == "differ"


# -- comparison ------------------------------------------------------------------------------------
def test_malformed_identifier_is_never_strong_evidence() -> None:
    rules, cfg = IdentifierRules(), MatchConfig()
    a = features_of(P("A", "1", cin="BK-24X5871"), rules)
    b = features_of(P("B", "2", cin="BK-24X5871"), rules)
    s = compare(a, b, cfg)
    assert s.evidence["cin"][0] == "weak_exact" and s.weight <= cfg.malformed_id_agree
    assert "cin:malformed" in a.flags


def test_cin_agreement_alone_does_not_auto_link_different_people() -> None:
    # a child registered under a parent's CIN: CIN and family agree, given and birth date do not
    rules, cfg = IdentifierRules(), MatchConfig()
    parent = features_of(P("A", "1", "Berrada", "Naima", "1958-06-16", "F", cin="AB997461"), rules)
    child = features_of(P("B", "2", "Berrada", "Khadija", "2014-05-17", "F", cin="AB997461"), rules)
    assert compare(child, parent, cfg).weight < cfg.auto


def test_homonyms_with_different_birth_dates_do_not_link() -> None:
    rules, cfg = IdentifierRules(), MatchConfig()
    a = features_of(P("A", "1", "El Amrani", "Mohammed", "1978-04-12", "M"), rules)
    b = features_of(P("B", "2", "Elamrani", "Mohamed", "1983-09-30", "M"), rules)
    assert compare(a, b, cfg).weight < cfg.review


def test_birth_date_levels() -> None:
    rules, cfg = IdentifierRules(), MatchConfig()
    base = features_of(P("A", "1", "Tazi", "Omar", "1980-03-07"), rules)
    for dob, level in [("1980-03-07", "agree"), ("1980-07-03", "swapped"), ("1981-03-07", "one_edit"),
                       ("1980-01-01", "year_only"), ("1995-11-20", "disagree")]:
        other = features_of(P("B", "2", "Tazi", "Omar", dob), rules)
        assert compare(base, other, cfg).evidence["birth_date"][0] == level, dob


def test_frequency_makes_common_names_weak() -> None:
    rules, cfg = IdentifierRules(), MatchConfig()
    a = features_of(P("A", "1", "Zniber", "Mohamed"), rules)
    b = features_of(P("B", "2", "Zniber", "Mohamed"), rules)

    def freq(part: str, key: str) -> float:
        return 0.12 if part == "given" else 0.0001
    s = compare(a, b, cfg, freq)
    assert s.evidence["given"][1] < 4 < s.evidence["family"][1]


def test_swapped_family_and_given() -> None:
    rules, cfg = IdentifierRules(), MatchConfig()
    a = features_of(P("A", "1", "Bennani", "Youssef", "1990-02-02", "M"), rules)
    b = features_of(P("B", "2", "Youssef", "Bennani", "1990-02-02", "M"), rules)
    s = compare(a, b, cfg)
    assert "swap" in s.evidence and s.evidence["family"][0] == "agree"


def test_impossible_dates_are_flagged() -> None:
    assert parse_birth_date("1980-02-30") is None
    assert parse_birth_date("2999-01-01") is None
    assert parse_birth_date("19800307") == (1980, 3, 7)
    assert parse_birth_date("07/03/1980") == (1980, 3, 7)
    f = features_of(P("A", "1", "Tazi", "Omar", "1980-13-45"), IdentifierRules())
    assert f.dob is None and "birth_date:invalid" in f.flags


def test_estimate_mu_from_labelled_pairs() -> None:
    rules = IdentifierRules()
    same = [(features_of(P("A", str(i), "Tazi", "Omar", "1980-03-07"), rules),
             features_of(P("B", str(i), "Tazi", "Omar", "1980-03-07"), rules), True) for i in range(20)]
    diff = [(features_of(P("A", str(i), "Tazi", "Omar", "1980-03-07"), rules),
             features_of(P("B", str(i), "Idrissi", "Karim", "1991-05-02"), rules), False) for i in range(20)]
    mu = estimate_mu(same + diff)
    assert mu["family"].m > 0.9 and mu["family"].u < 0.1
    em, p = estimate_mu_em([(a, b) for a, b, _ in same + diff])
    assert 0.3 < p < 0.7 and em["birth_date"].m > em["birth_date"].u


# -- registry --------------------------------------------------------------------------------------
def test_link_outcomes(reg: ClientRegistry) -> None:
    a = reg.link(P("CHU", "1", "EL AMRANI", "Mohamed", "1978-04-12", "M", cin="BK245871"))
    assert a.link == "new" and a.score is None
    b = reg.link(P("CHP", "9", "", "", "1978-04-12", "M", family_ar="العمراني", given_ar="محمد"))
    assert (b.link, b.enterprise_id) == ("auto", a.enterprise_id)
    c = reg.link(P("CLIN", "5", "Lamrani", "Med", "1978-04-12", "M", cin="BK245817"))  # one-edit CIN
    assert c.enterprise_id == a.enterprise_id and c.evidence["cin"]["level"] == "one_edit"
    d = reg.link(P("CLIN", "6", "Amrani", "Mohamed", "1983-09-30", "M"))  # homonym
    assert d.link == "new" and d.enterprise_id != a.enterprise_id
    assert reg.pix("cin", "BK245871")["enterprise_id"] == a.enterprise_id
    assert reg.pix("ipp", "9", "CHP")["enterprise_id"] == a.enterprise_id
    golden = reg.golden(a.enterprise_id)
    assert golden["data"]["identifiers"]["cin"] in ("BK245871", "BK245817")
    assert {s["source"] for s in golden["sources"]} == {"CHU", "CHP", "CLIN"}


def test_candidate_then_review_link_is_sticky(reg: ClientRegistry) -> None:
    a = reg.link(P("CHU", "1", "Tazi", "Omar", "1980-03-07", "M"))
    b = reg.link(P("CHP", "2", "Tazi", "Omar", "1980-07-03", "M"))  # day/month swapped: review
    assert b.link == "candidate" and b.candidates[0][0] == a.enterprise_id
    item = reg.review_queue()[0]
    assert item["candidate"] == a.enterprise_id and "birth_date" in item["evidence"]
    reg.decide(item["id"], "link", "alice")
    assert reg.source_record("CHP", "2")["enterprise_id"] == a.enterprise_id
    # the source sends the record again (with other data): the manual link stays
    again = reg.link(P("CHP", "2", "Tazi", "Omar", "1999-01-01", "M"))
    assert (again.enterprise_id, again.link, again.updated) == (a.enterprise_id, "manual", True)
    with pytest.raises(RegistryError):
        reg.decide(item["id"], "link", "alice")
    actions = [x["action"] for x in reg.audit_log(a.enterprise_id)]
    assert "link" in actions


def test_reject_is_remembered(reg: ClientRegistry) -> None:
    a = reg.link(P("CHU", "1", "Tazi", "Omar", "1980-03-07", "M"))
    reg.link(P("CHP", "2", "Tazi", "Omar", "1980-07-03", "M"))
    item = reg.review_queue()[0]
    reg.decide(item["id"], "reject", "bob")
    assert reg.review_queue() == []
    unlinked = reg.unlink("CHU", "1", "bob")
    assert unlinked["previous"] == a.enterprise_id
    # a manual "not the same" decision survives a later, better-matching record from the same source id
    rec = reg.source_record("CHP", "2")
    assert rec["link"] == "manual"


def test_merge_and_unmerge(reg: ClientRegistry) -> None:
    a = reg.link(P("CHU", "1", "Bennani", "Youssef", "1990-02-02", "M"))
    b = reg.link(P("CHU", "2", "Bennani", "Yussef", "1990-02-20", "M"))
    assert a.enterprise_id != b.enterprise_id
    m = reg.merge(b.enterprise_id, a.enterprise_id, "carol")
    assert m["moved"] == 1 and reg.current(b.enterprise_id) == a.enterprise_id
    assert reg.source_record("CHU", "2")["enterprise_id"] == a.enterprise_id
    with pytest.raises(RegistryError):
        reg.merge(b.enterprise_id, a.enterprise_id, "carol")
    u = reg.unmerge(b.enterprise_id, "carol")
    assert u["restored"] == 1 and reg.source_record("CHU", "2")["enterprise_id"] == b.enterprise_id
    assert reg.golden(b.enterprise_id)["status"] == "active"
    actions = {x["action"] for x in reg.audit_log(b.enterprise_id)}
    assert {"merge", "unmerge"} <= actions


def test_a40_merge_is_applied_and_audited(reg: ClientRegistry) -> None:
    a = reg.link(P("CHU", "100", "Tahiri", "Salma", "2001-01-05", "F"))
    b = reg.link(P("CHU", "200", "Tahiri", "Salma", "2001-05-01", "F", cin="AB12345"))
    assert a.enterprise_id != b.enterprise_id
    out = reg.merge_sources("CHU", "100", "200", "hl7:CHU")
    assert out["enterprise_id"] == b.enterprise_id
    assert reg.source_record("CHU", "100")["status"] == "merged"
    assert reg.pix("ipp", "100", "CHU")["enterprise_id"] == b.enterprise_id
    assert any(x["action"] == "merge-a40" for x in reg.audit_log(a.enterprise_id))
    reg.unmerge(a.enterprise_id, "operator")
    assert reg.source_record("CHU", "100")["enterprise_id"] == a.enterprise_id


def test_search(reg: ClientRegistry) -> None:
    a = reg.link(P("CHU", "1", "El Ouazzani", "Bouchra", "1975-06-01", "F", family_ar="الوزاني"))
    reg.link(P("CHU", "2", "Berrada", "Bouchra", "1975-06-01", "F"))
    assert [h["enterprise_id"] for h in reg.search(family="Wazzani")] == [a.enterprise_id]
    assert [h["enterprise_id"] for h in reg.search(family="الوزاني", given="Bushra")] == [a.enterprise_id]
    assert len(reg.search(birth_date="1975-06-01")) == 2
    assert len(reg.search(birth_date="1975-06-01", family="Berrada")) == 1
    assert reg.search(family="Wazzani", birth_date="1975-13-01") == []


def test_match_does_not_store(reg: ClientRegistry) -> None:
    a = reg.link(P("CHU", "1", "Chraibi", "Ghizlane", "1988-08-08", "F", cin="JB123456"))
    hits = reg.match(P("", "", "Chraïbi", "Rhizlane", "1988-08-08", "F"))
    assert hits and hits[0].enterprise_id == a.enterprise_id and hits[0].grade in ("certain", "probable")
    assert reg.stats()["records"] == 1


def test_survivorship_rules() -> None:
    rules = IdentifierRules()
    rows = [("A", {"family": "Tazi", "birth_date": "1980-01-01", "identifiers": {"cin": "BK1234"}}, 1.0),
            ("B", {"family": "Tazi", "birth_date": "1980-03-07", "identifiers": {"cin": "bad!"}}, 2.0),
            ("C", {"family": "Ettazi", "birth_date": "1980-03-07"}, 3.0)]
    g = Survivorship().synthesise(rows, rules)
    assert (g["family"], g["birth_date"], g["identifiers"]) == ("Tazi", "1980-03-07", {"cin": "BK1234"})
    g = Survivorship(rules={"family": "most_recent"}).synthesise(rows, rules)
    assert g["family"] == "Ettazi"
    g = Survivorship(rules={"birth_date": "source_priority"}, source_priority=["A"]).synthesise(rows, rules)
    assert g["birth_date"] == "1980-01-01"


@pytest.mark.parametrize("rec", [
    P("X", "1"),  # nothing at all
    P("X", "2", "", "", "", "", cin="B K 24@5871"),
    P("X", "3", "\u200f\u202b", "\x00\x07", "0000-00-00", "Z"),
    P("X", "4", family_ar="\u200fالعمراني\u200e\u0000", given_ar="مُحَمَّـــد\u202c", dob="1980-02-31"),
    P("X", "5", "😀", "' OR 1=1 --", "31/02/1980", "F", phone="+212 6 12-34-56-78", inpe="INPE?"),
    P("X", "6", "A" * 5000, "B" * 5000, "9999-99-99"),
])
def test_bad_input_is_stored_verbatim_and_flagged(reg: ClientRegistry, rec: PersonRecord) -> None:
    res = reg.link(rec)
    stored = reg.source_record(rec.source, rec.local_id)
    assert stored["record"]["family"] == rec.family and stored["record"]["identifiers"] == rec.identifiers
    if rec.local_id in ("2", "3", "4", "5", "6"):
        assert res.flags
    assert res.link in ("new", "candidate", "auto")


def test_bad_input_does_not_link_on_malformed_ids(reg: ClientRegistry) -> None:
    a = reg.link(P("A", "1", "", "", "", "", cin="B K 24@5871"))
    b = reg.link(P("B", "2", "", "", "", "", cin="B K 24@5871"))
    assert a.enterprise_id != b.enterprise_id and b.link == "new"
