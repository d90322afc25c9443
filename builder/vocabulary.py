"""The words text is checked by: modality, sequence, organ, side, plane, texture and relation vocabularies.

Each vocabulary maps whole-word patterns (case-insensitive) to one canonical
value; :func:`terms` lists the values a text holds. ``validate`` scores a
description against its reference with them, and :mod:`builder.checks` checks a
model's answer against what the pipeline measured. Plain data at the bottom:
this module imports nothing of the project.
"""

from __future__ import annotations

import re

__all__ = ["MODALITY", "OPPOSITE", "ORGANS", "PLANES", "RELATIONS", "SEQUENCES", "SIDES", "TEXTURE", "VOCABULARIES",
           "sequence_of", "terms"]

#: term -> canonical value, per vocabulary; patterns match whole words.
MODALITY = {r"ct|cta|computed tomograph\w*|hounsfield": "ct",
            r"mri?|mra|magnetic resonance|t1|t2|flair|diffusion[- ]weighted|gadolinium|t1-weighted|t2-weighted": "mri",
            r"radiograph\w*|x-ray|xray|cxr|plain film": "xray",
            r"ultrasound|sonograph\w*|doppler|echogenic\w*": "ultrasound",
            r"pet|fdg": "pet", r"dermoscop\w*": "dermoscopy", r"endoscop\w*": "endoscopy",
            r"fundus": "fundus", r"histolog\w*|h&e|micrograph\w*": "pathology"}
ORGANS = {r"brain|cerebr\w*|cerebell\w*|intracranial|ventricles?": "brain", r"skull|cranium": "skull",
          r"orbits?|eyes?|ocular|retina\w*": "eye", r"sinus\w*|nasal": "sinus", r"neck|cervical": "neck",
          r"thyroid": "thyroid", r"spine|spinal|vertebra\w*|lumbar|thoracic spine|disc": "spine",
          r"chest|thora\w*": "chest", r"lungs?|pulmonary|pleura\w*": "lung", r"heart|cardiac|pericardi\w*": "heart",
          r"aort\w*": "aorta", r"breasts?": "breast", r"abdom\w*": "abdomen", r"liver|hepat\w*": "liver",
          r"gallbladder|biliary": "gallbladder", r"pancrea\w*": "pancreas", r"spleen|splenic": "spleen",
          r"kidneys?|renal": "kidney", r"adrenal": "adrenal", r"bowel|colon\w*|intestin\w*": "bowel",
          r"stomach|gastric": "stomach", r"bladder": "bladder", r"pelvi\w*": "pelvis", r"uter\w*": "uterus",
          r"ovar\w*": "ovary", r"prostat\w*": "prostate", r"bones?|osseous|femur|tibia|humerus": "bone",
          r"knee": "knee", r"shoulder": "shoulder", r"hip": "hip", r"muscles?": "muscle", r"skin|cutaneous": "skin"}
#: MR sequences (weightings), as series descriptions and text name them.
SEQUENCES = {r"t1|t1w|t1-weighted|t1 weighted|mprage|spgr|flash|t1ce|t1c|t1gd": "T1",
             r"t2|t2w|t2-weighted|t2 weighted|haste|tse|fse": "T2", r"flair": "FLAIR",
             r"pd|pdw|proton density|pd-weighted": "PD", r"dwi|diffusion[- ]weighted|b1000|trace": "DWI",
             r"adc|apparent diffusion": "ADC", r"swi|susceptibility[- ]weighted": "SWI"}
SIDES = {r"left": "left", r"right": "right", r"bilateral\w*": "bilateral"}
PLANES = {r"axial|transverse": "axial", r"coronal": "coronal", r"sagittal": "sagittal"}
TEXTURE = {r"hyperdens\w*|hyperintens\w*|hyperechoic|bright\w*": "hyper",
           r"hypodens\w*|hypointens\w*|hypoechoic|anechoic|dark\w*": "hypo",
           r"isodens\w*|isointens\w*|isoechoic": "iso", r"heterogene\w*": "heterogeneous",
           r"homogene\w*": "homogeneous", r"enhanc\w*": "enhancing", r"cyst\w*": "cystic",
           r"calcif\w*": "calcified", r"hemorrha\w*|haemorrha\w*|bleed\w*": "hemorrhage", r"edema\w*": "edema",
           r"necro\w*": "necrosis", r"fluid|effusion": "fluid", r"mass(es)?": "mass", r"nodul\w*": "nodule",
           r"lesions?": "lesion", r"tumou?rs?": "tumor"}
RELATIONS = {r"adjacent|abut\w*|border\w*|contact\w*": "adjacent", r"compress\w*": "compression",
             r"displac\w*|shift\w*|mass effect": "mass effect", r"extend\w*|extension": "extension",
             r"invad\w*|invasion|infiltrat\w*": "invasion", r"surround\w*": "surrounding",
             r"within|inside": "within", r"obstruct\w*": "obstruction", r"overlap\w*": "overlap"}
OPPOSITE = {"hyper": "hypo", "hypo": "hyper", "heterogeneous": "homogeneous", "homogeneous": "heterogeneous",
            "left": "right", "right": "left"}


def _compile(vocabulary: dict[str, str]) -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(rf"\b(?:{pattern})\b", re.I), value) for pattern, value in vocabulary.items()]


VOCABULARIES = {name: _compile(v) for name, v in
                {"modality": MODALITY, "organs": ORGANS, "sides": SIDES, "planes": PLANES, "texture": TEXTURE,
                 "relations": RELATIONS, "sequences": SEQUENCES}.items()}


def terms(text: str, *vocabularies: str) -> set[str]:
    found: set[str] = set()
    for name in vocabularies:
        found |= {value for pattern, value in VOCABULARIES[name] if pattern.search(text or "")}
    return found




def sequence_of(*texts: object) -> str | None:
    """The one MR sequence texts name (a series description, a protocol name), or None: none, or several
    (FLAIR is a T2-weighted sequence, and wins over T2)."""
    found = terms(" ".join(str(t).replace("_", " ") for t in texts if t), "sequences")
    if found == {"FLAIR", "T2"}:
        return "FLAIR"
    return next(iter(found)) if len(found) == 1 else None
