"""Names and lists as a radiologist reads them: atlas labels of several vocabularies in plain English, lists that
stay unambiguous when a name holds a comma, and text without doubled marks or words."""

from __future__ import annotations

import pytest

from builder.anatomy import name_list, plain_label
from builder.pipeline.template import tidy


@pytest.mark.parametrize(("label", "plain"), [
    ("Frontal_Inf_Tri_L", "left inferior frontal gyrus, triangular part"),  # AAL
    ("Cerebelum_Crus2_R", "right cerebellum, crus II"),
    ("Cerebelum_4_5_L", "left cerebellum, lobules 4 and 5"),
    ("Vermis_1_2", "vermis, lobules 1 and 2"),
    ("Brodmann_area_20", "brodmann area 20"),  # Brodmann: a numbered area, not a lobule
    ("ctx-lh-superiorfrontal", "left superior frontal cortex"),  # FreeSurfer's Desikan-Killiany parcels
    ("ctx-rh-lateraloccipital", "right lateral occipital cortex"),
    ("Left-Hippocampus", "left hippocampus"),  # FreeSurfer's aseg
    ("Right-Cerebral-White-Matter", "right cerebral white matter"),
    ("liver", "liver"),  # plain names pass unchanged
])
def test_atlas_labels_of_several_vocabularies_read_as_anatomy(label: str, plain: str) -> None:
    assert plain_label(label) == plain


def test_a_list_whose_names_hold_commas_stays_unambiguous_and_long_lists_are_summarised() -> None:
    names = [plain_label(label) for label in ("Cerebelum_Crus2_L", "Cerebelum_Crus2_R", "Precentral_L")]
    assert name_list(names) == "left cerebellum, crus II; right cerebellum, crus II; left precentral gyrus"
    assert name_list(["liver", "spleen", "left kidney"]) == "liver, spleen, left kidney"
    assert name_list([f"region {i}" for i in range(12)], limit=3) == "region 0, region 1, region 2 and 9 more regions"
    assert name_list(["a", "b", "a"]) == "a, b"


@pytest.mark.parametrize(("text", "tidied"), [
    ("Abdomen, Abdomen; diagnosis: Crohn disease..", "Abdomen; diagnosis: Crohn disease."),
    ("The source records the finding as appendicitis..", "The source records the finding as appendicitis."),
    ("It lies in the the liver", "It lies in the liver"),
    ("left, , right", "left, right"),
    ("Differential: a, b, c...", "Differential: a, b, c..."),  # an ellipsis stays
])
def test_text_is_tidied_of_doubled_marks_items_and_words(text: str, tidied: str) -> None:
    assert tidy(text) == tidied
