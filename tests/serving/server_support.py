"""Start ``rerank-plugins serve`` in a subprocess on 127.0.0.1 (free port), wait, stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

#: A query and documents the tiny model's vocabulary covers (shared by the server tests).
QUERY = "vitamin d deficiency increased risk"
DOCUMENTS = [
    "vitamin d deficiency was associated with increased fracture risk",
    "the heart pathway in mice",
    "blood levels of vitamin d were lower in patients",
    "tumor growth and cell death",
    "a clinical trial of vitamin d therapy reduced risk",
    "rna expression in stem cells",
]

ROOT = Path(__file__).resolve().parents[2]
#: Seconds to wait for a server to load the model and answer /health (the test machine's
#: cores are shared; a cold torch import alone can take 20 s there).
STARTUP_S = 240.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``rerank-plugins serve`` in a subprocess; its log lives in a file for failures."""

    def __init__(self, model: Path, log_dir: Path, *args: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"server-{self.port}.log"
        command = [
            sys.executable,
            "-m",
            "rerank_plugins",
            "serve",
            str(model),
            "--port",
            str(self.port),
            "--device",
            "cpu",
            "--log-level",
            "warning",
            *args,
        ]
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"server not ready after {STARTUP_S} s:\n{self.log()}")

    def terminate(self) -> None:
        """SIGTERM (graceful: drain, then exit)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self._log.close()
