"""Body Part Examined (0018,0015) through a controlled vocabulary, never verbatim.

Sites type free text into this attribute ("bacino", "total b", "jpeg 2000
compressed image"), and free text may identify. Only values that match a
defined term of DICOM PS3.16 CID 4031 "Common Anatomic Regions" (the terms
PS3.3 Annex L lists for Body Part Examined), or a common vendor variant of one,
become an organ, in plain English. Anything else gives no organ, and is
counted (not quoted) in ``build.json``.
"""

from __future__ import annotations

import re

__all__ = ["BODY_PARTS", "body_part"]

#: Defined term -> plain English (PS3.16 CID 4031 / PS3.3 Annex L).
BODY_PARTS: dict[str, str] = {
    "ABDOMEN": "abdomen", "ABDOMENPELVIS": "abdomen and pelvis", "ADRENAL": "adrenal gland", "ANKLE": "ankle",
    "AORTA": "aorta", "ARM": "arm", "AXILLA": "axilla", "BACK": "back", "BLADDER": "urinary bladder",
    "BRAIN": "brain", "BREAST": "breast", "BRONCHUS": "bronchus", "BUTTOCK": "buttock", "CALCANEUS": "calcaneus",
    "CALF": "calf", "CAROTID": "carotid artery", "CEREBELLUM": "cerebellum", "CSPINE": "cervical spine",
    "CERVIX": "cervix", "CHEEK": "cheek", "CHEST": "chest", "CHESTABDOMEN": "chest and abdomen",
    "CHESTABDPELVIS": "chest, abdomen and pelvis", "CIRCLEOFWILLIS": "circle of Willis", "CLAVICLE": "clavicle",
    "COCCYX": "coccyx", "COLON": "colon", "CORNEA": "cornea", "CORONARYARTERY": "coronary artery",
    "DUODENUM": "duodenum", "EAR": "ear", "ELBOW": "elbow", "WHOLEBODY": "whole body", "ESOPHAGUS": "esophagus",
    "EXTREMITY": "extremity", "EYE": "eye", "EYELID": "eyelid", "FACE": "face", "FEMUR": "femur",
    "FINGER": "finger", "FOOT": "foot", "GALLBLADDER": "gallbladder", "HAND": "hand", "HEAD": "head",
    "HEADNECK": "head and neck", "HEART": "heart", "HIP": "hip", "HUMERUS": "humerus", "ILEUM": "ileum",
    "ILIUM": "ilium", "IAC": "internal auditory canal", "JAW": "jaw", "JEJUNUM": "jejunum", "KIDNEY": "kidney",
    "KNEE": "knee", "LARYNX": "larynx", "LEG": "leg", "LIVER": "liver", "LSPINE": "lumbar spine",
    "LSSPINE": "lumbosacral spine", "LUNG": "lung", "JAWMANDIBLE": "mandible", "MANDIBLE": "mandible",
    "MAXILLA": "maxilla", "MEDIASTINUM": "mediastinum", "MOUTH": "mouth", "NECK": "neck",
    "NECKCHEST": "neck and chest", "NECKCHESTABDOMEN": "neck, chest and abdomen",
    "NECKCHESTABDPELV": "neck, chest, abdomen and pelvis", "NOSE": "nose", "ORBIT": "orbit", "OVARY": "ovary",
    "PANCREAS": "pancreas", "PAROTID": "parotid gland", "PATELLA": "patella", "PELVIS": "pelvis",
    "PENIS": "penis", "PHARYNX": "pharynx", "PROSTATE": "prostate", "RECTUM": "rectum", "RIB": "rib",
    "SACRUM": "sacrum", "SCALP": "scalp", "SCAPULA": "scapula", "SCLERA": "sclera", "SCROTUM": "scrotum",
    "SHOULDER": "shoulder", "SKULL": "skull", "SPINE": "spine", "SPLEEN": "spleen", "STERNUM": "sternum",
    "STOMACH": "stomach", "SUBMANDIBULAR": "submandibular gland", "TMJ": "temporomandibular joint",
    "TESTIS": "testis", "THIGH": "thigh", "TSPINE": "thoracic spine", "TLSPINE": "thoracolumbar spine",
    "THUMB": "thumb", "THYMUS": "thymus", "THYROID": "thyroid", "TOE": "toe", "TONGUE": "tongue",
    "TRACHEA": "trachea", "ARTERY": "artery", "UPRURTRACT": "upper urinary tract", "URETER": "ureter",
    "URETHRA": "urethra", "UTERUS": "uterus", "VAGINA": "vagina", "VULVA": "vulva", "WRIST": "wrist",
    "ZYGOMA": "zygoma", "LOWERLIMB": "lower limb", "UPPERLIMB": "upper limb", "SELLA": "sella turcica",
    "SINUS": "paranasal sinus", "PITUITARY": "pituitary gland", "ESOPHAGOGASTRIC": "gastroesophageal junction",
    "CRANIUM": "cranium", "PERINEUM": "perineum", "ENDOCARDIUM": "endocardium", "VEIN": "vein",
}
#: Common vendor and site variants of a defined term (normalised: upper case, no spaces or punctuation).
VARIANTS: dict[str, str] = {
    "CERVICALSPINE": "CSPINE", "CSPINE": "CSPINE", "CWS": "CSPINE", "THORACICSPINE": "TSPINE", "BWS": "TSPINE",
    "LUMBARSPINE": "LSPINE", "LWS": "LSPINE", "THORAX": "CHEST", "TORAX": "CHEST", "TORACE": "CHEST",
    "LUNGS": "LUNG", "HEADNECK": "HEADNECK", "HEADANDNECK": "HEADNECK", "HNECK": "HEADNECK", "SKULLS": "SKULL",
    "SCHAEDEL": "SKULL", "SCHADEL": "SKULL", "CRANE": "SKULL", "CRANIO": "SKULL", "KOPF": "HEAD", "TESTA": "HEAD",
    "CABEZA": "HEAD", "BACINO": "PELVIS", "BECKEN": "PELVIS", "PELVI": "PELVIS", "ABDOMEN": "ABDOMEN",
    "ABDOME": "ABDOMEN", "ADDOME": "ABDOMEN", "BAUCH": "ABDOMEN", "ABD": "ABDOMEN", "ABDPELVIS": "ABDOMENPELVIS",
    "ABDOMENPELVIS": "ABDOMENPELVIS", "CAP": "CHESTABDPELVIS", "WHOLEBODY": "WHOLEBODY", "TOTALBODY": "WHOLEBODY",
    "WB": "WHOLEBODY", "MAMMA": "BREAST", "MAMMELLA": "BREAST", "SENO": "BREAST", "CUORE": "HEART",
    "HERZ": "HEART", "CARDIAC": "HEART", "FEGATO": "LIVER", "LEBER": "LIVER", "RENE": "KIDNEY",
    "NIERE": "KIDNEY", "KIDNEYS": "KIDNEY", "GINOCCHIO": "KNEE", "KNIE": "KNEE", "SPALLA": "SHOULDER",
    "SCHULTER": "SHOULDER", "ANCA": "HIP", "HUEFTE": "HIP", "COLLO": "NECK", "HALS": "NECK", "CERVELLO": "BRAIN",
    "GEHIRN": "BRAIN", "HIRN": "BRAIN", "CEREBRUM": "BRAIN", "ENCEPHALON": "BRAIN", "MANO": "HAND",
    "PIEDE": "FOOT", "FUSS": "FOOT", "PROSTATA": "PROSTATE", "SPLEEN": "SPLEEN", "HEADBRAIN": "BRAIN",
    "BRAINHEAD": "BRAIN", "EXTREMITIES": "EXTREMITY", "BREASTS": "BREAST", "UPPEREXTREMITY": "UPPERLIMB",
    "LOWEREXTREMITY": "LOWERLIMB", "TOELOWEREXTREMITY": "TOE", "PARANASALSINUSES": "SINUS", "SINUSES": "SINUS",
}
_NOT_LETTERS = re.compile(r"[^A-Z]")


def body_part(value: object) -> str | None:
    """Plain English for a Body Part Examined value, or None when it is no known term."""
    if not isinstance(value, str):
        return None
    key = _NOT_LETTERS.sub("", value.upper())
    term = key if key in BODY_PARTS else VARIANTS.get(key)
    return BODY_PARTS.get(term) if term else None
