"""The README's two commands, run as a new user would, in a fresh virtual environment."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT


def readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_ci_runs_the_readme_test_command() -> None:
    install_and_demo, install_and_test = readme_commands()[:2]
    assert "medtri-build demo" in install_and_demo
    assert install_and_test in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_install_and_demo_in_a_fresh_venv(tmp_path: Path) -> None:
    """Copy the tracked files, run the first command, load the result as the README shows."""
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    repo = tmp_path / "repo"
    for name in tracked.stdout.splitlines():
        source = ROOT / name
        if source.is_file() or source.is_symlink():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name, follow_symlinks=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    command = readme_commands()[0].replace("python -m venv", f"{sys.executable} -m venv", 1)
    done = subprocess.run(command, shell=True, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "wrote" in done.stdout
    check = ("from datasets import load_dataset, get_dataset_config_names as names;"
             "assert {'all', 'ct', 'mri', 'xray', 'ultrasound'} <= set(names('medtrinity-25m'));"
             "print(len(load_dataset('medtrinity-25m', 'ct', split='train')))")
    loaded = subprocess.run([str(repo / ".venv" / "bin" / "python"), "-c", check], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert int(loaded.stdout.strip()) > 5
