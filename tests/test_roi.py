"""ROI geometry and its words."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from builder.errors import Reject
from builder.pipeline.roi import position_of, position_text, rois_from_labelmap


def test_boxes_are_smallest_pixel_edge_boxes_and_mask_is_reindexed() -> None:
    labels = np.zeros((10, 20), dtype=np.uint16)
    labels[2:5, 3:8] = 7
    labels[6, 15] = 300
    rois, mask = rois_from_labelmap(labels, {7: "liver", 300: "tumour"}, default="x")
    assert [r.label for r in rois] == ["liver", "tumour"]
    assert rois[0].bbox == (3, 2, 8, 5) and rois[0].pixels == 15
    assert rois[1].bbox == (15, 6, 16, 7)
    assert rois[0].area_ratio == pytest.approx(15 / 200)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1, 2}
    assert (mask == 1).sum() == 15


def test_a_value_missing_from_the_labels_is_a_reject() -> None:
    labels = np.zeros((4, 4), dtype=np.uint8)
    labels[1, 1] = 9
    with pytest.raises(Reject, match=r"\[9\]"):
        rois_from_labelmap(labels, {1: "liver"}, default="x")


def test_binary_mask_without_names_takes_the_default_label() -> None:
    rois, _ = rois_from_labelmap(np.eye(5, dtype=bool), {}, default="nodule")
    assert [r.label for r in rois] == ["nodule"]


@pytest.mark.parametrize(("x", "y", "cell"), [(1, 1, "upper-left"), (50, 50, "center"), (99, 1, "upper-right"),
                                              (50, 99, "lower-center"), (1, 50, "center-left")])
def test_position_is_the_3x3_cell_of_the_centroid(x: int, y: int, cell: str) -> None:
    assert position_of(x, y, 100, 100) == cell


def test_text_says_the_stored_cell_in_the_patients_terms() -> None:
    assert position_text("center-left", "axial", "head") == "central part of the head, on the patient's right"
    assert position_text("upper-right", "axial", "head") == "anterior part of the head, on the patient's left"
    assert position_text("upper-right", "coronal", "chest") == "superior part of the chest, on the patient's left"
    assert position_text("upper-left", "sagittal", "head") == "superior anterior part of the head"
    assert position_text("lower-center", "radiological", "chest") == "lower part of the chest"
    assert position_text("center", "axial") == "central part of the body"
    assert position_text("lower-left", "image") == "lower-left of the image"  # a photograph: the image's terms


def test_a_position_is_given_within_the_frame_of_the_body() -> None:
    frame = (40, 40, 60, 60)  # a small head in the middle of the image
    assert position_of(42, 42, 100, 100, frame) == "upper-left"
    assert position_of(58, 50, 100, 100, frame) == "center-right"
    assert position_of(42, 42, 100, 100) == "center"  # in the image's frame every point of it is central


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24)), elements=st.integers(0, 4)))
def test_every_label_pixel_is_inside_its_box(labels: np.ndarray) -> None:
    rois, mask = rois_from_labelmap(labels, {}, default="x")
    assert len(rois) == len(set(np.unique(labels)) - {0})
    for i, roi in enumerate(rois):
        ys, xs = np.nonzero(mask == i + 1)
        assert roi.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert roi.pixels == len(ys)


def test_label_map_positions_are_the_grid_cells_of_their_centroids() -> None:
    """Each ROI's position is the 3x3 cell of its centroid (thirds of the image), computed here per ROI; the
    label map puts centroids on and around the thirds' edges."""
    rng = np.random.default_rng(3)
    for height, width in ((217, 181), (96, 96), (7, 11)):
        labels = rng.integers(0, 40, size=(height, width))
        labels[: height // 3, : width // 3] = 41  # a block whose centroid sits inside the upper-left cell
        rois, _ = rois_from_labelmap(labels, {}, "region")
        for value, roi in zip(np.unique(labels[labels > 0]), rois):
            ys, xs = np.nonzero(labels == value)
            cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
            row = "upper" if 3 * cy / height < 1 else "center" if 3 * cy / height < 2 else "lower"
            col = "left" if 3 * cx / width < 1 else "center" if 3 * cx / width < 2 else "right"
            assert roi.position == ("center" if row == col == "center" else f"{row}-{col}")
