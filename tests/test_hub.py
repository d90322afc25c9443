"""push, pull and verify against a local Hub that speaks the real protocol (127.0.0.1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import build, run_cli, write_manifest
from hub_server import HubServer
from PIL import Image

TOKEN = "hf_SeCrEtToKeN_1234567890abcdef"
CLI = [sys.executable, "-m", "builder"]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _env(hub: HubServer, home: Path) -> dict[str, str]:
    # HF_ENDPOINT and HF_TOKEN are read at import time: the clients run in subprocesses.
    return dict(os.environ, HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1",
                HF_HUB_DISABLE_PROGRESS_BARS="1", HF_DATASETS_CACHE=str(home / "datasets"))


def _run(args: list[str], env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert not ok or done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def _python(code: str, env: dict[str, str]) -> str:
    return _run([sys.executable, "-c", code], env).stdout


@pytest.fixture()
def hub(tmp_path: Path):
    with HubServer(tmp_path / "hub", TOKEN) as server:
        yield server


def _secret_free(*texts: str, folders: tuple[Path, ...] = ()) -> None:
    for text in texts:
        assert TOKEN not in text
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), path


def test_build_push_load_pull_verify(demo_out: Path, tmp_path: Path, hub: HubServer) -> None:
    demo_out = _copy(demo_out, tmp_path / "medtrinity-25m")  # push edits the card: keep the fixture as built
    env = _env(hub, tmp_path / "home")
    pushed = _run(CLI + ["push", str(demo_out), "org/medtrinity-demo", "--message", "first"], env)
    assert "configs: all, ct" in pushed.stdout
    check = """
import json
from datasets import load_dataset
out = {}
for streaming in (False, True):
    rows = load_dataset("org/medtrinity-demo", "ct", split="train", streaming=streaming)
    out[str(streaming)] = sorted((r["id"], r["caption"], r["image"].size) for r in rows)
print(json.dumps(out))
"""
    remote = json.loads(_python(check, env).strip().splitlines()[-1])
    from datasets import load_dataset

    local = sorted((r["id"], r["caption"], list(r["image"].size)) for r in load_dataset(str(demo_out), "ct",
                                                                                          split="train"))
    assert [tuple(r[:2]) + (list(r[2]),) for r in map(tuple, remote["False"])] == local
    assert remote["True"] == remote["False"]
    pulled = tmp_path / "pulled"
    done = _run(CLI + ["pull", "org/medtrinity-demo", str(pulled)], env)
    assert "OK" in done.stdout
    assert run_cli("verify", pulled).exit_code == 0
    only_ct = tmp_path / "only-ct"
    _run(CLI + ["pull", "org/medtrinity-demo", str(only_ct), "--config", "ct"], env)
    assert sorted(p.parent.name for p in (only_ct / "data").rglob("*.parquet")) == ["ct"]
    assert hub.tokens_seen == {TOKEN}
    _secret_free(pushed.stdout + pushed.stderr, done.stdout + done.stderr, folders=(demo_out, pulled))
    assert not any(p.endswith(".py") for _, p in hub.requests if "/commit/" in p)


def _many_files(folder: Path, n: int) -> Path:
    (folder / "img").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(folder / "img" / f"{i:03d}.png")
    return write_manifest(folder, {"name": "tiny", "format": "image", "images": "img/*.png", "modality": "xray"})


def test_an_interrupted_push_resumes_without_reuploading(tmp_path: Path, hub: HubServer) -> None:
    out = tmp_path / "many"
    build(_many_files(tmp_path / "src", 300), out, "--shard-rows", "1")  # 300 shards: several commits
    env = _env(hub, tmp_path / "home")
    hub.fail_commits_after = 1
    first = _run(CLI + ["push", str(out), "org/many"], env, ok=False)
    assert first.returncode != 0
    assert len(hub.committed_paths) == 1 and 0 < len(hub.committed_paths[0]) < 302
    landed = set(hub.committed_paths[0])
    hub.fail_commits_after = None
    second = _run(CLI + ["push", str(out), "org/many"], env)
    resent = {p for paths in hub.committed_paths[1:] for p in paths}
    assert not resent & landed, "files that had landed were uploaded again"
    remote = hub.repo("datasets", "org/many").files
    local_files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(out).parts)}
    remote_files = {p.relative_to(remote).as_posix(): p.read_bytes() for p in remote.rglob("*") if p.is_file()}
    assert remote_files == local_files  # every published file, and nothing local (.private, the lock)
    _secret_free(first.stdout + first.stderr, second.stdout + second.stderr)
    # a shard (LFS: compared by sha256) and build.json (a git blob) that differ on the Hub are sent again, alone
    shard = sorted(remote.rglob("*.parquet"))[7]
    for changed in (shard, remote / "build.json"):
        changed.write_bytes(changed.read_bytes()[:-1] + b"x")
    before = len(hub.committed_paths)
    _run(CLI + ["push", str(out), "org/many"], env)
    again = sorted(p for paths in hub.committed_paths[before:] for p in paths)
    assert again == sorted([shard.relative_to(remote).as_posix(), "build.json"])
    assert {p.relative_to(remote).as_posix(): p.read_bytes() for p in remote.rglob("*") if p.is_file()} == local_files


def test_a_killed_push_resumes_sending_each_file_once(tmp_path: Path, hub: HubServer) -> None:
    """Thousands of shards in sub-folders, the push killed (SIGKILL) between its commits, then run again: no file is
    sent twice, the repo ends with every published file, and it loads from the Hub."""
    out = tmp_path / "thousands"
    build(_many_files(tmp_path / "src", 2000), out, "--shard-rows", "1", "--files-per-folder", "500")
    card = (out / "README.md").read_bytes()
    env = _env(hub, tmp_path / "home")
    hub.hold_commits_after = 5
    first = subprocess.Popen(CLI + ["push", str(out), "org/thousands"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        assert hub.held.wait(300), "the push never reached its sixth commit"
    finally:
        first.kill()
        first.wait()
        hub.release.set()
    assert len(hub.committed_paths) == 5 and (out / "README.md").read_bytes() == card  # killed: card untouched
    hub.hold_commits_after = None
    second = _run(CLI + ["push", str(out), "org/thousands"], env)
    sent = [p for paths in hub.committed_paths for p in paths]
    assert len(sent) == len(set(sent)), "a file was sent twice"
    assert sent[-2:] == ["README.md", "build.json"]  # the card and the listing last, once every shard is there
    assert len(hub.committed_paths) > 15  # in commits of at most a hundred files
    remote = hub.repo("datasets", "org/thousands").files
    local_files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(out).parts)}
    remote_files = {p.relative_to(remote).as_posix(): p.read_bytes() for p in remote.rglob("*") if p.is_file()}
    assert remote_files == local_files and len(remote_files) > 2000
    assert f"uploaded {len(sent) - sum(map(len, hub.committed_paths[:5]))} of" in second.stdout
    count = "from datasets import load_dataset; print(len(load_dataset('org/thousands', split='train')))"
    assert _python(count, env).strip().splitlines()[-1] == "2000"


def test_dry_run_and_gating(demo_out: Path, tmp_path: Path, hub: HubServer) -> None:
    demo_out = _copy(demo_out, tmp_path / "medtrinity-25m")
    env = _env(hub, tmp_path / "home")
    plan = _run(CLI + ["push", str(demo_out), "org/gated", "--dry-run"], env)
    assert "would upload" in plan.stdout and "data/ct/train-00000-of-00001.parquet" in plan.stdout
    assert hub.repo("datasets", "org/gated") is None
    _run(CLI + ["push", str(demo_out), "org/gated", "--private", "--gated", "manual",
                "--gate-field", "Affiliation:text", "--gate-field", "I agree to the DUA:checkbox"], env)
    repo = hub.repo("datasets", "org/gated")
    assert repo.private and repo.settings["gated"] == "manual"
    card = (repo.files / "README.md").read_text()
    assert "extra_gated_prompt:" in card and "I agree to the DUA: checkbox" in card
    assert 'load_dataset("org/gated"' in card


def test_verify_names_each_bad_file(demo_out: Path, tmp_path: Path, hub: HubServer) -> None:
    flipped = _copy(demo_out, tmp_path / "flipped")
    shard = flipped / "data" / "ct" / "train-00000-of-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = run_cli("verify", flipped, ok=False)
    assert result.exit_code != 0 and "data/ct/train-00000-of-00001.parquet: sha256" in result.output

    deleted = _copy(demo_out, tmp_path / "deleted")
    (deleted / "data" / "fundus" / "train-00000-of-00001.parquet").unlink()
    result = run_cli("verify", deleted, ok=False)
    assert "data/fundus/train-00000-of-00001.parquet: missing" in result.output
    assert "config 'fundus'" in result.output

    ghost = _copy(demo_out, tmp_path / "ghost")
    card = (ghost / "README.md").read_text()
    card = card.replace("configs:\n", "configs:\n- config_name: pet\n  data_files:\n  - split: train\n"
                                      "    path: data/pet/train-*.parquet\n", 1)
    (ghost / "README.md").write_text(card)
    result = run_cli("verify", ghost, ok=False)
    assert "config 'pet'" in result.output and "no such files" in result.output

    refused = _run(CLI + ["push", str(flipped), "org/bad"], _env(hub, tmp_path / "home"), ok=False)
    assert refused.returncode != 0 and "fails verify" in refused.stderr
    assert hub.repo("datasets", "org/bad") is None


def test_create_pr_commits_to_a_pull_request_ref(demo_out: Path, tmp_path: Path, hub: HubServer) -> None:
    demo_out = _copy(demo_out, tmp_path / "medtrinity-25m")
    env = _env(hub, tmp_path / "home")
    done = _run(CLI + ["push", str(demo_out), "org/reviewed", "--create-pr", "--message", "Add CT"], env)
    repo = hub.repo("datasets", "org/reviewed")
    assert repo.discussions[0]["pullRequest"] is True and repo.discussions[0]["title"] == "Add CT"
    assert not list(repo.files.rglob("*.parquet")), "main must stay untouched"
    assert list(repo.tree("refs/pr/1").rglob("*.parquet"))
    assert "pull request:" in done.stdout


def test_a_failed_push_leaves_the_local_card_as_it_was(demo_out: Path, tmp_path: Path, hub: HubServer) -> None:
    folder = _copy(demo_out, tmp_path / "medtrinity-25m")
    before = (folder / "README.md").read_bytes()
    env = _env(hub, tmp_path / "home")
    hub.fail_commits_after = 0  # every commit is refused
    failed = _run(CLI + ["push", str(folder), "org/refused", "--gated", "manual"], env, ok=False)
    assert failed.returncode != 0 and "card is unchanged" in failed.stderr
    assert (folder / "README.md").read_bytes() == before
    assert _run(CLI + ["verify", str(folder)], env).returncode == 0
