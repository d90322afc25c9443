"""Nothing identifying reaches what is published: names in paths, unreferenced columns, secrets, burned-in text."""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import build, dicom_file, published_rejects, real_files, rejects, run_cli, shard_rows, write_manifest
from PIL import Image

from builder.pipeline.readers import ocr

NAMES = ("Doe^John_MRN55555", "IMG0001", "MRN55555", "Doe")


def _hospital_export(root: Path) -> Path:
    """Images in folders named after patients, a broken file among them, and a metadata table with columns
    that no template names."""
    rng = np.random.default_rng(3)
    for patient in ("Doe^John_MRN55555", "Roe^Jane_MRN77777"):
        folder = root / "export" / patient
        folder.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (32, 40), dtype=np.uint8)).save(folder / f"IMG000{i + 1}.png")
        (folder / "IMG0009.png").write_bytes(b"\x89PNG broken")
    (root / "meta.csv").write_text("image,finding,age,sex,mrn\n"
                                   "IMG0001,nodule,087Y,F,MRN55555\nIMG0002,normal,091Y,M,MRN55555\n")
    return write_manifest(root, {"name": "hospital", "format": "image", "images": "export/*/IMG*.png",
                                 "modality": "xray", "metadata": "meta.csv", "disease": "{finding}"})


def _published_bytes(out: Path) -> list[tuple[str, bytes]]:
    doc = json.loads((out / "build.json").read_text())
    return [(p, (out / p).read_bytes()) for p in doc["published"] + ["build.json"]]


def test_no_path_component_or_unreferenced_column_is_published(tmp_path: Path) -> None:
    manifest = _hospital_export(tmp_path)
    out = tmp_path / "out"
    build(manifest, out, "--format", "both")
    exported = tmp_path / "exported"
    run_cli("export", "folder", out, "--out", exported)
    query = run_cli("query", out, "SELECT * EXCLUDE (search_text, file) FROM samples", "--output", "json").stdout
    texts = [(p, b) for p, b in _published_bytes(out)] + [("query", query.encode())]
    texts += [(p.name, p.read_bytes()) for p in exported.rglob("*.jsonl")]
    for where, blob in texts:
        for secret in NAMES + ("Roe^Jane", str(tmp_path), "087Y", "091Y", "MRN77777"):
            assert secret.encode() not in blob, f"{secret!r} reached {where}"
    # ... while the person who ran the build can act on every row and reject
    files = real_files(out)
    assert sorted(files.values()) == sorted(f"export/{p}/IMG000{i}.png" for p in ("Doe^John_MRN55555",
                                                                                  "Roe^Jane_MRN77777")
                                            for i in (1, 2))
    assert {line["file"] for line in rejects(out)} == {"export/Doe^John_MRN55555/IMG0009.png",
                                                      "export/Roe^Jane_MRN77777/IMG0009.png"}
    public = published_rejects(out)
    assert {line["file"] for line in public} == {line["id"] for line in public}
    rows = shard_rows(out, "xray")
    assert all(row["details"]["age"] is None and row["details"]["sex"] is None for row in rows)
    assert {row["disease"] for row in rows} >= {"nodule", "normal"}


def test_ids_are_keyed_stable_and_not_recoverable_from_names(tmp_path: Path) -> None:
    manifest = _hospital_export(tmp_path)
    one = build(manifest, tmp_path / "one")
    two = build(manifest, tmp_path / "two", "--workers", "2")
    ids = sorted(real_files(tmp_path / "one"))
    assert ids == sorted(real_files(tmp_path / "two"))  # same machine: same ids, whatever the folder or workers
    assert [s["sha256"] for s in one["shards"]] == [s["sha256"] for s in two["shards"]]
    other = build(manifest, tmp_path / "other", "--id-key", "another secret")
    assert not set(ids) & set(real_files(tmp_path / "other"))  # the ids depend on the key
    for row_id, file in real_files(tmp_path / "one").items():  # an unkeyed hash of the name does not give it
        assert hashlib.sha1(f"hospital\0{file}\0".encode()).hexdigest()[:20] not in row_id
    assert other["rows"]["total"] == one["rows"]["total"]


