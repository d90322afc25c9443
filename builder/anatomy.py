"""Atlas label names in plain anatomical English, by a documented rule.

Atlases name regions in code (AAL's ``Frontal_Inf_Tri_L``, FreeSurfer's
``Left-Hippocampus``). Text says "left inferior frontal gyrus, triangular part";
the raw label stays in the ROI's ``label``. The rule, applied to labels written
with ``_`` or ``-`` between words (plain labels such as "liver" pass unchanged):

1. a side word at either end (``L``, ``R``, ``Left``, ``Right``, ``lh``, ``rh``) becomes
   "left" / "right" in front;
2. position abbreviations become adjectives before the structure (``Sup`` superior,
   ``Mid`` middle, ``Inf`` inferior, ``Med``/``Medial`` medial, ``Ant`` anterior,
   ``Post`` posterior, ``Lat`` lateral, ``Supp`` supplementary);
3. part abbreviations go after it (``Oper`` opercular part, ``Tri`` triangular part,
   ``Orb`` orbital part);
4. the structure gets its anatomical noun (``Frontal`` frontal gyrus, ``Cingulum``
   cingulate gyrus, ``Calcarine`` calcarine fissure, ``Cerebelum`` cerebellum, ...);
   numbers become lobules of the cerebellum ("cerebellum, lobules 4 and 5") and stay with any other structure
   ("Brodmann_area_20" -> "brodmann area 20").
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["name_list", "plain_label"]

SIDES = {"l": "left", "r": "right", "left": "left", "right": "right", "lh": "left", "rh": "right"}
MODIFIERS = {"sup": "superior", "mid": "middle", "inf": "inferior", "med": "medial", "medial": "medial",
             "ant": "anterior", "post": "posterior", "lat": "lateral", "supp": "supplementary"}
PARTS = {"oper": "opercular part", "tri": "triangular part", "orb": "orbital part"}
NOUNS = {
    "frontal": "frontal gyrus", "temporal": "temporal gyrus", "occipital": "occipital gyrus",
    "parietal": "parietal gyrus", "precentral": "precentral gyrus", "postcentral": "postcentral gyrus",
    "cingulum": "cingulate gyrus", "fusiform": "fusiform gyrus", "lingual": "lingual gyrus",
    "angular": "angular gyrus", "supramarginal": "supramarginal gyrus", "parahippocampal": "parahippocampal gyrus",
    "rectus": "gyrus rectus", "heschl": "Heschl's gyrus", "calcarine": "calcarine fissure",
    "olfactory": "olfactory cortex", "rolandic": "rolandic operculum", "cerebelum": "cerebellum",
    "cerebellum": "cerebellum", "vermis": "vermis", "caudate": "caudate nucleus", "pallidum": "globus pallidus",
}
#: Two-word structures: (first, second) -> noun.
PAIRS = {("temporal", "pole"): "temporal pole", ("paracentral", "lobule"): "paracentral lobule",
         ("motor", "area"): "motor area"}
_WORD = re.compile(r"[_\-]+")
#: The position prefixes of FreeSurfer's (Desikan-Killiany) run-together parcel names ("superiorfrontal").
_COMPOUND = re.compile(r"^(superior|inferior|middle|medial|lateral|rostral|caudal|posterior|anterior|transverse|"
                       r"isthmus|pars)(?=[a-z]{3,})")


ROMAN = {"1": "I", "2": "II", "3": "III"}


def _lobules(numbers: list[str]) -> str:
    if not numbers:
        return ""
    label = "lobule" if len(numbers) == 1 else "lobules"
    return f", {label} {' and '.join(numbers) if len(numbers) < 3 else ', '.join(numbers)}"


@lru_cache(maxsize=4096)  # an atlas names the same few hundred labels on every slice
def plain_label(label: str) -> str:
    """``Frontal_Inf_Tri_L`` -> "left inferior frontal gyrus, triangular part"; plain labels unchanged."""
    if not _WORD.search(label.strip("_- ")):
        return label
    words = [w for w in _WORD.split(label) if w]
    side = ""
    if words and words[-1].lower() in SIDES:
        side = SIDES[words.pop().lower()]
    elif words and words[0].lower() in SIDES:
        side = SIDES[words.pop(0).lower()]
    for index, word in enumerate(words):  # FreeSurfer's ctx-lh-...: a hemisphere inside the name
        if not side and word.lower() in ("lh", "rh", "left", "right"):
            side = SIDES[words.pop(index).lower()]
            break
    cortex = bool(words) and words[0].lower() == "ctx"
    if cortex:  # FreeSurfer's cortical parcels: ctx-lh-superiorfrontal -> left superior frontal cortex
        words = [_COMPOUND.sub(r"\1 ", w) for w in words[1:]] + ["cortex"]
    modifiers, parts, numbers, nouns = [], [], [], []
    index = 0
    while index < len(words):
        word, low = words[index], words[index].lower()
        pair = (low, words[index + 1].lower()) if index + 1 < len(words) else None
        if pair in PAIRS:
            nouns.append(PAIRS[pair])
            index += 2
            continue
        if low in MODIFIERS:
            modifiers.append(MODIFIERS[low])
        elif low in PARTS:
            if not (low == "oper" and any("operculum" in n for n in nouns)):
                parts.append(PARTS[low])
        elif low.startswith("crus"):
            parts.append(f"crus {ROMAN.get(low[4:], low[4:])}".strip())
        elif low[:1].isdigit() and any(n in ("cerebellum", "vermis") for n in nouns):
            numbers.append(word)  # the cerebellum's lobules
        elif low[:1].isdigit():
            nouns.append(word)  # a numbered area: "Brodmann area 20", "segment 4"
        else:
            nouns.append(NOUNS.get(low, low))
        index += 1
    text = " ".join(w for w in [side, *modifiers, *nouns] if w)
    return text + "".join(f", {p}" for p in parts) + _lobules(numbers)


def name_list(names: list[str], limit: int = 8, noun: str = "regions") -> str:
    """Names as one unambiguous list: commas between them, or semicolons when a name holds a comma itself ("left
    cerebellum, crus II; right cerebellum, crus II"); past ``limit``, the first ones and "and N more regions"."""
    unique = list(dict.fromkeys(names))
    separator = "; " if any("," in name for name in unique) else ", "
    shown = separator.join(unique[:limit])
    rest = len(unique) - limit
    more = f" and {rest} more {noun if rest > 1 else noun.rstrip('s')}" if rest > 0 else ""
    return shown + (separator.strip() + more if more and separator == "; " else more)
