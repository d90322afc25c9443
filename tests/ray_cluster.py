"""A Ray cluster of two nodes on this machine, as a user starts one: ``ray start --head``, then ``ray start
--address`` for the second node; one CPU and the custom resource ``medtri`` each. Both run with ``--block`` so
that ending them ends only their own processes (``ray stop`` would end every Ray of the machine). Token
authentication is on, with a token of the cluster's own."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESOURCE = "medtri"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalCluster:
    def __init__(self, logs: Path, nodes: int = 2) -> None:
        self.logs, self.nodes = logs, nodes
        self.address = f"127.0.0.1:{_free_port()}"
        self.env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
                        RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.processes: list[subprocess.Popen[Any]] = []
        ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
        self.start = [ray, "start", "--block", "--num-cpus", "1", "--resources", f'{{"{RESOURCE}": 1}}',
                      "--object-store-memory", str(100 * 2**20), "--disable-usage-stats"]

    def __enter__(self) -> LocalCluster:
        self.logs.mkdir(parents=True, exist_ok=True)
        head = ["--head", "--port", self.address.rsplit(":", 1)[1], "--include-dashboard=false"]
        self._node(head, "head")
        for number in range(1, self.nodes):
            self._node(["--address", self.address], f"node{number}")
        return self

    def _node(self, extra: list[str], name: str) -> None:
        with open(self.logs / f"{name}.log", "w") as log:
            self.processes.append(subprocess.Popen(self.start + extra, env=self.env, stdout=log, stderr=log))
        self.wait_for(len(self.processes))

    def alive(self) -> int:
        """Nodes the cluster counts alive, asked from another process (this one stays free of Ray)."""
        code = (f"import ray; ray.init(address={self.address!r}, log_to_driver=False); "
                "print(sum(1 for n in ray.nodes() if n['Alive']))")
        done = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=60)
        lines = done.stdout.strip().splitlines()
        return int(lines[-1]) if done.returncode == 0 and lines and lines[-1].isdigit() else 0

    def wait_for(self, nodes: int, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                break
            if self.alive() >= nodes:
                return
            time.sleep(1)
        self.__exit__()
        logs = "\n".join((self.logs / f).read_text()[-1500:] for f in sorted(os.listdir(self.logs)))
        raise RuntimeError(f"Ray did not start {nodes} node(s) on this machine:\n{logs}")

    def __exit__(self, *exc: object) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []
