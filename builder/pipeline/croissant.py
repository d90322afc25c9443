"""``croissant.json``: the dataset's Croissant metadata (MLCommons 1.0) with its responsible-AI fields.

The Hub reads Croissant metadata but not responsible-AI fields from a card's
YAML; a dataset that wants them ships its own ``croissant.json``. This one
describes the Parquet shards (a ``FileSet`` per layout), one ``RecordSet`` of the
row's scalar and image columns (from :data:`medtrinity_25m.ROW`), and the RAI
vocabulary (``rai:``): how the data was collected, what personal and sensitive
information it may hold and how it was de-identified, each source's licence and
what of it was published, the annotation protocol and the known limits.
The test validates it with the ``mlcroissant`` package.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

from medtrinity_25m import ATTRIBUTE_KEYS, ROW

__all__ = ["CONTEXT", "croissant"]

CONTEXT: dict[str, Any] = {
    "@language": "en", "@vocab": "https://schema.org/", "citeAs": "cr:citeAs", "column": "cr:column",
    "conformsTo": "dct:conformsTo", "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/", "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"}, "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty", "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract", "field": "cr:field", "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet", "format": "cr:format", "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath", "key": "cr:key", "md5": "cr:md5", "parentField": "cr:parentField", "path": "cr:path",
    "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex", "repeated": "cr:repeated",
    "replace": "cr:replace", "samplingRate": "cr:samplingRate", "sc": "https://schema.org/",
    "separator": "cr:separator", "source": "cr:source", "subField": "cr:subField", "transform": "cr:transform",
}
TYPES = {"string": "sc:Text", "int32": "sc:Integer", "float32": "sc:Float", "bool": "sc:Boolean",
         "image": "sc:ImageObject"}
CITATION = ("Xie et al., MedTrinity-25M: A Large-scale Multimodal Dataset with Multigranular Annotations for "
            "Medicine, arXiv:2408.02900 (2024)")


def _fields(file_set: str) -> list[dict[str, Any]]:
    """A field per column the record set can carry: scalars, images, and the five attributes."""
    fields = []
    for name, spec in ROW.items():
        if isinstance(spec, str) and spec in TYPES:  # an image column is a struct: its PNG is its "bytes"
            fields.append(_field(name, TYPES[spec], file_set, {"column": name},
                                 transform={"jsonPath": "bytes"} if spec == "image" else None))
    fields += [_field(f"attributes_{key}", "sc:Text", file_set, {"column": "attributes"},
                      transform={"jsonPath": key}) for key in ATTRIBUTE_KEYS]
    return fields


def _field(name: str, data_type: str, file_set: str, extract: dict[str, str],
           transform: dict[str, str] | None = None) -> dict[str, Any]:
    source: dict[str, Any] = {"fileSet": {"@id": file_set}, "extract": extract}
    if transform:
        source["transform"] = transform
    return {"@type": "cr:Field", "@id": f"rows/{name}", "name": name, "dataType": data_type, "source": source}


def _licences(sources: Sequence[dict[str, Any]]) -> str:
    published = {True: "images and annotations", False: "annotations only, pixels withheld"}
    return "; ".join(f"{s['name']}: {s['license']} ({published[bool(s.get('redistribute', True))]})" for s in sources)


def croissant(name: str, repo: str, version: str, sources: Sequence[dict[str, Any]], deid: dict[str, Any],
              describer: str, rows: int, layout_glob: str) -> dict[str, Any]:
    """The JSON-LD document (``layout_glob``: the Parquet shards, e.g. ``data/*/*.parquet``)."""
    licence = ", ".join(sorted({str(s["license"]) for s in sources})) or "unknown"
    deid_text = (f"DICOM inputs de-identified as {deid.get('standard', 'DICOM PS3.15 Annex E')}: "
                 + "; ".join(deid.get("options", [])) + f". Pixels: {deid.get('pixels', '')}.") if deid else ""
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "name": name,
        "description": (f"MedTrinity-style multigranular medical image dataset: {rows:,} image-ROI-description "
                        "triplets (image, regions of interest with their masks and boxes, coarse caption and a "
                        "five-attribute description)."),
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "citeAs": CITATION,
        "license": licence,
        "url": f"https://huggingface.co/datasets/{repo}",
        "version": version,
        "datePublished": datetime.now(timezone.utc).date().isoformat(),  # the day the folder was built
        "distribution": [{"@type": "cr:FileSet", "@id": "parquet-files", "name": "parquet-files",
                          "description": "The Parquet shards, one folder per modality config.",
                          "encodingFormat": "application/x-parquet", "includes": layout_glob}],
        "recordSet": [{"@type": "cr:RecordSet", "@id": "rows", "name": "rows",
                       "description": "One image with its ROIs and descriptions.", "field": _fields("parquet-files")}],
        "rai:dataCollection": (
            "Built by medtrinity-25m from the sources listed under rai:dataLicenses: images and their annotations "
            "as the sources publish them (DICOM, NIfTI, NRRD, MetaImage, PNG/JPEG, COCO/VOC/YOLO, tables), "
            "sliced, windowed and paired by fixed rules; ROI geometry is measured from masks and boxes."),
        "rai:dataCollectionType": ["Secondary data analysis"],
        "rai:dataAnnotationProtocol": (
            f"Coarse captions from each source's metadata by fixed rules; descriptions written by the `{describer}` "
            "describer. Model answers are checked against what the pipeline measured (modality, organ, side, "
            "position, count, area, size) and retried, flagged or rejected; the row's `checks` column records it."),
        "rai:personalSensitiveInformation": (
            "Medical images of patients. No DICOM header value is copied except an allowlist of technical "
            "attributes; input file and folder names are replaced by pseudonymous ids; burned-in text is looked "
            "for by OCR and redacted or the image refused. " + deid_text),
        "rai:dataLicenses": _licences(sources),
        "rai:dataLimitations": (
            "Descriptions are machine-written from metadata and measurements; ROI positions are given within the "
            "body's frame in patient terms. Rows of sources whose terms forbid redistribution carry no pixels "
            "(pixels_withheld). Not for clinical use."),
        "rai:dataUseCases": "Training and evaluating vision-language models on medical images; research only.",
    }