def test_public_release_names_stay_published(tmp_path: Path) -> None:
    _hospital_export(tmp_path)
    entry = {"name": "hospital", "format": "image", "images": "export/*/IMG*.png", "modality": "xray",
             "publish_paths": True}
    out = tmp_path / "out"
    build(write_manifest(tmp_path, entry), out)
    assert {r["source_file"] for r in shard_rows(out, "xray")} == set(real_files(out).values())


def test_burned_in_annotation_is_compared_as_a_cs_value(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for name, flag in (("spaced", " YES"), ("lower", "yes "), ("no", "NO")):
        ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
        ds.BurnedInAnnotation = flag
        ds.save_as(tmp_path / "in" / f"{name}.dcm")
    out = tmp_path / "out"
    build(write_manifest(tmp_path, {"name": "d", "format": "dicom", "images": "in/*.dcm"}), out)
    stages = {Path(line["file"]).stem: line["stage"] for line in rejects(out)}
    assert stages == {"spaced": "privacy", "lower": "privacy"}


def test_deid_cleans_known_text_regions_and_rejects_what_it_cannot_clean(tmp_path: Path) -> None:
    pytest.importorskip("deid", reason="pixel screening needs deid")
    (tmp_path / "in").mkdir()
    for name in ("OBXXXX1A.dcm", "SC_rgb.dcm"):
        (tmp_path / "in" / name).write_bytes(dicom_file(name).read_bytes())
    entry = {"name": "us", "format": "dicom", "images": "in/*.dcm", "modality": "ultrasound"}
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, entry), out)
    lines = {Path(line["file"]).name: line for line in rejects(out)}
    if ocr.available():  # deid's flag without a region is left to OCR, which finds no text in the colour test card
        assert lines == {} and summary["notes"]["pixels_screened_by_ocr"] == 2
    else:  # the header alone decides: refused
        assert set(lines) == {"SC_rgb.dcm"} and lines["SC_rgb.dcm"]["stage"] == "privacy"
    assert summary["notes"]["pixels_cleaned_by_deid"] == 1
    header = pydicom.dcmread(dicom_file("OBXXXX1A.dcm"))  # deid's CX50 rule: a top band of 59 rows
    for row in [r for r in shard_rows(out, "ultrasound") if r["width"] == header.Columns]:
        pixels = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])))
        assert pixels.shape[:2] == (header.Rows, header.Columns)
        assert not pixels[:59].any(), "the text band is blacked out"
        assert pixels[59:].any()
    allowed = build(write_manifest(tmp_path, dict(entry, allow_burned_in=True)), tmp_path / "allowed")
    assert allowed["files"]["rejected"] == 0


def test_body_part_reaches_rows_only_as_a_defined_term(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for name, value in (("pelvis", "bacino"), ("cspine", "CSPINE"), ("junk", "jpeg 2000 compressed image"),
                        ("typed", "Mr Doe knee")):
        ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
        ds.BodyPartExamined = value
        ds.save_as(tmp_path / "in" / f"{name}.dcm")
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, {"name": "d", "format": "dicom", "images": "in/*.dcm"}), out)
    files = real_files(out)
    organs = {Path(files[r["id"]]).stem: r["organ"] for r in shard_rows(out, "ct", ["id", "organ"])}
    assert organs == {"pelvis": "pelvis", "cspine": "cervical spine", "junk": "unspecified", "typed": "unspecified"}
    assert summary["notes"]["body_part_unmapped"] == 2
    assert b"Doe" not in (out / "data" / "ct" / "train-00000-of-00001.parquet").read_bytes()


def test_commands_need_opt_in_and_never_see_or_leak_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "img").mkdir()
    Image.fromarray(np.full((20, 20), 9, np.uint8)).save(tmp_path / "img" / "a.png")
    script = tmp_path / "leak.py"
    script.write_text("import os, sys\n"
                      "sys.stderr.write('token=' + os.environ.get('HF_TOKEN', 'none') + ' key sk-abcdefghijklmnop')\n"
                      "sys.exit(3)\n")
    monkeypatch.setenv("HF_TOKEN", "hf_supersecretvalue123")
    manifest = write_manifest(tmp_path, {"name": "a", "format": "image", "images": "img/*.png", "modality": "ct",
                                         "roi": {"method": "command", "command": f"{sys.executable} {script}"}})
    refused = run_cli("build", manifest, "--out", tmp_path / "out", "--quiet", ok=False)
    assert refused.exit_code != 0 and "--allow-commands" in refused.output
    assert not (tmp_path / "out" / "build.json").exists()
    out = tmp_path / "out2"
    run_cli("build", manifest, "--out", out, "--quiet", "--workers", "1", "--allow-commands", ok=False)
    for path in (out / "rejects.jsonl", out / ".private" / "rejects.jsonl"):
        text = path.read_text()
        assert "exited 3" in text and "token=none" in text  # the command ran without the caller's token
        assert "sk-abcdefghijklmnop" not in text and "hf_supersecretvalue123" not in text


