"""Moroccan personal names: normalisation, comparison keys and similarity.

Names reach the registry in Latin script (French or English transcription, with or without
diacritics, articles and titles) and in Arabic script (with or without harakat, with any of the
hamza and alef forms). Three forms of one name are computed once, when a record is stored:

``key``
    Latin comparison key: folded to ASCII, lower case, titles dropped (Moulay, Sidi, Lalla, Hadj),
    articles dropped whether separate, glued or assimilated (El Amrani, Elamrani, Lamrani → amrani;
    Ezzahra → zahra), spacing removed (Ben Jelloun → benjelloun), French/English transcription
    unified (ou/w → u, ch/sh → sh, dj → j, o → u, doubled letters once), abbreviations expanded
    (Med → mohamed). Compared with Jaro–Winkler.
``skeleton``
    Consonant classes only (``MHMD`` for Mohamed, Mohammed, Muhammad and محمد): computed from
    either script, used for blocking and as the cross-script bridge.
``cross``
    The skeleton with the long vowels written in Arabic (و → ``U``, ي → ``I``; Latin ou/u/o/w and
    i/y/ee): it separates Amina (``MIN``) from Imane (``IMN``), which the skeleton confuses.

Nothing here logs or keeps a name: these are pure functions.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import NamedTuple

from rapidfuzz.distance import JaroWinkler
from rapidfuzz.distance import Levenshtein as _Lev

__all__ = [
    "NameForms",
    "cross_key",
    "fold",
    "is_arabic",
    "latin_key",
    "name_forms",
    "name_similarity",
    "normalize_arabic",
    "skeleton",
    "strip_controls",
    "tokens",
]

# -- characters -------------------------------------------------------------------------------------

_HARAKAT = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")  # + tatweel
_ARABIC = re.compile("[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff]")
_ARABIC_MAP = str.maketrans({
    "أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ٲ": "ا", "ٳ": "ا",
    "ؤ": "و", "ئ": "ي", "ى": "ي", "ی": "ي", "ې": "ي", "ک": "ك", "ڭ": "ك", "گ": "ك", "ڨ": "ق",
    "ۀ": "ه", "ە": "ه", "ھ": "ه",
    "٠": "0", "١": "1", "٢": "2", "٣": "3", "٤": "4", "٥": "5", "٦": "6", "٧": "7", "٨": "8", "٩": "9",
    "۰": "0", "۱": "1", "۲": "2", "۳": "3", "۴": "4", "۵": "5", "۶": "6", "۷": "7", "۸": "8", "۹": "9",
})
# Latin letters with no decomposition in Unicode.
_LATIN_EXTRA = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ł": "l", "ı": "i",
                              "ç": "s", "Ç": "s", "ḥ": "h", "ṣ": "s", "ṭ": "t", "ḍ": "d", "ẓ": "z"})


def strip_controls(text: str) -> str:
    """Drop control and format characters (RLM/LRM, bidi embeddings, ZWJ/ZWNJ, BOM, C0/C1)."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(" " if ch in "\t\r\n" else ch for ch in text
                   if ch in "\t\r\n" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"))


def is_arabic(text: str) -> bool:
    """True when ``text`` holds Arabic letters."""
    return bool(_ARABIC.search(text))


def normalize_arabic(text: str) -> str:
    """Arabic script without harakat and tatweel, one alef, hamza carriers folded, ى → ي, ة kept."""
    text = unicodedata.normalize("NFKC", strip_controls(text))
    return " ".join(_HARAKAT.sub("", text).translate(_ARABIC_MAP).split())


_ASCII_FOLD = str.maketrans({chr(c): (chr(c).lower() if chr(c).isalpha() else
                                      "" if chr(c) in "'`" or (c < 32 and chr(c) not in "\t\r\n") or c == 127
                                      else " ") for c in range(128)})


def fold(text: str) -> str:
    """Latin text to lower-case ASCII letters and spaces (Aït → ait, Chérif → cherif)."""
    if text.isascii():
        return " ".join(text.translate(_ASCII_FOLD).split())
    text = strip_controls(text).translate(_LATIN_EXTRA)
    text = unicodedata.normalize("NFKD", text)
    out = []
    for ch in text:
        if ch.isascii():
            out.append(ch.lower() if ch.isalpha() else (" " if ch not in "'`" else ""))
        elif unicodedata.category(ch) == "Mn":
            continue
        else:
            out.append(" ")
    return " ".join("".join(out).split())


# -- Latin ------------------------------------------------------------------------------------------

_TITLES = frozenset({"moulay", "mly", "moulai", "mulay", "sidi", "si", "sid", "lalla", "lala", "hadj", "haj",
                     "hajj", "hadja", "haja", "hajja", "elhadj", "elhaj", "lhaj", "lhadj", "cherif", "chrif",
                     "dr", "pr", "mr", "mme", "mlle", "m", "mrs", "ms"})
