"""The model stage at scale: exactly C calls in flight, retries outside the slots, structured answers, answers
never asked twice (also across kill -9), tokens in build.json. Against a local OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MEDPIX, build, need, published_rejects, run_cli, shard_rows, write_manifest
from llm_server import ChatServer, prompt_text

KEYS = ("modality", "organ_detection", "roi_analysis", "texture", "region_relationship")


def _images(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    for path in sorted((need(MEDPIX / "test") / "images").glob("*.png"))[:count]:
        shutil.copy(path, folder / path.name)
    return folder


def _manifest(tmp_path: Path, count: int) -> Path:
    _images(tmp_path / "scans", count)
    return write_manifest(tmp_path, {"name": "scans", "format": "image", "images": "scans/*.png", "modality": "ct"})


def _answer(delay: float = 0.0, fail: object = None):
    def answer(request: dict) -> object:
        time.sleep(delay)
        if fail is not None:
            verdict = fail(request)
            if verdict is not None:
                return verdict
        return json.dumps({k: f"{k} text" for k in KEYS})
    return answer


def _llm(server: ChatServer, *extra: str) -> tuple[str, ...]:
    return ("--describer", "openai", "--llm-base-url", server.url, "--llm-model", "vlm", *extra)


def test_exactly_c_requests_in_flight_and_tokens_counted(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, 24)
    with ChatServer(_answer(delay=0.3)) as server:
        summary = build(manifest, tmp_path / "out", *_llm(server, "--llm-concurrency", "6", "--no-answer-cache"))
    assert server.peak == 6  # the server held exactly C requests at its busiest, never more
    stage = summary["model_stage"]
    assert stage["peak_in_flight"] == 6 and stage["described"] == 24
    assert stage["usage"] == {"requests": 24, "prompt_tokens": 2400, "completion_tokens": 480}
    assert stage["tokens_per_row"] == 120.0
    assert summary["rows"]["total"] == 24


def test_retry_after_is_honoured_outside_the_slots(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, 6)
    seen: dict[str, int] = {}

    def busy(request: dict) -> object:
        key = image_key(request)
        seen[key] = seen.get(key, 0) + 1
        return (429, {"Retry-After": "1"}) if seen[key] == 1 else None

    with ChatServer(_answer(fail=busy)) as server:
        summary = build(manifest, tmp_path / "out", *_llm(server, "--llm-concurrency", "2", "--no-answer-cache"))
    assert summary["rows"]["total"] == 6 and len(server.requests) == 12
    first: dict[str, float] = {}
    for arrival, request in server.times:
        key = image_key(request)
        if key in first:
            assert arrival - first[key] >= 0.95  # asked again only after the server's Retry-After
        else:
            first[key] = arrival


def image_key(request: dict) -> str:
    content = request["messages"][-1]["content"]
    return next(part["image_url"]["url"] for part in content if part.get("type") == "image_url")[-64:]


def test_structured_answers_asked_for_and_refused(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, 4)
    with ChatServer(_answer()) as server:
        summary = build(manifest, tmp_path / "a", *_llm(server, "--no-answer-cache"))
    schema = server.requests[0]["response_format"]
    assert schema["type"] == "json_schema" and set(schema["json_schema"]["schema"]["required"]) == set(KEYS)
    assert summary["model_stage"]["structured_output"] == "json_schema"

    def refuse(request: dict) -> object:
        return 400 if "response_format" in request else None

    with ChatServer(_answer(fail=refuse)) as server:
        summary = build(manifest, tmp_path / "b", *_llm(server, "--no-answer-cache", "--llm-concurrency", "1"))
    assert summary["rows"]["total"] == 4  # the prompt alone carries the contract
    assert summary["model_stage"]["structured_output"].startswith("prompt")
    assert sum("response_format" in r for r in server.requests) == 1  # refused once, then never asked again


def test_kill_during_the_model_stage_then_resume_asks_only_the_unanswered(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, 30)
    cache = tmp_path / "cache"
    env = dict(os.environ, MEDTRI_CACHE_DIR=str(cache))
    out = tmp_path / "out"
    with ChatServer(_answer(delay=0.2)) as server:
        args = [sys.executable, "-m", "builder", "build", str(manifest), "--out", str(out), "--shard-units", "1000",
                *_llm(server, "--llm-concurrency", "2")]
        running = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while len(server.requests) < 10:
            time.sleep(0.05)
        running.send_signal(signal.SIGKILL)
        running.wait()
        answered = {json.loads(line)["key"].split(":")[0]
                    for part in (cache / "answers").glob("*.jsonl") for line in part.read_text().splitlines()}
        assert 0 < len(answered) < 30
        before = len(server.requests)
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        asked = server.requests[before:]
    assert len(asked) == 30 - len(answered)  # only the rows without an answer
    summary = json.loads((out / "build.json").read_text())
    assert summary["rows"]["total"] == 30 and summary["model_stage"]["reused"] == len(answered)
    assert all(prompt_text(r) for r in asked)


def test_describe_a_built_dataset_through_batch_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(_manifest(tmp_path, 5), out)  # the template describer
    before = {r["id"]: r["caption"] for r in shard_rows(out, columns=["id", "caption"])}
    llm = ("--describer", "openai", "--llm-base-url", "http://127.0.0.1:9/v1", "--llm-model", "big-vlm")
    requests = tmp_path / "requests.jsonl"
    run_cli("describe", str(out), "--export-batch", str(requests), *llm)
    lines = [json.loads(line) for line in requests.read_text().splitlines()]
    assert {line["custom_id"] for line in lines} == set(before)
    assert all(line["method"] == "POST" and line["url"] == "/v1/chat/completions" for line in lines)
    body = lines[0]["body"]
    assert body["model"] == "big-vlm" and body["response_format"]["type"] == "json_schema"
    assert body["messages"][-1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    # a GPU cluster's engine answers every request but the last, which fails
    results = tmp_path / "results.jsonl"
    with open(results, "w") as fh:
        for n, line in enumerate(lines):
            ok = n < len(lines) - 1
            answer = json.dumps({k: f"{k} by big-vlm for {line['custom_id']}" for k in KEYS})
            fh.write(json.dumps({
                "id": f"batch_req_{n}", "custom_id": line["custom_id"], "error": None if ok else {"message": "OOM"},
                "response": {"status_code": 200 if ok else 500, "request_id": f"r{n}", "body": {
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]} if ok else {}},
            }) + "\n")
    run_cli("describe", str(out), "--import-batch", str(results), *llm)
    after = {r["id"]: r for r in shard_rows(out, columns=["id", "caption", "attributes"])}
    failed = lines[-1]["custom_id"]
    for row_id, row in after.items():
        if row_id == failed:
            assert row["caption"] == before[row_id]  # keeps its previous description
        else:
            assert row["attributes"]["texture"] == f"texture by big-vlm for {row_id}"
    kept = [line for line in published_rejects(out) if line["stage"] == "describe"]
    assert [line["id"] for line in kept] == [failed] and "keeps its previous description" in kept[0]["reason"]
    summary = json.loads((out / "build.json").read_text())
    assert summary["describer"]["name"] == "openai" and summary["described_again"]["described"] == len(lines) - 1
    run_cli("verify", str(out))


def test_describe_a_built_dataset_online(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(_manifest(tmp_path, 4), out)
    with ChatServer(_answer()) as server:
        run_cli("describe", str(out), *_llm(server, "--no-answer-cache"))
    assert len(server.requests) == 4
    rows = shard_rows(out, columns=["attributes"])
    assert all(r["attributes"]["modality"] == "modality text" for r in rows)
    run_cli("verify", str(out))


class _Killed(BaseException):
    """The process dying at this point (no except clause of the project catches a BaseException)."""


def _staged(out: Path) -> list[Path]:
    return sorted(out.rglob("*.staged"))


def _describe_dying(out: Path, monkeypatch, owner: object, name: str) -> list[object]:  # type: ignore[no-untyped-def]
    """A describe of ``out`` that dies at the second call of ``owner.name`` (the first goes through); its calls."""
    real, calls = getattr(owner, name), []

    def dies_on_the_second(*args: object) -> object:
        if calls:
            raise _Killed()
        calls.append(args)
        return real(*args)

    with ChatServer(_answer()) as server:
        monkeypatch.setattr(owner, name, dies_on_the_second)
        with pytest.raises(_Killed):
            run_cli("describe", str(out), *_llm(server, "--no-answer-cache"))
        monkeypatch.undo()
    return calls


def _three_shards(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    build(_manifest(tmp_path, 6), out, "--shard-rows", "2")
    assert len(json.loads((out / "build.json").read_text())["shards"]) == 3
    return out


def test_a_describe_killed_while_putting_files_in_place_is_finished_by_the_next(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    from builder.dataset import staging

    out = _three_shards(tmp_path)
    assert len(_describe_dying(out, monkeypatch, staging.os, "replace")) == 1
    assert _staged(out)  # one shard in place, the rest and build.json still staged
    problems = run_cli("verify", str(out), ok=False)
    assert problems.exit_code != 0 and "interrupted describe" in problems.output
    with ChatServer(_answer()) as server:
        run_cli("describe", str(out), *_llm(server, "--no-answer-cache"))
    assert not _staged(out)
    assert all(r["attributes"]["modality"] == "modality text" for r in shard_rows(out, columns=["attributes"]))
    run_cli("verify", str(out))


def test_a_describe_killed_while_writing_leaves_the_previous_version(tmp_path: Path, monkeypatch) -> None:
    from builder.pipeline import redescribe as describe

    out = _three_shards(tmp_path)
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _describe_dying(out, monkeypatch, describe.pq, "write_table")
    left = _staged(out)
    assert len(left) == 1  # the first shard's new version, never put in place
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file() and p not in left} == before
    with ChatServer(_answer()) as server:
        run_cli("describe", str(out), *_llm(server, "--no-answer-cache"))  # removes it, then describes
    assert not _staged(out)
    run_cli("verify", str(out))