def test_credentials_in_the_model_url_are_never_written(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    Image.fromarray(np.full((20, 20), 9, np.uint8)).save(tmp_path / "img" / "a.png")
    manifest = write_manifest(tmp_path, {"name": "a", "format": "image", "images": "img/*.png", "modality": "ct"})
    out = tmp_path / "out"
    result = run_cli("build", manifest, "--out", out, "--quiet", "--workers", "1", "--describer", "openai",
                     "--llm-base-url", "http://user:sk-live-secret-123456@127.0.0.1:9/v1", "--llm-model", "m",
                     "--llm-retries", "0", ok=False)
    written = result.output + "".join(p.read_text() for p in out.rglob("*.json*") if p.is_file())
    assert "sk-live-secret-123456" not in written and "user:" not in written
    assert "[redacted]@127.0.0.1" in (out / "build.json").read_text()


def test_the_browser_answers_only_its_own_host_names(tmp_path: Path) -> None:
    pytest.importorskip("duckdb", reason="the browser needs the catalog extra")
    import http.client
    import threading

    from builder.dataset.serve import make_server

    (tmp_path / "img").mkdir()
    Image.fromarray(np.full((20, 20), 9, np.uint8)).save(tmp_path / "img" / "a.png")
    out = tmp_path / "out"
    build(write_manifest(tmp_path, {"name": "a", "format": "image", "images": "img/*.png", "modality": "ct"}), out)
    server = make_server(out, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        statuses = {}
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "evil.example:80", "attacker.test"):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/api/facets", headers={"Host": host})
            statuses[host] = connection.getresponse().status
            connection.close()
    finally:
        server.shutdown()
        server.server_close()
    assert statuses == {f"127.0.0.1:{port}": 200, f"localhost:{port}": 200, "evil.example:80": 421,
                        "attacker.test": 421}


def test_the_card_escapes_html_from_metadata(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    Image.fromarray(np.full((20, 20), 9, np.uint8)).save(tmp_path / "img" / "a.png")
    out = tmp_path / "out"
    build(write_manifest(tmp_path, {"name": "a", "format": "image", "images": "img/*.png", "modality": "ct",
                                    "organ": "<img src=x onerror=alert(1)>", "license": "<b>mine</b>"}), out)
    body = (out / "README.md").read_text().split("---", 2)[2]
    assert "<img" not in body and "<b>" not in body and "&lt;img src=x" in body


def test_pseudonymous_rejects_still_say_why_without_names(tmp_path: Path) -> None:
    folder = tmp_path / "Doe^John_MRN55555"
    folder.mkdir()
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(folder / "scan.png")
    Image.fromarray(np.ones((31, 30), np.uint8)).save(folder / "scan_mask.png")
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(folder / "other.png")
    out = tmp_path / "out"
    build(write_manifest(tmp_path, {"name": "s", "format": "image", "images": "Doe^John_MRN55555/[so]*[!k].png",
                                    "masks": "Doe^John_MRN55555/*_mask.png", "modality": "xray",
                                    "unmasked": "keep"}), out)
    (line,) = published_rejects(out)
    assert line["stage"] == "mask" and "31" in line["reason"] and "Doe" not in json.dumps(line)
    assert "MRN55555" in rejects(out)[0]["file"]


def test_echoed_credentials_are_redacted_from_any_text() -> None:
    from builder.privacy import redact

    echoed = ("401 for http://alice:hunter2secret@10.0.0.1/v1: {'headers': {'Authorization': 'Bearer sk-abc123def456'}}"
              " token hf_AbCdEfGhIjKlMnOp and api_key=zzzsecretvalue")
    text = redact(echoed)
    for secret in ("hunter2secret", "sk-abc123def456", "hf_AbCdEfGhIjKlMnOp", "zzzsecretvalue", "alice:"):
        assert secret not in text
    assert "401" in text and "[redacted]" in text
