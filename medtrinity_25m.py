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
    "IMAGE_COLUMNS",
    "MODALITIES",
    "MODALITY_NAMES",
    "REFERENCE_KEYS",
    "ROI",
    "ROW",
    "WEBDATASET_FEATURES",
    "WEBDATASET_ROW",
    "MedTrinity25M",
    "MedTrinity25MConfig",
    "roi_collate",
    "stream",
    "webdataset_member",
    "yaml_features",
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
DETAIL_KEYS: tuple[str, ...] = ("modality_detail", "plane", "sequence", "burned_in", "age", "sex")

#: The row, as plain data: the one definition that both the Arrow schema (pyarrow alone: what the pipeline
#: writes, so a build never imports ``datasets``) and the ``datasets`` features are made from. A string is a
#: ``Value`` dtype, ``"image"`` an ``Image``, ``(dtype, n)`` a list of length n, ``[x]`` a list, a dict a struct.
ROI: dict[str, Any] = {
    # [x_min, y_min, x_max, y_max] in pixel-edge coordinates of the stored image:
    # the ROI covers columns x_min .. x_max-1 and rows y_min .. y_max-1.
    "bbox": ("float32", 4),
    "label": "string",
    "area_ratio": "float32",
    "position": "string",
    # "annotation" for a drawn mask or box, else the name of the proposer.
    "origin": "string",
    "score": "float32",
}
ROW: dict[str, Any] = {
    "id": "string",
    "image": "image",
    "mask": "image",
    # the image with the ROI outlines drawn into its pixels painted out (a published release's rows, built with
    # --restore-pixels); null for every other row
    "restored": "image",
    "modality": "string",
    "organ": "string",
    "disease": "string",
    "rois": [ROI],
    "coarse_caption": "string",
    "caption": "string",
    "attributes": dict.fromkeys(ATTRIBUTE_KEYS, "string"),
    "knowledge": ["string"],
    # a model's text checked against what was measured (builder/checks.py): the rules that found something to
    # check, what contradicted, and what was done (null: nothing contradicted; kept, flagged, retried); null for
    # text the pipeline wrote itself (the template describer's) and a release's own
    "checks": {"checked": ["string"], "contradictions": ["string"], "action": "string"},
    # Human-written text of the source, the reference that validation scores against.
    "reference": dict.fromkeys(REFERENCE_KEYS, "string"),
    "case_id": "string",
    "location": "string",
    "details": dict.fromkeys(DETAIL_KEYS, "string"),
    "source": "string",
    "source_file": "string",
    # the part of its split a row belongs to, where the source publishes one (MedPix 2.0's train_1 / train_2)
    "subset": "string",
    # a published release's own documents for the row, verbatim, as JSON (MedPix 2.0: the image description
    # and its clinical case); null for other sources, whose metadata reaches rows only through templates
    "record": "string",
    "plane": "string",
    "slice_index": "int32",
    # (row, column) spacing of the stored image's pixels in mm, where the source knows it
    "pixel_spacing": ("float32", 2),
    "width": "int32",
    "height": "int32",
    "license": "string",
    # true when the source's terms do not allow its pixels to be shared: image and mask are null, and source and
    # source_file say where to fetch the original
    "pixels_withheld": "bool",
}
#: The row's image columns (PNG bytes): what writers store as images and readers decode.
IMAGE_COLUMNS: tuple[str, ...] = tuple(name for name, spec in ROW.items() if spec == "image")


def webdataset_member(column: str) -> str:
    """The member of a WebDataset sample holding an image column: ``png`` for the image, ``<column>.png`` else."""
    return "png" if column == "image" else f"{column}.png"


#: A WebDataset sample: ``<id>.png``, ``<id>.mask.png`` and ``<id>.restored.png`` (optional), ``<id>.json``
#: (every other field).
WEBDATASET_ROW: dict[str, Any] = {**{webdataset_member(c): "image" for c in IMAGE_COLUMNS}, "txt": "string",
                                  "json": {name: spec for name, spec in ROW.items() if name not in IMAGE_COLUMNS}}


def _feature_dict(spec: Any) -> Any:
    """A row field as ``datasets``' ``Features.to_dict()`` writes it."""
    if spec == "image":
        return {"_type": "Image"}
    if isinstance(spec, str):
        return {"dtype": spec, "_type": "Value"}
    if isinstance(spec, tuple):
        return {"feature": _feature_dict(spec[0]), "length": spec[1], "_type": "List"}
    if isinstance(spec, list):
        return {"feature": _feature_dict(spec[0]), "_type": "List"}
    return {key: _feature_dict(value) for key, value in spec.items()}