_ARTICLES = frozenset({"el", "al", "l", "ul", "ell", "d", "ed", "es", "ez", "et", "en", "er", "ech", "ad", "as",
                       "az", "at", "an", "ar"})
_ABBREV = {"med": "mohamed", "mohd": "mohamed", "mhd": "mohamed", "md": "mohamed",
           "fz": "fatimazahra", "fatimzahra": "fatimazahra",
           "fatimazohra": "fatimazahra", "fatimzohra": "fatimazahra"}
_ASSIMILATED = re.compile(r"^e(?:([tdrzsn])\1|chch|ch(?=ch))")  # Ettaki, Eddaoudi, Errachidi, Ezzahra, Essaidi…
_GLUED = re.compile(r"^(?:el|al)(?=[a-z]{3,}$)")
_GLUED_L = re.compile(r"^l(?=[aeiouh][a-z]{3,}$)")
_ABD = re.compile(r"^abd(?:ou|e|a|u|o)?l(?=[a-z]{3,})")  # Abdelkader, Abdellah, Abdullah → abd + rest


@lru_cache(maxsize=65536)
def _strip_article(tok: str) -> str:
    m = _ABD.match(tok)
    if m:
        return "abd" + _strip_article(tok[m.end():])
    m = _ASSIMILATED.match(tok)
    if m and len(tok) - 2 >= 3:
        return tok[2:]
    if _GLUED.match(tok):
        return tok[2:]
    if _GLUED_L.match(tok):
        return tok[1:]
    return tok


def tokens(text: str) -> list[str]:
    """Folded Latin tokens without titles and articles (a name made only of them keeps them)."""
    toks = [_ABBREV.get(t, t) for t in fold(text).split()]
    kept = [t for t in toks if t not in _TITLES] or toks
    words = [t for t in kept if t not in _ARTICLES] or kept
    return [_strip_article(t) for t in words]


_TRANSCRIPTION = [
    (re.compile(r"ou|oo|w"), "u"),
    (re.compile(r"ch|sh|sch"), "$"),   # ش
    (re.compile(r"dj|dg"), "j"),
    (re.compile(r"c(?=[eiy])"), "s"),  # Yacine = Yassine, Youcef = Youssef
    (re.compile(r"ph"), "f"),
    (re.compile(r"q|ck"), "k"),
    (re.compile(r"ee|y"), "i"),
    (re.compile(r"o"), "u"),
    (re.compile(r"(?<=.)e"), "a"),     # short vowels: Ahmed/Ahmad, Meryem/Maryam, Omer/Omar
    (re.compile(r"(.)\1+"), r"\1"),
    (re.compile(r"\$"), "sh"),
]


@lru_cache(maxsize=131072)
def _latin_token_key(tok: str) -> str:
    for rx, rep in _TRANSCRIPTION:
        tok = rx.sub(rep, tok)
    return tok


def latin_key(text: str) -> str:
    """The Latin comparison key of a name (all tokens joined: Ben Jelloun == Benjelloun)."""
    return "".join(_latin_token_key(t) for t in tokens(text))


# -- skeletons ------------------------------------------------------------------------------------

_AR_CLASS = {
    "ب": "B", "ت": "T", "ث": "T", "ج": "J", "ح": "H", "خ": "X", "د": "D", "ذ": "D", "ر": "R", "ز": "Z",
    "س": "S", "ش": "C", "ص": "S", "ض": "D", "ط": "T", "ظ": "D", "غ": "G", "ف": "F", "ق": "K", "ك": "K",
    "ل": "L", "م": "M", "ن": "N", "ه": "H", "و": "U", "ي": "I", "پ": "B", "ڤ": "F", "ڥ": "F",
}
_DIGRAPHS = {"kh": "X", "gh": "G", "ch": "C", "sh": "C", "dj": "J", "th": "T", "dh": "D", "ph": "F", "ou": "U",
             "oo": "U", "ee": "I", "ck": "K", "qu": "K"}
_LATIN_CLASS = {
    "b": "B", "p": "B", "t": "T", "j": "J", "h": "H", "d": "D", "r": "R", "z": "Z", "s": "S", "f": "F", "v": "F",
    "k": "K", "q": "K", "l": "L", "m": "M", "n": "N", "x": "KS", "w": "U", "u": "U", "o": "U", "i": "I", "y": "I",
    "a": "", "e": "",
}
_DOUBLE = re.compile(r"(.)\1+")


