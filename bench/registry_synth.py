"""Moroccan synthetic client-registry benchmark: generator + evaluation.

People are drawn with Zipf-like name frequencies (Mohamed and Fatima are very common, most family
names rare), households (siblings share the family name, phone and city; some twins share the
birth date), CIN only for adults (minors have none, or wrongly carry a parent's CIN), and each
person is sent by 1–4 facilities with realistic variation: French/English transcription variants,
articles and titles, Arabic-only or bilingual records, typos, family/given swaps, day/month swaps,
mistyped or missing birth dates, mistyped or malformed CINs, changed phones.

    python bench/registry_synth.py [--persons 20000] [--seed 1] [--csv out.csv]

Prints auto-link precision, recall (auto + review) and speed. Targets: precision ≥ 0.999,
recall ≥ 0.97.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mediator.registry.model import PersonRecord  # noqa: E402
from mediator.registry.registry import ClientRegistry  # noqa: E402

# (Latin variants, Arabic)
MALE = [
    (["Mohamed", "Mohammed", "Muhammad", "Med", "Mohamad"], "محمد"), (["Ahmed", "Ahmad"], "أحمد"),
    (["Youssef", "Yousef", "Youcef", "Yusuf"], "يوسف"), (["Hassan", "Hasan"], "حسن"),
    (["Abdellah", "Abdallah", "Abdullah"], "عبد الله"), (["Rachid", "Rashid"], "رشيد"),
    (["Said", "Saïd", "Saeed"], "سعيد"), (["Mustapha", "Mostafa", "Mustafa"], "مصطفى"),
    (["Abdelkader", "Abd El Kader", "Abdelkadir"], "عبد القادر"), (["Hicham", "Hisham"], "هشام"),
    (["Karim", "Kareem"], "كريم"), (["Omar", "Umar", "Omer"], "عمر"), (["Ali"], "علي"),
    (["Brahim", "Ibrahim"], "إبراهيم"), (["Khalid", "Khaled"], "خالد"), (["Driss", "Idriss", "Idris"], "إدريس"),
    (["Hamid"], "حميد"), (["Abdelaziz", "Abdel Aziz"], "عبد العزيز"),
    (["Noureddine", "Nour Eddine", "Nourdine"], "نور الدين"),
    (["Jamal", "Djamal"], "جمال"), (["Mehdi", "El Mehdi", "Elmehdi"], "المهدي"), (["Anas"], "أنس"),
    (["Yassine", "Yacine", "Yasin"], "ياسين"), (["Amine", "Amin"], "أمين"), (["Hamza"], "حمزة"),
    (["Ayoub", "Ayyoub"], "أيوب"), (["Othmane", "Othman", "Outhmane"], "عثمان"), (["Tarik", "Tariq", "Tarek"], "طارق"),
    (["Aziz"], "عزيز"), (["Lahcen", "Lahsen", "Lhassan"], "لحسن"), (["Mbarek", "Embarek"], "مبارك"),
    (["Abderrahim", "Abderahim", "Abdel Rahim"], "عبد الرحيم"), (["Zakaria", "Zakariya"], "زكرياء"),
    (["Soufiane", "Sofiane", "Sufyan"], "سفيان"), (["Bilal"], "بلال"), (["Ismail", "Smail"], "إسماعيل"),
    (["Adil", "Adel"], "عادل"), (["Nabil"], "نبيل"), (["Fouad", "Fuad"], "فؤاد"), (["Reda", "Rida"], "رضا"),
]
FEMALE = [
    (["Fatima", "Fatema", "Fatna"], "فاطمة"), (["Khadija", "Khadidja", "Khadeeja"], "خديجة"),
    (["Fatima Zahra", "Fatimazahra", "Fatima Ezzahra", "Fatim Zahra"], "فاطمة الزهراء"),
    (["Aicha", "Aïcha", "Aisha"], "عائشة"), (["Naima", "Naïma", "Naeema"], "نعيمة"), (["Amina", "Aminah"], "أمينة"),
    (["Zineb", "Zaynab", "Zainab"], "زينب"), (["Meryem", "Maryam", "Meriem"], "مريم"), (["Hanane", "Hanan"], "حنان"),
    (["Bouchra", "Bushra", "Bouchera"], "بشرى"), (["Samira"], "سميرة"), (["Malika"], "مليكة"),
    (["Saida", "Saïda"], "سعيدة"), (["Latifa", "Latefa"], "لطيفة"), (["Nadia"], "نادية"), (["Imane", "Iman"], "إيمان"),
    (["Sanaa", "Sana"], "سناء"), (["Hajar", "Hadjar", "Hajjar"], "هاجر"), (["Salma"], "سلمى"),
    (["Asmae", "Asmaa", "Asma"], "أسماء"), (["Houda", "Huda"], "هدى"), (["Souad", "Suad"], "سعاد"),
    (["Rachida", "Rashida"], "رشيدة"), (["Karima"], "كريمة"), (["Loubna", "Lubna"], "لبنى"),
    (["Widad", "Ouidad"], "وداد"),
    (["Ilham", "Ilhame"], "إلهام"), (["Hind"], "هند"), (["Siham"], "سهام"), (["Nora", "Noura"], "نورة"),
    (["Yasmine", "Yasmina"], "ياسمين"), (["Ghizlane", "Ghizlan", "Rhizlane"], "غزلان"),
    (["Kawtar", "Kaoutar", "Kouthar"], "كوثر"),
    (["Chaimae", "Chaima", "Shaima"], "شيماء"), (["Oumaima", "Oumayma", "Umaima"], "أميمة"),
    (["Wiam", "Ouiam"], "وئام"),
    (["Sara", "Sarah"], "سارة"), (["Mouna", "Mona"], "منى"), (["Halima"], "حليمة"),
    (["Rkia", "Rquia", "Ruqayya"], "رقية"),
]
FAMILY = [
    (["El Amrani", "Elamrani", "Lamrani", "Al-Amrani", "Amrani"], "العمراني"),
    (["Alaoui", "El Alaoui", "Alaoui"], "العلوي"), (["Idrissi", "El Idrissi", "Elidrissi"], "الإدريسي"),
    (["Benjelloun", "Ben Jelloun", "Benjeloun"], "بنجلون"), (["Bennani", "Benani", "Ben Nani"], "بناني"),
    (["Tazi", "Et-Tazi", "Ettazi"], "التازي"), (["Berrada", "Berada"], "برادة"),
    (["Ouazzani", "Wazzani", "El Ouazzani"], "الوزاني"),
    (["Fassi Fihri", "El Fassi Fihri", "Fassi-Fihri"], "الفاسي الفهري"),
    (["Chraibi", "Chraïbi", "Shraibi"], "الشرايبي"),
    (["Lahlou"], "لحلو"), (["Sqalli", "Skalli", "Squalli"], "السقلي"),
    (["Kettani", "El Kettani", "Kattani"], "الكتاني"),
    (["Benkirane", "Ben Kirane"], "بنكيران"), (["Zniber"], "زنيبر"), (["Guessous", "Gessous"], "كسوس"),
    (["Essaidi", "Saidi", "Es-Saidi"], "السعيدي"), (["Ennaciri", "Naciri", "En-Naciri"], "الناصري"),
    (["Errachidi", "Rachidi"], "الراشدي"), (["Bouazza", "Bouaza"], "بوعزة"),
    (["Ait Taleb", "Aït Taleb", "Ait-Taleb"], "آيت الطالب"),
    (["Ait Ben Ali", "Aït Benali"], "آيت بنعلي"), (["Ouali", "Wali"], "الوالي"), (["Benali", "Ben Ali"], "بنعلي"),
    (["Tahiri", "Et-Tahiri", "Ettahiri"], "الطاهري"), (["Hajji", "El Hajji", "Elhajji"], "الحجي"),
    (["Belkadi", "Belkhadi"], "بلقاضي"), (["Cherkaoui", "Charkaoui", "Sharqawi"], "الشرقاوي"),
    (["Gharbi", "El Gharbi", "Rharbi"], "الغربي"), (["Filali", "El Filali"], "الفلالي"),
    (["Bakkali", "El Bakkali", "Baqqali"], "البقالي"),
    (["Ziani", "Zyani"], "الزياني"), (["Mansouri", "El Mansouri", "Mansuri"], "المنصوري"), (["Naji", "Nadji"], "ناجي"),
    (["Moussaoui", "Moussaui", "Musawi"], "الموساوي"), (["Hamdaoui", "El Hamdaoui"], "الحمداوي"),
    (["Benmoussa", "Ben Moussa"], "بنموسى"), (["Jabri", "El Jabri", "Djabri"], "الجابري"),
    (["Karimi", "El Karimi"], "الكريمي"),
    (["Rami", "Errami"], "الرامي"), (["Daoudi", "Eddaoudi", "Ed-Daoudi"], "الداودي"), (["Zouhair", "Zuhair"], "زهير"),
    (["Chafik", "Chafiq", "Shafiq"], "شفيق"), (["Lazrak", "El Azrak", "Azraq"], "الأزرق"),
    (["Slaoui", "Salaoui"], "السلاوي"),
    (["Marrakchi", "Marrakshi"], "المراكشي"), (["Fassi", "El Fassi", "Elfassi"], "الفاسي"),
    (["Rifi", "Errifi", "Riffi"], "الريفي"),
    (["Soussi", "Essoussi", "Sousi"], "السوسي"), (["Doukkali", "Dukkali", "Doukali"], "الدكالي"), (["Ghazi"], "غازي"),
    (["Haddad", "El Haddad"], "الحداد"), (["Najjar", "Nejjar", "Ennajjar"], "النجار"), (["Kabbaj", "Kabaj"], "القباج"),
    (["Sebti", "Essebti"], "السبتي"), (["Bouzidi", "Bouzid"], "البوزيدي"), (["Khattabi", "El Khattabi"], "الخطابي"),
    (["Oufkir", "Ufkir"], "أوفقير"), (["Amzil", "Amzal"], "أمزيل"), (["Akhannouch", "Akhanouch"], "أخنوش"),
    (["Boutaleb", "Bou Taleb"], "بوطالب"), (["Mernissi", "Mernisi"], "المرنيسي"),
    (["Lyoubi", "El Youbi", "Elyoubi"], "اليوبي"),
    (["Tounsi", "Ettounsi"], "التونسي"), (["Benabdallah", "Ben Abdallah", "Benabdellah"], "بنعبد الله"),
    (["Berrahou", "Berahou"], "براحو"), (["Azzouzi", "Azouzi", "El Azzouzi"], "العزوزي"),
    (["Ghallab", "Rhallab"], "غلاب"),
    (["Sabri", "Sabry"], "صبري"), (["Hilali", "El Hilali"], "الهلالي"), (["Raji", "Radji"], "راجي"),
]
COMMON_FAMILIES = len(FAMILY)

# Rare family names, generated: consonant + vowel units written the way Moroccan civil registers do
# (short a unwritten in Arabic, i → ي, ou → و), a prefix now and then, a nisba ending.
_CONS = [("b", "ب"), ("t", "ت"), ("d", "د"), ("r", "ر"), ("z", "ز"), ("s", "س"), ("ch", "ش"), ("f", "ف"),
         ("k", "ك"), ("q", "ق"), ("l", "ل"), ("m", "م"), ("n", "ن"), ("h", "ه"), ("j", "ج"), ("kh", "خ"),
         ("gh", "غ"), ("s", "ص"), ("t", "ط"), ("h", "ح")]
_VOW = [("a", ""), ("a", "ا"), ("i", "ي"), ("ou", "و")]
_PREFIX = [("", ""), ("", ""), ("", ""), ("Ben", "بن"), ("Bou", "بو"), ("Ait ", "آيت "), ("El ", "ال")]
_SUFFIX = [("i", "ي"), ("ani", "اني"), ("aoui", "اوي"), ("", ""), ("", "")]


def rare_family(rng: random.Random) -> tuple[list[str], str]:
    lat, ar = [], []
    for _ in range(rng.choice([2, 2, 3])):
        c, v = rng.choice(_CONS), rng.choice(_VOW)
        lat.append(c[0] + v[0])
        ar.append(c[1] + v[1])
    last = rng.choice(_CONS)
    lat.append(last[0])
    ar.append(last[1])
    suf, pre = rng.choice(_SUFFIX), rng.choice(_PREFIX)
    base_l, base_a = "".join(lat) + suf[0], "".join(ar) + suf[1]
    latin = (pre[0] + base_l.capitalize()) if pre[0].endswith(" ") or not pre[0] else pre[0] + base_l
    variants = [latin]
    if pre[0].endswith(" "):
        variants.append(pre[0].strip() + base_l)  # glued
    if "ou" in latin:
        variants.append(latin.replace("ou", "u"))
    return variants, pre[1] + base_a


CITIES = ["Casablanca", "Rabat", "Fes", "Marrakech", "Tanger", "Agadir", "Meknes", "Oujda", "Kenitra", "Tetouan",
          "Safi", "Mohammedia", "Khouribga", "El Jadida", "Beni Mellal", "Nador", "Taza", "Settat", "Larache",
          "Ksar El Kebir"]
SOURCES = [f"FAC{i:03d}" for i in range(40)]


_CUM: dict[tuple[int, float], list[float]] = {}


def zipf(pool: list, rng: random.Random, s: float = 1.0) -> int:
    """An index into ``pool`` (its first ``len(pool)`` entries), Zipf-distributed."""
    cum = _CUM.get((len(pool), s))
    if cum is None:
        cum, total = [], 0.0
        for i in range(len(pool)):
            total += 1 / (i + 1) ** s
            cum.append(total)
        _CUM[(len(pool), s)] = cum
    return rng.choices(range(len(pool)), cum_weights=cum)[0]


def _typo(text: str, rng: random.Random) -> str:
    if len(text) < 4:
        return text
    i = rng.randrange(1, len(text) - 1)
    op = rng.random()
    letters = "abcdefghijklmnopqrstuvwxyz"
    if op < 0.3:
        return text[:i] + text[i + 1:]
    if op < 0.6:
        return text[:i] + rng.choice(letters) + text[i + 1:]
    if op < 0.8:
        return text[:i] + text[i] + text[i:]
    return text[:i - 1] + text[i] + text[i - 1] + text[i + 1:]


def make_people(n: int, rng: random.Random, common_share: float = 0.3) -> list[dict]:
    """``common_share`` of households take a common family name (Zipf), the rest a rare generated one."""
    people: list[dict] = []
    pid = 0
    while len(people) < n:
        if rng.random() < common_share:
            fam = zipf(FAMILY[:COMMON_FAMILIES], rng, 0.8)
        else:
            FAMILY.append(rare_family(rng))
            fam = len(FAMILY) - 1
        city = rng.choice(CITIES)
        phone = "06" + "".join(rng.choice("0123456789") for _ in range(8))
        size = rng.choice([1, 1, 1, 2, 2, 3, 4])
        parent_cin = None
        twin_dob = None
        used: set[tuple[str, int]] = set()
        for k in range(size):
            sex = rng.choice("MF")
            pool = MALE if sex == "M" else FEMALE
            given = zipf(pool, rng, 1.1)
            while (sex, given) in used:  # siblings do not share a given name
                given = zipf(pool, rng, 1.1)
            used.add((sex, given))
            if k == 0:
                age = rng.randint(18, 90)
            elif twin_dob is None and rng.random() < 0.03:
                age = None
            else:
                age = rng.randint(0, 40)
            if age is None:  # a twin of the previous person
                dob = people[-1]["dob"]
                # twins never share a given name
                while given == people[-1]["given"] and pool is (MALE if people[-1]["sex"] == "M" else FEMALE):
                    given = zipf(pool, rng, 1.1)
                twin_dob = dob
                age = 2026 - int(dob[:4])
            else:
                y = 2026 - age
                dob = f"{y:04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            adult = age >= 18
            cin = (rng.choice(["A", "B", "C", "D", "E", "G", "H", "J", "K", "BK", "BE", "BH", "AB", "EE", "JB"])
                   + str(rng.randint(1000, 999999))) if adult and rng.random() < 0.9 else None
            if k == 0:
                parent_cin = cin
            people.append({"pid": pid, "sex": sex, "given": given, "family": fam, "dob": dob, "cin": cin,
                           "parent_cin": None if adult else parent_cin,
                           "idcs": "".join(rng.choice("0123456789") for _ in range(10)) if rng.random() < 0.3 else None,
                           "cnss": "".join(rng.choice("0123456789") for _ in range(9)) if rng.random() < 0.4 else None,
                           "phone": phone if (not adult or rng.random() < 0.5) else
                           "06" + "".join(rng.choice("0123456789") for _ in range(8)),
                           "city": city})
            pid += 1
    return people[:n]


def make_records(people: list[dict], rng: random.Random) -> list[tuple[int, dict]]:
    rows: list[tuple[int, dict]] = []
    for p in people:
        k = rng.choices([1, 2, 3, 4], weights=[35, 35, 20, 10])[0]
        sources = rng.sample(SOURCES, k)
        for src in sources:
            gv, gar = (MALE if p["sex"] == "M" else FEMALE)[p["given"]]
            fv, far = FAMILY[p["family"]]
            given, family = rng.choice(gv), rng.choice(fv)
            script = rng.random()
            row = {"record_id": f"r{len(rows)}", "source": src, "local_id": str(100000 + len(rows)),
                   "sex": p["sex"] if rng.random() > 0.02 else "", "city": p["city"] if rng.random() < 0.7 else ""}
            if script < 0.6:
                row.update(family=family, given=given)
                if rng.random() < 0.3:
                    row.update(family_ar=far, given_ar=gar)
            elif script < 0.85:
                row.update(family=family, given=given, family_ar=far, given_ar=gar)
            else:
                row.update(family_ar=far, given_ar=gar)
            if row.get("family") and rng.random() < 0.08:
                row["family"] = _typo(row["family"], rng)
            if row.get("given") and rng.random() < 0.05:
                row["given"] = _typo(row["given"], rng)
            if rng.random() < 0.05 and row.get("family"):
                row["family"] = row["family"].upper()
            if rng.random() < 0.02 and row.get("family") and row.get("given"):
                row["family"], row["given"] = row["given"], row["family"]
            if rng.random() < 0.03 and p["sex"] == "M" and row.get("given"):
                row["given"] = "Moulay " + row["given"]
            dob = p["dob"]
            r = rng.random()
            if r < 0.03:
                dob = ""
            elif r < 0.05:
                y, m, d = dob.split("-")
                if int(d) <= 12:
                    dob = f"{y}-{d}-{m}"
            elif r < 0.08:
                i = rng.choice([2, 3, 6, 9])
                dob = dob[:i] + rng.choice("0123456789") + dob[i + 1:]
            elif r < 0.09:
                dob = dob[:4] + "-01-01"
            row["birth_date"] = dob
            if p["cin"] and rng.random() < 0.75:
                cin = p["cin"]
                r = rng.random()
                if r < 0.02:
                    cin = _typo(cin.lower(), rng).upper()
                elif r < 0.03:
                    cin = cin.replace("0", "O") + "?"
                row["cin"] = cin
            elif p["parent_cin"] and rng.random() < 0.05:
                row["cin"] = p["parent_cin"]  # a child registered under a parent's CIN
            if p["idcs"] and rng.random() < 0.5:
                row["idcs"] = p["idcs"]
            if p["cnss"] and rng.random() < 0.5:
                row["cnss"] = p["cnss"]
            if rng.random() < 0.6:
                row["phone"] = p["phone"] if rng.random() < 0.9 else "07" + "".join(rng.choice("0123456789")
                                                                                   for _ in range(8))
            rows.append((p["pid"], row))
    rng.shuffle(rows)
    return rows


def evaluate(reg: ClientRegistry, rows: list[tuple[int, dict]]) -> dict[str, float]:
    truth: dict[str, int] = {}
    golden: dict[str, str] = {}
    sid_of: dict[str, int] = {}
    links: dict[str, int] = {"auto": 0, "candidate": 0, "new": 0}
    started = time.perf_counter()
    with reg.batch():
        for pid, row in rows:
            res = reg.link(PersonRecord.from_row(row))
            truth[row["record_id"]] = pid
            golden[row["record_id"]] = res.enterprise_id
            sid_of[row["record_id"]] = res.record_id
            links[res.link] = links.get(res.link, 0) + 1
    elapsed = time.perf_counter() - started
    # candidate edges between golden records
    edges = set()
    for c in reg.review_queue(limit=10**9):
        g1 = c["record"]["enterprise_id"]
        edges.add((g1, c["candidate"]))
        edges.add((c["candidate"], g1))
    by_person: dict[int, list[str]] = {}
    for rid, pid in truth.items():
        by_person.setdefault(pid, []).append(rid)
    by_golden: dict[str, list[str]] = {}
    for rid, g in golden.items():
        by_golden.setdefault(g, []).append(rid)
    tp_auto = fp_auto = 0
    for members in by_golden.values():
        for a, b in combinations(members, 2):
            if truth[a] == truth[b]:
                tp_auto += 1
            else:
                fp_auto += 1
    true_pairs = found = 0
    for members in by_person.values():
        for a, b in combinations(members, 2):
            true_pairs += 1
            if golden[a] == golden[b] or (golden[a], golden[b]) in edges:
                found += 1
    return {"records": len(rows), "persons": len(by_person), "true_pairs": true_pairs,
            "auto_pairs": tp_auto + fp_auto, "false_auto_pairs": fp_auto,
            "auto_precision": tp_auto / max(tp_auto + fp_auto, 1), "auto_recall": tp_auto / max(true_pairs, 1),
            "recall_auto_review": found / max(true_pairs, 1), "review_items": sum(1 for _ in edges) // 2,
            **{f"link_{k}": v for k, v in links.items()},
            "seconds": elapsed, "links_per_s": len(rows) / elapsed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--csv", help="also write the generated records (with a truth column) to this CSV")
    ap.add_argument("--auto", type=float)
    ap.add_argument("--review", type=float)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    people = make_people(args.persons, rng)
    rows = make_records(people, rng)
    if args.csv:
        fields = ["record_id", "source", "local_id", "cin", "idcs", "ins", "cnss", "family", "given", "family_ar",
                  "given_ar", "birth_date", "sex", "phone", "city", "truth"]
        with open(args.csv, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fields)
            w.writeheader()
            for pid, row in rows:
                w.writerow({**row, "truth": pid})
    from mediator.registry.matching import MatchConfig
    cfg = MatchConfig()
    if args.auto is not None:
        cfg.auto = args.auto
    if args.review is not None:
        cfg.review = args.review
    with tempfile.TemporaryDirectory() as d:
        reg = ClientRegistry(Path(d) / "registry.db", match=cfg)
        res = evaluate(reg, rows)
        reg.close()
    for k, v in res.items():
        print(f"{k:22} {v:.4f}" if isinstance(v, float) else f"{k:22} {v}")


if __name__ == "__main__":
    main()