def yaml_features(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """A row's features as a dataset card's ``dataset_info`` lists them (``DatasetInfo._to_yaml_dict``)."""
    return [dict(name=name, **_yaml_kind(value)) for name, value in spec.items()]


def _yaml_kind(spec: Any) -> dict[str, Any]:
    if isinstance(spec, str):
        return {"dtype": spec}
    if isinstance(spec, (tuple, list)):
        inner = _yaml_kind(spec[0])
        kind = {"list": inner.get("dtype", inner.get("struct"))}
        return {**kind, "length": spec[1]} if isinstance(spec, tuple) else kind
    return {"struct": yaml_features(spec)}


def _arrow_type(spec: Any) -> pa.DataType:
    import pyarrow as pa

    if spec == "image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    if isinstance(spec, str):
        return pa.type_for_alias(spec)
    if isinstance(spec, tuple):
        return pa.list_(_arrow_type(spec[0]), spec[1])
    if isinstance(spec, list):
        return pa.list_(_arrow_type(spec[0]))
    return pa.struct([(key, _arrow_type(value)) for key, value in spec.items()])


def _arrow() -> dict[str, Any]:
    """The Arrow schema of a Parquet shard, with the ``datasets`` features in its metadata, as ``datasets`` writes
    it (``tests/test_consumers.py`` checks it against ``Features.arrow_schema``); pyarrow alone."""
    import json

    import pyarrow as pa

    metadata = {"huggingface": json.dumps({"info": {"features": _feature_dict(ROW)}})}
    schema = pa.schema([(name, _arrow_type(spec)) for name, spec in ROW.items()], metadata=metadata)
    return {"ARROW_SCHEMA": schema, "COLUMNS": tuple(ROW)}


def _schema() -> dict[str, Any]:
    """The row's ``datasets`` features, built on first use (``datasets`` takes seconds to import: a build, which
    needs only the Arrow schema, never imports it)."""
    from datasets import Features

    FEATURES = Features.from_dict(_feature_dict(ROW))  # noqa: N806
    #: Pass it as ``features=`` to ``load_dataset("webdataset", ...)``: ``datasets`` otherwise infers types from
    #: 5 samples and refuses a missing mask.
    WEBDATASET_FEATURES = Features.from_dict(_feature_dict(WEBDATASET_ROW))  # noqa: N806
    return {"ROI_FEATURE": dict(FEATURES["rois"].feature), "FEATURES": FEATURES,
            "WEBDATASET_FEATURES": WEBDATASET_FEATURES}


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
                pattern = os.path.join(root, "data", modality, "**", "*.parquet")  # sub-folders: a large build
                for path in sorted(glob.glob(pattern, recursive=True)):
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


_LAZY = {name: _schema for name in ("ROI_FEATURE", "FEATURES", "WEBDATASET_FEATURES")}
_LAZY.update({name: _arrow for name in ("ARROW_SCHEMA", "COLUMNS")})
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
           channels: int | None = None, **kwargs: Any) -> datasets.IterableDataset:
    """``load_dataset(..., streaming=True)`` tuned for training loops.

    Only ``columns`` are read, and images (and masks) are decoded straight from
    their PNG bytes to numpy arrays (``HxW`` or ``HxWx3``) where the iteration
    runs: in the ``DataLoader``'s workers. ``channels`` (1 or 3) gives every
    image one shape (``HxW`` grey by luma, or ``HxWx3``), so a config that mixes
    grey and colour images batches (MONAI's and torch's collate need one). Each
    shard is a unit of work: keep ``num_shards >= num_workers x world_size``.
    See BENCHMARKS.md for the speed.
    """
    import io

    import datasets
    import numpy as np
    import PIL.Image
    from datasets import Image

    ds = datasets.load_dataset(path, config, split=split, streaming=True, **kwargs).select_columns(list(columns))
    images = [c for c in IMAGE_COLUMNS if c in columns]
    for column in images:
        ds = ds.cast_column(column, Image(decode=False))

    def image(data: bytes, column: str) -> Any:
        opened: PIL.Image.Image = PIL.Image.open(io.BytesIO(data))
        if channels is not None and column == "image":
            opened = opened.convert("L" if channels == 1 else "RGB")
        return np.asarray(opened)

    def decode(row: dict[str, Any]) -> dict[str, Any]:
        return {c: None if row[c] is None else image(row[c]["bytes"], c) for c in images}

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
