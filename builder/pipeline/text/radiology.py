"""What radiology says of a tissue's intensity, per modality and sequence: which measured contrasts text may state.

A measured contrast of a *finding* (a lesion against its surroundings) is what
the text is for, and is stated as measured. A region of *normal anatomy* has the
contrast radiology knows: grey matter is darker than white matter on T1 and
brighter on T2 and FLAIR, fat is dark and bone bright on CT. An atlas parcel is
not pure tissue (AAL's parcels take in white matter below the cortex), so its
measured contrast can disagree with what is known; then the text says nothing of
it rather than something a radiologist would strike out. On MRI of unknown
sequence, normal anatomy's contrast is never stated: the sequence decides it.

==============  =================================  ======================================
modality        tissue                             may be stated as
==============  =================================  ======================================
MRI T1          grey matter / white matter / CSF   hypo or iso / hyper or iso / hypo
MRI T2, PD      grey matter / white matter / CSF   hyper or iso / hypo or iso / hyper
MRI FLAIR       grey matter / white matter / CSF   hyper or iso / hypo or iso / hypo
MRI T1          fat                                hyper or iso
CT              fat / bone / air-filled lung       hypo / hyper / hypo
CT              grey matter / white matter         hyper or iso / hypo or iso
==============  =================================  ======================================
"""

from __future__ import annotations

import re

__all__ = ["COMPARED", "allowed", "compared", "tissue_of"]

#: Tissue classes of normal anatomy, by the words of a region's plain name; the first that matches wins.
TISSUES = (
    ("white matter", r"white matter|corpus callosum|internal capsule|external capsule|centrum semiovale|"
                     r"corona radiata|cerebral peduncle|fornix|fasciculus|tract|radiation|lemniscus|capsule"),
    ("csf", r"ventric\w*|csf|cerebrospinal|cistern\w*"),
    ("grey matter", r"gyrus|gyri|cortex|cortical|lobules?|pole|planum|fissure|opercul\w*|cune\w*|precune\w*|"
                    r"insul\w*|cingulate|hippocamp\w*|amygdala|thalamus|caudate\w*|putamen|pallid\w*|accumbens|"
                    r"brodmann|olfactory|rectus|heschl\w*|motor area|cerebell\w*|vermis|grey matter|gray matter|"
                    r"nucleus|nuclei|claustrum|striatum"),
    ("fat", r"fat|adipose|subcutaneous"),
    ("bone", r"bones?|vertebra\w*|ribs?|femur|skull|sacrum|humerus|scapula|clavicle|sternum|tibia|fibula|hip"),
    ("air", r"lungs?|trachea|airway"),
)
_TISSUES = [(name, re.compile(rf"\b(?:{pattern})\b", re.I)) for name, pattern in TISSUES]
_T2 = {"grey matter": {"hyper", "iso"}, "white matter": {"hypo", "iso"}, "csf": {"hyper"}}
EXPECTED: dict[tuple[str, str | None], dict[str, set[str]]] = {
    ("mri", "T1"): {"grey matter": {"hypo", "iso"}, "white matter": {"hyper", "iso"}, "csf": {"hypo"},
                    "fat": {"hyper", "iso"}},
    ("mri", "T2"): _T2,
    ("mri", "PD"): _T2,
    ("mri", "FLAIR"): {**_T2, "csf": {"hypo"}},
    ("ct", None): {"fat": {"hypo"}, "bone": {"hyper"}, "air": {"hypo"}, "grey matter": {"hyper", "iso"},
                   "white matter": {"hypo", "iso"}},
}


#: Organs radiologists compare with each other, per modality: (modality, organ, reference organ). On CT the
#: liver is compared with the spleen (a liver darker than the spleen suggests fatty infiltration).
COMPARED = (("ct", "liver", "spleen"),)


def compared(modality: str, names: list[str]) -> list[tuple[int, int]]:
    """Index pairs (organ, reference) of :data:`COMPARED` among a row's region names (whole-name matches)."""
    lowered = [name.lower() for name in names]
    return [(lowered.index(a), lowered.index(b)) for m, a, b in COMPARED
            if m == modality and a in lowered and b in lowered]


def tissue_of(name: str) -> str | None:
    """The tissue class of normal anatomy a region's plain name says ("left precentral gyrus": grey matter), or
    None (a finding, an organ without a rule)."""
    return next((tissue for tissue, pattern in _TISSUES if pattern.search(name)), None)


def allowed(modality: str, sequence: str | None, name: str, parcel: bool = False) -> set[str] | None:
    """Which directions ("hyper", "hypo", "iso") the text may state for a region, or None: any (a finding).

    ``parcel``: the region is one of an atlas's parcels (compared with the organ they make up), normal anatomy
    whatever its name; on MRI, one of unknown tissue has no stated contrast."""
    tissue = tissue_of(name)
    if tissue is None:
        return set() if parcel and modality == "mri" else None
    rules = EXPECTED.get((modality, sequence if modality == "mri" else None))
    if rules is None:
        return set() if modality == "mri" else None  # MRI: the unknown sequence decides normal anatomy's contrast
    return rules.get(tissue, set() if modality == "mri" else None)