@lru_cache(maxsize=131072)
def _latin_token_cross(tok: str) -> str:
    out = []
    i, n = 0, len(tok)
    if tok[:1] in ("a", "e", "i", "o", "u") and not tok.startswith("ou") or tok.startswith("ou") and tok[2:3] in "mn":
        out.append("A")  # a word-initial vowel is written with alef or ʿayn in Arabic (Ahmed أحمد, Omar عمر)
        if tok[:1] in "ae":
            i = 1
    while i < n:
        pair = tok[i:i + 2]
        if pair in _DIGRAPHS:
            out.append(_DIGRAPHS[pair])
            i += 2
            continue
        ch = tok[i]
        nxt = tok[i + 1] if i + 1 < n else ""
        if ch == "g":  # French g before e/i/y is ج; gu before e/i/y and g elsewhere is the Moroccan g (ڭ/ق)
            if nxt == "u" and i + 2 < n and tok[i + 2] in "eiy":
                out.append("K")
                i += 2
                continue
            out.append("J" if nxt in ("e", "i", "y") else "K")
        elif ch == "c":
            out.append("S" if nxt in ("e", "i", "y") else "K")
        else:
            out.append(_LATIN_CLASS.get(ch, ""))
        i += 1
    return _DOUBLE.sub(r"\1", "".join(out))


_ARABIC_MAP_CROSS = {k: v for k, v in _ARABIC_MAP.items() if k != ord("ى")}


@lru_cache(maxsize=65536)
def _arabic_tokens(text: str) -> tuple[str, ...]:
    text = unicodedata.normalize("NFKC", strip_controls(text))
    words = _HARAKAT.sub("", text).translate(_ARABIC_MAP_CROSS).split()
    out: list[str] = []
    for w in words:
        w = "".join(ch for ch in w if "\u0621" <= ch <= "\u064a" or ch in "پڤڥ")
        if not w:
            continue
        if w.startswith("عبد") and len(w) > 4:  # عبدالله, عبدالقادر → عبد + …
            out.append("عبد")
            w = w[3:]
        if w.startswith("ال") and len(w) >= 4:
            w = w[2:]
        elif w.startswith("لل") and len(w) >= 4:  # الله after عبد: "ل" + "له"
            w = w[1:]
        out.append(w)
    return tuple(out)


@lru_cache(maxsize=131072)
def _arabic_token_cross(tok: str) -> str:
    out = ["A"] if tok[:1] in "اءع" else []
    for i, ch in enumerate(tok):
        if ch in "ةاءعى":
            continue
        if ch == "ه" and i == len(tok) - 1 and len(tok) > 2 and tok != "له":
            continue  # a final ه is usually a ta marbuta typed without its dots (فاطمه)
        cls = _AR_CLASS.get(ch, "")
        if ch == "ي" and i == len(tok) - 1 and len(tok) > 2 and tok[i - 1] != "ي":
            cls = "I"  # nisba -i (Amrani, Alaoui)
        out.append(cls)
    return _DOUBLE.sub(r"\1", "".join(out))


def cross_key(text: str, *, glued: bool = True) -> str:
    """Consonant classes plus long vowels (U, I), from Latin or Arabic script.

    ``glued=False`` keeps a glued Latin article (Alaoui is ʿAlawi, not al-Awi): both readings are
    kept for cross-script comparison because the Latin spelling alone cannot tell them apart.
    """
    if is_arabic(text):
        return "".join(_arabic_token_cross(t) for t in _arabic_tokens(text))
    toks = tokens(text) if glued else _tokens_unglued(text)
    return _DOUBLE.sub(r"\1", "".join(_latin_token_cross(t) for t in toks))


def _tokens_unglued(text: str) -> list[str]:
    toks = [_ABBREV.get(t, t) for t in fold(text).split()]
    kept = [t for t in toks if t not in _TITLES] or toks
    return [t for t in kept if t not in _ARTICLES] or kept


def skeleton(text: str) -> str:
    """Consonant classes only (vowels and w/y dropped): ``MHMD`` for محمد and every Mohamed."""
    return _consonants(cross_key(text))


# -- forms and comparison -----------------------------------------------------------------------------

class NameForms(NamedTuple):
    """The comparison forms of one name part (family or given), Latin and/or Arabic.

    A named tuple: built once per stored record from its JSON list, which must be cheap (a
    resolution decodes the features of every candidate that is not in the features cache).
    """

    key: str = ""        # Latin key ("" when only Arabic was given)
    cross: str = ""      # cross-script key (Latin source preferred)
    skeleton: str = ""
    cross_ar: str = ""   # cross-script key computed from the Arabic spelling, when given
    swapped_key: str = ""  # tokens in sorted order (Zahra Fatima == Fatima Zahra)
    cross_alt: str = ""  # Latin cross key with a glued article kept, when it differs
    plain: str = ""      # folded Latin letters only, when they differ from the key (a typo the key rules amplify)

    @property
    def empty(self) -> bool:
        return not (self.key or self.cross or self.cross_ar)

    def as_list(self) -> list[str]:
        return list(self)

    @classmethod
    def from_list(cls, v: list[str] | None) -> NameForms:
        return cls(*v) if v else cls()


