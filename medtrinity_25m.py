"""MedTrinity-25M style datasets: the row, its features and a builder class.

This module is the consumer side of the project and the one place where a row
is defined. Both the pipeline (``builder/``) and consumers import it; it imports
nothing from ``builder/``.

A built dataset folder (``medtri-build build`` / ``medtri-build demo``) is
opened with ``datasets`` directly, one config per modality::

    from datasets import load_dataset
    ds = load_dataset("medtrinity-25m", "ct")                  # in memory
    it = load_dataset("medtrinity-25m", "ct", streaming=True)   # streamed

``datasets`` 4+ no longer runs loading scripts, so the folder carries no ``.py``:
its configs come from the ``configs:`` YAML of its ``README.md``. The
:class:`MedTrinity25M` builder below reads the same Parquet shards when imported::

    from medtrinity_25m import MedTrinity25M
    b = MedTrinity25M(config_name="ct", data_dir="medtrinity-25m")
    b.download_and_prepare()
    ds = b.as_dataset(split="train")
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import datasets
    import pyarrow as pa

    # made on first use by __getattr__ below
    ROI_FEATURE: dict[str, Any]
    FEATURES: datasets.Features
    WEBDATASET_FEATURES: datasets.Features
    ARROW_SCHEMA: pa.Schema
    COLUMNS: tuple[str, ...]
    MedTrinity25MConfig: type
    MedTrinity25M: type

__all__ = [
    "ARROW_SCHEMA",
    "ATTRIBUTE_KEYS",
    "COLUMNS",
    "DETAIL_KEYS",
    "FEATURES",
    "MODALITIES",
    "MODALITY_NAMES",
    "REFERENCE_KEYS",
    "WEBDATASET_FEATURES",
    "MedTrinity25M",
    "MedTrinity25MConfig",
    "roi_collate",
    "stream",
]

#: The ten imaging modalities of MedTrinity-25M, as config names.
MODALITIES: tuple[str, ...] = (
    "ct",
    "mri",
    "xray",
    "ultrasound",
    "pathology",
    "dermoscopy",
    "endoscopy",
    "fundus",
    "microscopy",
    "pet",
)

#: How each modality is named in text.
MODALITY_NAMES: dict[str, str] = {
    "ct": "CT",
    "mri": "MRI",
    "xray": "X-ray",
    "ultrasound": "ultrasound",
    "pathology": "pathology",
    "dermoscopy": "dermoscopy",
    "endoscopy": "endoscopy",
    "fundus": "fundus photograph",
    "microscopy": "microscopy",
    "pet": "PET",
}

#: The five attributes of a multigranular description (MedTrinity-25M, sec. 3.4).
ATTRIBUTE_KEYS: tuple[str, ...] = (
    "modality",
    "organ_detection",
    "roi_analysis",
    "texture",
    "region_relationship",
)

#: Human-written reference text of a sample (MedPix: image caption and case report).
REFERENCE_KEYS: tuple[str, ...] = ("caption", "history", "findings", "diagnosis", "discussion")
#: Descriptive metadata kept as given by the source.
DETAIL_KEYS: tuple[str, ...] = ("modality_detail", "plane", "age", "sex")

def _schema() -> dict[str, Any]:
    """The row's ``datasets`` features, built on first use (``datasets`` takes seconds to import: the pipeline's
    workers, which need only the constants above, never import it)."""
    from datasets import Features, Image, List, Value

    ROI_FEATURE = {  # noqa: N806
        # [x_min, y_min, x_max, y_max] in pixel-edge coordinates of the stored image:
        # the ROI covers columns x_min .. x_max-1 and rows y_min .. y_max-1.
        "bbox": List(Value("float32"), length=4),
        "label": Value("string"),
        "area_ratio": Value("float32"),
        "position": Value("string"),
        # "annotation" for a drawn mask or box, else the name of the proposer.
        "origin": Value("string"),
        "score": Value("float32"),
    }

    FEATURES = Features(  # noqa: N806
        {
            "id": Value("string"),
            "image": Image(),
            "mask": Image(),
            "modality": Value("string"),
            "organ": Value("string"),
            "disease": Value("string"),
            "rois": List(ROI_FEATURE),
            "coarse_caption": Value("string"),
            "caption": Value("string"),
            "attributes": {key: Value("string") for key in ATTRIBUTE_KEYS},
            "knowledge": List(Value("string")),
            # Human-written text of the source, the reference that validation scores against.
            "reference": {key: Value("string") for key in REFERENCE_KEYS},
            "case_id": Value("string"),
            "location": Value("string"),
            "details": {key: Value("string") for key in DETAIL_KEYS},
            "source": Value("string"),
            "source_file": Value("string"),
            # the part of its split a row belongs to, where the source publishes one (MedPix 2.0's train_1 / train_2)
            "subset": Value("string"),
            # a published release's own documents for the row, verbatim, as JSON (MedPix 2.0: the image description
            # and its clinical case); null for other sources, whose metadata reaches rows only through templates
            "record": Value("string"),
            "plane": Value("string"),
            "slice_index": Value("int32"),
            # (row, column) spacing of the stored image's pixels in mm, where the source knows it
            "pixel_spacing": List(Value("float32"), length=2),
            "width": Value("int32"),
            "height": Value("int32"),
            "license": Value("string"),
        }
    )

    #: A WebDataset sample: ``<id>.png``, ``<id>.mask.png`` (optional), ``<id>.json``
    #: (every other field). Pass it as ``features=`` to ``load_dataset("webdataset", ...)``:
    #: ``datasets`` otherwise infers types from 5 samples and refuses a missing mask.
    WEBDATASET_FEATURES = Features(  # noqa: N806
        {"png": Image(), "mask.png": Image(),
         "json": {name: feature for name, feature in FEATURES.items() if name not in ("image", "mask")}}
    )

    #: The Arrow schema of a Parquet shard, with the features in its metadata.
    return {"ROI_FEATURE": ROI_FEATURE, "FEATURES": FEATURES, "WEBDATASET_FEATURES": WEBDATASET_FEATURES,
            "ARROW_SCHEMA": FEATURES.arrow_schema, "COLUMNS": tuple(FEATURES)}


_ALL = "all"


def _builders() -> dict[str, Any]:
    """The ``datasets`` builder classes, made on first use."""
    import datasets
    import pyarrow.parquet as pq

    FEATURES = __getattr__("FEATURES")  # noqa: N806

    @dataclass
    class MedTrinity25MConfig(datasets.BuilderConfig):
        """One config per modality; ``modalities`` lists the folders it reads."""

        modalities: tuple[str, ...] = ()


    def _config(name: str, modalities: tuple[str, ...], description: str) -> MedTrinity25MConfig:
        return MedTrinity25MConfig(
            name=name, modalities=modalities, description=description, version=datasets.Version("1.0.0")
        )


    class MedTrinity25M(datasets.GeneratorBasedBuilder):
        """Reads the Parquet shards of a built dataset folder (``data_dir``)."""

        BUILDER_CONFIG_CLASS = MedTrinity25MConfig
        BUILDER_CONFIGS = [_config(m, (m,), f"{MODALITY_NAMES[m]} triplets") for m in MODALITIES] + [
            _config(_ALL, MODALITIES, "every modality")
        ]
        DEFAULT_CONFIG_NAME = _ALL

        def _info(self) -> datasets.DatasetInfo:
            return datasets.DatasetInfo(
                description="Image-ROI-description triplets in the MedTrinity-25M layout.",
                features=FEATURES,
                homepage="https://arxiv.org/abs/2408.02900",
            )

        def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
            root = self.config.data_dir or "medtrinity-25m"
            by_split: dict[str, list[str]] = {}
            for modality in self.config.modalities:
                for path in sorted(glob.glob(os.path.join(root, "data", modality, "*.parquet"))):
                    split = os.path.basename(path).split("-", 1)[0]
                    by_split.setdefault(split, []).append(path)
            if not by_split:
                raise FileNotFoundError(
                    f"no Parquet shards for config {self.config.name!r} under {os.path.join(root, 'data')}"
                )
            return [
                datasets.SplitGenerator(name=split, gen_kwargs={"files": files})
                for split, files in sorted(by_split.items())
            ]

        def _generate_examples(self, files: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
            for path in files:
                for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
                    for row in batch.to_pylist():
                        yield row["id"], row
    return {"MedTrinity25MConfig": MedTrinity25MConfig, "MedTrinity25M": MedTrinity25M}


_LAZY = {name: _schema for name in ("ROI_FEATURE", "FEATURES", "WEBDATASET_FEATURES", "ARROW_SCHEMA", "COLUMNS")}
_LAZY.update({name: _builders for name in ("MedTrinity25MConfig", "MedTrinity25M")})


def __getattr__(name: str) -> Any:
    """``FEATURES``, ``ARROW_SCHEMA``, the builder classes, ...: made when first asked for (PEP 562)."""
    make = _LAZY.get(name)
    if make is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals().update(make())
    return globals()[name]


def stream(path: str, config: str = "all", split: str = "train",
           columns: tuple[str, ...] = ("id", "image", "mask", "rois", "caption", "modality"),
           **kwargs: Any) -> datasets.IterableDataset:
    """``load_dataset(..., streaming=True)`` tuned for training loops.

    Only ``columns`` are read, and images (and masks) are decoded straight from
    their PNG bytes to numpy arrays (``HxW`` or ``HxWx3``) where the iteration
    runs: in the ``DataLoader``'s workers. Each shard is a unit of work: keep
    ``num_shards >= num_workers x world_size``. See BENCHMARKS.md for the speed.
    """
    import io

    import datasets
    import numpy as np
    import PIL.Image
    from datasets import Image

    ds = datasets.load_dataset(path, config, split=split, streaming=True, **kwargs).select_columns(list(columns))
    images = [c for c in ("image", "mask") if c in columns]
    for column in images:
        ds = ds.cast_column(column, Image(decode=False))

    def decode(row: dict[str, Any]) -> dict[str, Any]:
        return {c: None if row[c] is None else np.asarray(PIL.Image.open(io.BytesIO(row[c]["bytes"])))
                for c in images}

    return ds.map(decode) if images else ds


def roi_collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate decoded rows (PIL images or numpy arrays) into tensors for a torch ``DataLoader``.

    Images become a list of ``CxHxW`` uint8 tensors (sizes differ between rows),
    ROIs a list of ``Nx4`` float32 box tensors with a list of label lists, and
    masks a list of ``HxW`` int64 tensors (``None`` where a row has no mask).
    Needs the ``torch`` extra.
    """
    import numpy as np
    import torch

    def to_tensor(img: Any) -> Any:
        arr = np.asarray(img)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        # torch shares the memory: contiguous and writable, copied only when the array is not already so
        return torch.from_numpy(np.require(arr, requirements=["C_CONTIGUOUS", "WRITEABLE"]))

    return {
        "id": [row["id"] for row in batch],
        "image": [to_tensor(row["image"]) for row in batch],
        "boxes": [
            torch.tensor([r["bbox"] for r in row["rois"]], dtype=torch.float32).reshape(-1, 4)
            for row in batch
        ],
        "labels": [[r["label"] for r in row["rois"]] for row in batch],
        "mask": [
            None if row["mask"] is None else torch.from_numpy(np.asarray(row["mask"]).astype("int64"))
            for row in batch
        ],
        "caption": [row.get("caption") for row in batch],
        "modality": [row.get("modality") for row in batch],
    }