@lru_cache(maxsize=65536)
def name_forms(latin: str | None, arabic: str | None = None) -> NameForms:
    """Forms of one name part from its Latin and/or Arabic spelling (either may be empty or in the wrong field)."""
    latin = latin or ""
    arabic = arabic or ""
    if latin and is_arabic(latin) and not arabic:
        latin, arabic = "", latin
    key = latin_key(latin) if latin else ""
    swapped = "".join(sorted(_latin_token_key(t) for t in tokens(latin))) if latin else ""
    cross = cross_key(latin) if latin else ""
    cross_ar = cross_key(arabic) if arabic else ""
    alt = cross_key(latin, glued=False) if latin else ""
    plain = fold(latin).replace(" ", "") if latin else ""
    return NameForms(key=key, cross=cross, skeleton=_consonants(cross or cross_ar), cross_ar=cross_ar,
                     swapped_key=swapped, cross_alt=alt if alt != cross else "", plain=plain if plain != key else "")


@lru_cache(maxsize=131072)
def _consonants(cross: str) -> str:
    return _DOUBLE.sub(r"\1", cross.replace("U", "").replace("I", "").replace("A", ""))


@lru_cache(maxsize=262144)
def _cross_sim(x: str, y: str) -> float:
    """Edit similarity where a vowel (U, I) present on one side only costs a fifth: Latin writes
    short vowels that Arabic leaves out (Mohamed/محمد), so only consonants and initial alefs count fully."""
    if x == y:
        return 1.0
    if not _consonants(x) or not _consonants(y):
        return 0.0
    cost = 0.0
    for op, i, j in _Lev.editops(x, y):
        if op == "delete":
            cost += 0.2 if x[i] in "UI" else 1.0
        elif op == "insert":
            cost += 0.2 if y[j] in "UI" else 1.0
        else:
            cost += 1.0
    return max(0.0, 1.0 - cost / max(len(x), len(y)))


def _jw(a: str, b: str) -> float:
    return _JW(a, b) if a and b else 0.0


_JW = JaroWinkler.normalized_similarity


@lru_cache(maxsize=262144)  # common names meet again and again (Mohammed, Fatima, Alaoui): compare once
def name_similarity(a: NameForms, b: NameForms) -> float:
    """Similarity in [0, 1] of two name parts; 0.0 when either is empty.

    Latin against Latin uses Jaro–Winkler on the keys (and the token-sorted keys); when one side has
    only Arabic script, the cross-script keys are compared and the result capped at 0.95, since the
    cross-script key cannot tell every vowel apart.
    """
    if a.empty or b.empty:
        return 0.0
    if a.cross_ar and b.cross_ar and a.cross_ar != b.cross_ar:
        # both spelt in Arabic (the civil-register script) and differently: the Arabic spellings bound
        # the result, so that a Latin key cannot make لحسن and حسن (Lhassan, Hassan) one name
        ar = _cross_sim(a.cross_ar, b.cross_ar)
        if ar < 0.8:
            return min(ar, _latin_or_cross(a, b))
    return _latin_or_cross(a, b)


def _latin_or_cross(a: NameForms, b: NameForms) -> float:
    best = 0.0
    latin_both = bool(a.key and b.key)
    if a.cross_ar and a.cross_ar == b.cross_ar:
        return 1.0 if a.key == b.key else 0.98
    if latin_both:
        if a.key == b.key:
            return 1.0
        best = _jw(a.key, b.key)
        if a.swapped_key != a.key or b.swapped_key != b.key:
            best = max(best, _jw(a.swapped_key, b.swapped_key))
        if best < 0.94 and (a.plain or b.plain):
            # the letters as typed: the key rules can turn one typo into several differences
            # (Lachlan/Laclhan → ashlan/aclhan, Lucy/Luc → lusi/luc)
            best = max(best, _jw(a.plain or a.key, b.plain or b.key))
        if best >= 0.9:
            return best
    if latin_both and best < 0.75:
        return best  # the cross key only lifts a near miss of the Latin keys (Bouchra/Bushra)
    ca = [x for x in (a.cross, a.cross_ar, a.cross_alt) if x]
    cb = [x for x in (b.cross, b.cross_ar, b.cross_alt) if x]
    cross = max((_cross_sim(x, y) for x in ca for y in cb), default=0.0)
    return max(best, min(cross, 0.93 if latin_both else 0.95))
